"""Post-processing: from per-point head outputs to segments, the best segment per class, and keyframes.

The detector scores every point of every pyramid level. Turning those
scores into the two actions of a cine and then into three keyframes takes six steps, each a function
below:

1. **Candidates, per level** (``decode_candidates``). p = sigmoid(logit) at valid points, one entry per
   (point, class). Keep p > pre_nms_thresh (0.001), then the top pre_nms_topk (2000) by p *on each level*.
   A point t of level l (stride s_l, offsets o_l, o_r >= 0 in strides) proposes

       [t - o_l s_l,  t + o_r s_l]      (level-0 grid units),

   and proposals of length <= duration_thresh (0.05 grid) are dropped. All levels are concatenated.
2. **Gaussian Soft-NMS** (``soft_nms``, Bodla et al. 2017). Greedily take the highest-scoring candidate;
   every candidate still waiting is down-weighted by its overlap with it,

       score <- score * exp(-IoU^2 / sigma),     sigma = 0.5,

   (note: divided by sigma, not by 2 sigma^2, as in the reference) with IoU = I / (L_a + L_b - I) and
   L = length + 1e-6; a candidate whose score falls below min_score (0.001) is discarded; stop after
   max_seg_num (200) picks. Class-agnostic by default (the two actions of a cine touch at the apex, they
   do not overlap much), per class with ``multiclass=True``.
3. **Segment voting** (``segment_voting``, class-agnostic mode only, as in the reference). Each kept
   segment n takes the weighted mean boundaries of all candidates m of step 1 (any class) with
   IoU(n, m) >= voting_thresh (0.7), with weights w_m = p_m IoU(n, m) (original scores). Its score stays the
   Soft-NMS one.
4. **Rank**: sort by score, keep max_seg_num. Convert to seconds with ``FeatureGrid.grid_to_seconds``
   ((stride g + window/2) / fps) and clamp to [0, duration].
5. **Top-1 per class** (``xcalab.metrics.top1_per_class``): the first segment of each class in that ranking. These two
   segments are the paper's prediction; mAP is scored on them.
6. **Keyframes** from the two top-1 segments by the problem setting (seed paper eqs. 14, 19, 20;
   ``top1_keyframes``). Setting 0: start = s0, apex = (e0 + s1)/2, end = e1.

Two cases the reference gets wrong are reported instead:

- **A class without any detection** (the reference reads an uninitialised tensor): it is absent from the
  top-1 list, ``missing[label_name]`` says at which step it was lost, and the keyframes are None.
- **Keyframes out of order.** With apex = (e0 + s1)/2 a poor model can put the apex before the start
  (or after the end). The keyframes are reported **as decoded** and ``ordered`` is False: sorting them
  would silently relabel a wrong start as an apex. Downstream metrics accept unordered predictions
  (``xcalab.metrics.keyframe_deviations``, ``frame_labels``), so a bad prediction is scored as bad.

Everything is vectorised torch on the input's device; only Soft-NMS loops (over at most 200 picks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from xcalab.data.annotations import (
    LABELS,
    Action,
    FeatureGrid,
    Keyframes,
    actions_to_keyframes,
    check_setting,
    keyframes_to_actions,
)
from xcalab.metrics import Detection, top1_per_class

#: Added to every segment length in Soft-NMS's IoU (the reference's guard against empty segments).
NMS_LENGTH_EPS = 1e-6


@dataclass(frozen=True)
class PostprocessConfig:
    """Post-processing settings; the defaults are the reference configuration's ``test_cfg``.

    pre_nms_thresh    keep (point, class) entries with probability above this
    pre_nms_topk      then at most this many per pyramid level
    min_score         Soft-NMS discards candidates whose decayed score falls below this
    max_seg_num       segments kept per video (Soft-NMS picks and the final ranking)
    sigma             Gaussian Soft-NMS width: score * exp(-IoU^2 / sigma)
    voting_thresh     IoU for segment voting; 0 switches voting off (only used when not multiclass)
    duration_thresh   candidates of length <= this (grid units) are dropped
    multiclass        Soft-NMS per class instead of over all classes together
    """

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    min_score: float = 0.001
    max_seg_num: int = 200
    sigma: float = 0.5
    voting_thresh: float = 0.7
    duration_thresh: float = 0.05
    multiclass: bool = False

    def __post_init__(self) -> None:
        if self.pre_nms_topk < 1 or self.max_seg_num < 1:
            raise ValueError(f"pre_nms_topk and max_seg_num must be >= 1, got {self.pre_nms_topk}, {self.max_seg_num}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")
        if not 0 <= self.voting_thresh <= 1:
            raise ValueError(f"voting_thresh must lie in [0, 1], got {self.voting_thresh}")


class Candidates(NamedTuple):
    """Scored segments of one video.

    segments   [N, 2] (start, end), grid units (or seconds, after conversion)
    scores     [N] confidence
    labels     [N] int64 class
    """

    segments: Tensor
    scores: Tensor
    labels: Tensor


class _Funnel(NamedTuple):
    """How many candidates of each class survived each step of ``decode_candidates`` ([C] int each)."""

    n_valid_points: int
    best_probability: Tensor
    above_thresh: Tensor
    in_topk: Tensor
    long_enough: Tensor


# --------------------------------------------------------------------------------------------------
# 1. Candidates
# --------------------------------------------------------------------------------------------------


def _one_video(x: Tensor, dims: int, name: str) -> Tensor:
    """Accept one video's tensor with or without a leading batch dimension of 1."""
    if x.dim() == dims + 1:
        if x.shape[0] != 1:
            raise ValueError(f"{name} holds {x.shape[0]} videos; decode one at a time (or use decode_batch)")
        x = x[0]
    if x.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions (one video), got shape {tuple(x.shape)}")
    return x


