"""Label assignment: which pyramid point learns which ground-truth action (ActionFormer's rules).

The detector predicts, at every point of every pyramid level, two class probabilities and two distances
(to the action's start and end). Training needs a target for each of those predictions. ActionFormer
(and STA-IPCon, unchanged) assigns them by **centre sampling** and **regression ranges**:

**Points.** Level l has stride s_l = 2^l (in feature-grid steps) and points at

    t = 0, s_l, 2 s_l, ...        (level-0 grid units, no half-stride offset)

Each point carries its level's stride and regression range [lo_l, hi_l]; by default

    level     0       1       2        3         4         5
    stride    1       2       4        8         16        32
    range     [0,4]   [4,8]   [8,16]   [16,32]   [32,64]   [64,10000]

**A point t may learn a ground-truth segment [a, b]** (grid units, centre c = (a + b)/2) when both hold:

1. *centre sampling*: t lies **strictly inside** the centre region
   [max(a, c - r s_l), min(b, c + r s_l)], with radius r = 1.5. Only points near the middle of an
   action learn it: their features see the whole action, and a point near the boundary would have to
   regress a tiny distance on one side;
2. *regression range*: lo_l <= max(t - a, b - t) <= hi_l, inclusive at both ends. Long actions are
   learnt by coarse levels, short ones by fine levels, so each level regresses distances of one scale.

**Ties.** When several segments qualify at a point, the **shortest** wins the regression target. Every
qualifying segment whose length is within 1e-3 of that shortest length adds its class to the class
target (a logical OR of one-hot vectors): two equally long, identical segments of different classes make
a point positive for both.

**Targets.** A point with a winner gets the class target OR_k onehot(label_k) and the regression target
((t - a)/s_l, (b - t)/s_l) of the winner, in units of its level's stride (the regression head predicts
in those units). A point without a winner is negative: all-zero class target, regression target unused
(zero here).

Everything is batched: segments are padded to K per video with a boolean segment mask, points may be
masked too (padded feature steps are never positive), and the work is one [B, P, K] tensor program.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from xcalab.config import CENTRE_RADIUS, REGRESSION_RANGES

#: Strides of the six pyramid levels, in level-0 grid steps (scale factor 2).
DEFAULT_STRIDES: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
#: Segments whose lengths differ by at most this much (grid units) tie for the class target.
LENGTH_TIE_TOLERANCE = 1e-3


class PyramidPoints(NamedTuple):
    """All points of the pyramid, level 0 first, then level 1, ...; each field is [P] with P = sum_l T_l.

    position   t, in level-0 grid units (t = i * s_l for the i-th point of level l)
    stride     s_l of the point's level
    reg_lo     lower end of the level's regression range
    reg_hi     upper end of the level's regression range
    level      l, the index of the point's level (int64)
    """

    position: Tensor
    stride: Tensor
    reg_lo: Tensor
    reg_hi: Tensor
    level: Tensor


class AssignedTargets(NamedTuple):
    """Training targets for every point of a batch.

    cls        [B, P, n_classes] float, 1 for each class the point must fire for (multi-hot on ties)
    reg        [B, P, 2] float, (distance to start, distance to end) / stride; 0 at negative points
    positive   [B, P] bool, the point has a winning segment (and is a valid point)
    """

    cls: Tensor
    reg: Tensor
    positive: Tensor


def pyramid_points(
    level_lengths: Sequence[int],
    strides: Sequence[int] = DEFAULT_STRIDES,
    regression_ranges: Sequence[tuple[float, float]] = REGRESSION_RANGES,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> PyramidPoints:
    """The points of every level, concatenated level by level (the order of ``concat_levels``).

    Args:
        level_lengths: T_l, the number of points of each level (the length of the level's head output).
        strides: s_l of each level, in level-0 grid steps.
        regression_ranges: [lo_l, hi_l] of each level.

    Returns:
        ``PyramidPoints`` with [P] tensors, P = sum(level_lengths).
    """
    if not (len(level_lengths) == len(strides) == len(regression_ranges)):
        raise ValueError(
            f"need one stride and one regression range per level, got {len(level_lengths)} levels, "
            f"{len(strides)} strides and {len(regression_ranges)} ranges"
        )
    fields: list[list[Tensor]] = [[], [], [], [], []]
    for level, (n, s, (lo, hi)) in enumerate(zip(level_lengths, strides, regression_ranges)):
        if lo > hi:
            raise ValueError(f"regression range of level {level} is empty: [{lo}, {hi}]")
        index = torch.arange(n, device=device, dtype=dtype)
        values = (index * s, torch.full_like(index, s), torch.full_like(index, lo), torch.full_like(index, hi))
        for column, value in zip(fields, values):
            column.append(value)
        fields[4].append(torch.full((n,), level, device=device, dtype=torch.int64))
    return PyramidPoints(*(torch.cat(column) for column in fields))


def concat_levels(per_level: Sequence[Tensor]) -> Tensor:
    """Per-level head outputs [B, C, T_l] -> one [B, P, C] tensor, points in ``pyramid_points`` order.

    Masks [B, T_l] -> [B, P].
    """
    if per_level[0].dim() == 2:
        return torch.cat(list(per_level), dim=1)
    return torch.cat([x.transpose(1, 2) for x in per_level], dim=1)


def assign_targets(
    points: PyramidPoints,
    segments: Tensor,
    labels: Tensor,
    segment_mask: Tensor | None = None,
    point_mask: Tensor | None = None,
    n_classes: int = 2,
    centre_radius: float = CENTRE_RADIUS,
) -> AssignedTargets:
    """Centre-sampling label assignment for a padded batch (ActionFormer's, unchanged by STA-IPCon).

    Args:
        points: the pyramid's points, [P] each.
        segments: [B, K, 2] ground-truth [start, end] in level-0 grid units (videos padded to K segments).
        labels: [B, K] int class of each segment (any value at padded segments).
        segment_mask: [B, K] bool, True at real segments; None = all real.
        point_mask: [B, P] bool, True at valid (unpadded) points; None = all valid. Masked points are
            negative whatever the segments say.
        n_classes: number of classes (2: filling, disappearing).
        centre_radius: r of the centre region, in strides (1.5).

    Returns:
        ``AssignedTargets`` (cls [B, P, n_classes], reg [B, P, 2], positive [B, P]).
    """
    if segments.dim() != 3 or segments.shape[-1] != 2:
        raise ValueError(f"segments must be [B, K, 2], got {tuple(segments.shape)}")
    batch, n_segments, _ = segments.shape
    n_points = points.position.shape[0]
    if labels.shape != (batch, n_segments):
        raise ValueError(f"labels must be [B, K] = {(batch, n_segments)}, got {tuple(labels.shape)}")
    if segment_mask is None:
        segment_mask = torch.ones(batch, n_segments, dtype=torch.bool, device=segments.device)
    if point_mask is not None and point_mask.shape != (batch, n_points):
        raise ValueError(f"point_mask must be [B, P] = {(batch, n_points)}, got {tuple(point_mask.shape)}")
    real_labels = labels[segment_mask]
    if real_labels.numel() and (real_labels.min() < 0 or real_labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got {real_labels.unique().tolist()}")

    dtype = segments.dtype if segments.is_floating_point() else torch.float32
    segments = segments.to(dtype)
    if n_segments == 0:  # videos without actions: every point is negative
        zeros = torch.zeros(batch, n_points, device=segments.device, dtype=dtype)
        return AssignedTargets(
            zeros.unsqueeze(-1).expand(-1, -1, n_classes).clone(), zeros.unsqueeze(-1).expand(-1, -1, 2).clone(), zeros.bool()
        )
    # Broadcast to [B, P, K]: points along dim 1, segments along dim 2.
    t = points.position.to(dtype)[None, :, None]
    stride = points.stride.to(dtype)[None, :, None]
    start, end = segments[..., 0][:, None, :], segments[..., 1][:, None, :]
    to_start, to_end = t - start, end - t  # the regression targets, in grid units

    # 1. Centre sampling: strictly inside [max(a, c - r s), min(b, c + r s)].
    centre = (start + end) / 2
    region_start = torch.maximum(start, centre - centre_radius * stride)
    region_end = torch.minimum(end, centre + centre_radius * stride)
    in_centre = (t > region_start) & (t < region_end)

    # 2. Regression range, inclusive at both ends.
    farthest = torch.maximum(to_start, to_end)
    in_range = (farthest >= points.reg_lo.to(dtype)[None, :, None]) & (farthest <= points.reg_hi.to(dtype)[None, :, None])

    # 3. The shortest qualifying segment wins; non-qualifying pairs get length +inf.
    qualifies = in_centre & in_range & segment_mask[:, None, :]
    length = (end - start).expand(batch, n_points, n_segments)
    length = torch.where(qualifies, length, torch.full_like(length, torch.inf))
    shortest, winner = length.min(dim=2)  # [B, P]; on exact ties the first segment wins the regression
    positive = torch.isfinite(shortest)
    if point_mask is not None:
        positive = positive & point_mask

    # Class target: OR of the one-hot labels of every segment within 1e-3 of the shortest length.
    ties = qualifies & (length <= shortest.unsqueeze(-1) + LENGTH_TIE_TOLERANCE)  # [B, P, K]
    onehot = torch.nn.functional.one_hot(labels.clamp(0, n_classes - 1).long(), n_classes).to(dtype)  # [B, K, C]
    cls = (ties.to(dtype) @ onehot).clamp(max=1.0)
    cls = cls * positive.unsqueeze(-1).to(dtype)

    # Regression target of the winner, in units of the point's stride.
    pick = winner.unsqueeze(-1)
    reg = torch.stack((to_start.expand_as(length).gather(2, pick), to_end.expand_as(length).gather(2, pick)), -1)
    reg = reg.squeeze(2) / stride  # [B, P, 2] / [1, P, 1]
    reg = reg * positive.unsqueeze(-1).to(dtype)
    return AssignedTargets(cls, reg, positive)


# --------------------------------------------------------------------------------------------------
# For looking at: one video's assignment, level by level
# --------------------------------------------------------------------------------------------------


class LevelAssignment(NamedTuple):
    """What ``assign_targets`` gives the points of one pyramid level of one video (CPU tensors, for figures).

    level       l
    stride      s_l, in level-0 grid steps
    reg_range   (lo_l, hi_l), the level's regression range
    position    [T_l] float, the points t = 0, s_l, 2 s_l, ... (level-0 grid units)
    positive    [T_l, C] bool, the class target: point i is positive for class c
    in_centre   [T_l, K] bool, point i passes segment k's centre-sampling test (whatever its range)
    centre      [K, 2] float, segment k's centre region (open interval) at this level, grid units
    farthest    [T_l, K] float, max(t - a_k, b_k - t), what the regression range is compared with
    """

    level: int
    stride: int
    reg_range: tuple[float, float]
    position: Tensor
    positive: Tensor
    in_centre: Tensor
    centre: Tensor
    farthest: Tensor


def level_lengths(n_steps: int, strides: Sequence[int] = DEFAULT_STRIDES) -> list[int]:
    """T_l = ceil(T / s_l): the points of each level for a video of T steps (the pyramid's output lengths)."""
    if n_steps < 1:
        raise ValueError(f"a video needs at least one feature step, got {n_steps}")
    return [-(-int(n_steps) // int(s)) for s in strides]


def assignment_by_level(
    segments,
    labels,
    n_steps: int,
    strides: Sequence[int] | None = None,
    regression_ranges: Sequence[tuple[float, float]] = REGRESSION_RANGES,
    n_classes: int = 2,
    centre_radius: float = CENTRE_RADIUS,
) -> list[LevelAssignment]:
    """Run ``assign_targets`` on one video and split what it decides by pyramid level.

    Args:
        segments: [K, 2] ground-truth [start, end] in grid units (``FeatureDataset.ground_truth``).
        labels: [K] int class of each segment.
        n_steps: T, the video's feature steps (level l has ceil(T / s_l) points).
        strides: s_l of each level; None: 1, 2, 4, ... for as many levels as there are regression ranges
            (the detector's ``strides``).
        regression_ranges, n_classes, centre_radius: as ``pyramid_points`` / ``assign_targets`` (a config's
            ``model.regression_ranges`` and ``model.centre_radius``).

    Returns:
        One ``LevelAssignment`` per level. ``positive`` is ``assign_targets``'s class target itself;
        ``in_centre`` is ``assign_targets`` run on each segment alone with every regression range opened
        to (-inf, inf), so it is the code's own centre test; ``centre`` is the interval that test uses,
        [max(a, c - r s_l), min(b, c + r s_l)].
    """
    segments = torch.as_tensor(segments, dtype=torch.float64).cpu().reshape(-1, 2)
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu().reshape(-1)
    if labels.shape[0] != segments.shape[0]:
        raise ValueError(f"need one label per segment, got {labels.shape[0]} labels for {segments.shape[0]} segments")
    if bool((segments[:, 1] < segments[:, 0]).any()):
        raise ValueError(f"every segment needs start <= end, got {segments.tolist()}")
    strides = DEFAULT_STRIDES[: len(regression_ranges)] if strides is None else tuple(strides)
    if len(strides) != len(regression_ranges):
        raise ValueError(f"need one stride per regression range, got {len(strides)} and {len(regression_ranges)}")
    lengths = level_lengths(n_steps, strides)
    points = pyramid_points(lengths, strides, regression_ranges, dtype=torch.float64)
    targets = assign_targets(points, segments[None], labels[None], n_classes=n_classes, centre_radius=centre_radius)
    # The centre test alone: each segment by itself (no shortest-wins), every range open.
    open_ranges = [(-float("inf"), float("inf"))] * len(strides)
    open_points = pyramid_points(lengths, strides, open_ranges, dtype=torch.float64)
    in_centre = torch.stack([
        assign_targets(open_points, segments[k][None, None], labels[k][None, None], n_classes=n_classes,
                       centre_radius=centre_radius).positive[0]
        for k in range(segments.shape[0])
    ], dim=1) if segments.shape[0] else torch.zeros(points.position.shape[0], 0, dtype=torch.bool)

    t = points.position[:, None]
    farthest = torch.maximum(t - segments[None, :, 0], segments[None, :, 1] - t)  # [P, K]
    result = []
    for level, (stride, (lo, hi)) in enumerate(zip(strides, regression_ranges)):
        here = points.level == level
        centre = (segments[:, 0] + segments[:, 1]) / 2
        region = torch.stack((torch.maximum(segments[:, 0], centre - centre_radius * stride),
                              torch.minimum(segments[:, 1], centre + centre_radius * stride)), dim=1)
        result.append(LevelAssignment(
            level, int(stride), (float(lo), float(hi)), points.position[here],
            targets.cls[0, here].bool(), in_centre[here], region, farthest[here],
        ))
    return result
