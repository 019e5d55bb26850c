"""Annotations: keyframes, the two actions, ActivityNet-1.3 JSON, and the frame <-> seconds <-> grid map.

A cardiologist marks three **keyframes** in a cine (frame indices):

    start  contrast agent enters the artery
    apex   maximal opacification
    end    the contrast agent has washed out

The seed paper turns them into two temporal **actions** and localizes those with a detector. Three
ways of doing so are compared in its Table VIII ("problem settings"); setting 0 is the paper's:

    setting  label 0                      label 1                          keyframes from the two segments
    0        filling      [start, apex]   disappearing [apex, end]         start=s0, apex=(e0+s1)/2, end=e1   (eq. 14)
    1        filling      [start, apex]   whole        [start, end]        start=(s0+s1)/2, apex=e0, end=e1   (eq. 19)
    2        whole        [start, end]    disappearing [apex, end]         start=s0, apex=s1, end=(e0+e1)/2   (eq. 20)

Times in the JSON are seconds: t = frame / fps.

Archive cines are not always complete. A record may carry a **status** (xcalab's addition, absent = unknown):
"ok" (all three keyframes in the cine), "partial" (the recording starts after the start or stops before the
end: ``keyframes_present`` says which are in it; the missing start is stored as frame 0, the missing end as the
last frame, so the two actions stop at the cine's borders) or "no_contrast" (no actions, no keyframes).

The detector does not see frames but **feature steps**: step k reads the frames [s*k, s*k + w) (stride s,
window w; the paper uses s = w = 4) and sits at their centre, frame s*k + w/2. ``FeatureGrid`` is the one
place where frames, seconds and grid positions are converted into each other. The reference code drops the
+w/2 when it turns ground truth back into keyframes, which costs every
prediction 2 frames of average deviation; ``paper_compatible=True`` reproduces that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from xcalab.data.io import atomic_path
from xcalab.errors import XcalabInputError

SUBSETS = ("train", "validation", "test")
#: The official ActivityNet-1.3 subset names (ActionFormer and OpenTAD files use them too) -> xcalab's.
SUBSET_ALIASES = {"training": "train", "testing": "test"}


def canonical_subset(name: str) -> str:
    """xcalab's name of a subset, accepting ActivityNet's "training" / "testing" (any case)."""
    name = str(name).lower()
    return SUBSET_ALIASES.get(name, name)

#: What a cine shows of the contrast passage (``VideoAnnotation.status``).
STATUSES = ("ok", "partial", "no_contrast")

#: The label names of each problem setting, indexed by label_id.
LABELS: dict[int, tuple[str, str]] = {
    0: ("filling", "disappearing"),
    1: ("filling", "whole"),
    2: ("whole", "disappearing"),
}


# --------------------------------------------------------------------------------------------------
# Frames <-> seconds <-> feature grid
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureGrid:
    """The feature-step grid: step k covers frames [stride*k, stride*k + window), centred at stride*k + window/2.

    Positions are continuous: frame coordinate f = seconds * fps, grid coordinate g with g = k at the
    centre of step k. All methods accept floats or numpy arrays.

        >>> grid = FeatureGrid(stride=4, window=4)
        >>> grid.frame_to_grid(15.0)        # (15 - 2) / 4
        3.25
        >>> grid.grid_to_seconds(3.25, fps=15.0)
        1.0
    """

    stride: int = 4
    window: int = 4

    def __post_init__(self) -> None:
        if self.stride < 1 or self.window < 1:
            raise ValueError(f"stride and window must be >= 1, got stride={self.stride}, window={self.window}")

    @property
    def offset(self) -> float:
        """Grid offset of a step's centre from its first frame, window / (2 * stride) (ActionFormer's feat_offset)."""
        return self.window / (2 * self.stride)

    def n_steps(self, n_frames: int) -> int:
        """How many complete windows fit in ``n_frames`` frames (0 if fewer than ``window`` frames)."""
        if n_frames < self.window:
            return 0
        return (n_frames - self.window) // self.stride + 1

    def step_frames(self, k: int) -> range:
        """The frame indices read by step k."""
        return range(self.stride * k, self.stride * k + self.window)

    def step_centre(self, k):
        """Frame coordinate of step k's centre: stride * k + window / 2."""
        return self.stride * k + self.window / 2

    def frame_to_grid(self, f):
        """Frame coordinate -> grid coordinate: g = (f - window/2) / stride."""
        return (f - self.window / 2) / self.stride

    def grid_to_frame(self, g, paper_compatible: bool = False):
        """Grid coordinate -> frame coordinate: f = stride * g + window/2.

        With ``paper_compatible=True`` the +window/2 is dropped, as the reference code does when it turns
        ground-truth segments into keyframes (so its perfect prediction is off by window/2 = 2 frames).
        """
        return self.stride * g + (0.0 if paper_compatible else self.window / 2)

    def seconds_to_grid(self, seconds, fps: float):
        """Seconds -> grid coordinate (the training targets): g = (seconds * fps - window/2) / stride."""
        return self.frame_to_grid(seconds * fps)

    def grid_to_seconds(self, g, fps: float):
        """Grid coordinate -> seconds (the predictions): (stride * g + window/2) / fps."""
        return self.grid_to_frame(g) / fps


