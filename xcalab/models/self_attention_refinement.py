"""Temporal self-attention refinement (TSA) and temporal pyramid pooling (TPP), Li et al. Secs. 2.2-2.3.

The seed paper (003, "Self-Attention Refinement for Actionness Temporal Action Localization") lets every
step attend to the whole sequence, and reweights that attention with what the model itself predicts
about each step: which class it belongs to and which action interval it lies in. Two steps that predict
the same action and the same interval are parts of one action instance and should read each other.

    E (B, C, T) --step predictions--> class probabilities p (B, K+1, T), intervals (l, r) (B, 2, T)
        A = class_agreement(p)                 (B, T, T)  do steps i and j predict the same action?
        B = interval_overlap(l, r)             (B, T, T)  tIoU of [i - l_i, i + r_i] and [j - l_j, j + r_j]
        M = softmax(Q K^T / sqrt(d))           (B, T, T)  dot-product attention over valid keys
        G = softmax(Q K^T / sqrt(d) + g A*B)   (B, T, T)  fused: M_ij e^{g R_ij}, renormalised (R = A*B)
        Y = E + W_o (V G^T)                    (B, C, T)  refined features (residual)
    [Y ; 1 - p(background)] --TPP--> dilated convolutions at 2^l-step resolutions, each upsampled back
        to T, fused by a 1 x 1 convolution;   output = Y + TPP(Y, actionness)   (B, C, T)

**Where it sits in xcalab.** On the embedding of the detector's short-term path: the (B, C, T) output of
``TransformerPyramid.embedding`` (``xcalab.models.short_term``), before the transformer stem. TSA needs
per-step class and interval predictions, which need a learned per-step representation (the raw
4096-pixel maps are not one), and C (e.g. 512) is a sane width for a T x T attention. The module maps
(B, C, T) -> (B, C, T) with residual branches, so it goes in with one line after the embedding:
``x = refinement(x, mask).features`` (keep the whole output: its class_probs and intervals are what
``refinement_loss`` trains, on ``refinement_targets`` of the batch's ground truth). The matrices
themselves never see ground truth. TSA is global, as in the paper: it costs O(T^2) time and memory per
video (the transformer pyramid after it stays local, O(T w)).

**Masking.** As everywhere in xcalab: padded steps never change an output at a valid step (inputs are
zeroed at padded steps, padded keys get weight 0, pooling and interpolation read valid steps only) and
every output at a padded step is 0 (features, probabilities, intervals, attention rows).

**Choices** (the extracted text is garbled where the equations were; no code was released):

1. *Where the predictions come from.* The paper's overview decodes class and boundary "action
   suggestions" after TSA, yet A and B need them before it. We predict once, from the input embedding
   (a small shared conv trunk, Sec. 2.3's "class and interval information through the convolution
   channel"), and reuse p for TPP's actionness.
2. *Class agreement A (Sec. 2.2, "condition matrix A").* The paper takes the argmax of the softmax as each
   step's class and marks whether i and j share it, separating "bg" from "action". We use the soft
   version, A_ij = sum_{k >= 1} p_i(k) p_j(k), the probability that i and j predict the same *action*
   (independent draws): it equals the hard indicator for one-hot p and is differentiable. Background
   agreement does not count (``count_background=False``): a background step has no interval (its
   target is 0, unsupervised), so its overlap is meaningless; most XCA steps are background (before the
   contrast arrives, after washout) and would form one big mutually-attending clique; and the paper's
   aim is to stop actions from reading "irrelevant" background. A background query thus keeps plain
   dot-product attention. ``count_background=True`` adds p_i(0) p_j(0) for comparison.
3. *Interval overlap B ("distance similarity matrix B", tIoU = intersection / union).* Interval of
   step i: [i - l_i, i + r_i] in steps; union = |I_i| + |I_j| - |I_i and I_j| (two empty intervals: 0).
   The paper also says pairs of one instance carry "redundant" information and mentions a time-span
   threshold it never states; we use no threshold, and leave the sign of the learned gain g free, so the
   model may learn to suppress (g < 0) rather than emphasise (g > 0) its own instance.
4. *Fusion into G ("formed through matrices A, B and M").* R = A * B (a pair is related when it agrees
   in class and overlaps in time), added to the attention logits with a learned scalar gain g (init 1):
   G_ij = M_ij e^{g R_ij} / sum_j' M_ij' e^{g R_ij'} over valid keys. This is "dot-product weights
   multiplied by the refinement, renormalised", without dividing by zero for a row whose refinement is
   all 0 (G = M there). The gradient flows through A and B into the predictions (the paper is trained
   end to end); the auxiliary loss keeps their meaning.
5. *Attention.* One head of width ``attention_dim`` (default C), q, k, v and the output projection are
   1 x 1 convolutions (the paper's "matrix V" filters the features through G); the output is added to
   E (residual), as the paper fuses "into the original sequence".
6. *TPP (Sec. 2.3).* The paper downsamples by a pyramid, uses dilated ("hole") convolutions of
   different rates, and upsamples by linear interpolation back to T. Level l: masked average pooling by
   ``pyramid_strides[l]`` (default 1, 2, 4, 8), a 3-tap convolution with dilation ``pyramid_dilations[l]``
   (default 1, 2, 4, 8; receptive fields 3, 10, 36 and 136 steps), LayerNorm, ReLU, linear upsampling to
   T (align_corners=False geometry, clamped at each video's last valid bin); the levels are
   concatenated and fused by a 1 x 1 convolution back to C, added to Y (residual). The input is Y
   concatenated with the actionness 1 - p(background) (B, 1, T), the paper's "action instance
   distribution merged with" the features.
7. *Step predictions.* Intervals are softplus outputs (> 0, never stuck at 0 as a ReLU can be, so the
   tIoU always has a gradient); class probabilities are a softmax over background + K actions.
8. *Targets and loss.* A step t is inside segment [t0, t1] when t0 <= t <= t1; where segments overlap
   (filling [start, apex] and disappearing [apex, end] share the apex) the shortest wins, as in
   ``xcalab.train.assign``, first listed on a tie. Loss = cross-entropy over valid steps + mean
   (1 - tIoU) of predicted vs target interval over foreground steps (0 without any), weights 1. The
   cross-entropy reads log p from the probabilities (floored at the smallest normal float), so the
   output needs no separate logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcalab.models.maps import UNIT_RANGE, MapKind
from xcalab.models.short_term import ChannelLayerNorm, MaskedConv1d


def _check_mask(mask: Tensor, batch: int, steps: int) -> None:
    """Raise unless ``mask`` is a (batch, steps) bool tensor."""
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, steps):
        raise ValueError(
            f"mask must be a (B, T) = ({batch}, {steps}) bool tensor, got {tuple(mask.shape)} {mask.dtype}"
        )


def _pair_mask(mask: Tensor) -> Tensor:
    """(B, T) bool -> (B, T, T) bool, True where both the query i and the key j are valid steps."""
    return mask.unsqueeze(2) & mask.unsqueeze(1)


# --------------------------------------------------------------------------------------------------
# Per-step predictions: class probabilities and action intervals (Sec. 2.2 "decoding", Sec. 2.3)
# --------------------------------------------------------------------------------------------------


class StepPredictions(nn.Module):
    """Class probabilities and the action interval of every step, from the input embedding.

    channels    input width C
    n_classes   actions K (2 in xcalab: filling, disappearing); p covers background + K

    A shared trunk [MaskedConv1d k3 (no bias), LayerNorm, ReLU], then one 3-tap output convolution for
    the K + 1 class logits and one for the two distances (softplus, > 0, in steps).
    """

    def __init__(self, channels: int, n_classes: int = 2):
        super().__init__()
        self.trunk = MaskedConv1d(channels, channels, 3, bias=False)
        self.trunk_norm = ChannelLayerNorm(channels)
        self.classes = MaskedConv1d(channels, n_classes + 1, 3)
        self.distances = MaskedConv1d(channels, 2, 3)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, T), mask (B, T) -> p (B, K+1, T) summing to 1 over classes, intervals (B, 2, T) > 0.

        Both are 0 at padded steps. intervals[:, 0] is the distance l to the left end of the step's
        action, intervals[:, 1] the distance r to its right end.
        """
        valid = mask.unsqueeze(1).to(x.dtype)
        h, _ = self.trunk(x, mask)
        h = F.relu(self.trunk_norm(h))
        probs = self.classes(h, mask)[0].softmax(dim=1) * valid
        intervals = F.softplus(self.distances(h, mask)[0]) * valid
        return probs, intervals


