"""Parameters: the difficulty knobs, the full record of one sequence, and seeded sampling.

Every random number of a sequence is drawn here, once, from ``numpy.random.default_rng`` children of
``SeedSequence(seed)`` -- one child per stage, so adding a parameter to one stage never shifts another's
draws -- and stored in a ``SimParams``. Rendering (``simulator.render``) is a deterministic function of
that record: the same seed gives the same bytes, and ``SimParams.to_dict()`` is every parameter as JSON.

The timeline is fitted to the frame budget (real cines run 31-379 frames): a run needs
``natural_duration`` seconds to show pre-contrast, filling, plateau, washout and a tail. When the budget is
shorter, every contrast duration is multiplied by ``time_scale`` < 1 (the heart keeps its real rate); when
it is longer, the tail grows.

``contrast_draw`` > 0 replaces the seed's injection by an independent redraw from a further child stream
(``SeedSequence(seed)`` child 6, grandchild k): the truncated-cine scenarios (``scenarios.py``) redraw a
passage that cannot fit their window without shifting any other draw of the seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xcalab.data.synth.anatomy import (
    AnatomyParams,
    BranchSpec,
    Camera,
    Stenosis,
    build_tree,
    sample_anatomy,
    sample_camera,
)
from xcalab.data.synth.dynamics import ContrastParams, KeyframeRule, sample_contrast
from xcalab.data.synth.imaging import ImagingParams, sample_imaging
from xcalab.data.synth.motion import MotionParams, calibrate_speed, sample_motion

#: The frame rates of clinical cines.
FPS_CHOICES = (7.5, 15.0, 30.0)
#: ``SeedSequence(seed)`` children: 0-5 are the stages of ``sample_params`` (anatomy, camera, contrast, motion,
#: imaging, jitter); 6 holds the injection's redraws (grandchild k = redraw k); 7 the window of a scenario cine
#: (``scenarios.py``, grandchild k = its placement on redraw k). New streams get new numbers.
CONTRAST_CHILD, REDRAW_CHILD, SCENARIO_CHILD = 2, 6, 7


@dataclass(frozen=True)
class Knobs:
    """Difficulty knobs: multipliers around the defaults (1.0 = the default, checked by ``realism.py``).

    vessel_contrast   iodine concentration in the lumen (0.5: half as dark)
    dose              detector dose per frame (0.25: twice the quantum noise)
    motion            cardiac, respiratory and pan amplitudes (0: a still heart, no breathing, no pan)
    onset_sharpness   divides the injection rise time and the dispersion (2: a sharper start)
    blush             myocardial blush amplitude (0: none)
    table_pan         probability of a table pan in a run (~10 % clinically, an assumption)
    stenoses          draw 0-2 stenoses per main vessel [S10]
    annotator_jitter  SD in frames added to the ground-truth keyframes (0: exact; 1-2 mimics annotators)
    postprocess       clinical post-processing (False: raw-like exports)
    bits              bits stored (8; up to 12 without the JPEG stage)
    """

    vessel_contrast: float = 1.0
    dose: float = 1.0
    motion: float = 1.0
    onset_sharpness: float = 1.0
    blush: float = 1.0
    table_pan: float = 0.1
    stenoses: bool = True
    annotator_jitter: float = 0.0
    postprocess: bool = True
    bits: int = 8

    def __post_init__(self) -> None:
        for name in ("vessel_contrast", "dose", "onset_sharpness"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Knobs.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("motion", "blush", "annotator_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"Knobs.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.table_pan <= 1:
            raise ValueError(f"Knobs.table_pan is a probability in [0, 1], got {self.table_pan!r}")
        if not 8 <= self.bits <= 12:
            raise ValueError(f"Knobs.bits must lie in 8..12, got {self.bits!r}")


@dataclass(frozen=True)
class SimParams:
    """Everything that fixes one XCA-Synth sequence (with the seed it was drawn from)."""

    seed: tuple[int, ...]
    n_frames: int
    fps: float
    camera: Camera
    anatomy: AnatomyParams
    contrast: ContrastParams
    motion: MotionParams
    imaging: ImagingParams
    rule: KeyframeRule
    knobs: Knobs
    jitter_seed: int

    @property
    def image_size(self) -> int:
        return self.camera.size

    @property
    def times(self) -> np.ndarray:
        """Frame times [N], s."""
        return np.arange(self.n_frames) / self.fps

    def to_dict(self) -> dict[str, Any]:
        """Every parameter as plain JSON types (nested dicts, lists, numbers, strings)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimParams:
        """Inverse of ``to_dict``: rebuild the record (so a stored sequence can be rendered again)."""
        anatomy = dict(d["anatomy"])
        anatomy["branches"] = tuple(BranchSpec(**b) for b in anatomy["branches"])
        anatomy["stenoses"] = tuple(Stenosis(**s) for s in anatomy["stenoses"])
        anatomy["heart_axis"] = tuple(anatomy["heart_axis"])
        anatomy["centre_jitter_mm"] = tuple(anatomy["centre_jitter_mm"])
        contrast = dict(d["contrast"])
        contrast["fill_times_s"] = tuple((k, v) for k, v in contrast["fill_times_s"])
        motion = dict(d["motion"])
        for key in ("rr_s", "beat_strength", "respiration_direction", "pan_mm"):
            motion[key] = tuple(motion[key])
        return cls(
            seed=tuple(d["seed"]),
            n_frames=int(d["n_frames"]),
            fps=float(d["fps"]),
            camera=Camera(**d["camera"]),
            anatomy=AnatomyParams(**anatomy),
            contrast=ContrastParams(**contrast),
            motion=MotionParams(**motion),
            imaging=ImagingParams(**d["imaging"]),
            rule=KeyframeRule(**d["rule"]),
            knobs=Knobs(**d["knobs"]),
            jitter_seed=int(d["jitter_seed"]),
        )


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def seed_tuple(seed: int | Sequence[int]) -> tuple[int, ...]:
    """A seed as a tuple of non-negative ints (``SeedSequence`` entropy): 7 -> (7,), (7, 3) -> (7, 3)."""
    values = (seed,) if isinstance(seed, (int, np.integer)) else tuple(seed)
    if not values or any(int(v) < 0 for v in values):
        raise ValueError(f"seed must be a non-negative int or a non-empty sequence of them, got {seed!r}")
    return tuple(int(v) for v in values)