def _decode_levels(
    cls_logits_per_level: Sequence[Tensor],
    offsets_per_level: Sequence[Tensor],
    masks_per_level: Sequence[Tensor] | None,
    strides: Sequence[int],
    config: PostprocessConfig,
) -> tuple[Candidates, _Funnel]:
    if not (len(cls_logits_per_level) == len(offsets_per_level) == len(strides)):
        raise ValueError(
            f"need logits, offsets and a stride per level, got {len(cls_logits_per_level)}, "
            f"{len(offsets_per_level)} and {len(strides)}"
        )
    if masks_per_level is not None and len(masks_per_level) != len(strides):
        raise ValueError(f"need a mask per level, got {len(masks_per_level)} for {len(strides)} levels")
    if not strides:
        raise ValueError("need at least one pyramid level")
    first = _one_video(cls_logits_per_level[0], 2, "cls_logits[0]")
    n_classes, dtype = first.shape[0], torch.promote_types(first.dtype, torch.float32)
    best = torch.zeros(n_classes, dtype=dtype, device=first.device)  # best probability of each class
    counts = torch.zeros(3, n_classes, dtype=torch.int64, device=first.device)  # survivors of each step
    segments, scores, labels = [], [], []
    n_valid = 0
    for level, (logits, offsets, stride) in enumerate(zip(cls_logits_per_level, offsets_per_level, strides)):
        logits = _one_video(logits, 2, f"cls_logits[{level}]")  # [C, T]
        offsets = _one_video(offsets, 2, f"offsets[{level}]")  # [2, T]
        length = logits.shape[1]
        if logits.shape[0] != n_classes:
            raise ValueError(f"level {level} has {logits.shape[0]} classes, level 0 has {n_classes}")
        if masks_per_level is None:
            mask = torch.ones(length, dtype=torch.bool, device=logits.device)
        else:
            mask = _one_video(masks_per_level[level], 1, f"masks[{level}]").bool()
        if offsets.shape != (2, length) or mask.shape != (length,):
            raise ValueError(
                f"level {level}: logits {tuple(logits.shape)}, offsets {tuple(offsets.shape)} and mask "
                f"{tuple(mask.shape)} do not describe the same {length} points"
            )
        n_valid += int(mask.sum())
        # Entries in (point, class) order: flat index = point * C + class.
        prob = (torch.sigmoid(logits.to(dtype)) * mask.to(dtype)).t().reshape(-1)
        if length:
            best = torch.maximum(best, prob.view(length, n_classes).amax(0))
        entry = torch.nonzero(prob > config.pre_nms_thresh).squeeze(1)
        counts[0] += torch.bincount(entry % n_classes, minlength=n_classes)
        order = torch.sort(prob[entry], descending=True, stable=True).indices[: config.pre_nms_topk]
        entry = entry[order]
        point, label = entry // n_classes, entry % n_classes
        counts[1] += torch.bincount(label, minlength=n_classes)
        # Point positions t = i * s_l (level-0 grid units), as in ``xcalab.train.assign.pyramid_points``.
        t = point.to(dtype) * stride
        seg = torch.stack((t - offsets[0, point].to(dtype) * stride, t + offsets[1, point].to(dtype) * stride), 1)
        long_enough = (seg[:, 1] - seg[:, 0]) > config.duration_thresh
        counts[2] += torch.bincount(label[long_enough], minlength=n_classes)
        segments.append(seg[long_enough])
        scores.append(prob[entry][long_enough])
        labels.append(label[long_enough])
    funnel = _Funnel(n_valid, best, counts[0], counts[1], counts[2])
    return Candidates(torch.cat(segments), torch.cat(scores), torch.cat(labels)), funnel