# --------------------------------------------------------------------------------------------------
# Keyframes <-> actions
# --------------------------------------------------------------------------------------------------


class Keyframes(NamedTuple):
    """Start, apex and end of the contrast passage, as frame coordinates (ints for ground truth)."""

    start: float
    apex: float
    end: float

    def rounded(self) -> Keyframes:
        """The nearest frame indices."""
        return Keyframes(*(int(math.floor(v + 0.5)) for v in self))

    def truncated(self) -> Keyframes:
        """int() of each keyframe, as the reference converts predictions to frames."""
        return Keyframes(*(math.trunc(v) for v in self))


class Action(NamedTuple):
    """One labelled temporal segment, in seconds."""

    label: str
    label_id: int
    segment: tuple[float, float]


def check_setting(setting: int) -> None:
    """ValueError unless ``setting`` is a problem setting (0, 1 or 2, seed paper Table VIII)."""
    if setting not in LABELS:
        raise ValueError(f"problem setting must be 0, 1 or 2 (seed paper Table VIII), got {setting!r}")


def check_setting_of(videos: Iterable[VideoAnnotation], setting: int, where: str | Path) -> None:
    """XcalabInputError naming ``where`` unless every video is annotated for problem setting ``setting``."""
    wrong = sorted({v.setting for v in videos} - {setting})
    if wrong:
        raise XcalabInputError(where, f"is annotated for problem setting(s) {wrong}, not setting {setting}")


def check_keyframes(keyframes: Sequence[float], where: str = "keyframes") -> Keyframes:
    """Return ``keyframes`` as ``Keyframes`` after checking 0 <= start <= apex <= end."""
    if len(keyframes) != 3:
        raise XcalabInputError(where, f"keyframes must be (start, apex, end), got {tuple(keyframes)}")
    kf = Keyframes(*keyframes)
    if not all(math.isfinite(v) for v in kf):
        raise XcalabInputError(where, f"keyframes must be finite numbers, got {tuple(kf)}")
    if not 0 <= kf.start <= kf.apex <= kf.end:
        raise XcalabInputError(where, f"keyframes must satisfy 0 <= start <= apex <= end, got {tuple(kf)}")
    return kf


def keyframes_to_actions(keyframes: Sequence[float], fps: float, setting: int = 0) -> list[Action]:
    """The two actions of a problem setting, in seconds, ordered by label_id.

    Args:
        keyframes: (start, apex, end) frame coordinates.
        fps: frame rate.
        setting: 0 (filling + disappearing, the paper's), 1 (filling + whole) or 2 (whole + disappearing).
    """
    check_setting(setting)
    start, apex, end = (v / fps for v in check_keyframes(keyframes))
    segments = {
        0: ((start, apex), (apex, end)),
        1: ((start, apex), (start, end)),
        2: ((start, end), (apex, end)),
    }[setting]
    return [Action(name, i, seg) for i, (name, seg) in enumerate(zip(LABELS[setting], segments))]