def sample_params(
    seed: int | Sequence[int],
    image_size: int = 256,
    fps: float = 15.0,
    tree: str = "left",
    n_frames: int | None = None,
    frames_range: tuple[int, int] = (31, 379),
    knobs: Knobs | None = None,
    rule: KeyframeRule | None = None,
    contrast_draw: int = 0,
) -> SimParams:
    """Draw every parameter of one sequence from ``seed``.

    Args:
        seed: an int, or a tuple of ints such as (benchmark seed, sequence index).
        image_size: frames are image_size x image_size pixels (the field of view stays the same).
        fps: frame rate (7.5, 15 or 30 clinically; any positive value works).
        tree: "left" or "right" coronary injection.
        n_frames: force the number of frames (the timeline is fitted to it); None: the natural length,
            clipped to ``frames_range``.
        frames_range: (min, max) frames when ``n_frames`` is None.
        knobs: difficulty knobs (None: ``Knobs()``, the validated defaults).
        rule: how keyframes are read off the iodine curve (None: ``KeyframeRule()``).
        contrast_draw: 0 for the seed's own injection; k >= 1 for its k-th independent redraw (every other
            stage keeps the seed's draws; see ``sample_injection``).
    """
    knobs = knobs or Knobs()
    rule = rule or KeyframeRule()
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    seeds = seed_tuple(seed)
    children = np.random.SeedSequence(list(seeds)).spawn(6)
    rng_anatomy, rng_camera, rng_contrast, rng_motion, rng_imaging, rng_jitter = (np.random.default_rng(c) for c in children)

    anatomy = sample_anatomy(rng_anatomy, tree, knobs.stenoses)
    camera = sample_camera(rng_camera, tree, image_size)
    if contrast_draw:
        rng_contrast = np.random.default_rng(_contrast_seed(seeds, contrast_draw))
    contrast = sample_contrast(rng_contrast, tree, knobs.vessel_contrast, knobs.onset_sharpness, knobs.blush)

    natural = contrast.natural_duration() * fps
    if n_frames is None:
        lo, hi = frames_range
        if not 3 <= lo <= hi:
            raise ValueError(f"frames_range must be (min, max) with 3 <= min <= max, got {frames_range}")
        n_frames = int(np.clip(math.ceil(natural), lo, hi))
    if n_frames < 8:
        raise ValueError(f"a synthetic run needs at least 8 frames, got {n_frames}")
    if n_frames < natural:
        contrast = contrast.scaled(n_frames / natural)
    duration = n_frames / fps
    apex_guess = contrast.injection_start_s + contrast.injection_s
    motion = sample_motion(rng_motion, duration, knobs.motion, knobs.table_pan, apex_guess)
    # Calibrate the heartbeat to a peak vessel speed drawn from the sourced 22-109 mm/s [S38].
    target_speed = float(rng_motion.uniform(30.0, 100.0)) * knobs.motion
    tree = build_tree(anatomy)
    motion = calibrate_speed(motion, tree.points[:: max(1, len(tree.points) // 200)], tree.heart, duration, target_speed)
    imaging = sample_imaging(rng_imaging, knobs.dose, knobs.postprocess, knobs.bits)
    return SimParams(
        seed=seeds,
        n_frames=int(n_frames),
        fps=float(fps),
        camera=camera,
        anatomy=anatomy,
        contrast=contrast,
        motion=motion,
        imaging=imaging,
        rule=rule,
        knobs=knobs,
        jitter_seed=int(rng_jitter.integers(2**31 - 1)),
    )


def _contrast_seed(seeds: tuple[int, ...], draw: int) -> np.random.SeedSequence:
    """The seed stream of injection draw ``draw``: child 2 (the seed's own, = ``spawn(6)[2]``) or grandchild (6, k)."""
    if isinstance(draw, bool) or not isinstance(draw, (int, np.integer)) or draw < 0:
        raise ValueError(f"contrast_draw must be an int >= 0, got {draw!r}")
    key = (CONTRAST_CHILD,) if draw == 0 else (REDRAW_CHILD, int(draw))
    return np.random.SeedSequence(list(seeds), spawn_key=key)


def sample_injection(seed: int | Sequence[int], tree: str = "left", knobs: Knobs | None = None,
                     draw: int = 0) -> ContrastParams:
    """The injection that ``sample_params(seed, tree=tree, knobs=knobs, contrast_draw=draw)`` draws, before any
    fit to a frame budget (time_scale 1), without drawing anything else (cheap: to size a run first)."""
    knobs = knobs or Knobs()
    rng = np.random.default_rng(_contrast_seed(seed_tuple(seed), draw))
    return sample_contrast(rng, tree, knobs.vessel_contrast, knobs.onset_sharpness, knobs.blush)
