"""SVS-Net: sequential vessel segmentation from four consecutive frames (Hao et al., Neural Networks 2020).

Source: the authors' released Keras code (GitHub ``Binjie-Qin/SVS-net``, ``get_unet3D_new_4_fram_2_new``), read
layer by layer.

A single frame cannot tell an opacified artery from a rib edge or the catheter; four frames can, because
only the artery fills and empties. SVS-Net reads a window of 4 consecutive frames (t-2, t-1, t, t+1) and
predicts the contrast-filled vessels of frame t, the window's third frame -- its centre on xcalab's feature
grid (step k covers frames [s*k, s*k + 4) and sits at frame s*k + 2). The network is a U-Net whose encoder
is 3-D and whose decoder is 2-D:

    stem       1x1x1 conv, 1 -> C_1 channels                                    (B, C_1, 4, H, W)
    level k    Res3D(C_k) -> skip_k = TemporalCollapse(C_k): a (4,1,1) conv, 4 frames -> 1   (B, C_k, H_k, W_k)
               -> Down: 2x2x2 conv, stride (1,2,2), C_k -> 2 C_k                   (B, 2C_k, 4, H_k/2, W_k/2)
               the deepest skip is first reweighted by ChannelAttention3D (global max pool)
    bottleneck TemporalCollapse(2 C_L)                                             (B, 2C_L, H_L/2, W_L/2)
    level j    Up: nearest x2, 2x2 conv -> C_j;  CAB(skip_j, up) = skip_j * w + up;  Res2D(C_j)
    head       1x1 conv -> one logit per pixel; sigmoid -> vessel probability   (B, H, W)

The time depth stays 4 through the whole encoder (only H and W halve), so every skip still holds all four
frames when its (4,1,1) convolution collapses them. C_k = base * 2**(k-1). The paper's model has 6 levels
and base 8 (~10.2 M parameters at 512 x 512); xcalab's CPU default has 4 levels and base 8 (~0.6 M).

Two choices differ from the released code, both for training on a CPU in minutes:
- convolutions followed by batch norm carry no bias (a bias before BN receives no gradient);
- the input window is standardised (zero mean, unit variance per window) inside ``forward``, so the model
  does not depend on a cine's brightness or window/level (the paper divides by the maximum).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Frames per input window (SVS-Net reads 4).
WINDOW = 4
#: Which frame of the window the network segments: the third, t for (t-2, t-1, t, t+1).
TARGET_INDEX = 2
#: Initial bias of the output logit: log(0.03 / 0.97), the share of vessel pixels in a typical frame.
PRIOR_LOGIT = -3.5


@dataclass(frozen=True)
class SVSNetConfig:
    """Size of an SVS-Net.

    levels      encoder (and decoder) levels; each halves H and W (paper: 6)
    base        channels of the first level; level k has base * 2**(k-1) (paper: 8)
    dropout     channel dropout before the downsampling of the two deepest levels (paper: 0.5)
    standardise standardise each input window to zero mean and unit variance (paper: divide by the max)
    """

    levels: int = 4
    base: int = 8
    dropout: float = 0.1
    standardise: bool = True

    def __post_init__(self) -> None:
        if self.levels < 1 or self.base < 1:
            raise ValueError(f"levels and base must be >= 1, got levels={self.levels}, base={self.base}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels per level, shallow to deep: (C_1, ..., C_L)."""
        return tuple(self.base * 2**k for k in range(self.levels))

    @property
    def multiple(self) -> int:
        """H and W are padded to a multiple of this (each level halves them)."""
        return 2**self.levels

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Named sizes: "small" is the CPU default (~0.64 M parameters), "paper" the released model (~10.19 M).
SIZES: dict[str, SVSNetConfig] = {
    "tiny": SVSNetConfig(levels=4, base=4),
    "small": SVSNetConfig(levels=4, base=8),
    "paper": SVSNetConfig(levels=6, base=8, dropout=0.5, standardise=False),
}


# --------------------------------------------------------------------------------------------------
# Encoder: 3-D residual blocks over the 4-frame window
# --------------------------------------------------------------------------------------------------


