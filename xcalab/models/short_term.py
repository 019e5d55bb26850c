"""Short-term attention: a local-window transformer pyramid over the feature steps (Sec. III-D, eqs. 7-8).

This is ActionFormer's ConvTransformer backbone, the "(2, 2, 5)" architecture the reference uses
(ActionFormer's ``LocPointTransformer`` backbone, as released):

    (B, 4096, T) --TemporalConvEmbedding--> (B, C, T)          2 x [Conv1d k3 (no bias), LN, ReLU]
                 --2 stem TransformerBlocks (stride 1)--------> level 0         (T)
                 --5 branch TransformerBlocks (stride 2)------> levels 1 .. 5   (T/2, ..., T/32)
                 --one LayerNorm per level ("identity" neck)--> 6 feature maps

Each TransformerBlock is pre-LN: a = LocalMultiHeadAttention(LN(x)); x = pool(x) + gamma_a * a;
x = x + gamma_m * MLP(LN(x)), where pool is a stride-2 max-pool in the branch, gamma are per-channel
scales starting at 1e-4 (with stochastic depth), and MLP is 1x1 conv C -> 4C, GELU, 4C -> C.

Attention is local: the query at step t sees keys t - w, ..., t + w only (w = 2: 5 keys; ActionFormer's
``n_mha_win_size = 4``). Keys and values are cut into windows of 2w + 1 with ``unfold``, so attention
costs O(T * w) time and memory instead of O(T^2).

Masks are (B, T) bool, True at valid steps, and are downsampled with the levels (every other step).
With ``mask_padding=True`` (default) every layer zeroes the padded steps it reads (convolutions) or
sets them to -inf (max-pools), so padding never changes an output at a valid step. ActionFormer and the
reference read padded steps as they are: after a LayerNorm they hold its bias, which leaks into the last
valid steps through the 3-tap convolutions and the max-pool; ``mask_padding=False`` reproduces that.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------------
# Building blocks: channel LayerNorm, masked temporal convolution
# --------------------------------------------------------------------------------------------------


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T) tensor, one normalisation per step (eps 1e-5, affine)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, T) -> (B, C, T)."""
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _as_channel_mask(mask: Tensor, like: Tensor) -> Tensor:
    """(B, T) bool -> (B, 1, T) in ``like``'s dtype, ready to multiply (B, C, T) tensors."""
    return mask.unsqueeze(1).to(like.dtype)


class MaskedConv1d(nn.Module):
    """A 1-D convolution over time whose output is zero at padded steps (ActionFormer's MaskedConv1D).

    in_channels, out_channels, kernel_size (odd, "same" padding), stride (1 or 2), groups, bias
    mask_padding   zero the padded steps of the input first, so they cannot reach valid outputs

    Biases start at 0. With stride s the mask keeps every s-th step, matching the output length ceil(T / s).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
        mask_padding: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.stride = stride
        self.mask_padding = mask_padding
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=bias
        )
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C_in, T), mask (B, T) bool -> (B, C_out, T'), mask (B, T') with T' = ceil(T / stride)."""
        if self.mask_padding:
            x = x * _as_channel_mask(mask, x)
        out_mask = mask[:, :: self.stride]
        return self.conv(x) * _as_channel_mask(out_mask, x), out_mask


