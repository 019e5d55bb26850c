"""Image-to-patch contrastive learning: imagewise contrast (ICon, III-E), patchwise projection (PCon, III-F).

Imagewise contrast. The long-term attention map A splits the residual maps Y = X + TA(X) into a
foreground (vessels) and a background (eq. 9):

    foreground_t = Y_t * A_t            background_t = Y_t * (1 - A_t)

At one step per ground-truth segment, taken from the half of the segment next to the apex (where the
vessels are sure to be filled), both maps go through one shared projection g (Linear 4096 -> 1024 ->
256, no non-linearity) and a soft-nearest-neighbour loss (eq. 10) pulls the foreground vectors
together and pushes them away from the background vectors. In the reference this loss is added only in
epochs 0, 2, 4, 6 and 8 of 50 (every even epoch if the patchwise projection is off), with weight 1; that
schedule belongs to training (``TrainConfig.contrast_epochs``).

Patchwise projection. A 5 x 5 patch of the gated features at step 0 (before the contrast agent
arrives, so it holds background only) is used as a correlation kernel over every step's map; a ReLU
follows. Vessel-rich patches answer strongly, background weakly. There is no loss and nothing to learn:
the projection is a fixed-form filter, and it replaces the features (as in the reference code;
the paper's "projection into different latent spaces" is only implicit in this filtering).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------------
# Imagewise contrast (ICon)
# --------------------------------------------------------------------------------------------------


def foreground_background(residual: Tensor, attention: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 9: (Y * A, Y * (1 - A)) for residual maps Y = X + TA(X) and attention A, any equal shapes."""
    return residual * attention, residual * (1 - attention)


def soft_nearest_neighbour_loss(foreground: Tensor, background: Tensor, temperature: float = 1.0) -> Tensor:
    """Soft-nearest-neighbour contrastive loss with foreground anchors, eq. 10 as the reference computes it.

    foreground (N, E) and background (M, E) embeddings -> scalar loss. With s(a, b) = cos(a, b) / tau:

        L = (1/N) sum_i -log( P_i / (P_i + Q_i) ),
        P_i = sum_{j != i} exp(s(u_i, u_j))      every other foreground sample is a positive
        Q_i = sum_k exp(s(u_i, d_k))             every background sample is a negative

    Background samples are never anchors. The reference's temperature is tau = 1. With fewer than two
    foreground samples there is no positive pair (the reference would return +inf); the loss is then 0,
    still attached to the graph.
    """
    n = foreground.shape[0]
    if n < 2:
        return foreground.sum() * 0.0
    u = F.normalize(foreground, dim=1)
    d = F.normalize(background, dim=1)
    positive = (u @ u.T) / temperature  # (N, N)
    negative = (u @ d.T) / temperature  # (N, M)
    # Drop each anchor's similarity to itself from the positives.
    self_pair = torch.eye(n, dtype=torch.bool, device=u.device)
    positive = positive.masked_fill(self_pair, float("-inf"))
    log_p = torch.logsumexp(positive, dim=1)
    log_p_plus_q = torch.logsumexp(torch.cat([positive, negative], dim=1), dim=1)
    return (log_p_plus_q - log_p).mean()


def sample_near_apex(
    segments: Tensor, labels: Tensor, length: int, generator: torch.Generator | None = None
) -> Tensor:
    """One random step per segment, from the half of the segment next to the apex (as the reference draws it).

    segments   (N, 2) [start, end] in feature-grid steps (relative to the crop in training)
    labels     (N,) class ids: 0 = filling [start, apex], anything else = disappearing [apex, end]
    length     valid steps of the video; draws are clamped into [0, length - 1]
    generator  random source (None: PyTorch's global one)

    -> (N,) long step indices. As in the reference, filling draws uniformly from the integers
    [floor((s + e) / 2), int(e)] and disappearing from [int(s), floor((s + e) / 2)], both ends included
    (int truncates toward zero). The clamp is new: a cropped segment may end up to half a step past the
    last valid step, where the reference would pick a padded step.
    """
    start, end = segments.detach().double().cpu().unbind(dim=1)
    middle = torch.floor((start + end) / 2)
    filling = labels.cpu() == 0
    low = torch.where(filling, middle, torch.trunc(start)).long().clamp(0, length - 1)
    high = torch.where(filling, torch.trunc(end), middle).long().clamp(0, length - 1)
    high = torch.maximum(high, low)
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(len(low), generator=generator, device=device, dtype=torch.float64).cpu()
    offset = torch.minimum((u * (high - low + 1)).long(), high - low)
    return (low + offset).to(segments.device)