def decode_candidates(
    cls_logits_per_level: Sequence[Tensor],
    offsets_per_level: Sequence[Tensor],
    masks_per_level: Sequence[Tensor] | None,
    strides: Sequence[int],
    config: PostprocessConfig = PostprocessConfig(),
) -> Candidates:
    """Step 1: per-level thresholding, top-k and decoding of one video's head outputs.

    Args:
        cls_logits_per_level: per level [C, T_l] logits ([1, C, T_l] is accepted).
        offsets_per_level: per level [2, T_l] distances to start and end, in units of the level's stride.
        masks_per_level: per level [T_l] bool, True at valid points; None = all valid.
        strides: s_l of each level (1, 2, 4, 8, 16, 32).

    Returns:
        ``Candidates`` in grid units, level by level, each level sorted by score.
    """
    return _decode_levels(cls_logits_per_level, offsets_per_level, masks_per_level, strides, config)[0]


# --------------------------------------------------------------------------------------------------
# 2-3. Soft-NMS and segment voting
# --------------------------------------------------------------------------------------------------


def segment_iou(segment: Tensor, segments: Tensor, length_eps: float = 0.0) -> Tensor:
    """IoU of one segment [2] with each of segments [N, 2] -> [N]; lengths get ``length_eps`` added."""
    intersection = (torch.minimum(segment[1], segments[:, 1]) - torch.maximum(segment[0], segments[:, 0])).clamp(min=0)
    length = segment[1] - segment[0] + length_eps
    lengths = segments[:, 1] - segments[:, 0] + length_eps
    return intersection / (length + lengths - intersection)


def _gaussian_soft_nms(segments: Tensor, scores: Tensor, sigma: float, min_score: float, max_picks: int) -> tuple[Tensor, Tensor]:
    """Greedy Gaussian Soft-NMS over all given segments -> (picked indices [M], their scores [M])."""
    scores = scores.clone()
    waiting = scores >= min_score
    picked: list[int] = []
    picked_scores: list[Tensor] = []
    while len(picked) < max_picks and bool(waiting.any()):
        # Highest current score; ties go to the lowest index.
        best = int(torch.where(waiting, scores, torch.full_like(scores, -math.inf)).argmax())
        picked.append(best)
        picked_scores.append(scores[best])
        waiting[best] = False
        iou = segment_iou(segments[best], segments, NMS_LENGTH_EPS)
        scores = torch.where(waiting, scores * torch.exp(-(iou**2) / sigma), scores)
        waiting &= scores >= min_score
    index = torch.tensor(picked, dtype=torch.int64, device=segments.device)
    kept = torch.stack(picked_scores) if picked_scores else scores.new_zeros(0)
    return index, kept


