"""Training crops: the reference's random truncation of a feature sequence.

Every training video is cut to a random window before it is batched (ActionFormer's ``truncate_feats``,
kept unchanged by STA-IPCon). The rules, for a sequence of L feature steps:

1. **Window length.**
   - L <= max_len (128) and a crop ratio (0.9, 1.0) is given: draw an integer length uniformly from
     [max(round(0.9 L), 1), min(round(1.0 L), L)]. If it equals L the video is returned untouched
     (segments are not even clipped). ``round`` is Python's, i.e. halves go to the even integer
     (round(4.5) = 4), as in the reference.
   - L <= max_len without a crop ratio: the video is returned untouched.
   - L > max_len: the window is max_len long.
2. **Window position.** Draw a start st uniformly from {0, ..., L - len}; the window is [st, st + len).
3. **Which actions survive.** Clip every segment [a, b] to the window widened by the feature offset
   (0.5 grid: a feature step reaches half a step beyond its centre),

       [max(a, st - 0.5), min(b, st + len + 0.5)],

   and keep it when the clipped part is at least trunc_thresh (0.5) of its length.
4. **Retry.** Accept the first window in which at least one segment survives; try at most 200 windows.
   If none works, the last window is used with no segments (a video without actions is cropped at its
   first window: there is nothing to wait for).
5. **Shift.** Slice the features to [st, st + len) and shift the kept, clipped segments by -st.

Two choices the reference leaves to chance are fixed here: all randomness comes from the ``generator``
argument (the reference uses Python's global ``random``), so a crop is reproducible; and a zero-length
segment (0/0 in the reference's ratio, which drops it) is kept when it lies inside the widened window.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Crop(NamedTuple):
    """A cropped training sample.

    feats      [C, len] features of the window
    segments   [K', 2] kept segments, clipped and shifted to the window's start (grid units)
    labels     [K'] their labels
    """

    feats: Tensor
    segments: Tensor
    labels: Tensor


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """An integer drawn uniformly from {low, ..., high} (both ends included)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def crop_window(
    feats: Tensor,
    segments: Tensor,
    labels: Tensor,
    start: int,
    length: int,
    trunc_thresh: float = 0.5,
    offset: float = 0.5,
) -> tuple[Crop, bool]:
    """Cut one given window [start, start + length) (rules 3 and 5 of the module docstring).

    Args:
        feats: [C, L] features; segments: [K, 2] grid units; labels: [K].
        start, length: the window, in feature steps.
        trunc_thresh: the fraction of a segment that must stay inside the widened window.
        offset: how far (grid units) the window is widened on each side.

    Returns:
        (the ``Crop``, whether at least one segment survived).
    """
    segments = segments.to(torch.promote_types(segments.dtype, torch.float32))
    lo, hi = start - offset, start + length + offset
    first, last = segments[:, 0], segments[:, 1]
    clipped_first, clipped_last = first.clamp(min=lo), last.clamp(max=hi)
    inside = (clipped_last - clipped_first).clamp(min=0)
    seg_length = last - first
    ratio = inside / torch.where(seg_length > 0, seg_length, torch.ones_like(seg_length))
    keep = torch.where(seg_length > 0, ratio >= trunc_thresh, (first >= lo) & (first <= hi))
    kept = torch.stack((clipped_first[keep], clipped_last[keep]), dim=1) - start
    crop = Crop(feats[:, start : start + length].clone(), kept, labels[keep])
    return crop, bool(keep.any())


def truncate_features(
    feats: Tensor,
    segments: Tensor,
    labels: Tensor,
    max_len: int = 128,
    trunc_thresh: float = 0.5,
    crop_ratio: tuple[float, float] | None = (0.9, 1.0),
    offset: float = 0.5,
    generator: torch.Generator | None = None,
    max_trials: int = 200,
) -> Crop:
    """The reference's random training crop (rules 1-5 of the module docstring).

    Args:
        feats: [C, L] features of one video.
        segments: [K, 2] ground-truth [start, end] in grid units.
        labels: [K] class of each segment.
        max_len: longest window, in feature steps (128).
        trunc_thresh: minimum kept fraction of a segment (0.5).
        crop_ratio: (low, high) fractions of L for the window length of short videos; None = no crop.
        offset: the feature offset, window / (2 stride) grid units (0.5; ``FeatureGrid.offset``).
        generator: the source of randomness; the same generator state gives the same crop.
            None uses torch's global generator.
        max_trials: windows tried before giving up (200).

    Returns:
        ``Crop(feats [C, len], segments [K', 2], labels [K'])``; the inputs themselves when nothing is cut.
    """
    if feats.dim() != 2:
        raise ValueError(f"feats must be [C, T], got {tuple(feats.shape)}")
    if segments.dim() != 2 or segments.shape[-1] != 2 or labels.shape != segments.shape[:1]:
        raise ValueError(f"segments must be [K, 2] and labels [K], got {tuple(segments.shape)} and {tuple(labels.shape)}")
    seq_len = feats.shape[1]
    if seq_len <= max_len:
        if crop_ratio is None:
            return Crop(feats, segments, labels)
        shortest = max(round(crop_ratio[0] * seq_len), 1)
        longest = min(round(crop_ratio[1] * seq_len), seq_len)
        window = _randint(shortest, longest, generator)
        if window == seq_len:
            return Crop(feats, segments, labels)
    else:
        window = max_len

    for _ in range(max_trials if len(segments) else 1):
        start = _randint(0, seq_len - window, generator)
        crop, has_action = crop_window(feats, segments, labels, start, window, trunc_thresh, offset)
        if has_action:
            break
    return crop