class ContrastOutput(NamedTuple):
    """What ``ImagewiseContrast`` returns; N = number of ground-truth segments in the batch.

    loss         scalar soft-nearest-neighbour loss, eq. 10
    foreground   (N, E) projected foreground vectors u_j (the anchors and positives)
    background   (N, E) projected background vectors d_j (the negatives)
    video        (N,) batch index of each segment
    fg_step      (N,) step of each foreground sample
    bg_step      (N,) step of each background sample (an independent draw)
    """

    loss: Tensor
    foreground: Tensor
    background: Tensor
    video: Tensor
    fg_step: Tensor
    bg_step: Tensor


class ImagewiseContrast(nn.Module):
    """ICon (Sec. III-E): sample foreground/background maps near the apex, project them, contrast them.

    in_features       features per step (64 * 64 = 4096)
    hidden_features   width of the projection's first linear layer (reference 1024)
    out_features      embedding size E (reference 256)
    temperature       tau of eq. 10 (reference 1)

    The projection g is Linear(in -> hidden) then Linear(hidden -> out), with no non-linearity between
    them and biases starting at 0; foreground and background share it. Only the sampled steps are
    projected (the reference projects every step and then picks).
    """

    def __init__(
        self,
        in_features: int = 4096,
        hidden_features: int = 1024,
        out_features: int = 256,
        temperature: float = 1.0,
    ):
        super().__init__()
        self.temperature = temperature
        self.projection = nn.Sequential(
            nn.Linear(in_features, hidden_features), nn.Linear(hidden_features, out_features)
        )
        for layer in self.projection:
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        residual: Tensor,
        attention: Tensor,
        mask: Tensor,
        segments: list[Tensor],
        labels: list[Tensor],
        generator: torch.Generator | None = None,
    ) -> ContrastOutput:
        """Sample, project and contrast.

        residual    (B, D, T) Y = X + TA(X), from ``LongTermAttention``
        attention   (B, D, T) A, from ``LongTermAttention``
        mask        (B, T) bool, True at valid steps
        segments    B tensors (N_b, 2): ground-truth [start, end] in steps, relative to the crop
        labels      B tensors (N_b,): their class ids (0 filling, 1 disappearing)
        generator   random source of the draws (None: the global one)

        -> ``ContrastOutput``. Foreground and background steps are independent draws from the same
        near-apex half of each segment (``sample_near_apex``), as in the reference; any batch size works.
        """
        lengths = mask.sum(dim=1).tolist()
        video, fg_step, bg_step = [], [], []
        for b, (seg, lab) in enumerate(zip(segments, labels)):
            fg_step.append(sample_near_apex(seg, lab, int(lengths[b]), generator))
            bg_step.append(sample_near_apex(seg, lab, int(lengths[b]), generator))
            video.append(torch.full((len(seg),), b, dtype=torch.long))
        device = residual.device
        video = torch.cat(video).to(device)
        fg_step, bg_step = torch.cat(fg_step).to(device), torch.cat(bg_step).to(device)

        fg_maps, _ = foreground_background(residual[video, :, fg_step], attention[video, :, fg_step])
        _, bg_maps = foreground_background(residual[video, :, bg_step], attention[video, :, bg_step])
        foreground, background = self.projection(fg_maps), self.projection(bg_maps)
        loss = soft_nearest_neighbour_loss(foreground, background, self.temperature)
        return ContrastOutput(loss, foreground, background, video, fg_step, bg_step)


# --------------------------------------------------------------------------------------------------
# Patchwise projection (PCon)
# --------------------------------------------------------------------------------------------------


