"""How far a keyframe is from its neighbours: the numbers behind the seed paper's Fig. 1.

A keyframe is one frame picked among near-identical neighbours. Mean absolute pixel differences make that
concrete, all on the cine's own grey levels:

    neighbour steps   mean |key - previous| and mean |next - key| for each keyframe (start, apex, end)
    contrast change   mean |apex - first frame|: how much the whole contrast filling changes a frame; the scale
    frame steps       mean |frame i+1 - frame i| for every consecutive pair: what noise, motion and contrast
                      change between any two neighbours (its median is the typical step)

Divided by the contrast change, a neighbour step says how much of the injection's visible effect lies between
the key frame and the frame beside it; set beside the typical step, whether the keyframe stands out at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KEYFRAME_NAMES = ("start", "apex", "end")


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over pixels of |a - b|. a, b [H, W] (same shape) -> float, in the frames' grey-level units."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"mean_abs_difference: frames of shapes {a.shape} and {b.shape} differ")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be [N, H, W], got shape {frames.shape}")
    if len(frames) < 2:
        raise ValueError(f"a cine needs at least 2 frames to have neighbours, got {len(frames)}")
    return frames


def frame_steps(frames: np.ndarray) -> np.ndarray:
    """Mean |frame i+1 - frame i| of every consecutive pair. frames [N, H, W] -> [N - 1] float64.

    One pair at a time, so that a 512 x 512 cine never needs a second copy of itself in float64.
    """
    frames = _check_frames(frames)
    return np.array([mean_abs_difference(frames[i + 1], frames[i]) for i in range(len(frames) - 1)])


@dataclass(frozen=True)
class NeighbourDifferences:
    """Pixel differences around the keyframes of one cine (see the module docstring).

    keyframes        (start, apex, end) frame indices, None where the cine does not contain the keyframe
    previous         [3] float64 mean |key - previous frame|, NaN where absent or the key is the first frame
    next             [3] float64 mean |next frame - key|, NaN where absent or the key is the last frame
    contrast_change  mean |apex - first frame|
    steps            [N - 1] float64 mean |frame i+1 - frame i|
    """

    keyframes: tuple[int | None, int | None, int | None]
    previous: np.ndarray
    next: np.ndarray
    contrast_change: float
    steps: np.ndarray

    @property
    def typical_step(self) -> float:
        """Median of ``steps``: how much two consecutive frames of this cine usually differ."""
        return float(np.median(self.steps))

    def relative(self, values: np.ndarray | float) -> np.ndarray:
        """values / contrast_change (NaN when the apex equals the first frame and the scale is 0)."""
        values = np.asarray(values, dtype=np.float64)
        if self.contrast_change <= 0.0:
            return np.full_like(values, np.nan)
        return values / self.contrast_change

    def relative_neighbours(self) -> np.ndarray:
        """[3, 2] (previous, next) of each keyframe divided by the contrast change; NaN where undefined."""
        return self.relative(np.stack([self.previous, self.next], axis=1))


def neighbour_differences(frames: np.ndarray, keyframes: Sequence[int | None]) -> NeighbourDifferences:
    """The differences between each keyframe and its two neighbours, with the scales to read them by.

    Args:
        frames: [N, H, W] grey levels (any range; the results are in the same units), N >= 2.
        keyframes: (start, apex, end) frame indices in [0, N); start or end may be None (absent from the
            cine); the apex is required (it sets the contrast change).

    Returns:
        ``NeighbourDifferences``.
    """
    frames = _check_frames(frames)
    n = len(frames)
    keyframes = tuple(keyframes)
    if len(keyframes) != 3:
        raise ValueError(f"keyframes must be (start, apex, end), got {len(keyframes)} values: {keyframes}")
    checked: list[int | None] = []
    for name, k in zip(KEYFRAME_NAMES, keyframes):
        if k is None:
            checked.append(None)
            continue
        if isinstance(k, bool) or not float(k).is_integer():
            raise ValueError(f"the {name} keyframe must be a whole frame index, got {k!r}")
        if not 0 <= int(k) < n:
            raise ValueError(f"the {name} keyframe {k} lies outside the cine's frames 0..{n - 1}")
        checked.append(int(k))
    if checked[1] is None:
        raise ValueError("the apex keyframe is required: it sets the contrast change (apex - first frame)")
    previous = np.full(3, np.nan)
    following = np.full(3, np.nan)
    for row, k in enumerate(checked):
        if k is None:
            continue
        if k > 0:
            previous[row] = mean_abs_difference(frames[k], frames[k - 1])
        if k < n - 1:
            following[row] = mean_abs_difference(frames[k + 1], frames[k])
    return NeighbourDifferences(
        keyframes=tuple(checked),
        previous=previous,
        next=following,
        contrast_change=mean_abs_difference(frames[checked[1]], frames[0]),
        steps=frame_steps(frames),
    )


__all__ = ["NeighbourDifferences", "frame_steps", "mean_abs_difference", "neighbour_differences"]