def actions_to_keyframes(actions: Iterable[Action], fps: float, setting: int = 0) -> Keyframes:
    """Keyframes (frame coordinates, floats) from one segment per label: seed paper eqs. 14, 19, 20.

    Segments are picked by ``label_id``, not by list position (the reference reads ground truth by
    position, which silently breaks when annotations are stored in another order).
    """
    check_setting(setting)
    by_label: dict[int, tuple[float, float]] = {}
    for action in actions:
        by_label.setdefault(action.label_id, action.segment)
    missing = [LABELS[setting][i] for i in (0, 1) if i not in by_label]
    if missing:
        raise ValueError(f"cannot decode keyframes: no segment for {', '.join(missing)} (setting {setting})")
    (s0, e0), (s1, e1) = by_label[0], by_label[1]
    seconds = {
        0: (s0, (e0 + s1) / 2, e1),  # eq. 14
        1: ((s0 + s1) / 2, e0, e1),  # eq. 19
        2: (s0, s1, (e0 + e1) / 2),  # eq. 20
    }[setting]
    return Keyframes(*(t * fps for t in seconds))


# --------------------------------------------------------------------------------------------------
# ActivityNet-1.3 JSON
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoAnnotation:
    """One video's record in the ActivityNet-1.3 ``database``.

    keyframes (frame indices), setting, status and keyframes_present are xcalab's additions to the record;
    ActivityNet readers ignore them. When a file has no keyframes they are decoded from the actions.

    status             None (not known: every file written before statuses existed), "ok", "partial" or
                       "no_contrast" (then no actions and no keyframes)
    keyframes_present  None, or (start?, apex?, end?): which keyframes are really in the cine ("ok": all;
                       "partial": the apex and not all; "no_contrast": none)
    """

    video_id: str
    subset: str
    fps: float
    duration: float
    actions: list[Action] = field(default_factory=list)
    keyframes: Keyframes | None = None
    setting: int = 0
    status: str | None = None
    keyframes_present: tuple[bool, bool, bool] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.keyframes_present, list):  # as JSON gives it
            self.keyframes_present = tuple(self.keyframes_present)
        problem = _status_problem(self.status, self.keyframes_present, self.actions, self.keyframes)
        if problem:
            raise XcalabInputError(self.video_id, problem)

    @classmethod
    def from_keyframes(
        cls, video_id: str, keyframes: Sequence[float], fps: float, n_frames: int, subset: str = "train",
        setting: int = 0, status: str | None = None, keyframes_present: Sequence[bool] | None = None,
    ) -> VideoAnnotation:
        """The record of a cine of ``n_frames`` frames whose keyframes are known (a partial cine: with its
        missing start at 0 and missing end at the last frame; ``without_contrast`` for a cine with none)."""
        kf = check_keyframes(keyframes, where=video_id)
        if kf.end > n_frames:
            raise XcalabInputError(video_id, f"end keyframe {kf.end} lies beyond the last frame ({n_frames} frames)")
        if status == "no_contrast":
            raise XcalabInputError(video_id, "a cine without contrast has no keyframes: use "
                                             "VideoAnnotation.without_contrast")
        present = None if keyframes_present is None else tuple(keyframes_present)
        return cls(video_id, subset, float(fps), n_frames / fps, keyframes_to_actions(kf, fps, setting), kf, setting,
                   status, present)

    @classmethod
    def without_contrast(cls, video_id: str, fps: float, n_frames: int, subset: str = "train",
                         setting: int = 0) -> VideoAnnotation:
        """The record of a cine of ``n_frames`` frames that shows no contrast: status "no_contrast", no actions."""
        check_setting(setting)
        return cls(video_id, subset, float(fps), n_frames / fps, [], None, setting, "no_contrast",
                   (False, False, False))

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "subset": self.subset,
            "fps": self.fps,
            "duration": self.duration,
            "annotations": [
                {"segment": [float(a.segment[0]), float(a.segment[1])], "label": a.label, "label_id": int(a.label_id)}
                for a in sorted(self.actions, key=lambda a: a.label_id)
            ],
            "setting": self.setting,
        }
        if self.keyframes is not None:
            record["keyframes"] = dict(zip(Keyframes._fields, (_plain(v) for v in self.keyframes)))
        if self.status is not None:
            record["status"] = self.status
        if self.keyframes_present is not None:
            record["keyframes_present"] = [bool(v) for v in self.keyframes_present]
        return record


