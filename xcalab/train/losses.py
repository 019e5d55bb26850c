"""Detection losses: sigmoid focal loss, 1-D DIoU loss and the moving-average normaliser (ActionFormer's).

The detector is trained with two losses over the points of the pyramid (ActionFormer's, kept by
STA-IPCon):

**Classification: sigmoid focal loss** (Lin et al., 2017) over every valid point and class. With logit z,
p = sigmoid(z) and target y in {0, 1}:

    p_t = p y + (1 - p)(1 - y)                  probability of the right answer
    alpha_t = alpha y + (1 - alpha)(1 - y)      alpha = 0.25
    FL = alpha_t (1 - p_t)^gamma BCE(z, y)      gamma = 2,  BCE(z, y) = -log p_t

Almost every point is background; the factor (1 - p_t)^gamma makes the easy ones nearly free, so the few
positive points are not drowned.

**Regression: 1-D distance-IoU loss** over the positive points. A point predicts distances (l_p, r_p) to
the start and end of its action, the target is (l_g, r_g), all in units of the level's stride. Both
segments contain the point, so

    I   = min(l_p, l_g) + min(r_p, r_g)                   intersection
    U   = (l_p + r_p) + (l_g + r_g) - I                   union
    C   = max(l_p, l_g) + max(r_p, r_g)                   smallest enclosing segment
    rho = ((r_p - l_p) - (r_g - l_g)) / 2                 distance between the two centres
    L   = 1 - I / U + (rho / C)^2

The centre term keeps a gradient when the segments do not overlap at all.

**Normaliser.** Both sums are divided by a moving average of the number of positive points in the batch,

    N <- 0.9 N + 0.1 max(|Pos|, 1),        N_0 = 100,

so that a batch with few positives does not get a huge step. The total is L_cls + w L_reg with w = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from xcalab.config import Config
from xcalab.data.dataset import Batch
from xcalab.errors import XcalabInputError
from xcalab.models.contrastive import soft_nearest_neighbour_loss
from xcalab.models.detector import DetectorOutput
from xcalab.models.generative_attention import reconstruction_loss, reconstruction_weight
from xcalab.models.self_attention_refinement import refinement_loss, refinement_targets
from xcalab.models.sparse_spatial_attention import phase_loss
from xcalab.train.assign import assign_targets, concat_levels, pyramid_points
from xcalab.train.distributed import Distributed, gather_rows

#: N_0 of the loss normaliser (ActionFormer's ``init_loss_norm``).
INIT_LOSS_NORM = 100.0

Reduction = Literal["none", "sum", "mean"]


def _reduce(loss: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f'reduction must be "none", "sum" or "mean", got {reduction!r}')


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "sum",
) -> Tensor:
    """Sigmoid focal loss FL = alpha_t (1 - p_t)^gamma BCE(z, y), elementwise then reduced.

    Args:
        logits: [...] raw scores z (one independent sigmoid per class, no background logit).
        targets: [...] same shape, y in [0, 1] (soft targets are allowed: label smoothing).
        alpha: weight of the positive class; alpha < 0 switches the alpha_t factor off.
        gamma: focusing exponent (0 gives weighted binary cross-entropy).
        reduction: "sum" (the reference's), "mean" or "none" (elementwise, same shape as logits).
    """
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t, stable
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


def diou_loss_1d(
    pred_offsets: Tensor,
    target_offsets: Tensor,
    reduction: Reduction = "sum",
    eps: float = 1e-8,
) -> Tensor:
    """1-D distance-IoU loss 1 - I/U + (rho/C)^2 between segments given as distances from one point.

    Args:
        pred_offsets: [..., 2] predicted (to start, to end) >= 0.
        target_offsets: [..., 2] target (to start, to end) >= 0, same shape.
        reduction: "sum" (the reference's), "mean" or "none" (shape [...]).
        eps: guards U and C against zero (two empty segments).
    """
    if pred_offsets.shape != target_offsets.shape or pred_offsets.shape[-1:] != (2,):
        raise ValueError(
            f"offsets must both be [..., 2], got {tuple(pred_offsets.shape)} and {tuple(target_offsets.shape)}"
        )
    target_offsets = target_offsets.to(pred_offsets.dtype)
    lp, rp = pred_offsets.unbind(-1)
    lg, rg = target_offsets.unbind(-1)
    intersection = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * ((rp - lp) - (rg - lg))
    loss = 1 - iou + (rho / enclosing.clamp(min=eps)) ** 2
    return _reduce(loss, reduction)


class LossNormaliser:
    """Moving average of the number of positive points: N <- m N + (1 - m) max(|Pos|, 1).

    A plain Python float, as in the reference (it is not a parameter and gets no gradient). It is kept
    in checkpoints through ``state_dict`` so that a resumed run continues with the same value (the
    reference restarts from N_0 = 100).

    Args:
        init: N_0 (100 in STA-IPCon; ActionFormer's default is 2000).
        momentum: m (0.9).
    """

    def __init__(self, init: float = 100.0, momentum: float = 0.9):
        if init <= 0:
            raise ValueError(f"init must be positive, got {init}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.value = float(init)
        self.momentum = float(momentum)

    def update(self, num_positive: int) -> float:
        """Fold one batch's positive count in and return the new N."""
        self.value = self.momentum * self.value + (1 - self.momentum) * max(int(num_positive), 1)
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "momentum": self.momentum}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
        self.momentum = float(state.get("momentum", self.momentum))

    def __repr__(self) -> str:
        return f"LossNormaliser(value={self.value:.4g}, momentum={self.momentum})"


def detection_losses(
    cls_logits: Tensor,
    reg_offsets: Tensor,
    cls_targets: Tensor,
    reg_targets: Tensor,
    valid_mask: Tensor,
    normaliser: LossNormaliser | float,
    reg_weight: float = 1.0,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor | int | float]:
    """The detection loss of one batch: L = FL / N + w DIoU / N over all levels (ActionFormer's).

    Points are those of ``pyramid_points`` (use ``concat_levels`` on the per-level head outputs).

    Args:
        cls_logits: [B, P, C] classification logits.
        reg_offsets: [B, P, 2] predicted distances to start and end, in strides.
        cls_targets: [B, P, C] class targets from ``assign_targets``.
        reg_targets: [B, P, 2] regression targets from ``assign_targets``.
        valid_mask: [B, P] bool, True at unpadded points. Padded points never contribute, whatever
            their logits, offsets or targets hold (they are not even counted as positives).
        normaliser: a ``LossNormaliser``, updated here with this batch's positive count before use
            (training); or a fixed float N, used as it is (validation).
        reg_weight: w (1.0).
        label_smoothing: epsilon; targets become y (1 - epsilon) + epsilon / (C + 1) (0 in the reference).

    Returns:
        {"cls": FL / N, "reg": DIoU / N, "total": cls + w reg (0-dim tensors),
         "num_pos": |Pos| (int), "normaliser": N used (float)}.
    """
    if cls_logits.shape != cls_targets.shape:
        raise ValueError(f"cls_logits {tuple(cls_logits.shape)} and cls_targets {tuple(cls_targets.shape)} differ")
    if reg_offsets.shape != reg_targets.shape:
        raise ValueError(f"reg_offsets {tuple(reg_offsets.shape)} and reg_targets {tuple(reg_targets.shape)} differ")
    if valid_mask.shape != cls_logits.shape[:-1]:
        raise ValueError(f"valid_mask must be [B, P] = {tuple(cls_logits.shape[:-1])}, got {tuple(valid_mask.shape)}")
    valid = valid_mask.bool()
    positive = valid & (cls_targets > 0).any(dim=-1)
    num_pos = int(positive.sum())
    if isinstance(normaliser, LossNormaliser):
        norm = normaliser.update(num_pos)
    else:
        norm = float(normaliser)

    targets = cls_targets[valid].to(cls_logits.dtype)
    if label_smoothing > 0:
        targets = targets * (1 - label_smoothing) + label_smoothing / (targets.shape[-1] + 1)
    cls_loss = sigmoid_focal_loss(cls_logits[valid], targets, reduction="sum") / norm
    # With no positive point the sum over an empty selection is 0 and stays in the graph.
    reg_loss = diou_loss_1d(reg_offsets[positive], reg_targets[positive], reduction="sum") / norm
    return {
        "cls": cls_loss,
        "reg": reg_loss,
        "total": cls_loss + reg_weight * reg_loss,
        "num_pos": num_pos,
        "normaliser": norm,
    }


# --------------------------------------------------------------------------------------------------
# The loss of one training step: L = w_con L_con + L_cls + L_reg
# --------------------------------------------------------------------------------------------------


def pad_segments(segments: Sequence[Tensor], labels: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """B lists of (K_b, 2) segments and (K_b,) labels -> (B, K, 2), (B, K) and a (B, K) bool mask."""
    batch, most = len(segments), max((len(s) for s in segments), default=0)
    device = segments[0].device if segments else torch.device("cpu")
    padded = torch.zeros(batch, most, 2, device=device)
    padded_labels = torch.zeros(batch, most, dtype=torch.int64, device=device)
    mask = torch.zeros(batch, most, dtype=torch.bool, device=device)
    for b, (s, c) in enumerate(zip(segments, labels)):
        padded[b, : len(s)], padded_labels[b, : len(s)], mask[b, : len(s)] = s, c, True
    return padded, padded_labels, mask


def module_losses(out: DetectorOutput, batch: Batch, point_mask: Tensor, norm: float, cfg: Config,
                  epoch: int) -> dict[str, tuple[float, Tensor]]:
    """The losses of the other seed papers' modules that are on: name -> (weight, value on the local batch).

    gaf_bg     GAF's segment-level attention on the background F * (1 - lambda): the focal loss with every
               point a background point, over the valid points, divided by the detection loss's N
    gaf_recon  GAF's L_recon = mean((Dec(lambda + eps, lambda) - X)^2), weighted epoch / epochs * 0.5
    tsa        TSA + TPP's step predictions: class cross-entropy + interval (1 - tIoU) on action steps
    phase      the phase recogniser's four cross-entropies (original, discriminative, complementary, fused)
    """
    tc, terms = cfg.train, {}
    if out.background_logits is not None:
        logits = concat_levels(out.background_logits).float()
        focal = sigmoid_focal_loss(logits, torch.zeros_like(logits), reduction="none").sum(dim=-1)
        terms["gaf_bg"] = (tc.gaf_background_weight, focal[point_mask].sum() / norm)
    if out.generative is not None:
        weight = reconstruction_weight(epoch, tc.epochs, tc.gaf_recon_weight)
        terms["gaf_recon"] = (weight, reconstruction_loss(batch.features, out.generative.recon.float(), batch.mask))
    if out.refinement is not None:
        targets = refinement_targets(batch.segments, batch.labels, batch.mask.shape[1])
        terms["tsa"] = (tc.refinement_weight, refinement_loss(out.refinement, targets, batch.mask)[0])
    if out.phases is not None:
        if batch.phases is None:
            raise XcalabInputError("model.phase_attention", "the phase recogniser trains on phase labels, and "
                                   "this batch has none (features/phases/<video>.npy: XCA-Synth cines only)")
        terms["phase"] = (tc.phase_weight, phase_loss(out.phases, batch.phases, batch.mask)[0])
    return terms


def training_loss(
    out: DetectorOutput,
    batch: Batch,
    strides: Sequence[int],
    cfg: Config,
    normaliser: LossNormaliser,
    ctx: Distributed,
    epoch: int = 0,
) -> tuple[Tensor, dict[str, float]]:
    """L = w_con L_con + L_cls + L_reg of one step, and its terms as numbers for the log.

    out         the detector's output on the (local) batch
    batch       the batch (segments in grid units, relative to the crops)
    strides     the pyramid's strides
    normaliser  the moving average N of positive points; updated here with the *global* count

    Returns (the loss to back-propagate, {"loss", "cls", "reg", "con", "num_pos", "normaliser"}).
    With W processes the returned tensor is W x this process's detection loss + the global L_con, so
    that DDP's average over processes is the gradient of the global-batch loss; the logged terms are
    global.
    """
    device = out.cls_logits[0].device
    points = pyramid_points([c.shape[-1] for c in out.cls_logits], strides, cfg.model.regression_ranges, device)
    segments, labels, segment_mask = pad_segments(batch.segments, batch.labels)
    point_mask = concat_levels(out.masks)
    targets = assign_targets(
        points, segments, labels, segment_mask, point_mask,
        n_classes=out.cls_logits[0].shape[1], centre_radius=cfg.model.centre_radius,
    )
    num_pos = int(ctx.sum(targets.positive.sum()))
    norm = normaliser.update(num_pos)
    det = detection_losses(
        concat_levels(out.cls_logits).float(), concat_levels(out.offsets).float(),
        targets.cls, targets.reg, point_mask, norm,
    )
    loss = ctx.world_size * det["total"]
    con = None
    if out.contrast is not None:
        if ctx.world_size == 1:
            con = out.contrast.loss.float()
        else:  # every anchor sees the positives and negatives of the whole global batch
            foreground = gather_rows(out.contrast.foreground.float(), ctx.group)
            background = gather_rows(out.contrast.background.float(), ctx.group)
            con = soft_nearest_neighbour_loss(foreground, background, cfg.model.temperature)
        loss = loss + cfg.train.contrast_weight * con
    modules = module_losses(out, batch, point_mask, norm, cfg, epoch)
    for name, (weight, value) in modules.items():
        # gaf_bg is divided by the global N like the detection loss (so it scales with W as that does);
        # the others are local means, whose average over processes DDP takes as it is.
        loss = loss + weight * (ctx.world_size * value if name == "gaf_bg" else value)
    cls_loss, reg_loss = ctx.sum(torch.stack([det["cls"], det["reg"]]).float()).tolist()
    con_value = None if con is None else float(con.detach())
    total = cls_loss + reg_loss + (0.0 if con_value is None else cfg.train.contrast_weight * con_value)
    logged = {}
    for name, (weight, value) in modules.items():
        logged[name] = float(ctx.sum(value.detach().float())) / (1 if name == "gaf_bg" else ctx.world_size)
        total += weight * logged[name]
    return loss, {"loss": total, "cls": cls_loss, "reg": reg_loss, "con": con_value, **logged, "num_pos": num_pos,
                  "normaliser": norm}
