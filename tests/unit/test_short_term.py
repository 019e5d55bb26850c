"""Short-term attention: local attention = banded dense attention, the pyramid, padding, gradients."""

import pytest
import torch

from xcalab.models import LocalMultiHeadAttention, TransformerPyramid, local_attention


def banded_dense_attention(q, k, v, query_mask, key_mask, half_window):
    """Plain T x T attention with a band mask |t - s| <= w and a key-padding mask (the O(T^2) way)."""
    steps = q.shape[2]
    logits = q @ k.transpose(-1, -2)  # (B, H, T, T)
    t = torch.arange(steps)
    allowed = ((t[:, None] - t[None, :]).abs() <= half_window) & key_mask[:, None, None, :]
    weights = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0) * query_mask[:, None, :, None]
    return weights @ v, weights


@pytest.mark.parametrize(("steps", "half_window"), [(9, 2), (6, 1), (4, 3), (11, 0)])
def test_local_attention_equals_banded_dense_attention(steps, half_window):
    torch.manual_seed(steps)
    q, k, v = (torch.randn(2, 3, steps, 5, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(2, steps, dtype=torch.bool)
    mask[1, steps - 2 :] = False  # video 1 is right-padded by two steps
    out, weights = local_attention(q, k, v, mask, mask, half_window)
    dense_out, dense_weights = banded_dense_attention(q, k, v, mask, mask, half_window)
    torch.testing.assert_close(out, dense_out, rtol=0, atol=1e-12)

    size = 2 * half_window + 1
    assert weights.shape == (2, 3, steps, size)
    for t in range(steps):
        for j in range(size):
            s = t - half_window + j  # window entry j is key s
            expected = dense_weights[..., t, s] if 0 <= s < steps else torch.zeros(2, 3, dtype=torch.float64)
            torch.testing.assert_close(weights[..., t, j], expected, rtol=0, atol=1e-12)
    # padding: padded keys get no weight, padded queries have all-zero rows
    assert (weights[1, :, steps - 2 :] == 0).all()
    assert (dense_weights[1, ..., steps - 2 :] == 0).all()
    torch.testing.assert_close(weights.sum(-1)[0], torch.ones(3, steps, dtype=torch.float64))


def test_attention_module_returns_weights_only_on_request():
    torch.manual_seed(0)
    attention = LocalMultiHeadAttention(8, n_heads=2, half_window=2, stride=2)
    x, mask = torch.randn(1, 8, 10), torch.tensor([[True] * 7 + [False] * 3])
    out, out_mask, weights = attention(x, mask)
    assert out.shape == (1, 8, 5) and weights is None
    assert out_mask.tolist() == [[True, True, True, True, False]]
    _, _, weights = attention(x, mask, return_attention=True)
    assert weights.shape == (1, 2, 5, 5)
    assert (weights[..., 4, :] == 0).all() and (weights[..., :4, 3:] == 0).any()


def small_pyramid(**kwargs):
    defaults = dict(in_channels=12, channels=8, n_heads=2)
    return TransformerPyramid(**(defaults | kwargs))


def test_pyramid_levels_for_128_steps():
    torch.manual_seed(1)
    pyramid = small_pyramid()
    x, mask = torch.randn(2, 12, 128), torch.ones(2, 128, dtype=torch.bool)
    mask[1, 100:] = False
    out = pyramid(x, mask, return_attention=True)
    lengths = [128, 64, 32, 16, 8, 4]
    assert [f.shape for f in out.features] == [(2, 8, n) for n in lengths]
    assert [m.shape for m in out.masks] == [(2, n) for n in lengths]
    assert [m[1].sum().item() for m in out.masks] == [100, 50, 25, 13, 7, 4]
    assert {name: w.shape for name, w in out.attention.items()} == {
        "level0.block0": (2, 2, 128, 5),
        "level0.block1": (2, 2, 128, 5),
        **{f"level{level}.block0": (2, 2, n, 5) for level, n in enumerate(lengths[1:], start=1)},
    }
    # un-padding is the caller's job: keep the rows of valid queries
    valid = out.attention["level1.block0"][1][:, out.masks[1][1]]
    assert valid.shape == (2, 50, 5)
    assert pyramid(x, mask).attention is None


def test_without_short_term_the_stem_is_not_built():
    pyramid = small_pyramid(short_term=False)
    assert len(pyramid.stem) == 0
    out = pyramid(torch.randn(1, 12, 32), torch.ones(1, 32, dtype=torch.bool), return_attention=True)
    assert [f.shape[-1] for f in out.features] == [32, 16, 8, 4, 2, 1]
    assert "level0.block0" not in out.attention


def randomise_(module):
    """Move every LayerNorm, drop-path scale and bias away from its initial value, so a leak would show."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn_like(p))


@pytest.mark.parametrize("valid", [7, 8])
def test_padding_never_changes_valid_outputs(valid):
    torch.manual_seed(valid)
    pyramid = small_pyramid().double().eval()
    randomise_(pyramid)
    alone = torch.randn(1, 12, valid, dtype=torch.float64)
    padded = torch.cat([alone, 1e3 * torch.randn(1, 12, 16 - valid, dtype=torch.float64)], dim=2)
    mask = torch.arange(16)[None] < valid
    a = pyramid(alone, torch.ones(1, valid, dtype=torch.bool), return_attention=True)
    p = pyramid(padded, mask, return_attention=True)
    for level, (fa, fp, ma, mp) in enumerate(zip(a.features, p.features, a.masks, p.masks)):
        n = fa.shape[-1]
        assert mp.sum() == n and ma.all(), level
        torch.testing.assert_close(fp[..., :n], fa, rtol=0, atol=1e-10)
        assert (fp[..., n:] == 0).all()
    for name, wa in a.attention.items():
        torch.testing.assert_close(p.attention[name][:, :, : wa.shape[2]], wa, rtol=0, atol=1e-10)

    # The reference reads padded steps as they are: the same comparison then fails at the last valid steps.
    leaky = small_pyramid(mask_padding=False).double().eval()
    leaky.load_state_dict(pyramid.state_dict())
    fa = leaky(alone, torch.ones(1, valid, dtype=torch.bool)).features[0]
    fp = leaky(padded, mask).features[0]
    assert not torch.allclose(fp[..., :valid], fa)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(2)
    pyramid = small_pyramid().train()
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 11:] = False
    out = pyramid(torch.randn(2, 12, 16), mask)
    sum(f.square().sum() for f in out.features).backward()
    for name, p in pyramid.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_reference_size_parameter_count():
    pyramid = TransformerPyramid()  # C = 512, 4096 inputs, 2 embedding convs, 2 stem + 5 branch blocks
    count = {name: sum(p.numel() for p in child.parameters()) for name, child in pyramid.named_children()}
    # embedding: 4096*512*3 + 512*512*3 conv weights (no bias) + 2 LayerNorms (2*512 each)
    assert count["embedding"] == 4096 * 512 * 3 + 512 * 512 * 3 + 2 * 1024 == 7_079_936
    # a block: 3 depthwise convs (512*3), 5 LayerNorms, 4 1x1 projections (512*512 + 512),
    # MLP 512 -> 2048 -> 512 with biases, 2 drop-path scales (512)
    block = (
        3 * 512 * 3 + 5 * 1024 + 4 * (512 * 512 + 512) + (512 * 2048 + 2048) + (2048 * 512 + 512) + 2 * 512
    )
    assert block == 3_161_088  # x 7 = 22.13 M, as ActionFormer's released backbone counts
    assert count["stem"] == 2 * block and count["branch"] == 5 * block
    assert count["level_norms"] == 6 * 1024
    assert sum(count.values()) == 29_213_696
