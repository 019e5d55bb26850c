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
        if step_mask is None:
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
