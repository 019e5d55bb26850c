"""Scoring: predictions + ground truth -> numbers. Pure (no model, no files), below the training loop.

Two entry points, one set of conventions (``keyframe_metrics``, ``CONVENTIONS``):

- ``score_predictions`` -- what the training loop selects on and what notebooks show: mAP per tIoU with the
  paper's protocol (top-1 segment per class and video) and ActivityNet's (every kept segment), the average
  keyframe deviation AD (eq. 14's keyframes, nearest frames), the reference's ``ad_paper`` (truncated frames
  vs int(true - window / 2)) and frame-level precision / recall / F, from ``VideoPrediction`` objects;
- ``score_detections`` -- the same numbers and more (per-keyframe deviations, t-tests, confidence intervals)
  from plain detections, e.g. an ActivityNet results file; ``xcalab evaluate`` writes them to metrics.json.

Top-1 per class is ``xcalab.metrics.top1_per_class``; keyframes from detections are
``xcalab.postprocess.top1_keyframes``; frames from keyframes are ``Keyframes.rounded`` / ``truncated``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from xcalab.data.annotations import Keyframes, VideoAnnotation
from xcalab.errors import XcalabInputError
from xcalab.frame_metrics import (
    PAPER_POPMEANS,
    PRF,
    average_deviation,
    confidence_interval,
    keyframe_deviations,
    mean_frame_prf,
    one_sided_ttest,
)
from xcalab.metrics import (
    PAPER_TIOUS,
    Detection,
    GroundTruth,
    MapResult,
    mean_average_precision,
    top1_per_class,
)
from xcalab.postprocess import VideoPrediction, top1_keyframes

#: The command's protocol names -> those of ``xcalab.metrics.mean_average_precision``.
PROTOCOLS = {"all": "all", "paper": "top1"}
PROTOCOL_NOTES = {
    "all": "ActivityNet rules over every detection",
    "paper": "top-1 segment per class and video, as the seed paper",
}
CI_LEVEL = 0.95
#: How each keyframe number is computed (stored in metrics.json next to the numbers).
CONVENTIONS = {
    "ad": "mean |predicted - true| keyframe, in frames; predictions rounded to the nearest frame",
    "ad_paper": "the reference's AD: predictions truncated, ground truth int(true - window/2); paper comparison only",
    "prf.paper": "frame level, per-video macro average over the labels present, background included (the paper's)",
    "prf.foreground": "frame level, per-video macro average over filling and disappearing only",
    "ttest": "one-sided one-sample t-test of the pooled deviations, H1: mean < popmean (the paper's Table III)",
    "ci": f"two-sided {100 * CI_LEVEL:g} % Student-t confidence interval of the mean deviation, in frames",
}


def check_scoring(protocol: str, tious: Sequence[float]) -> tuple[float, ...]:
    """Check the protocol and the tIoU thresholds; returns the thresholds as a tuple of floats."""
    if protocol not in PROTOCOLS:
        raise XcalabInputError("--protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    try:
        tious = tuple(float(t) for t in tious)
    except (TypeError, ValueError):
        raise XcalabInputError("--tiou", f"thresholds must be numbers, got {tious!r}") from None
    if not tious or not all(0.0 < t <= 1.0 for t in tious):
        raise XcalabInputError("--tiou", f"thresholds must lie in (0, 1], got {list(tious)}")
    return tious


# --------------------------------------------------------------------------------------------------
# Detections against ground truth (what ``xcalab evaluate`` writes to metrics.json)
# --------------------------------------------------------------------------------------------------


def _plain(x: Any) -> Any:
    """JSON-ready values: numpy scalars and arrays to Python, NaN and infinities to None (strict JSON)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def keyframe_metrics(pairs: Sequence[tuple[Keyframes, VideoAnnotation]], window: int) -> dict[str, Any]:
    """AD, P/R/F, per-keyframe deviations, t-tests and CIs of decoded keyframes against the true ones (JSON-ready).

    pairs   (decoded keyframes in frame coordinates, the video's ground truth), one per video
    window  frames per feature step, for the reference's ``ad_paper``

    The one home of the keyframe conventions (``CONVENTIONS``): predictions to the nearest frame for AD and
    P/R/F, truncated for ``ad_paper``.
    """
    nearest = [list(kf.rounded()) for kf, _ in pairs]
    truncated = [list(kf.truncated()) for kf, _ in pairs]
    true = [list(v.keyframes) for _, v in pairs]
    n_frames = [max(1, round(v.duration * v.fps)) for _, v in pairs]
    # Frame labels need indices >= 0: a segment a foreign file starts before 0 s labels from frame 0.
    labelled = [[max(0, k) for k in kf] for kf in nearest]
    true_frames = [[round(k) for k in kf] for kf in true]
    deviations = {
        "ad": keyframe_deviations(nearest, true),
        "ad_paper": keyframe_deviations(truncated, true, paper_compatible=True, window=window),
    }
    with warnings.catch_warnings():
        # Equal deviations (a perfect detector: all 0, or all 2 for ad_paper) have no spread: scipy warns of
        # precision loss and gives t = -inf, p = 0, the right limits (stored as null and 0).
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        ttest = {name: [t._asdict() for t in one_sided_ttest(d, PAPER_POPMEANS)] for name, d in deviations.items()}
    return {
        "ad": average_deviation(nearest, true, window=window),
        "ad_paper": average_deviation(truncated, true, paper_compatible=True, window=window),
        "deviations": {
            name: dict(zip(Keyframes._fields, d.mean(axis=0))) for name, d in deviations.items()
        },
        "prf": {
            convention: mean_frame_prf(labelled, true_frames, n_frames, convention=convention)._asdict()
            for convention in ("paper", "foreground")
        },
        "ttest": {"popmeans": list(PAPER_POPMEANS), **ttest},
        "ci": {"level": CI_LEVEL, **{name: list(confidence_interval(d, CI_LEVEL)) for name, d in deviations.items()}},
    }


