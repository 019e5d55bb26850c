"""Long-term attention: temporal (TA), spatial (SA) and spatiotemporal (STA) attention (Sec. III-C).

Every feature step is one 64 x 64 vessel map X_t (a 4096-vector, row-major). The module gates each
map with an attention map A_t in (0, 1) and keeps the input as a residual (eq. 6):

    out_t = X_t + X_t * A_t = X_t * (1 + A_t)

What A is depends on ``mode``; this is what the STA-IPCon reference code computes, which differs from the
printed eq. 6 in two places noted below:

    none   out = X                                      (no attention, ActionFormer's input)
    TA     A = sigmoid(TA(X))                           (eq. 6 prints X + sigmoid(TA(X)), no product)
    SA     A = SA(X)
    STA    A = SA(X + TA(X))                            (eq. 5; TA enters raw, without a sigmoid)

    TA(X)  the top hidden maps of a 3-layer ConvLSTM (8, 8, 1 channels, 3 x 3): ``ConvLSTM``
    SA(Y)  per map: Conv 3x3 (1->8), BN, ReLU, Conv 3x3 (8->16), BN, ReLU, Conv 1x1 (16->1), sigmoid

The gate always multiplies the raw input X, not X + TA(X). The residual map Y = X + TA(X) (Y = X
without TA) and A are returned as well, because the imagewise contrast (eq. 9) separates foreground
Y * A from background Y * (1 - A).

Padding. Videos are batched left-aligned and right-padded, with a validity mask. By default padded
steps stay out of everything: the ConvLSTM skips them, SA's BatchNorm computes its batch statistics
from valid maps only, and TA = A = 0 at padded steps, so valid outputs do not depend on padding.
``bn_over_padding=True`` reproduces the reference, where padded (zero) maps run through the ConvLSTM
and SA like real ones and enter BatchNorm's statistics.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcalab.config import LONG_TERM_MODES
from xcalab.models.convlstm import ConvLSTM, channels_last

Mode = Literal["none", "TA", "SA", "STA"]


class SpatialAttention(nn.Sequential):
    """SA: a small per-map CNN that scores every pixel in (0, 1) (Sec. III-C, the equation before eq. 5).

    Input (N, 1, H, W) maps -> (N, 1, H, W) attention. Two Conv-BN-ReLU blocks with 3 x 3 kernels
    (1 -> channels[0] -> channels[1]), then a 1 x 1 convolution to one channel and a sigmoid.
    Reference: channels = (8, 16); PyTorch's default initialisation. The weights are stored channels-last and
    ``LongTermAttention`` passes channels-last maps: the CPU's convolutions on these few-channel maps run
    about twice as fast so, in training too (the same numbers up to float rounding).
    """

    def __init__(self, channels: tuple[int, int] = (8, 16)):
        c1, c2 = channels
        super().__init__(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),  # BatchNorm needs its input for backward, not its output: no copy kept
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),  # BatchNorm needs its input for backward, not its output: no copy kept
            nn.Conv2d(c2, 1, 1),
            nn.Sigmoid(),
        )
        self.to(memory_format=torch.channels_last)

    #: Training on more maps than ``CHUNKED_ABOVE`` runs in chunks of ``CHUNK`` maps (``_ChunkedTraining``). On
    #: fewer the plain network is faster (the chunks recompute conv2 three times: 1.6x at 64 maps on one thread)
    #: and keeps little. The paper's crop (128 steps, batch 2: 256 maps) is chunked: 0.3 GB less at ~5 % more time.
    CHUNK = 16
    CHUNKED_ABOVE = 128

    def forward(self, frames: Tensor) -> Tensor:
        """(N, 1, H, W) maps -> (N, 1, H, W) attention in (0, 1).

        With gradients in training mode on more than ``CHUNKED_ABOVE`` maps, the same function runs chunk by chunk
        (``_ChunkedTraining``): BatchNorm's statistics are still those of all N maps, and only the input and
        the output are kept for backward instead of ~50 channels per map (1 GB of the 3 GB a training step
        holds at T = 512). Under autocast (CUDA's bf16) it runs as written.
        """
        conv1, bn1, _, conv2, bn2, _, conv3, _ = self
        if (
            self.training and torch.is_grad_enabled() and len(frames) > max(self.CHUNKED_ABOVE, self.CHUNK)
            and not torch.is_autocast_enabled(frames.device.type)
        ):
            params = (conv1.weight, conv1.bias, bn1.weight, bn1.bias, conv2.weight, conv2.bias, bn2.weight, bn2.bias,
                      conv3.weight, conv3.bias)
            return _ChunkedTraining.apply(self, frames, *params)
        if not self.training and bn1.track_running_stats and bn2.track_running_stats:
            # BatchNorm with its running statistics is an affine map per channel: folded into the convolution
            # before it (the same function up to float rounding; the CPU's channels-last BatchNorm took as
            # long as the convolution).
            hidden = torch.relu_(F.conv2d(frames, *_fold(conv1, bn1), padding=conv1.padding))
            hidden = torch.relu_(F.conv2d(hidden, *_fold(conv2, bn2), padding=conv2.padding))
            return torch.sigmoid_(conv3(hidden))
        return super().forward(frames)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(weight, bias) of conv followed by ``bn`` in eval mode: w gamma / sigma, (b - mean) gamma / sigma + beta,
    sigma = sqrt(running variance + eps)."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = (conv.weight * scale.view(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
    return weight, (bias - bn.running_mean) * scale + bn.bias


def _batch_statistics(sums: Tensor, squares: Tensor, count: int, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """BatchNorm's training-mode statistics from per-channel float64 sums of z and z^2 over ``count`` values:
    (mean, 1 / sqrt(biased variance + eps)), both float64; updates ``bn``'s running statistics as
    ``nn.BatchNorm2d`` does (momentum, or the cumulative average when momentum is None; unbiased variance)."""
    mean = sums / count
    variance = (squares / count - mean.square()).clamp_min(0.0)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            unbiased = variance * count / max(count - 1, 1)
            bn.running_mean.mul_(1 - momentum).add_(mean.to(bn.running_mean.dtype), alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(unbiased.to(bn.running_var.dtype), alpha=momentum)
    return mean, (variance + bn.eps).rsqrt()


class _ChunkedTraining(torch.autograd.Function):
    """SA in training mode, chunk by chunk, with BatchNorm's statistics over all the maps.

    forward(module, frames (N, 1, H, W), w1, b1, gamma1, beta1, w2, b2, gamma2, beta2, w3, b3) -> (N, 1, H, W)

    BatchNorm needs the statistics of all N maps before it can normalise any, so the forward pass runs
    three times over the chunks: conv1 for BN1's sums, up to conv2 for BN2's sums, then to the output. Only
    the frames and the output are kept. Backward likewise: BN's backward needs the sums of dL/dy and
    dL/dy * x_hat over all maps first, dz = gamma / sigma * (dy - mean(dy) - x_hat * mean(dy * x_hat)), so
    (recomputing the activations of each chunk) pass 1 sums BN2's terms, pass 2 goes back through conv2 and
    sums BN1's terms (keeping dL/dy1, 8 channels a map), pass 3 goes back through conv1. Weight gradients
    are summed over chunks in float64. The same function as the ``nn.Sequential`` (tested in float64).
    """

    @staticmethod
    def forward(ctx, module: SpatialAttention, frames: Tensor, *params: Tensor) -> Tensor:
        conv1, bn1, _, conv2, bn2, _, conv3, _ = module
        count = frames.shape[0] * frames.shape[2] * frames.shape[3]
        chunks = frames.split(module.CHUNK)

        def sums(maps: Tensor) -> tuple[Tensor, Tensor]:
            return maps.sum((0, 2, 3), dtype=torch.float64), maps.square().sum((0, 2, 3), dtype=torch.float64)

        totals = [sum(pair) for pair in zip(*(sums(conv1(chunk)) for chunk in chunks))]
        mean1, invstd1 = _batch_statistics(*totals, count, bn1)
        norm1 = _Normalise(mean1, invstd1, bn1)
        totals = [sum(pair) for pair in zip(*(sums(conv2(norm1.relu(conv1(chunk)))) for chunk in chunks))]
        mean2, invstd2 = _batch_statistics(*totals, count, bn2)
        norm2 = _Normalise(mean2, invstd2, bn2)
        out = torch.cat([torch.sigmoid(conv3(norm2.relu(conv2(norm1.relu(conv1(chunk)))))) for chunk in chunks])
        ctx.module, ctx.count, ctx.norms = module, count, (norm1, norm2)
        ctx.save_for_backward(frames, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        frames, out = ctx.saved_tensors
        module, count, (norm1, norm2) = ctx.module, ctx.count, ctx.norms
        conv1, _, _, conv2, _, _, conv3, _ = module
        step = module.CHUNK
        chunks = list(zip(frames.split(step), out.split(step), grad_out.split(step)))
        grads = {name: torch.zeros(p.shape, dtype=torch.float64, device=p.device)
                 for name, p in (("w1", conv1.weight), ("b1", conv1.bias), ("w2", conv2.weight), ("b2", conv2.bias),
                                 ("w3", conv3.weight), ("b3", conv3.bias))}

        def back_to_y2(chunk: Tensor, a: Tensor, da: Tensor, weights: bool):
            """Recompute a chunk up to BN2 and go back from the output to dL/dy2 (BN2's output side)."""
            z1 = conv1(chunk)
            r1 = norm1.relu(z1)
            z2 = conv2(r1)
            r2 = norm2.relu(z2)
            dz3 = da * a * (1 - a)  # sigmoid'
            dr2, dw3, db3 = _conv_backward(conv3, dz3, r2, (True, weights, weights))
            if weights:
                grads["w3"] += dw3
                grads["b3"] += db3
            return z1, r1, z2, dr2 * (r2 > 0)

        # Pass 1: BN2's sums of dy and dy * x_hat
        dy_sum2 = dyx_sum2 = 0.0
        for chunk, a, da in chunks:
            _, _, z2, dy2 = back_to_y2(chunk, a, da, weights=True)
            dy_sum, dyx_sum = norm2.sums(dy2, z2)
            dy_sum2, dyx_sum2 = dy_sum2 + dy_sum, dyx_sum2 + dyx_sum
        # Pass 2: through BN2 and conv2; BN1's sums
        dy1s, dy_sum1, dyx_sum1 = [], 0.0, 0.0
        for chunk, a, da in chunks:
            z1, r1, z2, dy2 = back_to_y2(chunk, a, da, weights=False)
            dz2 = norm2.backward(dy2, z2, dy_sum2, dyx_sum2, count)
            dr1, dw2, db2 = _conv_backward(conv2, dz2, r1, (True, True, True))
            grads["w2"] += dw2
            grads["b2"] += db2
            dy1 = dr1 * (r1 > 0)
            dy_sum, dyx_sum = norm1.sums(dy1, z1)
            dy_sum1, dyx_sum1 = dy_sum1 + dy_sum, dyx_sum1 + dyx_sum
            dy1s.append(dy1)
        # Pass 3: through BN1 and conv1
        grad_frames = []
        for (chunk, _, _), dy1 in zip(chunks, dy1s):
            dz1 = norm1.backward(dy1, conv1(chunk), dy_sum1, dyx_sum1, count)
            dx, dw1, db1 = _conv_backward(conv1, dz1, chunk, (ctx.needs_input_grad[1], True, True))
            grads["w1"] += dw1
            grads["b1"] += db1
            grad_frames.append(dx)
        grad_x = torch.cat(grad_frames) if ctx.needs_input_grad[1] else None
        # dL/dgamma = sum(dy * x_hat), dL/dbeta = sum(dy)
        grads.update(gamma1=dyx_sum1, beta1=dy_sum1, gamma2=dyx_sum2, beta2=dy_sum2)
        order = ("w1", "b1", "gamma1", "beta1", "w2", "b2", "gamma2", "beta2", "w3", "b3")
        return None, grad_x, *(grads[name].to(frames.dtype) for name in order)


class _Normalise:
    """One BatchNorm in training mode with its batch statistics fixed: y = gamma (z - mean) * invstd + beta."""

    def __init__(self, mean: Tensor, invstd: Tensor, bn: nn.BatchNorm2d):
        self.mean = mean.to(bn.weight.dtype).view(1, -1, 1, 1)
        self.invstd = invstd.to(bn.weight.dtype).view(1, -1, 1, 1)
        self.gamma = bn.weight.detach().view(1, -1, 1, 1)
        self.beta = bn.bias.detach().view(1, -1, 1, 1)

    def x_hat(self, z: Tensor) -> Tensor:
        return (z - self.mean) * self.invstd

    def relu(self, z: Tensor) -> Tensor:
        """ReLU(BN(z))."""
        return torch.relu_(self.x_hat(z).mul_(self.gamma).add_(self.beta))

    def sums(self, dy: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """Per channel, in float64: (sum of dL/dy, sum of dL/dy * x_hat)."""
        return dy.sum((0, 2, 3), dtype=torch.float64), (dy * self.x_hat(z)).sum((0, 2, 3), dtype=torch.float64)

    def backward(self, dy: Tensor, z: Tensor, dy_sum: Tensor, dyx_sum: Tensor, count: int) -> Tensor:
        """dL/dz = gamma invstd (dy - sum(dy) / M - x_hat sum(dy x_hat) / M), the sums over all M values."""
        dtype = dy.dtype
        mean_dy = (dy_sum / count).to(dtype).view(1, -1, 1, 1)
        mean_dyx = (dyx_sum / count).to(dtype).view(1, -1, 1, 1)
        return (dy - mean_dy - self.x_hat(z) * mean_dyx) * (self.gamma * self.invstd)


def _conv_backward(conv: nn.Conv2d, grad: Tensor, inputs: Tensor, mask: tuple[bool, bool, bool]):
    """(dL/d input, dL/d weight as float64, dL/d bias as float64) of ``conv`` at ``inputs``; None where ``mask`` is False."""
    dx, dw, db = torch.ops.aten.convolution_backward(
        grad, inputs, conv.weight, [conv.out_channels], conv.stride, conv.padding, conv.dilation, False, [0, 0],
        conv.groups, list(mask),
    )
    return dx, None if dw is None else dw.double(), None if db is None else db.double()


class LongTermOutput(NamedTuple):
    """What ``LongTermAttention`` returns; every tensor is (B, map_size**2, T), like its input.

    features   X * (1 + A): the gated features passed on (X itself in mode "none")
    attention  A in (0, 1), 0 at padded steps unless ``bn_over_padding``; None in mode "none"
    temporal   TA(X), the raw top ConvLSTM hidden maps in (-1, 1); None without TA
    residual   Y = X + TA(X) (Y = X without TA): the maps the imagewise contrast splits, eq. 9
    gates      with ``return_gates``: the top ConvLSTM layer's "input", "forget" and "output" gates in
               (0, 1); None otherwise or without TA
    """

    features: Tensor
    attention: Tensor | None
    temporal: Tensor | None
    residual: Tensor
    gates: dict[str, Tensor] | None = None


class LongTermAttention(nn.Module):
    """Long-term spatiotemporal attention, eqs. 5-6: out = X * (1 + A), A from TA, SA or both.

    mode              "none", "TA", "SA" or "STA" (the paper's model; see the module docstring)
    map_size          each step is a map_size x map_size map, flattened row-major (64 -> 4096)
    hidden_channels   ConvLSTM hidden channels per layer; the last must be 1 (reference (8, 8, 1))
    kernel_size       ConvLSTM kernel (reference 3)
    sa_channels       SA's two hidden widths (reference (8, 16))
    bn_over_padding   False (default): SA's BatchNorm statistics ignore padded steps. True: padded
                      steps run through the ConvLSTM and SA and enter the statistics, as in the reference.
    checkpoint_steps  the ConvLSTM's activation checkpointing in training (``ConvLSTM``): a sequence longer
                      than this is recomputed in backward, chunk by chunk; 0: off

    Only the parts a mode uses are built, so every parameter receives a gradient.
    """

    def __init__(
        self,
        mode: Mode = "STA",
        map_size: int = 64,
        hidden_channels: tuple[int, ...] = (8, 8, 1),
        kernel_size: int = 3,
        sa_channels: tuple[int, int] = (8, 16),
        bn_over_padding: bool = False,
        checkpoint_steps: int = 0,
    ):
        super().__init__()
        if mode not in LONG_TERM_MODES:
            raise ValueError(f"mode must be one of {', '.join(LONG_TERM_MODES)}, got {mode!r}")
        if hidden_channels[-1] != 1:
            raise ValueError(
                f"the last ConvLSTM layer must have 1 channel (one map per step), got {hidden_channels}"
            )
        self.mode = mode
        self.map_size = map_size
        self.bn_over_padding = bn_over_padding
        self.temporal = (
            ConvLSTM(1, hidden_channels, kernel_size, checkpoint_steps=checkpoint_steps) if mode in ("TA", "STA") else None
        )
        self.spatial = SpatialAttention(sa_channels) if mode in ("SA", "STA") else None

    def forward(self, x: Tensor, mask: Tensor | None = None, return_gates: bool = False) -> LongTermOutput:
        """x (B, map_size**2, T) features, mask (B, T) bool (True = valid) or None -> ``LongTermOutput``."""
        batch, dim, steps = x.shape
        if dim != self.map_size**2:
            raise ValueError(f"expected {self.map_size**2} = {self.map_size}^2 features per step, got {dim}")
        if mask is None:
            mask = torch.ones(batch, steps, dtype=torch.bool, device=x.device)
        if self.mode == "none":
            return LongTermOutput(x, None, None, x)

        maps = self._to_maps(x)  # (B, T, 1, S, S)
        # The reference runs padded steps like real ones; by default they are skipped.
        step_mask = None if self.bn_over_padding else mask

        gates: dict[str, Tensor] | None = {} if return_gates and self.temporal is not None else None
        ta = self.temporal(maps, step_mask, gates) if self.temporal is not None else None
        if self.mode == "TA":
            attention = torch.sigmoid(ta)
            if step_mask is not None:
                attention = attention * step_mask.view(batch, steps, 1, 1, 1)
        else:  # SA or STA: score X (SA) or Y = X + TA(X) (STA) per map
            attention = self._spatial(maps if ta is None else maps + ta, step_mask)

        attention = self._to_features(attention)
        temporal = None if ta is None else self._to_features(ta)
        residual = x if temporal is None else x + temporal
        # Eq. 6 as a residual gate on the raw input: X + X * A.
        if gates is not None:
            gates = {name: self._to_features(g) for name, g in gates.items()}
        return LongTermOutput(x * (1 + attention), attention, temporal, residual, gates)

    def _spatial(self, maps: Tensor, step_mask: Tensor | None) -> Tensor:
        """SA on (B, T, 1, S, S) maps; with a mask only valid maps are scored (and set BN's statistics)."""
        frames = maps.flatten(0, 1)  # (B*T, 1, S, S): SA is per map
        if step_mask is None or bool(step_mask.all()):
            return self._score(frames).view_as(maps)
        valid = step_mask.flatten().nonzero().squeeze(1)
        scored = self._score(frames.index_select(0, valid))
        return torch.zeros_like(frames).index_put((valid,), scored).view_as(maps)

    #: Maps per SA pass in eval mode.
    SA_BLOCK = 16

    def _score(self, frames: Tensor) -> Tensor:
        """SA on (N, 1, S, S) maps. In training all at once: BatchNorm's statistics are those of the batch. In
        eval mode BatchNorm uses its running statistics, so each map is scored alone: the maps go in blocks
        of ``SA_BLOCK``, whose 16-channel activations stay in the CPU's cache (all 512 maps of a cine at once
        take ~8x longer, most of it writing fresh memory), with the same numbers."""
        frames = channels_last(frames)
        if self.training or len(frames) <= self.SA_BLOCK:
            return self.spatial(frames)
        return torch.cat([self.spatial(part) for part in frames.split(self.SA_BLOCK)])

    def _to_maps(self, x: Tensor) -> Tensor:
        """(B, S*S, T) -> (B, T, 1, S, S), feature c at pixel (c // S, c % S)."""
        batch, _, steps = x.shape
        return x.transpose(1, 2).reshape(batch, steps, 1, self.map_size, self.map_size)

    def _to_features(self, maps: Tensor) -> Tensor:
        """(B, T, 1, S, S) -> (B, S*S, T), the inverse of ``_to_maps``."""
        return maps.flatten(2).transpose(1, 2)
