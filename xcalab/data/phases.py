"""Contrast phases per feature step: what xcalab's phase recogniser learns to tell apart.

XCA-Synth labels every frame of a cine with the phase of its contrast passage (``xcalab.data.synth.dynamics``,
read off the iodine-mass curve, so the labels are exact):

    0 pre-contrast   before the start keyframe
    1 filling        [start, apex)
    2 apex plateau   from the apex on, while the arteries hold >= 95 % of their peak iodine
    3 washout        up to and including the end keyframe
    4 after          after the end keyframe

A feature step reads a window of frames (``FeatureGrid``: step k covers frames [stride k, stride k + window));
its phase is the phase of the frame at its centre, stride k + window // 2 -- the frame the step's row
describes. The labels sit beside the features on disk, one small file per cine:

    features/<video_id>.npy          (T, 4096) float32 features
    features/phases/<video_id>.npy   (T,) int8 phase of each step (synthetic cines only; a folder of its
                                     own, so ``features/*.npy`` still lists exactly the feature files)

A real cine has no phase labels: its dataset items carry ``phases=None``, and -1 marks an unlabelled or
padded step in a batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xcalab.data.annotations import FeatureGrid
from xcalab.data.synth.dynamics import PHASES

#: The phase names, index = label (the simulator's).
PHASE_NAMES = PHASES
#: The label of a step without a phase (padding, or a cine that has no labels).
NO_PHASE = -1


def _checked_phases(phases, name: str) -> np.ndarray:
    """``phases`` as an array, after checking it is a non-empty 1-D array of labels 0 .. len(PHASE_NAMES) - 1."""
    phases = np.asarray(phases)
    if phases.ndim != 1 or len(phases) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {phases.shape}")
    if not np.issubdtype(phases.dtype, np.integer) or phases.min() < 0 or phases.max() >= len(PHASE_NAMES):
        raise ValueError(f"{name} must be integers in 0..{len(PHASE_NAMES) - 1}")
    return phases


def step_phases(frame_phases: np.ndarray, n_steps: int, grid: FeatureGrid | None = None) -> np.ndarray:
    """The phase of each feature step: that of the frame at the step's centre.

    frame_phases  (N,) integer phase of every frame, values in 0 .. len(PHASE_NAMES) - 1
    n_steps       steps of the feature array (``grid.n_steps(N)`` for features of this cine)
    grid          the feature grid (default stride 4, window 4)

    Returns (n_steps,) int8.
    """
    grid = grid or FeatureGrid()
    phases = _checked_phases(frame_phases, "frame_phases")
    if not 0 < n_steps <= max(grid.n_steps(len(phases)), 1):
        raise ValueError(f"{n_steps} steps do not fit a cine of {len(phases)} frames on {grid}")
    centres = grid.stride * np.arange(n_steps) + grid.window // 2
    return phases[np.minimum(centres, len(phases) - 1)].astype(np.int8)


def phases_path(features_path: str | Path) -> Path:
    """Where the phase labels of feature file ``<folder>/<video_id>.npy`` live: ``<folder>/phases/<video_id>.npy``."""
    features_path = Path(features_path)
    return features_path.parent / "phases" / features_path.name


#: The phase boundary each keyframe sits on: start is the first filling frame, apex the first plateau frame
#: and end the last washout frame (the frame before the first "after" frame).
KEYFRAME_BOUNDARIES = (1, 2, 4)


def change_point(reached: np.ndarray) -> int:
    """The step t that best splits a yes/no sequence into "no" before and "yes" from t on.

    reached  (T,) bool: has the phase reached a boundary at this step?

    Returns t in 0 .. T minimising (yes before t) + (no from t on), the number of steps a single switch
    gets wrong; the first such t. t = 0: every step says yes; t = T: none does.
    """
    y = np.asarray(reached, dtype=bool).astype(np.int64)
    yes_before = np.concatenate(([0], np.cumsum(y)))
    no_from = np.concatenate(([0], np.cumsum(1 - y)))
    no_from = no_from[-1] - no_from
    return int(np.argmin(yes_before + no_from))


def keyframes_from_phases(phases: np.ndarray, n_frames: int, grid: FeatureGrid | None = None) -> tuple[float, float, float]:
    """Keyframes read directly off a phase per feature step: the inverse of ``step_phases``.

    phases    (T,) phase of each step (a recogniser's argmax, or the labels), values in 0 .. 4
    n_frames  frames of the cine (the keyframes are clamped to 0 .. n_frames - 1)
    grid      the feature grid (default stride 4, window 4)

    Each keyframe is the switch of one phase boundary (``KEYFRAME_BOUNDARIES``): the step t where the phase
    first reaches it, chosen by ``change_point`` so that a few stray steps do not move it. The boundary lies
    between the centre frames c(t - 1) and c(t) of steps t - 1 and t; the estimate is the middle of the frames
    it can be, c(t) - (stride - 1) / 2 (one frame less for end, the last washout frame), so it is off by at most
    (stride - 1) / 2 frames when the phases are right. The switches are made non-decreasing, so
    start <= apex <= end always holds: a constant phase gives keyframes at the first or the last frame.

    Returns (start, apex, end) as frame coordinates (floats).
    """
    grid = grid or FeatureGrid()
    p = _checked_phases(phases, "phases")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    switches = np.maximum.accumulate([change_point(p >= b) for b in KEYFRAME_BOUNDARIES])
    centre = grid.stride * switches + grid.window // 2
    frames = centre - (grid.stride - 1) / 2 - np.array([0.0, 0.0, 1.0])
    start, apex, end = np.maximum.accumulate(np.clip(frames, 0.0, n_frames - 1.0)).tolist()
    return start, apex, end