def score_detections(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    video_ids: Sequence[str],
    labels: Mapping[int, str],
    videos: Mapping[str, VideoAnnotation] | None = None,
    protocol: str = "all",
    tious: Sequence[float] = PAPER_TIOUS,
    setting: int = 0,
    window: int = 4,
) -> dict[str, Any]:
    """Score detections against the ground truth of one subset; no files are read or written.

    Args:
        detections: every detection, of any video (those outside ``video_ids`` are false positives).
        ground_truth: the segments of the evaluated videos.
        video_ids: the evaluated videos (a video without detections is a video where nothing was found).
        labels: label_id -> name, for the report.
        videos: xcalab records with keyframes, fps and duration, for the keyframe metrics; None: mAP only.
        protocol: "all" (ActivityNet) or "paper" (top-1 segment per class and video).
        tious: the tIoU thresholds, in (0, 1].
        setting: problem setting of the keyframe formula (eq. 14, 19, 20).
        window: frames per feature step, for ``ad_paper``.

    Returns:
        the JSON-ready metrics dict written to metrics.json (see the module docstring); keyframe entries are
        None when ``videos`` is None or no video's keyframes could be decoded.
    """
    tious = check_scoring(protocol, tious)
    result = mean_average_precision(detections, ground_truth, tious, protocol=PROTOCOLS[protocol])
    names = {c: labels.get(c, str(c)) for c in result.labels}

    per_video: dict[str, list[Detection]] = {vid: [] for vid in video_ids}
    for d in detections:
        if d.video_id in per_video:
            per_video[d.video_id].append(d)
    best = {vid: {d.label_id: d for d in top1_per_class(dets, ties="listed")} for vid, dets in per_video.items()}
    # A class without any detection leaves a video without keyframes: listed, never dropped silently.
    missing = {vid: [names[c] for c in result.labels if c not in best[vid]] for vid in per_video}
    missing = {vid: classes for vid, classes in missing.items() if classes}

    pairs = []
    for vid, dets in per_video.items():
        truth = None if videos is None else videos.get(vid)
        if vid in missing or truth is None or truth.keyframes is None:
            continue
        kf = top1_keyframes(dets, truth.fps, setting)
        if kf is not None:
            pairs.append((kf, truth))
    if pairs:
        keyframes = keyframe_metrics(pairs, window)
    else:
        keyframes = dict.fromkeys(("ad", "ad_paper", "deviations", "prf", "ttest", "ci"))

    metrics = {
        "protocol": protocol,
        "protocol_note": PROTOCOL_NOTES[protocol],
        "tiou": list(result.tious),
        "ap": {names[c]: list(row) for c, row in zip(result.labels, result.ap)},
        "map_per_tiou": list(result.map),
        "mAP": result.average_map,
        "label_ids": {name: c for c, name in names.items()},
        "setting": setting,
        "window": window,
        "n_videos": len(video_ids),
        "n_detections": len(detections),
        "n_outside_subset": sum(1 for d in detections if d.video_id not in per_video),
        "n_missing": len(missing),
        "missing": missing,
        "n_keyframes": len(pairs),
        "keyframe_note": None if pairs else (
            "the annotations carry no frame rates" if videos is None else "no video's keyframes could be decoded"
        ),
        **keyframes,
        "conventions": CONVENTIONS,
    }
    return _plain(metrics)


class ConventionEffects(NamedTuple):
    """Decoded keyframes under the reference's conventions and xcalab's, one row per cine (frames).

    nearest, truncated  the predictions rounded / truncated to frames (V, 3)
    true                the true keyframes (V, 3); n_frames the cines' lengths (V,)
    ad                  AD for each (rounding, truth) pair: nearest or truncated vs f or int(f - window / 2)
    prf                 frame P/R/F with and without the background class, against f and int(f - window / 2)
    """

    nearest: list[list[int]]
    truncated: list[list[int]]
    true: list[list[int]]
    n_frames: list[int]
    ad: dict[str, float]
    prf: dict[str, PRF]