def soft_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor,
    sigma: float = 0.5,
    min_score: float = 0.001,
    max_seg_num: int = 200,
    multiclass: bool = False,
) -> tuple[Tensor, Tensor]:
    """Step 2: Gaussian Soft-NMS, score <- score exp(-IoU^2 / sigma) (module docstring).

    Args:
        segments: [N, 2] candidates; scores: [N]; labels: [N] int.
        sigma, min_score, max_seg_num: as ``PostprocessConfig``.
        multiclass: run separately on each class (each capped to max_seg_num) instead of on all together.

    Returns:
        (index [M] into the candidates, decayed scores [M]), in the order they were picked (class by
        class with ``multiclass``).
    """
    if not multiclass:
        return _gaussian_soft_nms(segments, scores, sigma, min_score, max_seg_num)
    indices, kept = [], []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).squeeze(1)
        index, score = _gaussian_soft_nms(segments[members], scores[members], sigma, min_score, max_seg_num)
        indices.append(members[index])
        kept.append(score)
    if not indices:
        return torch.zeros(0, dtype=torch.int64, device=segments.device), scores.new_zeros(0)
    return torch.cat(indices), torch.cat(kept)


def segment_voting(kept: Tensor, candidates: Tensor, candidate_scores: Tensor, iou_thresh: float = 0.7) -> Tensor:
    """Step 3: each kept segment becomes the weighted mean of the candidates that overlap it enough.

        s_n <- sum_m w_nm s_m / sum_m w_nm,     w_nm = p_m IoU(n, m) [IoU(n, m) >= iou_thresh]

    Args:
        kept: [M, 2] segments after Soft-NMS.
        candidates: [N, 2] all candidates before Soft-NMS (every class), with their original scores [N].
        iou_thresh: minimum IoU to vote (0.7).

    Returns:
        [M, 2] voted segments. A kept segment that no candidate overlaps enough stays as it is.
    """
    intersection = (
        torch.minimum(kept[:, None, 1], candidates[None, :, 1]) - torch.maximum(kept[:, None, 0], candidates[None, :, 0])
    ).clamp(min=0)
    union = (kept[:, 1] - kept[:, 0])[:, None] + (candidates[:, 1] - candidates[:, 0])[None, :] - intersection
    iou = intersection / union
    weight = (iou >= iou_thresh).to(iou.dtype) * candidate_scores[None, :] * iou  # [M, N]
    total = weight.sum(dim=1, keepdim=True)
    voted = (weight @ candidates) / total.clamp(min=torch.finfo(total.dtype).tiny)
    return torch.where(total > 0, voted, kept)


# --------------------------------------------------------------------------------------------------
# 5-6. The best segment per class, keyframes
# --------------------------------------------------------------------------------------------------


def top1_keyframes(detections: Sequence[Detection], fps: float, setting: int = 0) -> Keyframes | None:
    """Steps 5-6: keyframes (frame coordinates, floats) from the top-scoring segment of each class of one
    video (on equal scores the first listed: ``detections`` is a ranked list), or None when a class has none.
    The one place keyframes come from detections: ``decode_video`` and ``xcalab.scoring`` both call it.
    """
    check_setting(setting)
    best = {d.label_id: d for d in top1_per_class(detections, ties="listed")}
    if not {0, 1} <= best.keys():
        return None
    actions = [Action(LABELS[setting][c], c, (best[c].t0, best[c].t1)) for c in (0, 1)]
    return actions_to_keyframes(actions, fps, setting)