def _status_problem(status: Any, present: Any, actions: list[Action], keyframes: Keyframes | None) -> str | None:
    """What is wrong with a record's status and keyframes_present (None: nothing)."""
    if status is not None and status not in STATUSES:
        return f'"status" must be one of {STATUSES}, got {status!r}'
    if present is not None:
        if not (isinstance(present, (tuple, list)) and len(present) == 3 and all(isinstance(v, bool) for v in present)):
            return f'"keyframes_present" must be three booleans (start, apex, end), got {present!r}'
        if status == "ok" and not all(present):
            return f'status "ok" means every keyframe is in the cine, but keyframes_present is {list(present)}'
        if status == "partial" and (all(present) or not present[1]):
            return f'status "partial" means the apex is in the cine and start or end is not, got {list(present)}'
        if status == "no_contrast" and any(present):
            return f'status "no_contrast" means no keyframe is in the cine, but keyframes_present is {list(present)}'
    if status == "no_contrast" and (actions or keyframes is not None):
        return 'status "no_contrast" means no actions and no keyframes'
    return None


def _plain(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def write_annotations(path: str | Path, videos: Iterable[VideoAnnotation]) -> Path:
    """Write ``{"version": "xcalab", "database": {video_id: record}}`` atomically; returns the path."""
    database = {}
    for video in videos:
        if video.video_id in database:
            raise ValueError(f"video id {video.video_id!r} appears twice")
        database[video.video_id] = video.to_json()
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"version": "ActivityNet-1.3 (xcalab)", "database": database}, indent=1))
    return path