class TemporalConvEmbedding(nn.Module):
    """The projection E of Sec. III-D: each step's 4096 pixels -> a C-vector, by convolutions over time.

    in_channels    features per step (4096)
    channels       embedding size C (reference 512)
    n_layers       [MaskedConv1d k, LN, ReLU] layers (reference 2: 4096 -> C, then C -> C)
    kernel_size    temporal kernel (reference 3)
    with_ln        LayerNorm after each convolution; the convolutions then have no bias (reference True)
    mask_padding   see the module docstring
    """

    def __init__(
        self,
        in_channels: int = 4096,
        channels: int = 512,
        n_layers: int = 2,
        kernel_size: int = 3,
        with_ln: bool = True,
        mask_padding: bool = True,
    ):
        super().__init__()
        sizes = [in_channels] + [channels] * n_layers
        self.convs = nn.ModuleList(
            MaskedConv1d(c_in, c_out, kernel_size, bias=not with_ln, mask_padding=mask_padding)
            for c_in, c_out in zip(sizes[:-1], sizes[1:])
        )
        self.norms = nn.ModuleList(
            ChannelLayerNorm(channels) if with_ln else nn.Identity() for _ in self.convs
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, in_channels, T), mask (B, T) bool -> (B, channels, T)."""
        for conv, norm in zip(self.convs, self.norms):
            x, _ = conv(x, mask)
            x = F.relu(norm(x))
        return x


# --------------------------------------------------------------------------------------------------
# Local multi-head attention (eqs. 7-8 within a window)
# --------------------------------------------------------------------------------------------------


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, query_mask: Tensor, key_mask: Tensor, half_window: int
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / 1) v restricted to a window: query t sees keys t - w ... t + w (w = half_window).

    q, k, v      (B, H, T, d), q already scaled by 1 / sqrt(d)
    query_mask   (B, T) bool, True at valid queries; padded queries get all-zero weights and output
    key_mask     (B, T) bool, True at valid keys; padded keys and keys outside [0, T) get weight 0

    -> output (B, H, T, d) and weights (B, H, T, 2w + 1); weights[..., j] belongs to key t - w + j.
    Keys and values are cut into windows of 2w + 1 (a strided view), so cost and memory are O(T * w).
    """
    size = 2 * half_window + 1
    # (B, H, T + 2w, d) -> windows (B, H, T, d, 2w + 1); step t's window starts at key t - w.
    k_windows = F.pad(k, (0, 0, half_window, half_window)).unfold(2, size, 1)
    v_windows = F.pad(v, (0, 0, half_window, half_window)).unfold(2, size, 1)
    key_windows = F.pad(key_mask, (half_window, half_window), value=False).unfold(1, size, 1)  # (B, T, 2w+1)
    valid = (key_windows & query_mask.unsqueeze(-1)).unsqueeze(1)  # (B, 1, T, 2w+1)

    logits = torch.einsum("bhtd,bhtdw->bhtw", q, k_windows)
    # A finite floor instead of -inf: rows with no valid key stay finite (and are zeroed below).
    logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
    weights = logits.softmax(dim=-1) * valid
    return torch.einsum("bhtw,bhtdw->bhtd", weights, v_windows), weights


