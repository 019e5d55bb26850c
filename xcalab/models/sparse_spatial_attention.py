"""Class-peak sparse spatial attention and a temporal CNN: xcalab's contrast-phase recogniser.

After Zhou et al., "Integrating Temporal and Spatial Attention for Video Action Recognition" (seed paper
004). Every feature step is classified into one of five contrast phases (``PHASE_NAMES``: 0 pre-contrast,
1 filling, 2 apex plateau, 3 washout, 4 after; XCA-Synth labels them exactly). The recogniser reads the
64 x 64 **vessel maps** -- each step of the (B, 4096, T) features reshaped to (B, T, 64, 64) -- not raw
frames: those maps are what every xcalab cine has (real cines too, through the vessel extractor), what the
keyframe detector reads, and small enough to train on a CPU.

Data flow, for N = (number of valid steps) maps of side S (h = w = S / 4):

    map (N, 1, S, S) --ClassResponseNet--> features Y (N, C, h, w), class responses M (N, K, h, w),
                                           per-map class scores s = mean_hw M                  (eq. 1)
    s --select_peak_classes--> top-1 class if the top-k entropy H < delta, else the top-k   (eqs. 2-3)
    M --peak_response_map--> R = sum of the chosen maps, min-max normalised to [0, 1]          (eqs. 3-4)
    R --find_peaks--> peaks P; --split_peaks--> P_dis (R >= phi), P_com (R < phi)                 (eq. 5)
    P_dis, P_com --gaussian_sparse_attention, widths beta_1, beta_2--> A_dis, A_com (N, S, S)     (eq. 6)
    map, A --resample--> V_dis, V_com: the map re-sampled so that high attention is magnified  ("eq. 7")
    {map, V_dis, V_com} --ClassResponseNet (shared)--> pooled features GAP(Y) per step
                        --TemporalAttentionCNN (shared)--> per-step logits of the three branches
    concat of the three branches' temporal features --1 x 1 conv--> "fused" logits               (eq. 8)

Loss (``phase_loss``, eq. 8): L = CE(original) + CE(discriminative) + CE(complementary) + CE(fused), each a
mean over the valid labelled steps (labels -1 are ignored); the paper gives no weights, so all are 1.

Choices where the paper is silent or its extraction garbled:

- Shared networks. One ``ClassResponseNet`` and one ``TemporalAttentionCNN`` serve all three branches: the
  paper re-feeds the resampled videos to the same T-CNN ("does not significantly improve the number of
  model parameters"). The fusion is learned, as the paper's F_total: a 1 x 1 convolution (per-step FC)
  over the concatenated temporal features of the three branches.
- Branch logits = per-map scores s (eq. 1) + temporal-CNN logits. The paper's class response maps come
  from the linear classifier on GAP(Y) of the very network that classifies; here the temporal CNN mixes
  steps, so the per-map linear classifier s = mean M is kept as a term of the logits. Raising M_k anywhere
  raises the logit of phase k, which is what makes M_k a class response map eq. 3 can pick peaks from,
  and it keeps eq. 8 at four terms (no auxiliary per-map loss).
- Top-k with k = 2 (the paper: top-5 of 101 or 51 classes). With 5 phases, top-5 would be every class and
  R the sum of all maps (no selection at all). Phases are ordered in time and a step is confused almost only
  with a neighbouring phase (filling vs. apex plateau, apex plateau vs. washout), so the runner-up is the one
  meaningful alternative. H is eq. 2 over the top-k probabilities as they are (not renormalised); the default
  delta = 0.5 nats picks top-1 when the winner holds about 75 % or more (e.g. H(0.75, 0.15) = 0.50).
  H = delta takes the top-k (eq. 3 leaves the tie open).
- Peaks are local maxima of R: R equal to its 3 x 3 max-pool (plateaus give every tied pixel) and strictly
  above R's mean, which drops the flat background. The global maximum of a non-constant R is always a peak;
  a constant R (e.g. an empty pre-contrast map) has none.
- The split threshold phi (eq. 5): in training one phi per map, uniform in [min peak value, max peak value)
  from ``generator``; the strongest peak is always discriminative and, whenever a map has two different peak
  values, the weakest is complementary. (The paper draws phi_(x,y) from U(0, 1), which often leaves one set
  empty.) In evaluation phi = (min + max) / 2, the mean of the training draw. Random numbers are drawn only
  for valid steps, in row-major (b, t) order, so padding never changes which number a valid step gets.
- Eq. 6, whose exponent is garbled, is read as in the method it follows (Ding et al., S3N):
      A_i(x, y) = R_i exp(-((x - x_i)^2 + (y - y_i)^2) / (R_i beta_1^2))        for peaks in P_dis,
      A_i(x, y) = (1 / R_i) exp(-((x - x_i)^2 + (y - y_i)^2) / (R_i beta_2^2))  for peaks in P_com,
  with R_i = R(x_i, y_i) clamped to >= 1e-3 and distances in units of the map side (a peak of cell (i, j) of
  the h x w grid sits at ((i + 0.5) / h, (j + 0.5) / w), pixel (p, q) of the S x S map at ((p + 0.5) / S,
  (q + 0.5) / S)), so beta does not depend on the map size. A set's attention is sum_i A_i divided by its
  maximum, so it lies in [0, 1] with maximum 1; a set without peaks gives the all-ones map (the resampled
  map is then the map itself). beta_1, beta_2 = exp(learned log-beta), init 0.25 each.
- "Eq. 7" (missing from the extraction; the text says the resampling follows Recasens et al., "Learning to
  zoom") is a saliency-based warp, implemented with ``grid_sample``: output pixel x samples the input at
  u(x) = sum_x' A(x') k(x, x') x' / sum_x' A(x') k(x, x') with a Gaussian kernel k (std 0.2 of the side),
  so sampling points crowd where the attention is high and those regions are magnified. It is computed on a
  coarse grid (side min(S, 32)) and upsampled; the attention is edge-replicated and the coordinates extended
  linearly beyond the border, so a uniform attention gives exactly the identity warp. A floor of 1e-3 is
  added to the attention, so regions far from every peak (where the Gaussians underflow) keep the identity
  instead of 0 / 0. Gradients reach beta_1 and beta_2 through the warp, as the paper requires.
- Peaks, the split and the peak values are computed without gradient (detached responses): the response
  net is trained by the classification loss only, never to move its own attention.
- No BatchNorm (the paper's T-CNN has it): batch statistics would mix padded steps into valid outputs.
- ``PhaseOutput.spatial_attention`` is the discriminative attention A_dis: the map of the strongest phase
  evidence, the one a keyframe detector can gate its input with.

Masking: every per-map computation runs on the valid steps only; temporal convolutions zero padded steps
before each convolution (as ``MaskedConv1d``) and their outputs after; every output is 0 at padded steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcalab.data.phases import PHASE_NAMES
from xcalab.models.maps import UNIT_RANGE, MapKind

#: The branches of ``PhaseOutput.logits``, in the order of eq. 8.
BRANCHES = ("original", "discriminative", "complementary", "fused")

# --------------------------------------------------------------------------------------------------
# Class response maps (eq. 1)
# --------------------------------------------------------------------------------------------------


class ClassResponse(NamedTuple):
    """What ``ClassResponseNet`` returns for N maps.

    features   Y (N, C, h, w), the last convolutional features (h = w = S / 4)
    responses  M (N, K, h, w), M_k = sum_c W_ck Y_c + b_k: class k's evidence at each cell (eq. 1)
    scores     s (N, K) = spatial mean of M = FC(GAP(Y)): the per-map class logits
    """

    features: Tensor
    responses: Tensor
    scores: Tensor


class ClassResponseNet(nn.Module):
    """A small per-map CNN with class activation by global average pooling (eq. 1).

    n_classes   K (5 phases)
    channels    widths of the two [Conv 3x3, ReLU, MaxPool 2] blocks (default (16, 32)); the side shrinks 4x

    A 1 x 1 convolution maps Y to the K class response maps; its bias is a constant per map, so the mean of
    M_k equals the FC layer on GAP(Y) and the class scores are exactly the GAP-FC scores of eq. 1.
    """

    def __init__(self, n_classes: int = 5, channels: tuple[int, int] = (16, 32)):
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Conv2d(c2, n_classes, 1)
        self.out_channels = c2

    def forward(self, maps: Tensor) -> ClassResponse:
        """maps (N, 1, S, S), S divisible by 4 -> ``ClassResponse`` with h = w = S / 4."""
        if maps.ndim != 4 or maps.shape[1] != 1 or maps.shape[2] % 4 or maps.shape[3] % 4:
            raise ValueError(f"expected maps (N, 1, S, S) with S divisible by 4, got {tuple(maps.shape)}")
        features = self.body(maps)
        responses = self.classifier(features)
        return ClassResponse(features, responses, responses.mean(dim=(2, 3)))


# --------------------------------------------------------------------------------------------------
# Class peaks (eqs. 2-5)
# --------------------------------------------------------------------------------------------------


def top_k_entropy(scores: Tensor, k: int) -> Tensor:
    """Eq. 2: H = -sum_{i <= k} p_i log p_i over the k largest of p = softmax(scores) (not renormalised).

    scores (N, K) -> (N,).
    """
    _check_scores(scores, k)
    top = scores.softmax(dim=1).topk(k, dim=1).values
    return -(top * top.clamp_min(1e-30).log()).sum(dim=1)


def select_peak_classes(scores: Tensor, entropy_threshold: float = 0.5, k: int = 2) -> Tensor:
    """Eqs. 2-3: which classes' response maps are summed for the peaks of each map.

    scores             (N, K) class scores
    entropy_threshold  delta: a map with H < delta (a confident prediction) uses its top-1 class, one with
                       H >= delta its top-k classes
    k                  the top-k of eq. 3 (paper 5; xcalab 2, see the module docstring)

    Returns (N, K) bool, True at the chosen classes.
    """
    _check_scores(scores, k)
    confident = top_k_entropy(scores, k) < entropy_threshold
    ranks = scores.argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # 0 = the top class
    return ranks < torch.where(confident, 1, k).unsqueeze(1)


def _check_scores(scores: Tensor, k: int) -> None:
    if scores.ndim != 2:
        raise ValueError(f"expected scores (N, K), got shape {tuple(scores.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in 1..{scores.shape[1]} (the number of classes), got {k}")


def peak_response_map(responses: Tensor, chosen: Tensor) -> Tensor:
    """Eqs. 3-4: R = sum of the chosen classes' response maps, min-max normalised to [0, 1] per map.

    responses (N, K, h, w), chosen (N, K) bool -> (N, h, w). A constant sum (nothing to locate) gives 0.
    """
    if responses.ndim != 4 or chosen.shape != responses.shape[:2]:
        raise ValueError(
            f"expected responses (N, K, h, w) and chosen (N, K), got {tuple(responses.shape)}"
            f" and {tuple(chosen.shape)}"
        )
    summed = (responses * chosen[:, :, None, None].to(responses.dtype)).sum(dim=1)
    low = summed.amin(dim=(1, 2), keepdim=True)
    span = summed.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (summed - low) / span.clamp_min(1e-30), torch.zeros_like(summed))


def find_peaks(response: Tensor, window: int = 3) -> Tensor:
    """Class peaks: the local maxima of each map that lie above the map's mean.

    response (N, h, w) -> (N, h, w) bool. A pixel is a peak when it equals the maximum of its
    window x window neighbourhood (odd window; the border is padded with -inf) and is strictly greater
    than the mean of its map. Every pixel of a plateau maximum counts.
    """
    if response.ndim != 3:
        raise ValueError(f"expected response maps (N, h, w), got shape {tuple(response.shape)}")
    if window < 1 or window % 2 != 1:
        raise ValueError(f"window must be a positive odd number, got {window}")
    local_max = F.max_pool2d(response.unsqueeze(1), window, stride=1, padding=window // 2).squeeze(1)
    return (response == local_max) & (response > response.mean(dim=(1, 2), keepdim=True))


def draw_split_threshold(
    peak_values: Tensor,
    peak_mask: Tensor,
    random: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """phi of eq. 5, one per map: uniform in [min, max) of the map's peak values, or their midpoint.

    peak_values  (N, h, w) response values (only those at peaks are read)
    peak_mask    (N, h, w) bool, the peaks
    random       True (training): phi = lo + u (hi - lo), u ~ U[0, 1) from ``generator``, one u per map in
                 order; False (evaluation): phi = (lo + hi) / 2
    Returns (N,). Maps without peaks get phi = 0 (they have nothing to split).
    """
    if peak_values.ndim != 3 or peak_mask.shape != peak_values.shape:
        raise ValueError(
            f"expected peak_values and peak_mask of one shape (N, h, w), got {tuple(peak_values.shape)}"
            f" and {tuple(peak_mask.shape)}"
        )
    values, mask = peak_values.flatten(1), peak_mask.flatten(1)
    lo = values.masked_fill(~mask, math.inf).amin(dim=1)
    hi = values.masked_fill(~mask, -math.inf).amax(dim=1)
    if random:
        u = torch.rand(len(values), generator=generator, dtype=values.dtype, device=values.device)
        threshold = lo + u * (hi - lo)
    else:
        threshold = (lo + hi) / 2
    return torch.where(mask.any(dim=1), threshold, torch.zeros_like(threshold))


def split_peaks(peak_values: Tensor, peak_mask: Tensor, threshold: Tensor | float) -> tuple[Tensor, Tensor]:
    """Eq. 5: discriminative peaks (value >= phi) and complementary peaks (value < phi).

    peak_values (N, h, w), peak_mask (N, h, w) bool, threshold a number or (N,) (one phi per map)
    -> (discriminative (N, h, w) bool, complementary (N, h, w) bool), disjoint, their union the peaks.
    """
    if peak_values.ndim != 3 or peak_mask.shape != peak_values.shape:
        raise ValueError(
            f"expected peak_values and peak_mask of one shape (N, h, w), got {tuple(peak_values.shape)}"
            f" and {tuple(peak_mask.shape)}"
        )
    threshold = torch.as_tensor(threshold, dtype=peak_values.dtype, device=peak_values.device)
    if threshold.ndim == 1 and len(threshold) == len(peak_values):
        threshold = threshold[:, None, None]
    elif threshold.ndim != 0:
        raise ValueError(
            f"threshold must be a number or one per map ({len(peak_values)},), got {tuple(threshold.shape)}"
        )
    strong = peak_values >= threshold
    return peak_mask & strong, peak_mask & ~strong


# --------------------------------------------------------------------------------------------------
# Sparse attention (eq. 6) and attention-guided resampling ("eq. 7")
# --------------------------------------------------------------------------------------------------


def gaussian_sparse_attention(
    peak_mask: Tensor,
    peak_values: Tensor,
    beta: Tensor | float,
    size: int,
    discriminative: bool = True,
    min_value: float = 1e-3,
) -> Tensor:
    """Eq. 6: one set's sparse attention on the S x S map, from Gaussians of width beta at its peaks.

    peak_mask       (N, h, w) bool, the set's peaks (P_dis or P_com)
    peak_values     (N, h, w) R, the normalised response (read at the peaks, clamped to >= min_value)
    beta            the set's width (> 0), beta_1 or beta_2; a tensor carries its gradient
    size            S, the side of the output
    discriminative  True: A_i = R_i exp(-d^2 / (R_i beta^2)); False (complementary): the amplitude is 1 / R_i

    d is the distance from the peak's cell centre in units of the map side (see the module docstring).
    Returns (N, S, S): sum_i A_i / max_xy sum_i A_i in [0, 1]; 1 everywhere on a map without peaks.
    """
    if peak_mask.ndim != 3 or peak_values.shape != peak_mask.shape:
        raise ValueError(
            f"expected peak_mask and peak_values of one shape (N, h, w), got {tuple(peak_mask.shape)}"
            f" and {tuple(peak_values.shape)}"
        )
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    beta = torch.as_tensor(beta, dtype=peak_values.dtype, device=peak_values.device)
    if beta.ndim != 0 or not bool(beta > 0):
        raise ValueError(f"beta must be one positive number, got {beta.tolist()}")
    n, h, w = peak_mask.shape
    flat = peak_mask.flatten(1)
    n_peaks = int(flat.sum(dim=1).max()) if n else 0
    if n_peaks == 0:
        return peak_values.new_ones(n, size, size)

    # The peaks of each map first (a stable sort keeps them in raster order), padded to n_peaks.
    order = flat.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :n_peaks]  # (N, P)
    present = flat.gather(1, order)
    value = peak_values.flatten(1).gather(1, order).clamp_min(min_value)
    centre_y = (torch.div(order, w, rounding_mode="floor") + 0.5) / h
    centre_x = (order % w + 0.5) / w
    pixel = (torch.arange(size, dtype=value.dtype, device=value.device) + 0.5) / size

    spread = (value * beta**2).unsqueeze(2)  # (N, P, 1): R_i beta^2
    gauss_y = torch.exp(-((pixel - centre_y.unsqueeze(2)) ** 2) / spread)  # (N, P, S)
    gauss_x = torch.exp(-((pixel - centre_x.unsqueeze(2)) ** 2) / spread)
    amplitude = value if discriminative else 1.0 / value
    amplitude = amplitude * present
    # Scaling the amplitudes by their maximum changes nothing after the final normalisation but keeps
    # 1 / R_i of the complementary set from overflowing.
    amplitude = amplitude / amplitude.amax(dim=1, keepdim=True).clamp_min(1e-30)
    # The Gaussian is separable in y and x, so the sum over peaks is one batched matrix product.
    summed = torch.einsum("np,npy,npx->nyx", amplitude, gauss_y, gauss_x)
    attention = summed / summed.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)
    has_peak = present.any(dim=1)[:, None, None]
    return torch.where(has_peak, attention, torch.ones_like(attention))


def sampling_grid(
    attention: Tensor,
    size: int,
    grid_size: int | None = None,
    kernel_sigma: float = 0.2,
    floor: float = 1e-3,
) -> Tensor:
    """The saliency-based sampling grid of "Learning to zoom" for each attention map.

    attention     (N, S_a, S_a) non-negative attention
    size          S, the side of the grid returned
    grid_size     side g of the coarse grid it is computed on (default min(S, 32)), then upsampled
    kernel_sigma  std of the Gaussian kernel k, as a fraction of the side
    floor         added to the attention (see the module docstring)

    Returns (N, S, S, 2) sampling positions (x, y) in [-1, 1] (``grid_sample`` with align_corners=True):
    u(p) = sum_q A(q) k(p, q) q / sum_q A(q) k(p, q); a uniform attention gives the identity grid.
    """
    if attention.ndim != 3 or attention.shape[1] != attention.shape[2]:
        raise ValueError(f"expected square attention maps (N, S, S), got shape {tuple(attention.shape)}")
    g = min(size, 32) if grid_size is None else grid_size
    if g < 2 or size < 2:
        raise ValueError(f"size and grid_size must be at least 2, got {size} and {g}")
    if kernel_sigma <= 0 or floor <= 0:
        raise ValueError(f"kernel_sigma and floor must be positive, got {kernel_sigma} and {floor}")
    coarse = F.adaptive_avg_pool2d(attention.unsqueeze(1), g).squeeze(1) + floor  # (N, g, g)

    sigma = kernel_sigma * g  # in coarse cells
    radius = max(1, math.ceil(3 * sigma))
    # Edge-replicated attention and linearly extended coordinates make the kernel sums symmetric at the
    # border too: a uniform attention returns every coordinate unchanged.
    padded = F.pad(coarse.unsqueeze(1), (radius,) * 4, mode="replicate").squeeze(1)  # (N, g + 2r, g + 2r)
    steps = torch.arange(-radius, g + radius, dtype=coarse.dtype, device=coarse.device)
    coords = steps * (2.0 / (g - 1)) - 1.0  # (g + 2r,) in the units of grid_sample
    offset = steps.unsqueeze(0) - torch.arange(g, dtype=coarse.dtype, device=coarse.device).unsqueeze(1)
    kernel = torch.exp(-(offset**2) / (2 * sigma**2)) * (offset.abs() <= radius)  # (g, g + 2r): k(p, q)

    def smooth(values: Tensor) -> Tensor:  # (N, g + 2r, g + 2r) -> (N, g, g): sum_q k(p, q) values(q)
        return torch.einsum("ik,nkl,jl->nij", kernel, values, kernel)

    weight = smooth(padded)
    grid_x = smooth(padded * coords.view(1, 1, -1)) / weight
    grid_y = smooth(padded * coords.view(1, -1, 1)) / weight
    grid = torch.stack((grid_x, grid_y), dim=-1).clamp(-1.0, 1.0)  # (N, g, g, 2)
    if g != size:  # a bilinear upsampling keeps a linear (identity) grid exact
        grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=True)
        grid = grid.permute(0, 2, 3, 1)
    return grid


def resample(
    maps: Tensor,
    attention: Tensor,
    grid_size: int | None = None,
    kernel_sigma: float = 0.2,
    floor: float = 1e-3,
) -> Tensor:
    """The resampling of "eq. 7": each map warped under its attention, high-attention regions magnified.

    maps (N, S, S), attention (N, S, S) >= 0 -> (N, S, S), bilinear ``grid_sample`` on ``sampling_grid``
    (border padding). A uniform attention returns the maps themselves.
    """
    if maps.ndim != 3 or attention.shape != maps.shape:
        raise ValueError(
            f"expected maps and attention of one shape (N, S, S), got {tuple(maps.shape)}"
            f" and {tuple(attention.shape)}"
        )
    grid = sampling_grid(attention, maps.shape[-1], grid_size, kernel_sigma, floor)
    sampled = F.grid_sample(maps.unsqueeze(1), grid, padding_mode="border", align_corners=True)  # bilinear
    return sampled.squeeze(1)


# --------------------------------------------------------------------------------------------------
# Temporal CNN with dilated temporal convolutions
# --------------------------------------------------------------------------------------------------


class MaskedDilatedConv1d(nn.Module):
    """A dilated 1-D convolution over time ("same" length) that never reads or writes padded steps.

    Padded steps of the input are zeroed first (so they cannot reach a valid output) and those of the
    output after, as ``MaskedConv1d`` of ``xcalab.models.short_term`` (which has no dilation).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        if kernel_size % 2 != 1 or dilation < 1:
            raise ValueError(f"kernel_size must be odd and dilation >= 1, got {kernel_size} and {dilation}")
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, C_in, T), mask (B, T) bool -> (B, C_out, T), zero at padded steps."""
        keep = mask.unsqueeze(1).to(x.dtype)
        return self.conv(x * keep) * keep


class TemporalAttentionCNN(nn.Module):
    """The temporal part of T-CNN: dilated temporal convolutions over per-step embeddings.

    in_channels   C_in of the per-step embeddings (the pooled ``ClassResponseNet`` features)
    n_classes     K
    channels      hidden width
    dilations     one [MaskedDilatedConv1d k, ReLU] layer per dilation (default 1, 2, 4: the paper's T-CNN
                  alternates plain and dilation-2/4 temporal convolutions); the receptive field is
                  1 + (k - 1) * sum(dilations) steps (15 by default)
    kernel_size   temporal kernel (odd)

    The "temporal attention" of the paper is this architecture's frame selection: how many neighbouring
    steps each layer reads. It has no attention weights to capture.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int = 5,
        channels: int = 32,
        dilations: Sequence[int] = (1, 2, 4),
        kernel_size: int = 3,
    ):
        super().__init__()
        if not dilations:
            raise ValueError("dilations must name at least one layer")
        sizes = [in_channels] + [channels] * len(dilations)
        self.layers = nn.ModuleList(
            MaskedDilatedConv1d(c_in, c_out, kernel_size, dilation)
            for c_in, c_out, dilation in zip(sizes[:-1], sizes[1:], dilations)
        )
        self.classifier = MaskedDilatedConv1d(channels, n_classes, 1)
        self.out_channels = channels

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C_in, T), mask (B, T) bool -> (logits (B, K, T), features (B, channels, T)), 0 at padding."""
        for layer in self.layers:
            x = F.relu(layer(x, mask))
        return self.classifier(x, mask), x


# --------------------------------------------------------------------------------------------------
# The recogniser
# --------------------------------------------------------------------------------------------------


class PhaseOutput(NamedTuple):
    """What ``PhaseRecogniser`` returns.

    logits             branch -> (B, K, T) per-step phase logits, branches ``BRANCHES``: "original",
                       "discriminative", "complementary" and "fused"; 0 at padded steps
    probabilities      (B, K, T) softmax of the fused logits over the phases; 0 at padded steps
    spatial_attention  (B, T, S, S) the discriminative attention A_dis in [0, 1]; 0 at padded steps
    attention          with ``return_attention=True`` the captured maps by name (see ``PhaseRecogniser``),
                       batch first and detached; else None
    kinds              beside ``attention``: each map's ``MapKind``; else None
    """

    logits: dict[str, Tensor]
    probabilities: Tensor
    spatial_attention: Tensor
    attention: dict[str, Tensor] | None
    kinds: dict[str, MapKind] | None


class PhaseRecogniser(nn.Module):
    """Per-step contrast-phase recognition with class-peak sparse spatial attention (seed paper 004).

    map_size           S, the side of each step's map (64: features (B, 4096, T)); divisible by 4
    n_phases           K (5, ``PHASE_NAMES``)
    channels           ``ClassResponseNet`` widths (default (16, 32))
    temporal_channels  ``TemporalAttentionCNN`` width
    dilations          its dilations
    entropy_threshold  delta of eq. 3 (nats, over the top-k probabilities)
    top_k              k of eq. 3 (2)
    beta_init          initial (beta_1, beta_2), in units of the map side
    grid_size, kernel_sigma, floor   the resampling (``sampling_grid``)

    ``forward(x (B, S*S, T), mask (B, T) bool, return_attention=False, generator=None) -> PhaseOutput``.
    In training mode the split threshold of every valid step is random (``generator``); in eval mode it is
    fixed, and the output deterministic. Captured maps (``return_attention=True``), (B, T, S, S) unless said
    otherwise, 0 at padded steps:
      "phase.response"                  the top class's response map M (bilinear from h x w), unbounded
      "phase.peaks"                     1 at the peaks (each h x w cell as an S/h x S/w block), else 0
      "phase.discriminative"            A_dis, and "phase.complementary" A_com, in [0, 1]
      "phase.resampled_discriminative"  V_dis, and "phase.resampled_complementary" V_com
      "P(<phase name>)"                 (B, T) fused probability of each phase
    """

    def __init__(
        self,
        map_size: int = 64,
        n_phases: int = 5,
        channels: tuple[int, int] = (16, 32),
        temporal_channels: int = 32,
        dilations: Sequence[int] = (1, 2, 4),
        entropy_threshold: float = 0.5,
        top_k: int = 2,
        beta_init: tuple[float, float] = (0.25, 0.25),
        grid_size: int | None = None,
        kernel_sigma: float = 0.2,
        floor: float = 1e-3,
    ):
        super().__init__()
        if map_size < 4 or map_size % 4:
            raise ValueError(f"map_size must be a positive multiple of 4, got {map_size}")
        if not 1 <= top_k <= n_phases:
            raise ValueError(f"top_k must be in 1..{n_phases}, got {top_k}")
        if min(beta_init) <= 0:
            raise ValueError(f"beta_init must be positive, got {beta_init}")
        self.map_size = map_size
        self.n_phases = n_phases
        self.entropy_threshold = entropy_threshold
        self.top_k = top_k
        self.grid_size, self.kernel_sigma, self.floor = grid_size, kernel_sigma, floor
        self.response_net = ClassResponseNet(n_phases, channels)
        self.temporal = TemporalAttentionCNN(
            self.response_net.out_channels, n_phases, temporal_channels, dilations
        )
        self.fusion = MaskedDilatedConv1d(3 * temporal_channels, n_phases, 1)
        # beta = exp(log beta) stays positive (eq. 6's widths, learned through the resampling)
        self.log_beta_discriminative = nn.Parameter(torch.tensor(math.log(beta_init[0])))
        self.log_beta_complementary = nn.Parameter(torch.tensor(math.log(beta_init[1])))

    @property
    def cell(self) -> int:
        """Side, in map pixels, of one cell of the response maps (the response CNN's 2 x 2 poolings)."""
        return 2 ** sum(isinstance(m, nn.MaxPool2d) for m in self.response_net.body)

    @property
    def beta(self) -> tuple[Tensor, Tensor]:
        """(beta_1, beta_2): the widths of the discriminative and the complementary Gaussians."""
        return self.log_beta_discriminative.exp(), self.log_beta_complementary.exp()

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        return_attention: bool = False,
        generator: torch.Generator | None = None,
    ) -> PhaseOutput:
        s = self.map_size
        if x.ndim != 3 or x.shape[1] != s * s:
            raise ValueError(f"expected features (B, {s * s}, T) for {s} x {s} maps, got {tuple(x.shape)}")
        batch, _, steps = x.shape
        if mask.shape != (batch, steps) or mask.dtype != torch.bool:
            raise ValueError(
                f"expected a bool mask of shape {(batch, steps)}, got {mask.dtype} {tuple(mask.shape)}"
            )
        if not bool(mask.any()):
            raise ValueError("the mask has no valid step")

        # Only the valid steps' maps are processed, in row-major (b, t) order.
        valid = mask.flatten().nonzero().squeeze(1)
        maps = x.transpose(1, 2).reshape(batch * steps, s, s).index_select(0, valid)  # (N, S, S)
        original = self.response_net(maps.unsqueeze(1))

        with torch.no_grad():  # where to look: no gradient (module docstring)
            chosen = select_peak_classes(original.scores, self.entropy_threshold, self.top_k)
            peak_map = peak_response_map(original.responses, chosen)
            peaks = find_peaks(peak_map)
            threshold = draw_split_threshold(peak_map, peaks, random=self.training, generator=generator)
            discriminative, complementary = split_peaks(peak_map, peaks, threshold)
        beta_dis, beta_com = self.beta
        attention_dis = gaussian_sparse_attention(discriminative, peak_map, beta_dis, s, discriminative=True)
        attention_com = gaussian_sparse_attention(complementary, peak_map, beta_com, s, discriminative=False)
        resampled = resample(
            torch.cat((maps, maps)), torch.cat((attention_dis, attention_com)),
            self.grid_size, self.kernel_sigma, self.floor,
        )
        branches = self.response_net(resampled.unsqueeze(1))

        def per_step(values: Tensor) -> Tensor:  # (n, ...) of valid steps -> (B, T, ...), 0 at padding
            out = values.new_zeros((batch * steps, *values.shape[1:])).index_copy(0, valid, values)
            return out.view(batch, steps, *values.shape[1:])

        n = len(valid)
        pooled = torch.cat((original.features, branches.features)).mean(dim=(2, 3))  # (3n, C)
        scores = torch.cat((original.scores, branches.scores))  # (3n, K)
        # the three branches side by side as a batch of 3B sequences: (3B, C, T) and (3B, K, T)
        embed = torch.cat([per_step(part).transpose(1, 2) for part in pooled.split(n)])
        frame_scores = torch.cat([per_step(part).transpose(1, 2) for part in scores.split(n)])
        temporal_logits, temporal_features = self.temporal(embed, mask.repeat(3, 1))
        branch_logits = (frame_scores + temporal_logits).split(batch)
        fused = self.fusion(torch.cat(temporal_features.split(batch), dim=1), mask)
        logits = dict(zip(BRANCHES, (*branch_logits, fused)))
        probabilities = fused.softmax(dim=1) * mask.unsqueeze(1).to(fused.dtype)
        spatial_attention = per_step(attention_dis)

        if not return_attention:
            return PhaseOutput(logits, probabilities, spatial_attention, None, None)

        top_class = original.scores.argmax(dim=1)
        top_response = original.responses[torch.arange(n, device=x.device), top_class]  # (n, h, w)
        up = F.interpolate(top_response.unsqueeze(1), size=(s, s), mode="bilinear", align_corners=False)
        peak_blocks = F.interpolate(peaks.unsqueeze(1).to(x.dtype), size=(s, s), mode="nearest")
        unbounded, unit = MapKind("step", None), MapKind("step", UNIT_RANGE)
        captured = {
            "phase.response": (per_step(up.squeeze(1)), unbounded),
            "phase.peaks": (per_step(peak_blocks.squeeze(1)), unit),
            "phase.discriminative": (spatial_attention, unit),
            "phase.complementary": (per_step(attention_com), unit),
            "phase.resampled_discriminative": (per_step(resampled[:n]), unbounded),
            "phase.resampled_complementary": (per_step(resampled[n:]), unbounded),
        }
        for k, name in enumerate(PHASE_NAMES[: self.n_phases]):
            captured[f"P({name})"] = (probabilities[:, k], MapKind("curve", UNIT_RANGE))
        attention = {name: value.detach() for name, (value, _) in captured.items()}
        kinds = {name: kind for name, (_, kind) in captured.items()}
        return PhaseOutput(logits, probabilities, spatial_attention, attention, kinds)