# --------------------------------------------------------------------------------------------------
# The refinement matrices, from predictions only (Sec. 2.2: A, B, M and their fusion G)
# --------------------------------------------------------------------------------------------------


def class_agreement(class_probs: Tensor, mask: Tensor, count_background: bool = False) -> Tensor:
    """Matrix A: the probability that steps i and j predict the same action class.

    class_probs       (B, K+1, T) per-step class probabilities, class 0 = background
    mask              (B, T) bool, True at valid steps
    count_background  also count agreement on background (default False, see the module docstring)

    -> (B, T, T) with A_ij = sum_{k >= 1} p_i(k) p_j(k) (k >= 0 with ``count_background``), in [0, 1];
    0 where i or j is padded. For one-hot p it is the paper's indicator "i and j share the argmax class".
    """
    if class_probs.dim() != 3 or class_probs.shape[1] < 2:
        raise ValueError(f"class_probs must be (B, K+1, T) with K >= 1, got {tuple(class_probs.shape)}")
    _check_mask(mask, class_probs.shape[0], class_probs.shape[2])
    counted = class_probs if count_background else class_probs[:, 1:]
    agreement = torch.einsum("bki,bkj->bij", counted, counted)
    return agreement * _pair_mask(mask)


def interval_overlap(intervals: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Matrix B: the tIoU of the predicted intervals of steps i and j.

    intervals   (B, 2, T) distances (l, r) >= 0 in steps: step t's action is [t - l_t, t + r_t]
    mask        (B, T) bool, True at valid steps
    eps         guards the union (two empty intervals have tIoU 0)

    -> (B, T, T): B_ij = |I_i and I_j| / (|I_i| + |I_j| - |I_i and I_j|), in [0, 1]; 0 where i or j is padded.
    """
    if intervals.dim() != 3 or intervals.shape[1] != 2:
        raise ValueError(f"intervals must be (B, 2, T), got {tuple(intervals.shape)}")
    _check_mask(mask, intervals.shape[0], intervals.shape[2])
    if (intervals < 0).any():
        raise ValueError("intervals are distances to the action's ends and must be >= 0")
    steps = torch.arange(intervals.shape[2], device=intervals.device, dtype=intervals.dtype)
    start, end = steps - intervals[:, 0], steps + intervals[:, 1]  # (B, T) each
    inter = (torch.minimum(end[:, :, None], end[:, None, :]) - torch.maximum(start[:, :, None], start[:, None, :]))
    inter = inter.clamp(min=0)
    length = end - start
    union = length[:, :, None] + length[:, None, :] - inter
    return inter / union.clamp(min=eps) * _pair_mask(mask)


def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Softmax of (B, T, T) logits over the valid keys j of each row; rows of padded queries i are 0."""
    valid = _pair_mask(mask)
    # A finite floor instead of -inf keeps rows with no valid key finite (they are zeroed anyway).
    return logits.masked_fill(~valid, torch.finfo(logits.dtype).min).softmax(dim=-1) * valid


def attention_logits(queries: Tensor, keys: Tensor) -> Tensor:
    """Q K^T / sqrt(d): queries and keys (B, d, T) -> (B, T, T) logits, row i = query step i."""
    if queries.dim() != 3 or queries.shape != keys.shape:
        raise ValueError(f"queries and keys must both be (B, d, T), got {tuple(queries.shape)}, {tuple(keys.shape)}")
    return torch.einsum("bdi,bdj->bij", queries, keys) / math.sqrt(queries.shape[1])


def dot_product_attention(queries: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
    """Matrix M = softmax(Q K^T / sqrt(d)) over valid keys: (B, d, T) twice, mask (B, T) -> (B, T, T)."""
    logits = attention_logits(queries, keys)
    _check_mask(mask, logits.shape[0], logits.shape[1])
    return masked_softmax(logits, mask)


def fused_attention(queries: Tensor, keys: Tensor, refinement: Tensor, mask: Tensor, gain: float | Tensor) -> Tensor:
    """Matrix G: dot-product weights multiplied by e^{gain R} and renormalised over valid keys.

    queries, keys   (B, d, T)
    refinement      (B, T, T) R = A * B (``class_agreement`` times ``interval_overlap``)
    mask            (B, T) bool
    gain            g, a scalar (learned in ``TemporalSelfAttention``)

    -> (B, T, T) = softmax(Q K^T / sqrt(d) + g R) over valid keys; rows sum to 1 at valid queries, 0 at
    padded ones. Equivalently G_ij = M_ij e^{g R_ij} / sum_j' M_ij' e^{g R_ij'}.
    """
    logits = attention_logits(queries, keys)
    if refinement.shape != logits.shape:
        raise ValueError(f"refinement must be (B, T, T) = {tuple(logits.shape)}, got {tuple(refinement.shape)}")
    _check_mask(mask, logits.shape[0], logits.shape[1])
    return masked_softmax(logits + gain * refinement, mask)


# --------------------------------------------------------------------------------------------------
# TSA: global self-attention with the refinement (Sec. 2.2)
# --------------------------------------------------------------------------------------------------


class TemporalSelfAttention(nn.Module):
    """One-head self-attention over all valid steps, reweighted by the model's own predictions.

    channels          C
    attention_dim     d, width of queries, keys and values (default C)
    gain_init         initial g: a fully related pair (R = 1) counts e^g times an unrelated one
    count_background  passed to ``class_agreement``

    forward(x, mask, class_probs, intervals, return_attention) -> (Y (B, C, T), maps or None), see there.
    """

    def __init__(
        self, channels: int, attention_dim: int | None = None, gain_init: float = 1.0, count_background: bool = False
    ):
        super().__init__()
        dim = channels if attention_dim is None else attention_dim
        if dim < 1:
            raise ValueError(f"attention_dim must be >= 1, got {dim}")
        self.count_background = count_background
        self.query, self.key, self.value = (nn.Conv1d(channels, dim, 1) for _ in range(3))
        self.out = nn.Conv1d(dim, channels, 1)
        self.gain = nn.Parameter(torch.tensor(float(gain_init)))

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C, T), zero at padded steps -> q, k, v, each (B, d, T)."""
        return self.query(x), self.key(x), self.value(x)

    def forward(
        self, x: Tensor, mask: Tensor, class_probs: Tensor, intervals: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Y = x + W_o (V G^T), with G from the dot product and the predictions' refinement A * B.

        x (B, C, T) zero at padded steps, mask (B, T) bool, class_probs (B, K+1, T), intervals (B, 2, T)
        -> Y (B, C, T), 0 at padded steps, and with ``return_attention`` the (B, T, T) matrices
        "dot_product" (M), "agreement" (A), "overlap" (B) and "fused" (G), else None.
        """
        agreement = class_agreement(class_probs, mask, self.count_background)
        overlap = interval_overlap(intervals, mask)
        q, k, v = self.queries_keys_values(x)
        fused = fused_attention(q, k, agreement * overlap, mask, self.gain)
        attended = torch.einsum("bdj,bij->bdi", v, fused)  # step i reads sum_j G_ij v_j
        refined = x + self.out(attended) * mask.unsqueeze(1).to(x.dtype)
        if not return_attention:
            return refined, None
        maps = {"dot_product": dot_product_attention(q, k, mask), "agreement": agreement, "overlap": overlap,
                "fused": fused}
        return refined, maps


# --------------------------------------------------------------------------------------------------
# TPP: dilated convolutions at several temporal resolutions (Sec. 2.3)
# --------------------------------------------------------------------------------------------------


def masked_average_pool(x: Tensor, mask: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Average x over bins of ``stride`` steps, reading valid steps only.

    x (B, C, T), mask (B, T) bool -> pooled (B, C, T_s) and its mask (B, T_s), T_s = ceil(T / stride).
    Bin b covers steps [b s, (b + 1) s); a bin is valid when it holds a valid step, and its value is the
    mean over its valid steps (0 for padded bins). With stride 1 this is x with padded steps zeroed.
    """
    valid = mask.unsqueeze(1).to(x.dtype)
    if stride == 1:
        return x * valid, mask
    batch, channels, steps = x.shape
    bins = math.ceil(steps / stride)
    extra = bins * stride - steps
    total = F.pad(x * valid, (0, extra)).view(batch, channels, bins, stride).sum(dim=-1)
    count = F.pad(valid, (0, extra)).view(batch, 1, bins, stride).sum(dim=-1)
    return total / count.clamp(min=1), count[:, 0] > 0


def upsample_linear(x: Tensor, mask: Tensor, stride: int, steps: int) -> Tensor:
    """Linear interpolation from bins of ``stride`` steps back to ``steps`` steps.

    x (B, C, T_s) with its bin mask (B, T_s) -> (B, C, steps). Bin b's centre is step b s + (s - 1) / 2,
    so step t reads bin position u = (t + 0.5) / s - 0.5 (``F.interpolate``'s align_corners=False
    geometry), clamped to [0, last valid bin of the video]: a step never reads a padded bin, so the
    result does not depend on how far a video is padded. Padded steps are not zeroed here.
    """
    if stride == 1:
        return x[..., :steps]
    position = (torch.arange(steps, device=x.device, dtype=x.dtype) + 0.5) / stride - 0.5
    last = (mask.sum(dim=1) - 1).clamp(min=0)  # (B,) index of each video's last valid bin
    position = torch.minimum(position.clamp(min=0)[None, :], last[:, None].to(x.dtype))  # (B, steps)
    low = position.floor().long()
    high = torch.minimum(low + 1, last[:, None])
    weight = (position - low.to(x.dtype)).unsqueeze(1)

    def at(index: Tensor) -> Tensor:  # (B, steps) bin indices -> (B, C, steps) values
        return x.gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1))

    return at(low) * (1 - weight) + at(high) * weight


class TemporalPyramidPooling(nn.Module):
    """Sec. 2.3: multi-scale temporal context of the refined features and the actionness.

    in_channels     channels of the input (C + 1: refined features and actionness)
    out_channels    channels of the output (C)
    dilations       dilation of each level's 3-tap convolution (default 1, 2, 4, 8)
    strides         pooling factor of each level, in steps (default 1, 2, 4, 8)
    level_channels  width of each level (default out_channels // number of levels, at least 1)

    Level l: masked average pooling by strides[l] -> Conv1d k3, dilation dilations[l] (no bias) ->
    LayerNorm -> ReLU -> zero padded bins -> linear upsampling back to T. The levels are concatenated
    and fused by a 1 x 1 convolution; the output is 0 at padded steps.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (1, 2, 4, 8),
        strides: Sequence[int] = (1, 2, 4, 8),
        level_channels: int | None = None,
    ):
        super().__init__()
        if len(dilations) == 0 or len(dilations) != len(strides):
            raise ValueError(f"need one stride per dilation (at least one level), got {dilations} and {strides}")
        if any(int(d) != d or d < 1 for d in dilations) or any(int(s) != s or s < 1 for s in strides):
            raise ValueError(f"dilations and strides must be integers >= 1, got {dilations} and {strides}")
        self.dilations = tuple(int(d) for d in dilations)
        self.strides = tuple(int(s) for s in strides)
        width = level_channels if level_channels is not None else max(1, out_channels // len(dilations))
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels, width, 3, padding=d, dilation=d, bias=False) for d in self.dilations
        )
        self.norms = nn.ModuleList(ChannelLayerNorm(width) for _ in self.dilations)
        self.fuse = nn.Conv1d(width * len(self.dilations), out_channels, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, in_channels, T), mask (B, T) bool -> (B, out_channels, T), 0 at padded steps."""
        steps = x.shape[2]
        levels = []
        for conv, norm, stride in zip(self.convs, self.norms, self.strides):
            pooled, pooled_mask = masked_average_pool(x, mask, stride)  # padded bins are 0 going in
            h = F.relu(norm(conv(pooled))) * pooled_mask.unsqueeze(1).to(x.dtype)
            levels.append(upsample_linear(h, pooled_mask, stride, steps))
        return self.fuse(torch.cat(levels, dim=1)) * mask.unsqueeze(1).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# The module: predictions -> TSA -> TPP
# --------------------------------------------------------------------------------------------------


class RefinementOutput(NamedTuple):
    """What ``SelfAttentionRefinement`` returns (everything 0 at padded steps).

    features      (B, C, T) refined features, to continue the short-term path
    class_probs   (B, K+1, T) per-step class probabilities, class 0 = background
    intervals     (B, 2, T) per-step distances (l, r) > 0 to the ends of the step's action, in steps
    attention     with ``return_attention=True``: maps by name (detached, batch first), else None
    kinds         beside ``attention``: each map's ``MapKind``, else None
    """

    features: Tensor
    class_probs: Tensor
    intervals: Tensor
    attention: dict[str, Tensor] | None
    kinds: dict[str, MapKind] | None


class SelfAttentionRefinement(nn.Module):
    """TSA + TPP (Li et al., Secs. 2.2-2.3) on the (B, C, T) embedding: see the module docstring.

    channels           C, width of the input and output
    n_classes          actions K (2: filling, disappearing)
    pyramid_dilations  TPP's dilation per level (default 1, 2, 4, 8)
    pyramid_strides    TPP's pooling factor per level (default 1, 2, 4, 8)
    attention_dim      width d of TSA's queries, keys and values (default C)
    gain_init          initial refinement gain g of TSA (learned)
    count_background   let agreement on background count in A (default False)

    ``forward(x (B, C, T), mask (B, T) bool, return_attention=False) -> RefinementOutput``. It takes no
    ground truth: A, B and G come from the module's own predictions. Captured maps:
      "TSA.dot_product"  (B, T, T) M, plain dot-product attention (what G would be without refinement)
      "TSA.agreement"    (B, T, T) A, class agreement
      "TSA.overlap"      (B, T, T) B, interval tIoU
      "TSA.fused"        (B, T, T) G, the weights the features are averaged with
      "TPP.actionness"   (B, T) 1 - p(background), fed to TPP
    the matrices as MapKind("matrix", (0, 1)) (row i = how much step i attends to every step), the
    actionness as MapKind("curve", (0, 1)).
    """

    def __init__(
        self,
        channels: int,
        n_classes: int = 2,
        pyramid_dilations: Sequence[int] = (1, 2, 4, 8),
        pyramid_strides: Sequence[int] = (1, 2, 4, 8),
        attention_dim: int | None = None,
        gain_init: float = 1.0,
        count_background: bool = False,
    ):
        super().__init__()
        if channels < 1 or n_classes < 1:
            raise ValueError(f"channels and n_classes must be >= 1, got {channels} and {n_classes}")
        self.channels = channels
        self.n_classes = n_classes
        self.predictions = StepPredictions(channels, n_classes)
        self.tsa = TemporalSelfAttention(channels, attention_dim, gain_init, count_background)
        self.tpp = TemporalPyramidPooling(channels + 1, channels, pyramid_dilations, pyramid_strides)

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> RefinementOutput:
        """x (B, C, T) the embedding, mask (B, T) bool -> ``RefinementOutput`` (features (B, C, T))."""
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"x must be (B, C, T) with C = {self.channels}, got {tuple(x.shape)}")
        _check_mask(mask, x.shape[0], x.shape[2])
        x = x * mask.unsqueeze(1).to(x.dtype)  # whatever the caller left at padded steps goes no further

        class_probs, intervals = self.predictions(x, mask)
        refined, maps = self.tsa(x, mask, class_probs, intervals, return_attention)
        actionness = (1 - class_probs[:, 0]) * mask.to(x.dtype)  # (B, T)
        features = refined + self.tpp(torch.cat([refined, actionness.unsqueeze(1)], dim=1), mask)

        if not return_attention:
            return RefinementOutput(features, class_probs, intervals, None, None)
        attention = {f"TSA.{name}": value.detach() for name, value in maps.items()}
        attention["TPP.actionness"] = actionness.detach()
        kinds = {name: MapKind("matrix", UNIT_RANGE) for name in attention}
        kinds["TPP.actionness"] = MapKind("curve", UNIT_RANGE)
        return RefinementOutput(features, class_probs, intervals, attention, kinds)


# --------------------------------------------------------------------------------------------------
# Auxiliary supervision of the step predictions (the paper trains actionness/class and boundaries)
# --------------------------------------------------------------------------------------------------


class RefinementTargets(NamedTuple):
    """Per-step targets of ``refinement_loss``.

    classes     (B, T) int64: 0 background, label + 1 inside a segment
    intervals   (B, 2, T) float32: (t - t0, t1 - t) to the step's segment [t0, t1]; 0 outside
    """

    classes: Tensor
    intervals: Tensor


def refinement_targets(segments: Sequence[Tensor], labels: Sequence[Tensor], n_steps: int) -> RefinementTargets:
    """Per-step class and interval targets from the ground truth of a batch.

    segments   B tensors (K_b, 2) float: [t0, t1] in feature steps (``Batch.segments``)
    labels     B tensors (K_b,) int: class of each segment, 0 .. K - 1 (``Batch.labels``)
    n_steps    T, the batch's padded length

    -> ``RefinementTargets``. Step t is inside [t0, t1] when t0 <= t <= t1. Where segments overlap (the
    filling and disappearing segments share the apex) the shortest one wins, the first listed on a tie.
    """
    if len(segments) != len(labels) or len(segments) == 0:
        raise ValueError(f"need one labels tensor per segments tensor (B >= 1), got {len(segments)} and {len(labels)}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    device = segments[0].device
    classes = torch.zeros(len(segments), n_steps, dtype=torch.int64, device=device)
    intervals = torch.zeros(len(segments), 2, n_steps, dtype=torch.float32, device=device)
    steps = torch.arange(n_steps, device=device, dtype=torch.float32)
    for b, (seg, lab) in enumerate(zip(segments, labels)):
        if seg.dim() != 2 or seg.shape[1] != 2 or lab.shape != (seg.shape[0],):
            raise ValueError(f"video {b}: segments must be (K, 2) and labels (K,), got {tuple(seg.shape)}, "
                             f"{tuple(lab.shape)}")
        seg = seg.to(device, torch.float32)
        if not torch.isfinite(seg).all() or (seg[:, 1] < seg[:, 0]).any() or (lab < 0).any():
            raise ValueError(f"video {b}: segments must be finite with t0 <= t1, labels >= 0")
        # Written longest first, so a shorter segment overwrites a longer one; among equal lengths the
        # first listed is written last and wins.
        lengths = (seg[:, 1] - seg[:, 0]).tolist()
        for k in sorted(range(len(lengths)), key=lambda k: (-lengths[k], -k)):
            t0, t1 = seg[k]
            inside = (steps >= t0) & (steps <= t1)
            classes[b, inside] = int(lab[k]) + 1
            intervals[b, 0, inside] = steps[inside] - t0
            intervals[b, 1, inside] = t1 - steps[inside]
    return RefinementTargets(classes, intervals)


def anchored_interval_iou(predicted: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """tIoU of two intervals around the same step, each given as distances (l, r) >= 0 from it.

    predicted, target (..., 2) -> (...,): I = min(l, l') + min(r, r'), U = l + r + l' + r' - I, I / U.
    Both intervals contain the step, so they always overlap there.
    """
    intersection = torch.minimum(predicted, target).sum(dim=-1)
    union = predicted.sum(dim=-1) + target.sum(dim=-1) - intersection
    return intersection / union.clamp(min=eps)


def refinement_loss(
    output: RefinementOutput, targets: RefinementTargets, mask: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Auxiliary loss of the step predictions: L = CE(classes) + (1 - tIoU)(intervals).

    output    a ``RefinementOutput`` (its class_probs (B, K+1, T) and intervals (B, 2, T) are used)
    targets   ``refinement_targets`` of the batch, for the same T
    mask      (B, T) bool, True at valid steps

    -> (L, {"tsa_cls": ..., "tsa_iou": ...}), 0-dim tensors in the graph. tsa_cls is the mean
    cross-entropy over valid steps; tsa_iou the mean 1 - tIoU of predicted vs target interval over valid
    foreground steps (target class > 0), and 0 when the batch has none.
    """
    probs, intervals = output.class_probs, output.intervals
    batch, n_classes, steps = probs.shape
    if tuple(targets.classes.shape) != (batch, steps) or tuple(targets.intervals.shape) != (batch, 2, steps):
        raise ValueError(f"targets must be classes (B, T) = ({batch}, {steps}) and intervals (B, 2, T), got "
                         f"{tuple(targets.classes.shape)} and {tuple(targets.intervals.shape)}")
    if tuple(intervals.shape) != (batch, 2, steps):
        raise ValueError(f"output intervals must be (B, 2, T) = ({batch}, 2, {steps}), got {tuple(intervals.shape)}")
    _check_mask(mask, batch, steps)
    classes = targets.classes.to(probs.device)
    if ((classes < 0) | (classes >= n_classes)).any():
        raise ValueError(f"class targets must lie in 0 .. {n_classes - 1} (background + K actions)")

    # The probabilities are already a softmax; the floor only guards log(0) for a hopeless prediction.
    log_probs = probs.clamp(min=torch.finfo(probs.dtype).tiny).log()
    picked = log_probs.gather(1, classes.unsqueeze(1)).squeeze(1)  # (B, T) log p_t(target_t)
    cls_loss = -(picked * mask).sum() / mask.sum().clamp(min=1)

    foreground = mask & (classes > 0)
    iou = anchored_interval_iou(
        intervals.transpose(1, 2)[foreground], targets.intervals.to(intervals).transpose(1, 2)[foreground]
    )
    # Summing an empty selection gives a 0 that stays in the graph.
    iou_loss = (1 - iou).sum() / foreground.sum().clamp(min=1)
    return cls_loss + iou_loss, {"tsa_cls": cls_loss, "tsa_iou": iou_loss}