def convention_effects(pairs: Sequence[tuple[Keyframes, VideoAnnotation]], window: int) -> ConventionEffects:
    """What each of the reference's two conventions does to AD and to frame P/R/F (notebook 08): rounding vs
    truncating the predicted frames, and the true keyframes f vs int(f - window / 2); and counting the
    background as a class or not. ``keyframe_metrics`` reports xcalab's and the reference's corners of it."""
    nearest = [list(kf.rounded()) for kf, _ in pairs]
    truncated = [list(kf.truncated()) for kf, _ in pairs]
    true = [[round(k) for k in v.keyframes] for _, v in pairs]
    n_frames = [max(1, round(v.duration * v.fps)) for _, v in pairs]
    labelled = [[max(0, k) for k in kf] for kf in nearest]  # frame labels need indices >= 0
    shifted = {"paper_compatible": True, "window": window}
    ad = {
        "xcalab: nearest vs f": average_deviation(nearest, true),
        "truncated vs f": average_deviation(truncated, true),
        f"nearest vs int(f - {window // 2})": average_deviation(nearest, true, **shifted),
        f"reference: truncated vs int(f - {window // 2})": average_deviation(truncated, true, **shifted),
    }
    prf = {
        "with background (paper), f": mean_frame_prf(labelled, true, n_frames, "paper"),
        "foreground only, f": mean_frame_prf(labelled, true, n_frames, "foreground"),
        f"with background, int(f - {window // 2})": mean_frame_prf(labelled, true, n_frames, "paper", **shifted),
        f"foreground only, int(f - {window // 2})": mean_frame_prf(labelled, true, n_frames, "foreground", **shifted),
    }
    return ConventionEffects(nearest, truncated, true, n_frames, ad, prf)


# --------------------------------------------------------------------------------------------------
# Predictions of a model against ground truth (what training selects on)
# --------------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Scores of one model on one subset.

    predictions   one ``VideoPrediction`` per video
    map_top1      mAP per tIoU with the paper's protocol (top-1 segment per class and video)
    map_all       mAP per tIoU over every kept segment (ActivityNet's protocol)
    ad            average keyframe deviation in frames (nearest frames vs the true keyframes), over
                  the videos whose keyframes could be decoded
    ad_paper      the same as the reference computes it (int() frames vs int(true - 2): 2 frames worse)
    prf           frame-level precision / recall / F (macro with background, the paper's convention)
    n_missing     videos where a class had no detection (no keyframes; they count in mAP only)
    """

    predictions: list[VideoPrediction]
    map_top1: MapResult | None
    map_all: MapResult | None
    ad: float | None
    ad_paper: float | None
    prf: PRF | None
    n_missing: int

    @property
    def average_map(self) -> float:
        """The paper's headline number: average over tIoU 0.3:0.1:0.7 of the top-1 mAP (NaN without ground truth)."""
        return self.map_top1.average_map if self.map_top1 is not None else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers."""
        return {
            "average_map": None if math.isnan(self.average_map) else self.average_map,
            "map_top1": None if self.map_top1 is None else self.map_top1.as_dict(),
            "map_all": None if self.map_all is None else self.map_all.as_dict(),
            "ad": self.ad, "ad_paper": self.ad_paper,
            "prf": None if self.prf is None else self.prf._asdict(),
            "n_videos": len(self.predictions), "n_missing": self.n_missing,
        }


def score_predictions(
    predictions: Sequence[VideoPrediction],
    videos: Sequence[VideoAnnotation],
    window: int,
    tious: Sequence[float] = PAPER_TIOUS,
) -> Evaluation:
    """Score predictions against the videos' ground truth: mAP (both protocols), AD, frame P/R/F.

    predictions  one ``VideoPrediction`` per video (``xcalab.inference.predict``)
    videos       the ground truth of those videos
    window       frames per feature step (the reference's AD convention subtracts window / 2)
    """
    truth = [GroundTruth(v.video_id, a.label_id, *a.segment) for v in videos for a in v.actions]
    detections = [d for p in predictions for d in p.detections()]
    map_top1 = map_all = None
    if truth:
        map_top1 = mean_average_precision(detections, truth, tious, protocol="top1")
        map_all = mean_average_precision(detections, truth, tious, protocol="all")
    by_id = {v.video_id: v for v in videos}
    decoded = [(p.keyframes, by_id[p.video_id]) for p in predictions
               if p.keyframes is not None and by_id[p.video_id].keyframes]
    ad = ad_paper = prf = None
    if decoded:
        m = keyframe_metrics(decoded, window)
        ad, ad_paper, prf = m["ad"], m["ad_paper"], PRF(**m["prf"]["paper"])
    n_missing = sum(1 for p in predictions if p.missing)
    return Evaluation(list(predictions), map_top1, map_all, ad, ad_paper, prf, n_missing)
