"""Time curves of a cine: the simplest signals that show contrast coming and going.

Before any learning, two curves already tell a lot about a cine:

    mean intensity   the iodine darkens the image a little while the arteries are full
    vessel area      the share of pixels that are darker than their surroundings at vessel scale,
                     found by a black top-hat (morphological closing minus image); it rises while the
                     contrast fills the tree and falls while it washes out

Both are cheap (the frames are first block-averaged to at most ``max_size`` pixels a side), so a
notebook can draw them for any cine, real or synthetic.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def mean_intensity(frames: np.ndarray) -> np.ndarray:
    """Mean grey level per frame. frames [N, H, W] -> [N]."""
    return np.asarray(frames, dtype=np.float64).mean(axis=(1, 2))


def downsample(frames: np.ndarray, max_size: int = 128) -> np.ndarray:
    """Block-average [N, H, W] frames by an integer factor so that both sides are <= max_size (about)."""
    n, h, w = frames.shape
    f = max(1, int(np.ceil(max(h, w) / max_size)))
    h2, w2 = h // f, w // f
    return frames[:, : h2 * f, : w2 * f].reshape(n, h2, f, w2, f).mean(axis=(2, 4))


def black_tophat(frames: np.ndarray, size: int = 9) -> np.ndarray:
    """Per-frame black top-hat: closing(frame) - frame, >= 0 on dark structures narrower than ``size``.

    frames [N, H, W] -> [N, H, W]. A closing removes dark lines thinner than the structuring element,
    so the difference keeps exactly those lines: vessels (and the catheter), not the slowly varying background.
    """
    frames = np.asarray(frames, dtype=np.float32)
    return ndimage.grey_closing(frames, size=(1, size, size)) - frames


def vessel_area(frames: np.ndarray, threshold: float = 0.08, size: int = 9, max_size: int = 128) -> np.ndarray:
    """Fraction of pixels per frame that look like an opacified vessel. frames [N, H, W] in [0, 1] -> [N].

    Args:
        threshold: minimal top-hat depth, as a fraction of the full grey range (0.08: about 20 of 255 grey levels).
        size: structuring-element side in pixels of the downsampled frame (wider than the widest vessel).
        max_size: frames are block-averaged to at most this many pixels a side first (speed and noise).
    """
    small = downsample(np.asarray(frames, dtype=np.float32), max_size)
    return (black_tophat(small, size) > threshold).mean(axis=(1, 2))