# --------------------------------------------------------------------------------------------------
# Loss (eq. 8) and baselines
# --------------------------------------------------------------------------------------------------


def phase_loss(output: PhaseOutput, phases: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Eq. 8: the sum of the four branches' cross-entropies over the valid labelled steps.

    output  ``PhaseRecogniser`` output, logits (B, K, T) per branch
    phases  (B, T) int64 phase per step, -1 where unlabelled (ignored, like padded steps)
    mask    (B, T) bool, True at valid steps

    Returns (loss, {"phase_original", "phase_discriminative", "phase_complementary", "phase_fused"}),
    each term a mean over the labelled valid steps, as numbers for the log; all weights are 1 (the paper
    gives none).
    """
    fused = output.logits["fused"]
    batch, n_classes, steps = fused.shape
    if phases.shape != (batch, steps) or mask.shape != (batch, steps):
        raise ValueError(
            f"expected phases and mask of shape {(batch, steps)}, got {tuple(phases.shape)}"
            f" and {tuple(mask.shape)}"
        )
    if phases.dtype.is_floating_point or phases.dtype == torch.bool:
        raise ValueError(f"phases must be integer labels, got {phases.dtype}")
    if bool(((phases < -1) | (phases >= n_classes)).any()):
        found = phases.unique().tolist()
        raise ValueError(f"phases must be in 0..{n_classes - 1} or -1 (no label), got {found}")
    labelled = mask & (phases >= 0)
    if not bool(labelled.any()):
        raise ValueError("no valid step has a phase label: nothing to learn from")
    target = phases[labelled].long()
    terms = {}
    for branch in BRANCHES:
        terms[branch] = F.cross_entropy(output.logits[branch].transpose(1, 2)[labelled], target)
    loss = torch.stack(list(terms.values())).sum()
    return loss, {f"phase_{branch}": float(term.detach()) for branch, term in terms.items()}


def _as_labels(values: Tensor | np.ndarray | Sequence, what: str) -> np.ndarray:
    """Any integer labels -> an int64 numpy array of the same shape."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be integer labels, got dtype {array.dtype}")
    return array.astype(np.int64)