@dataclass(frozen=True, eq=False)
class VideoPrediction:
    """What the detector says about one cine.

    video_id      the cine's id (``Detection.video_id``)
    segments      [N, 2] kept segments in seconds, ranked by score (best first)
    scores        [N] their scores (Soft-NMS-decayed)
    labels        [N] int64 their classes
    label_names   name of each label_id in the problem setting (``LABELS[setting]``)
    top1          the best segment of each class that has one, ordered by label_id: the paper's prediction
    keyframes     (start, apex, end) frame coordinates (floats) decoded from ``top1``; None if a class is missing
    ordered       start <= apex <= end for the decoded keyframes; None when there are none
    missing       {label_name: why} for every class without a detection (empty when all were found)
    setting       the problem setting (0, 1, 2) used for keyframes
    fps           frame rate of the cine
    """

    video_id: str
    segments: Tensor
    scores: Tensor
    labels: Tensor
    label_names: tuple[str, ...]
    top1: tuple[Detection, ...]
    keyframes: Keyframes | None
    ordered: bool | None
    missing: dict[str, str] = field(default_factory=dict)
    setting: int = 0
    fps: float = 1.0

    def detections(self, top1_only: bool = False) -> list[Detection]:
        """Kept segments as ``xcalab.metrics.Detection`` records (only the top-1 ones with ``top1_only``)."""
        if top1_only:
            return list(self.top1)
        return [
            Detection(self.video_id, int(c), float(t0), float(t1), float(s))
            for (t0, t1), s, c in zip(self.segments.tolist(), self.scores.tolist(), self.labels.tolist())
        ]

    def to_activitynet(self, top1_only: bool = False) -> list[dict[str, Any]]:
        """Entries of the ActivityNet results format: {"label": name, "label_id": k, "score": s, "segment": [t0, t1]}."""
        return [
            {"label": self.label_names[d.label_id], "label_id": d.label_id, "score": d.score, "segment": [d.t0, d.t1]}
            for d in self.detections(top1_only)
        ]

    def frame_indices(self, rounding: Literal["nearest", "truncate"] = "nearest") -> Keyframes | None:
        """Keyframes as integer frame indices: nearest frame, or int() truncation as the reference does."""
        if self.keyframes is None:
            return None
        if rounding == "nearest":
            return self.keyframes.rounded()
        if rounding == "truncate":
            return self.keyframes.truncated()
        raise ValueError(f'rounding must be "nearest" or "truncate", got {rounding!r}')


def _why_missing(c: int, funnel: _Funnel, config: PostprocessConfig) -> str:
    """The first step of the pipeline at which class c lost its last candidate."""
    if funnel.n_valid_points == 0:
        return "the video has no valid feature steps"
    if funnel.above_thresh[c] == 0:
        return (
            f"no point scored above pre_nms_thresh={config.pre_nms_thresh} "
            f"(best probability {float(funnel.best_probability[c]):.3g})"
        )
    if funnel.in_topk[c] == 0:
        return f"all its candidates fell outside the top {config.pre_nms_topk} of their level"
    if funnel.long_enough[c] == 0:
        return f"all its candidate segments were no longer than duration_thresh={config.duration_thresh} grid steps"
    return (
        f"Soft-NMS suppressed all its candidates (scores decayed below min_score={config.min_score}, "
        f"or cut by max_seg_num={config.max_seg_num})"
    )


