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


def step_phases(frame_phases: np.ndarray, n_steps: int, grid: FeatureGrid | None = None) -> np.ndarray:
    """The phase of each feature step: that of the frame at the step's centre.

    frame_phases  (N,) integer phase of every frame, values in 0 .. len(PHASE_NAMES) - 1
    n_steps       steps of the feature array (``grid.n_steps(N)`` for features of this cine)
    grid          the feature grid (default stride 4, window 4)

    Returns (n_steps,) int8.
    """
    grid = grid or FeatureGrid()
    phases = np.asarray(frame_phases)
    if phases.ndim != 1 or len(phases) == 0:
        raise ValueError(f"frame_phases must be a non-empty 1-D array, got shape {phases.shape}")
    if not np.issubdtype(phases.dtype, np.integer) or phases.min() < 0 or phases.max() >= len(PHASE_NAMES):
        raise ValueError(f"frame phases must be integers in 0..{len(PHASE_NAMES) - 1}")
    if not 0 < n_steps <= max(grid.n_steps(len(phases)), 1):
        raise ValueError(f"{n_steps} steps do not fit a cine of {len(phases)} frames on {grid}")
    centres = grid.stride * np.arange(n_steps) + grid.window // 2
    return phases[np.minimum(centres, len(phases) - 1)].astype(np.int8)


def phases_path(features_path: str | Path) -> Path:
    """Where the phase labels of feature file ``<folder>/<video_id>.npy`` live: ``<folder>/phases/<video_id>.npy``."""
    features_path = Path(features_path)
    return features_path.parent / "phases" / features_path.name