def majority_phase(train_phases: Tensor | np.ndarray | Sequence[Tensor | np.ndarray]) -> int:
    """The most frequent phase over all labelled steps (-1 ignored); a tie goes to the lowest label.

    train_phases  one array of labels (any shape), or a sequence of per-cine arrays of any lengths
    """
    if isinstance(train_phases, (Tensor, np.ndarray)):
        labels = _as_labels(train_phases, "train_phases").ravel()
    else:
        parts = [_as_labels(p, "train_phases").ravel() for p in train_phases]
        labels = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if (labels < -1).any():
        raise ValueError(f"phases must be >= 0, or -1 for no label, got {sorted(set(labels.tolist()))}")
    labels = labels[labels >= 0]
    if labels.size == 0:
        raise ValueError("train_phases has no labelled step")
    return int(np.bincount(labels).argmax())


def balanced_accuracy(
    pred: Tensor | np.ndarray | Sequence[int],
    true: Tensor | np.ndarray | Sequence[int],
    n_classes: int = 5,
) -> float:
    """Mean per-class recall over the classes present in ``true`` (steps with true = -1 are ignored).

    pred, true  integer labels of one shape; pred in 0..n_classes-1, true in 0..n_classes-1 or -1
    """
    pred_labels, true_labels = _as_labels(pred, "pred"), _as_labels(true, "true")
    if pred_labels.shape != true_labels.shape:
        raise ValueError(f"pred and true differ in shape: {pred_labels.shape} and {true_labels.shape}")
    if ((pred_labels < 0) | (pred_labels >= n_classes)).any():
        raise ValueError(f"pred must be in 0..{n_classes - 1}")
    if ((true_labels < -1) | (true_labels >= n_classes)).any():
        raise ValueError(f"true must be in 0..{n_classes - 1}, or -1 for no label")
    keep = true_labels >= 0
    pred_labels, true_labels = pred_labels[keep], true_labels[keep]
    if true_labels.size == 0:
        raise ValueError("true has no labelled step")
    recalls = [np.mean(pred_labels[true_labels == c] == c) for c in np.unique(true_labels)]
    return float(np.mean(recalls))