def patchwise_projection(
    x: Tensor, centre: Tensor, bias: float | Tensor = 0.0, patch_size: int = 5, map_size: int = 64
) -> Tensor:
    """Correlate every step's map with a patch of the video's own step-0 map, then ReLU (Sec. III-F).

    x           (B, map_size**2, T) features (row-major maps)
    centre      (B, 2) long (row, col) of each video's patch centre, or (2,) for all videos
    bias        a scalar added before the ReLU (reference: a fresh, unlearned draw from U(-0.2, 0.2))
    patch_size  odd patch side (reference 5)

    -> (B, map_size**2, T): out_b,t = ReLU(X_b,t (*) P_b + bias), with (*) 2-D cross-correlation,
    stride 1, zero "same" padding, and P_b = X_b,0[r - k : r + k + 1, c - k : c + k + 1], k = patch_size // 2,
    raw (not normalised, not flipped). Nothing is written in place: the gradient flows into x both
    through the maps and through the kernel, which is itself cut from x.
    """
    batch, dim, steps = x.shape
    if dim != map_size**2:
        raise ValueError(f"expected {map_size**2} = {map_size}^2 features per step, got {dim}")
    half = patch_size // 2
    centre = centre.to(x.device).long().expand(batch, 2)
    if (centre < half).any() or (centre > map_size - 1 - half).any():
        raise ValueError(f"patch centres must lie in [{half}, {map_size - 1 - half}], got {centre.tolist()}")

    maps = x.reshape(batch, map_size, map_size, steps)
    # Each video's kernel: its own step-0 patch, gathered by (row, col) index -> (B, p, p).
    offsets = torch.arange(-half, half + 1, device=x.device)
    rows = (centre[:, 0, None] + offsets)[:, :, None]
    cols = (centre[:, 1, None] + offsets)[:, None, :]
    kernels = maps[torch.arange(batch, device=x.device)[:, None, None], rows, cols, 0]
    # Per video, its steps become the channels of one depthwise convolution, every channel with the video's
    # kernel: (1, T, S, S) with channels-last strides is the memory x already has (nothing is copied, and the
    # CPU's convolution vectorises over the T channels: ~8x faster than one map at a time). The response
    # comes back in x's layout too.
    frames = maps.permute(0, 3, 1, 2)
    responses = [
        F.conv2d(frames[b : b + 1], kernels[b].expand(steps, 1, patch_size, patch_size), padding=half, groups=steps)
        for b in range(batch)
    ]
    response = responses[0] if batch == 1 else torch.cat(responses)
    return F.relu(response + bias).permute(0, 2, 3, 1).reshape(batch, dim, steps)


class PatchwiseOutput(NamedTuple):
    """What ``PatchwiseProjection`` returns.

    features   (B, D, T) the projected features (they replace the input)
    centre     (B, 2) the patch centres used (row, col)
    bias       () the bias used
    """

    features: Tensor
    centre: Tensor
    bias: Tensor


class PatchwiseProjection(nn.Module):
    """PCon (Sec. III-F) as a module: draws the patch (and optionally the bias) and applies it.

    patch_size    odd patch side (reference 5)
    map_size      side of each step's map (reference 64)
    random_bias   False (default): bias 0. True: the reference's unlearned bias, a fresh draw from
                  U(-1/p, 1/p) = U(-0.2, 0.2) on every call, shared by the batch
    centre        a fixed (row, col) patch centre for every video and call (e.g. to rerun Table VII's
                  "other patch" rows), or None: draw one per video and call from U{k, ..., S - k - 2}^2,
                  k = patch_size // 2, which is the reference's U{2, ..., 60}^2 (row and column 63 never)

    It has no parameters and works the same in training and evaluation, like the reference. Pass a
    seeded ``torch.Generator`` (or a ``centre``) to forward to make the draws reproducible.
    """

    def __init__(
        self,
        patch_size: int = 5,
        map_size: int = 64,
        random_bias: bool = False,
        centre: tuple[int, int] | None = None,
    ):
        super().__init__()
        if patch_size % 2 != 1:
            raise ValueError(f"patch_size must be odd, got {patch_size}")
        self.patch_size = patch_size
        self.map_size = map_size
        self.random_bias = random_bias
        self.centre = centre

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, centre: Tensor | None = None
    ) -> PatchwiseOutput:
        """x (B, map_size**2, T) -> ``PatchwiseOutput``. ``centre`` (B, 2) or (2,) overrides the draw."""
        batch = x.shape[0]
        half = self.patch_size // 2
        device = generator.device if generator is not None else torch.device("cpu")
        if centre is None and self.centre is not None:
            centre = torch.tensor(self.centre)
        if centre is None:
            # Same range as the reference's randint(2, 61) for 5 x 5 patches on 64 x 64 maps.
            high = self.map_size - half - 1
            centre = torch.randint(half, high, (batch, 2), generator=generator, device=device)
        centre = centre.to(x.device).long().expand(batch, 2)
        bias = torch.zeros((), dtype=x.dtype)
        if self.random_bias:
            bound = 1.0 / self.patch_size  # PyTorch's default conv-bias bound 1/sqrt(fan_in), fan_in = p * p
            bias = (2 * torch.rand((), generator=generator, device=device, dtype=x.dtype) - 1) * bound
        bias = bias.to(x.device)
        features = patchwise_projection(x, centre, bias, self.patch_size, self.map_size)
        return PatchwiseOutput(features, centre, bias)