def read_annotations(path: str | Path, subset: str | None = None) -> dict[str, VideoAnnotation]:
    """Read and validate an ActivityNet-1.3 JSON file; returns {video_id: VideoAnnotation}.

    Every problem raises ``XcalabInputError`` naming the file, the video and the field.
    ``subset`` keeps only the videos of that subset.
    """
    path = Path(path)
    if not path.is_file():
        raise XcalabInputError(path, "no such annotation file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise XcalabInputError(path, f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise XcalabInputError(path, 'expected an object with a "database" object (ActivityNet-1.3 format)')
    videos = {vid: _parse_record(path, vid, rec) for vid, rec in data["database"].items()}
    _check_label_names(path, videos)
    if subset is not None:
        subset = canonical_subset(subset)
        videos = {vid: v for vid, v in videos.items() if v.subset == subset}
    return videos


def _parse_record(path: Path, vid: str, rec: Any) -> VideoAnnotation:
    where = f"{path} [video {vid!r}]"

    def fail(problem: str):
        raise XcalabInputError(where, problem)

    if not isinstance(rec, dict):
        fail("the record must be an object")
    for key in ("subset", "fps", "duration", "annotations"):
        if key not in rec:
            fail(f'missing field "{key}"')
    subset = canonical_subset(rec["subset"])
    if subset not in SUBSETS:
        fail(f'"subset" must be one of {SUBSETS} (or ActivityNet\'s "training" / "testing"), got {rec["subset"]!r}')
    fps, duration = rec["fps"], rec["duration"]
    if not _positive_number(fps):
        fail(f'"fps" must be a positive number, got {fps!r}')
    if not _positive_number(duration):
        fail(f'"duration" must be a positive number of seconds, got {duration!r}')
    setting = rec.get("setting", 0)
    if setting not in LABELS:
        fail(f'"setting" must be 0, 1 or 2, got {setting!r}')
    if not isinstance(rec["annotations"], list):
        fail('"annotations" must be a list')
    actions = []
    for i, ann in enumerate(rec["annotations"]):
        if not isinstance(ann, dict):
            fail(f"annotations[{i}] must be an object")
        seg = ann.get("segment")
        if not (isinstance(seg, list) and len(seg) == 2 and all(_number(t) for t in seg)):
            fail(f'annotations[{i}].segment must be [t0, t1] in seconds, got {seg!r}')
        t0, t1 = float(seg[0]), float(seg[1])
        if not 0 <= t0 <= t1:
            fail(f"annotations[{i}].segment must satisfy 0 <= t0 <= t1, got {seg!r}")
        if t1 > duration + 1.0 / fps:  # allow one frame of rounding past the end
            fail(f"annotations[{i}].segment ends at {t1} s, after the video ({duration} s)")
        label, label_id = ann.get("label"), ann.get("label_id")
        if not isinstance(label, str) or not label:
            fail(f'annotations[{i}].label must be a non-empty string, got {label!r}')
        if not isinstance(label_id, int) or isinstance(label_id, bool) or label_id < 0:
            fail(f"annotations[{i}].label_id must be a non-negative integer, got {label_id!r}")
        actions.append(Action(label, label_id, (t0, t1)))
    keyframes = None
    if "keyframes" in rec:
        kf = rec["keyframes"]
        if not (isinstance(kf, dict) and all(_number(kf.get(k)) for k in Keyframes._fields)):
            fail(f'"keyframes" must be {{"start": f, "apex": f, "end": f}} (frames), got {kf!r}')
        keyframes = check_keyframes([kf[k] for k in Keyframes._fields], where=where)
    elif {a.label_id for a in actions} >= {0, 1}:
        keyframes = actions_to_keyframes(actions, fps, setting)
    status, present = rec.get("status"), rec.get("keyframes_present")
    problem = _status_problem(status, present, actions, keyframes)
    if problem:
        fail(problem)
    present = None if present is None else tuple(present)
    return VideoAnnotation(vid, subset, float(fps), float(duration), actions, keyframes, setting, status, present)


def _check_label_names(path: Path, videos: dict[str, VideoAnnotation]) -> None:
    """One label name per label_id across the whole file (the detector trains on label_id)."""
    names: dict[int, tuple[str, str]] = {}
    for vid, video in videos.items():
        for a in video.actions:
            first = names.setdefault(a.label_id, (a.label, vid))
            if first[0] != a.label:
                raise XcalabInputError(
                    f"{path} [video {vid!r}]",
                    f"label_id {a.label_id} is called {a.label!r} here but {first[0]!r} in video {first[1]!r}",
                )


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive_number(x: Any) -> bool:
    return _number(x) and x > 0


# --------------------------------------------------------------------------------------------------
# Keyframes on the feature grid
# --------------------------------------------------------------------------------------------------

#: The phases ``phase_steps`` names, in time order.
PHASE_STEPS = ("before", "start", "filling", "apex", "washout", "end", "after")


def keyframe_grid(keyframes: Sequence[float], stride: int = 4, window: int = 4) -> dict[str, float]:
    """Keyframes (start, apex, end) in frames -> their positions on the feature grid (fractional steps)."""
    grid = FeatureGrid(stride=stride, window=window)
    return {name: float(grid.frame_to_grid(f)) for name, f in zip(("start", "apex", "end"), check_keyframes(keyframes))}


def phase_steps(keyframes: Sequence[float], n_steps: int, stride: int = 4, window: int = 4) -> dict[str, int]:
    """One feature step per phase of the contrast passage, in time order: name -> step.

    before   two steps before the start (omitted when the start is the first step)
    start, apex, end   the steps nearest the keyframes
    filling  halfway between start and apex;  washout  halfway between apex and end
    after    two steps after the end (the vessels have emptied)
    Steps are clipped to 0..n_steps-1; a step that two phases share keeps the first name.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    g = keyframe_grid(keyframes, stride, window)
    at = {
        "before": g["start"] - 2,
        "start": g["start"],
        "filling": (g["start"] + g["apex"]) / 2,
        "apex": g["apex"],
        "washout": (g["apex"] + g["end"]) / 2,
        "end": g["end"],
        "after": g["end"] + 2,
    }
    out: dict[str, int] = {}
    for name in PHASE_STEPS:
        if name == "before" and round(g["start"]) <= 0:
            continue
        step = int(min(max(round(at[name]), 0), n_steps - 1))
        if step not in out.values():
            out[name] = step
    return out