class LocalMultiHeadAttention(nn.Module):
    """Masked multi-head conv attention over a local window (ActionFormer's "MHCA", eqs. 7-8).

    channels      C (reference 512), split into n_heads heads of C / n_heads channels (4 x 128)
    n_heads       number of heads (reference 4)
    half_window   w: each query sees 2w + 1 keys (reference 2, ActionFormer's n_mha_win_size = 4)
    stride        1, or 2 to halve the sequence (queries, keys and values are all downsampled)
    mask_padding  see the module docstring

    q, k and v each come from a depthwise Conv1d (kernel 3, stride, no bias), a LayerNorm and a 1 x 1
    projection; the output goes through a 1 x 1 projection and is zeroed at padded queries.
    """

    def __init__(
        self,
        channels: int,
        n_heads: int = 4,
        half_window: int = 2,
        stride: int = 1,
        mask_padding: bool = True,
    ):
        super().__init__()
        if channels % n_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.n_heads = n_heads
        self.half_window = half_window

        def depthwise() -> MaskedConv1d:
            return MaskedConv1d(
                channels, channels, 3, stride, groups=channels, bias=False, mask_padding=mask_padding
            )

        self.query_conv, self.key_conv, self.value_conv = depthwise(), depthwise(), depthwise()
        self.query_norm, self.key_norm, self.value_norm = (ChannelLayerNorm(channels) for _ in range(3))
        self.query, self.key, self.value, self.proj = (nn.Conv1d(channels, channels, 1) for _ in range(4))
        for layer in (self.query, self.key, self.value, self.proj):
            nn.init.zeros_(layer.bias)

    def queries_keys_values(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (B, C, T), mask (B, T) -> q (scaled by 1/sqrt(d)), k, v, each (B, H, T', d), and mask (B, T')."""
        q, out_mask = self.query_conv(x, mask)
        k, _ = self.key_conv(x, mask)
        v, _ = self.value_conv(x, mask)
        q = self.query(self.query_norm(q))
        k = self.key(self.key_norm(k))
        v = self.value(self.value_norm(v))

        batch, channels, steps = q.shape
        head_dim = channels // self.n_heads

        def heads(t: Tensor) -> Tensor:  # (B, C, T') -> (B, H, T', d)
            return t.view(batch, self.n_heads, head_dim, steps).transpose(2, 3)

        return heads(q) / math.sqrt(head_dim), heads(k), heads(v), out_mask

    def forward(
        self, x: Tensor, mask: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """x (B, C, T), mask (B, T) bool -> (out (B, C, T'), mask (B, T'), weights (B, H, T', 2w+1) or None).

        With stride 2, T' = ceil(T / 2). Weights are returned only when ``return_attention`` is True.
        """
        q, k, v, out_mask = self.queries_keys_values(x, mask)
        out, weights = local_attention(q, k, v, out_mask, out_mask, self.half_window)
        batch, heads, steps, head_dim = out.shape
        out = out.transpose(2, 3).reshape(batch, heads * head_dim, steps)  # heads back to channels
        out = self.proj(out) * _as_channel_mask(out_mask, out)
        return out, out_mask, (weights if return_attention else None)


# --------------------------------------------------------------------------------------------------
# Transformer block and pyramid
# --------------------------------------------------------------------------------------------------


class AffineDropPath(nn.Module):
    """x -> DropPath(gamma * x): a learned per-channel scale gamma (init 1e-4), then stochastic depth.

    In training each sample's branch is dropped with probability ``drop_prob`` and the kept ones are
    divided by 1 - drop_prob. The small initial scale starts every residual block close to identity.
    """

    def __init__(self, channels: int, drop_prob: float = 0.0, init_scale: float = 1e-4):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale = nn.Parameter(torch.full((1, channels, 1), init_scale))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, T) -> (B, C, T)."""
        x = self.scale * x
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        kept = torch.rand(x.shape[0], 1, 1, dtype=x.dtype, device=x.device) < keep
        return x * kept / keep


class TransformerBlock(nn.Module):
    """A pre-LN transformer block with local attention, optionally halving the sequence (stride 2).

    channels, n_heads, half_window, stride   as ``LocalMultiHeadAttention``
    mlp_ratio      hidden width of the MLP as a multiple of channels (reference 4)
    drop_path      stochastic-depth probability (reference 0.1). With drop_path > 0 both residual
                   branches carry an ``AffineDropPath`` (scale init 1e-4); with 0 they are plain adds,
                   as in ActionFormer.
    dropout        dropout inside the MLP (reference 0)
    mask_padding   see the module docstring
    """

    def __init__(
        self,
        channels: int,
        n_heads: int = 4,
        half_window: int = 2,
        stride: int = 1,
        mlp_ratio: int = 4,
        drop_path: float = 0.1,
        dropout: float = 0.0,
        mask_padding: bool = True,
    ):
        super().__init__()
        self.stride = stride
        self.mask_padding = mask_padding
        self.attention_norm = ChannelLayerNorm(channels)
        self.attention = LocalMultiHeadAttention(channels, n_heads, half_window, stride, mask_padding)
        self.mlp_norm = ChannelLayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Conv1d(channels, mlp_ratio * channels, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(mlp_ratio * channels, channels, 1),
            nn.Dropout(dropout),
        )
        for layer in (self.mlp[0], self.mlp[3]):
            nn.init.zeros_(layer.bias)
        self.attention_path = AffineDropPath(channels, drop_path) if drop_path > 0 else nn.Identity()
        self.mlp_path = AffineDropPath(channels, drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: Tensor, mask: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """x (B, C, T), mask (B, T) bool -> (out (B, C, T'), mask (B, T'), weights (B, H, T', 2w+1) or None).

        With stride 2, T' = ceil(T / 2). Weights are returned only when ``return_attention`` is True.
        """
        a, out_mask, weights = self.attention(self.attention_norm(x), mask, return_attention)
        keep = _as_channel_mask(out_mask, x)
        x = self._skip(x, mask, out_mask) * keep + self.attention_path(a)
        x = x + self.mlp_path(self.mlp(self.mlp_norm(x)) * keep)
        return x, out_mask, weights

    def _skip(self, x: Tensor, mask: Tensor, out_mask: Tensor) -> Tensor:
        """The residual path: identity, or max-pool (kernel 3, stride 2, padding 1) when downsampling."""
        if self.stride == 1:
            return x
        if not self.mask_padding:
            return F.max_pool1d(x, 3, 2, 1)
        pooled = F.max_pool1d(x.masked_fill(~mask.unsqueeze(1), float("-inf")), 3, 2, 1)
        return pooled.masked_fill(~out_mask.unsqueeze(1), 0.0)  # all-padding windows gave -inf


class PyramidOutput(NamedTuple):
    """What ``TransformerPyramid`` returns.

    features    one (B, C, T_l) tensor per level, T_l = ceil(T / 2^l); zero at padded steps when masking
    masks       one (B, T_l) bool mask per level, True at valid steps
    attention   None, or with ``return_attention=True`` the attention weights of every block by name,
                each (B, heads, T_l, 2w + 1): "level0.block0", "level0.block1" (the stem), then
                "level1.block0", ..., "level5.block0" (the downsampling blocks). Entry j of the last
                axis is key t - w + j. Rows of padded queries are zero; cut them off with masks[l].
    refinement  what the ``refinement`` module returned on the embedding (TSA + TPP), else None
    """

    features: list[Tensor]
    masks: list[Tensor]
    attention: dict[str, Tensor] | None
    refinement: Any = None


class TransformerPyramid(nn.Module):
    """Embedding + local-attention transformer pyramid + per-level LayerNorm (Sec. III-D; ActionFormer).

    in_channels         features per step (4096)
    channels            width C of every level (reference 512)
    n_embedding_layers  temporal-conv embedding layers (reference 2)
    n_stem_blocks       stride-1 transformer blocks making level 0 (reference 2)
    n_levels            pyramid levels; levels 1 .. n_levels-1 each come from one stride-2 block (reference 6)
    n_heads             attention heads (reference 4)
    half_window         local attention reaches w steps each side (reference 2: 5 keys)
    mlp_ratio           MLP width / C (reference 4)
    drop_path           stochastic depth of every block (reference 0.1)
    short_term          False skips the stem transformers (the paper's "w/o S-T" ablation); level 0 is
                        then the embedding itself, and the stem is not built
    mask_padding        see the module docstring

    ``refinement`` (an attribute, None by default) is a module applied to the embedding before the stem,
    (B, C, T) -> an output whose ``features`` continue the path: TSA + TPP
    (``models/self_attention_refinement.py``), set by the detector after everything else is built.

    With the reference sizes and T = 128 the levels have 128, 64, 32, 16, 8 and 4 steps. Any T works
    (a level has ceil(T_{l-1} / 2) steps); the window needs no divisibility.
    """

    def __init__(
        self,
        in_channels: int = 4096,
        channels: int = 512,
        n_embedding_layers: int = 2,
        n_stem_blocks: int = 2,
        n_levels: int = 6,
        n_heads: int = 4,
        half_window: int = 2,
        mlp_ratio: int = 4,
        drop_path: float = 0.1,
        short_term: bool = True,
        mask_padding: bool = True,
    ):
        super().__init__()
        self.mask_padding = mask_padding
        self.embedding = TemporalConvEmbedding(
            in_channels, channels, n_embedding_layers, mask_padding=mask_padding
        )

        def block(stride: int) -> TransformerBlock:
            return TransformerBlock(
                channels, n_heads, half_window, stride, mlp_ratio, drop_path, mask_padding=mask_padding
            )

        self.stem = nn.ModuleList(block(1) for _ in range(n_stem_blocks if short_term else 0))
        self.branch = nn.ModuleList(block(2) for _ in range(n_levels - 1))
        self.level_norms = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_levels))
        self.refinement: nn.Module | None = None

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> PyramidOutput:
        """x (B, in_channels, T), mask (B, T) bool -> ``PyramidOutput`` with n_levels levels."""
        attention: dict[str, Tensor] = {}
        x = self.embedding(x, mask)
        refined = None
        if self.refinement is not None:
            refined = self.refinement(x, mask, return_attention=return_attention)
            x = refined.features
        for j, block in enumerate(self.stem):
            x, mask, weights = block(x, mask, return_attention)
            if return_attention:
                attention[f"level0.block{j}"] = weights
        features, masks = [x], [mask]
        for level, block in enumerate(self.branch, start=1):
            x, mask, weights = block(x, mask, return_attention)
            if return_attention:
                attention[f"level{level}.block0"] = weights
            features.append(x)
            masks.append(mask)

        features = [norm(f) for norm, f in zip(self.level_norms, features)]
        if self.mask_padding:
            features = [f * _as_channel_mask(m, f) for f, m in zip(features, masks)]
        return PyramidOutput(features, masks, attention if return_attention else None, refined)