def _suppress_and_vote(candidates: Candidates, config: PostprocessConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Steps 2-4 of ``decode_video``: Soft-NMS, voting, ranking.

    Returns (index [M] of the kept candidates, their decayed scores [M], their segments after voting [M, 2],
    their labels [M], order [<= max_seg_num]: the kept ones by score, best first).
    """
    index, scores = soft_nms(
        candidates.segments, candidates.scores, candidates.labels,
        config.sigma, config.min_score, config.max_seg_num, config.multiclass,
    )
    segments, labels = candidates.segments[index], candidates.labels[index]
    if not config.multiclass and config.voting_thresh > 0 and len(index):
        segments = segment_voting(segments, candidates.segments, candidates.scores, config.voting_thresh)
    order = torch.sort(scores, descending=True, stable=True).indices[: config.max_seg_num]
    return index, scores, segments, labels, order


def decode_video(
    cls_logits_per_level: Sequence[Tensor],
    offsets_per_level: Sequence[Tensor],
    masks_per_level: Sequence[Tensor] | None,
    strides: Sequence[int],
    fps: float,
    duration: float,
    grid: FeatureGrid,
    setting: int = 0,
    config: PostprocessConfig = PostprocessConfig(),
    video_id: str = "video",
) -> VideoPrediction:
    """Steps 1-6 for one cine: head outputs -> ranked segments (seconds), top-1 per class, keyframes.

    Args:
        cls_logits_per_level: per level [C, T_l] logits, C = 2 ([1, C, T_l] is accepted).
        offsets_per_level: per level [2, T_l] distances to start and end, in strides.
        masks_per_level: per level [T_l] bool, True at valid (unpadded) points; None = all valid.
        strides: s_l of each level.
        fps: frame rate; duration: length of the cine in seconds (segments are clamped to [0, duration]).
        grid: the feature grid (``FeatureGrid``: stride and window of the feature steps).
        setting: problem setting 0, 1 or 2: the label names and the keyframe formula.
        config: ``PostprocessConfig`` (reference defaults).
        video_id: stored on the prediction and its ``Detection`` records.

    Returns:
        ``VideoPrediction``.
    """
    check_setting(setting)
    label_names = LABELS[setting]
    candidates, funnel = _decode_levels(cls_logits_per_level, offsets_per_level, masks_per_level, strides, config)
    n_classes = len(funnel.above_thresh)
    if n_classes != len(label_names):
        raise ValueError(f"expected {len(label_names)} classes {label_names}, the logits have {n_classes}")

    index, scores, segments, labels, order = _suppress_and_vote(candidates, config)
    segments, scores, labels = segments[order], scores[order], labels[order]
    seconds = grid.grid_to_seconds(segments, fps).clamp(min=0.0, max=float(duration))

    ranked = [Detection(video_id, int(c), t0, t1, float(p))
              for (t0, t1), p, c in zip(seconds.tolist(), scores.tolist(), labels.tolist())]
    top1 = sorted(top1_per_class(ranked, ties="listed"), key=lambda d: d.label_id)
    found = {d.label_id for d in top1}
    missing = {label_names[c]: _why_missing(c, funnel, config) for c in range(n_classes) if c not in found}
    keyframes = None if missing else top1_keyframes(top1, fps, setting)
    ordered = None if keyframes is None else bool(keyframes.start <= keyframes.apex <= keyframes.end)
    return VideoPrediction(
        video_id, seconds, scores, labels, tuple(label_names), tuple(top1), keyframes, ordered, missing, setting, float(fps)
    )


def prediction_from_keyframes(video_id: str, keyframes: Sequence[float], fps: float, setting: int = 0,
                              score: float = 1.0) -> VideoPrediction:
    """A prediction of one segment per class, made from keyframes instead of from a detector's heads.

    For methods that find keyframes some other way (``xcalab.data.phases.keyframes_from_phases``): their
    keyframes become the problem setting's two actions (``keyframes_to_actions``), each with ``score``, so
    that they are scored exactly like the detector's top-1 segments.

    keyframes  (start, apex, end) frame coordinates, 0 <= start <= apex <= end
    """
    label_names = LABELS[setting]
    actions = keyframes_to_actions(keyframes, fps, setting)
    top1 = tuple(Detection(video_id, a.label_id, *a.segment, float(score)) for a in actions)
    return VideoPrediction(
        video_id, torch.tensor([a.segment for a in actions], dtype=torch.float32),
        torch.full((len(actions),), float(score)), torch.tensor([a.label_id for a in actions]),
        tuple(label_names), top1, top1_keyframes(top1, fps, setting), True, {}, setting, float(fps),
    )


def decode_batch(
    cls_logits_per_level: Sequence[Tensor],
    offsets_per_level: Sequence[Tensor],
    masks_per_level: Sequence[Tensor],
    strides: Sequence[int],
    fps: Sequence[float],
    duration: Sequence[float],
    grid: FeatureGrid,
    setting: int = 0,
    config: PostprocessConfig = PostprocessConfig(),
    video_ids: Sequence[str] | None = None,
) -> list[VideoPrediction]:
    """``decode_video`` for every cine of a padded batch.

    Args:
        cls_logits_per_level: per level [B, C, T_l]; offsets_per_level: per level [B, 2, T_l];
        masks_per_level: per level [B, T_l] bool. fps, duration, video_ids: one per cine.
    """
    batch = cls_logits_per_level[0].shape[0]
    if not (len(fps) == len(duration) == batch) or (video_ids is not None and len(video_ids) != batch):
        raise ValueError(f"need fps, duration (and video ids) for each of the {batch} cines")
    ids = list(video_ids) if video_ids is not None else [f"video{b}" for b in range(batch)]
    return [
        decode_video(
            [x[b] for x in cls_logits_per_level], [x[b] for x in offsets_per_level], [m[b] for m in masks_per_level],
            strides, fps[b], duration[b], grid, setting, config, ids[b],
        )
        for b in range(batch)
    ]


# --------------------------------------------------------------------------------------------------
# For looking at: every step of decode_video for one cine
# --------------------------------------------------------------------------------------------------


class PostprocessStages(NamedTuple):
    """What each step of ``decode_video`` leaves of one cine's candidates (grid units unless converted).

    candidates   step 1's ``Candidates``: segments [N, 2], scores [N] (probabilities), labels [N]
    kept         [M] int64 index into the candidates of what Soft-NMS kept, in the order it picked them
    kept_scores  [M] their Soft-NMS-decayed scores
    voted        [M, 2] the kept segments after voting (the kept candidates' own segments without voting)
    top1         the best kept segment of each class, in label order: (label_id, start, end, score) each
    """

    candidates: Candidates
    kept: Tensor
    kept_scores: Tensor
    voted: Tensor
    top1: tuple[tuple[int, float, float, float], ...]

    def in_frames(self, grid: FeatureGrid) -> PostprocessStages:
        """The same stages with every segment in frame coordinates (``FeatureGrid.grid_to_frame``)."""
        return self._replace(
            candidates=self.candidates._replace(segments=grid.grid_to_frame(self.candidates.segments)),
            voted=grid.grid_to_frame(self.voted),
            top1=tuple((c, float(grid.grid_to_frame(t0)), float(grid.grid_to_frame(t1)), s) for c, t0, t1, s in self.top1),
        )


def stages_from_candidates(candidates: Candidates, config: PostprocessConfig = PostprocessConfig()) -> PostprocessStages:
    """Steps 2-5 of ``decode_video`` on given candidates: Soft-NMS, voting, ranking, top-1 per class.

    candidates  segments [N, 2] (grid units), scores [N], labels [N] int64, as ``decode_candidates`` returns
    """
    if candidates.segments.dim() != 2 or candidates.segments.shape[-1] != 2:
        raise ValueError(f"candidate segments must be [N, 2], got {tuple(candidates.segments.shape)}")
    n = candidates.segments.shape[0]
    if candidates.scores.shape != (n,) or candidates.labels.shape != (n,):
        raise ValueError(f"need one score and one label per candidate segment ({n}), got "
                         f"{tuple(candidates.scores.shape)} and {tuple(candidates.labels.shape)}")
    index, scores, segments, labels, order = _suppress_and_vote(candidates, config)
    ranked = [Detection("", int(c), t0, t1, float(p))
              for (t0, t1), p, c in zip(segments[order].tolist(), scores[order].tolist(), labels[order].tolist())]
    top1 = tuple((d.label_id, d.t0, d.t1, d.score)
                 for d in sorted(top1_per_class(ranked, ties="listed"), key=lambda d: d.label_id))
    return PostprocessStages(candidates, index, scores, segments, top1)


def postprocess_stages(
    cls_logits_per_level: Sequence[Tensor],
    offsets_per_level: Sequence[Tensor],
    masks_per_level: Sequence[Tensor] | None,
    strides: Sequence[int],
    config: PostprocessConfig = PostprocessConfig(),
) -> PostprocessStages:
    """``decode_video``'s steps 1-5 for one cine, keeping what each step leaves (grid units).

    Args: as ``decode_candidates`` (per level [C, T_l] logits, [2, T_l] offsets, [T_l] masks; the strides).
    The top-1 segments are ``decode_video``'s, before their conversion to seconds.
    """
    candidates = decode_candidates(cls_logits_per_level, offsets_per_level, masks_per_level, strides, config)
    return stages_from_candidates(candidates, config)