class Res3D(nn.Module):
    """x -> ReLU(x + BN(Conv3(ReLU(BN(Conv3(x)))))), 3x3x3 kernels. (B, C, T, H, W) -> same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class TemporalCollapse(nn.Module):
    """The "3-D -> 2-D fusion" of every skip: one (T,1,1) 'valid' convolution. (B, C, T, H, W) -> (B, C, H, W).

    Each output pixel is a learned mix of that pixel's C x T values, so the decoder sees all four frames
    through it (and nothing else of the time axis).
    """

    def __init__(self, channels: int, frames: int = WINDOW):
        super().__init__()
        self.frames = frames
        self.conv = nn.Conv3d(channels, channels, (frames, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] != self.frames:
            raise ValueError(f"expected {self.frames} frames along dim 2, got shape {tuple(x.shape)}")
        return self.conv(x).squeeze(2)


class ChannelAttention3D(nn.Module):
    """Encoder channel attention (deepest skip only): x * sigmoid(MLP(global max pool(x))).

    The MLP is two 1x1x1 convolutions C -> C -> C with a ReLU between (no reduction, as released).
    (B, C, T, H, W) -> same shape.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Conv3d(channels, channels, 1)
        self.fc2 = nn.Conv3d(channels, channels, 1)

    def weights(self, x: Tensor) -> Tensor:
        """Per-channel weights in (0, 1), (B, C, 1, 1, 1)."""
        pooled = torch.amax(x, dim=(2, 3, 4), keepdim=True)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class Down(nn.Module):
    """[channel dropout] -> 2x2x2 conv, stride (1,2,2), 'same' in time -> BN -> ReLU.

    (B, C, T, H, W) -> (B, 2C, T, H/2, W/2). The time axis is padded by one frame at the end (Keras'
    'same' for an even kernel), so T stays 4.
    """

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv3d(channels, 2 * channels, 2, stride=(1, 2, 2), bias=False)
        self.bn = nn.BatchNorm3d(2 * channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(self.dropout(x), (0, 0, 0, 0, 0, 1))  # (W, H, T) pads: one frame after the last
        return F.relu(self.bn(self.conv(x)))


# --------------------------------------------------------------------------------------------------
# Decoder: upsampling, channel-attention blocks and 2-D residual blocks
# --------------------------------------------------------------------------------------------------


class Up(nn.Module):
    """Nearest x2 upsampling -> 2x2 conv ('same') -> BN -> ReLU. (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.bn(self.conv(F.pad(x, (0, 1, 0, 1)))))


class ChannelAttentionBlock(nn.Module):
    """CAB: the decoder decides, per channel, how much of the skip to let through.

    w = sigmoid(Conv1x1(ReLU(Conv1x1(global average pool([low, high])))))   2C -> C -> C
    out = low * w + high
    low (the skip) and high (the upsampled deeper level) are (B, C, H, W); so is the output.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(2 * channels, channels, 1)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def weights(self, low: Tensor, high: Tensor) -> Tensor:
        """Per-channel weights of the skip, (B, C, 1, 1)."""
        pooled = torch.cat([low, high], dim=1).mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return low * self.weights(low, high) + high


class Res2D(nn.Module):
    """x -> ReLU(x + BN(Conv3(ReLU(BN(Conv3(x)))))), 3x3 kernels. (B, C, H, W) -> same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------


class SVSNet(nn.Module):
    """Four frames in, the vessel map of the third out.

    forward(x): x (B, 4, H, W) frames in [0, 1] (any H, W: padded to a multiple of 2**levels inside)
                -> logits (B, H, W); ``torch.sigmoid`` of them is the vessel probability of frame 2.
    """

    def __init__(self, config: SVSNetConfig | None = None):
        super().__init__()
        self.config = config = config or SVSNetConfig()
        chans = config.channels
        deep = config.levels - 1  # index of the deepest level
        self.stem = nn.Conv3d(1, chans[0], 1)
        self.encoders = nn.ModuleList(Res3D(c) for c in chans)
        self.skips = nn.ModuleList(TemporalCollapse(c) for c in chans)
        self.skip_attention = ChannelAttention3D(chans[deep])
        # Channel dropout only before the two deepest downsamplings, as released.
        self.downs = nn.ModuleList(
            Down(c, config.dropout if k >= config.levels - 2 else 0.0) for k, c in enumerate(chans)
        )
        self.bottleneck = TemporalCollapse(2 * chans[deep])
        in_chans = (2 * chans[deep], *chans[:0:-1])  # what each Up reads, deep to shallow
        self.ups = nn.ModuleList(Up(i, c) for i, c in zip(in_chans, chans[::-1]))
        self.cabs = nn.ModuleList(ChannelAttentionBlock(c) for c in chans[::-1])
        self.decoders = nn.ModuleList(Res2D(c) for c in chans[::-1])
        self.head = nn.Conv2d(chans[0], 1, 1)
        # Start from the prior "about 3 % of pixels are vessel" instead of 50 %: the first steps then learn
        # vessels instead of spending themselves on pushing the whole background down.
        nn.init.constant_(self.head.bias, PRIOR_LOGIT)

    def standardise(self, x: Tensor) -> Tensor:
        """Zero mean, unit variance per window (B, 4, H, W), if the config asks for it."""
        if not self.config.standardise:
            return x
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / (std + 1e-3)

    def encode(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """x (B, 4, H, W) -> (skips: per level (B, C_k, H/2**k', W/2**k'), bottleneck (B, 2C_L, h, w))."""
        h = self.stem(x.unsqueeze(1))  # (B, C_1, 4, H, W): channels first, then time
        skips = []
        for k, (block, collapse, down) in enumerate(zip(self.encoders, self.skips, self.downs)):
            h = block(h)
            skip_in = self.skip_attention(h) if k == self.config.levels - 1 else h
            skips.append(collapse(skip_in))
            h = down(h)
        return skips, self.bottleneck(h)

    def decode(self, skips: list[Tensor], bottom: Tensor) -> Tensor:
        """Skips and bottleneck from ``encode`` -> logits (B, H, W) at the padded size."""
        h = bottom
        for up, cab, block, skip in zip(self.ups, self.cabs, self.decoders, reversed(skips)):
            h = block(cab(skip, up(h)))
        return self.head(h).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 4, H, W) -> vessel logits of frame 2, (B, H, W)."""
        if x.ndim != 4 or x.shape[1] != WINDOW:
            raise ValueError(f"SVSNet expects windows of shape (B, {WINDOW}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        m = self.config.multiple
        pad_h, pad_w = -height % m, -width % m
        x = self.standardise(x)
        if pad_h or pad_w:  # reflect (or replicate when the pad exceeds the image) to a multiple of 2**levels
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        logits = self.decode(*self.encode(x))
        return logits[:, :height, :width]

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Vessel probability of frame 2 in eval mode: (B, 4, H, W) -> (B, H, W) in [0, 1]."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(x))
        finally:
            self.train(was_training)
