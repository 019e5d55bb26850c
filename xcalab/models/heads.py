"""Classification and boundary-regression heads, shared by every pyramid level (Sec. III-G; ActionFormer).

Each head is a small 1-D CNN over time applied to every level with the same weights:

    (n_layers - 1) x [MaskedConv1d k3 (no bias), LayerNorm, ReLU], then MaskedConv1d k3 -> outputs

    classification   2 logits per point (filling, disappearing), read through independent sigmoids;
                     the last bias starts at -log((1 - p) / p), p = 0.01, so every class starts at
                     probability 0.01 (focal-loss practice: early training is not swamped by negatives)
    regression       2 distances per point (to the start and to the end), in units of the level's
                     stride: ReLU(s_l * conv(x)), with one learned scalar s_l per level (init 1)

Outputs are zero at padded points. ``mask_padding`` is as in ``xcalab.models.short_term``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcalab.models.short_term import ChannelLayerNorm, MaskedConv1d


class Scale(nn.Module):
    """x -> s * x with one learned scalar s (init 1): lets each level pick its own regression range."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        """x (any shape) -> same shape."""
        return self.scale * x


class _HeadTrunk(nn.Module):
    """(n_layers - 1) x [MaskedConv1d k, LN, ReLU] then a MaskedConv1d k to ``out_channels``."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        n_layers: int,
        kernel_size: int,
        with_ln: bool,
        mask_padding: bool,
    ):
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv1d(channels, channels, kernel_size, bias=not with_ln, mask_padding=mask_padding)
            for _ in range(n_layers - 1)
        )
        self.norms = nn.ModuleList(
            ChannelLayerNorm(channels) if with_ln else nn.Identity() for _ in self.convs
        )
        self.out = MaskedConv1d(channels, out_channels, kernel_size, mask_padding=mask_padding)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, C, T), mask (B, T) bool -> (B, out_channels, T), zero at padded steps."""
        for conv, norm in zip(self.convs, self.norms):
            x, _ = conv(x, mask)
            x = F.relu(norm(x))
        return self.out(x, mask)[0]


class ClassificationHead(nn.Module):
    """Per-point class logits on every level, one shared head.

    channels       input width C (reference 512); the hidden layers keep it
    n_classes      classes (2: filling, disappearing)
    n_layers       convolutions in total (reference 3)
    kernel_size    temporal kernel (reference 3)
    prior_prob     initial probability of every class (reference 0.01: bias -log(99) = -4.595)
    with_ln        LayerNorm after the hidden convolutions, which then have no bias (reference True)
    mask_padding   zero padded steps before every convolution
    """

    def __init__(
        self,
        channels: int = 512,
        n_classes: int = 2,
        n_layers: int = 3,
        kernel_size: int = 3,
        prior_prob: float = 0.01,
        with_ln: bool = True,
        mask_padding: bool = True,
    ):
        super().__init__()
        self.trunk = _HeadTrunk(channels, n_classes, n_layers, kernel_size, with_ln, mask_padding)
        nn.init.constant_(self.trunk.out.conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """Per level: features (B, C, T_l), masks (B, T_l) bool -> logits (B, n_classes, T_l)."""
        return [self.trunk(x, m) for x, m in zip(features, masks)]


class RegressionHead(nn.Module):
    """Per-point distances to the segment's start and end on every level, one shared head.

    channels       input width C (reference 512)
    n_levels       pyramid levels, one learned ``Scale`` each (reference 6)
    n_layers, kernel_size, with_ln, mask_padding   as ``ClassificationHead``

    Outputs (B, 2, T_l) = ReLU(Scale_l(conv(x))) >= 0, in units of level l's stride.
    """

    def __init__(
        self,
        channels: int = 512,
        n_levels: int = 6,
        n_layers: int = 3,
        kernel_size: int = 3,
        with_ln: bool = True,
        mask_padding: bool = True,
    ):
        super().__init__()
        self.trunk = _HeadTrunk(channels, 2, n_layers, kernel_size, with_ln, mask_padding)
        self.scales = nn.ModuleList(Scale() for _ in range(n_levels))

    def forward(self, features: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """Per level: features (B, C, T_l), masks (B, T_l) bool -> offsets (B, 2, T_l) >= 0."""
        if len(features) != len(self.scales):
            raise ValueError(f"expected {len(self.scales)} levels, got {len(features)}")
        return [F.relu(scale(self.trunk(x, m))) for scale, x, m in zip(self.scales, features, masks)]
