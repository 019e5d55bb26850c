"""Classification and regression heads: prior bias, shapes, masking, padding, gradients."""

import math

import pytest
import torch

from xcalab.models import ClassificationHead, RegressionHead

LENGTHS = [16, 8, 4]


def levels(batch=2, channels=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = [torch.randn(batch, channels, n, generator=generator) for n in LENGTHS]
    masks = [torch.ones(batch, n, dtype=torch.bool) for n in LENGTHS]
    masks[0][1, 11:], masks[1][1, 6:], masks[2][1, 3:] = False, False, False
    return features, masks


def test_classification_head_starts_at_the_prior():
    head = ClassificationHead(channels=8)
    assert head.trunk.out.conv.bias.tolist() == pytest.approx([-math.log(99)] * 2)  # -log((1 - 0.01) / 0.01)
    assert len(head.trunk.convs) == 2 and all(conv.conv.bias is None for conv in head.trunk.convs)


def test_heads_shapes_masking_and_sign():
    features, masks = levels()
    logits = ClassificationHead(channels=8)(features, masks)
    offsets = RegressionHead(channels=8, n_levels=3)(features, masks)
    assert [t.shape for t in logits] == [(2, 2, n) for n in LENGTHS]
    assert [t.shape for t in offsets] == [(2, 2, n) for n in LENGTHS]
    for out in (logits, offsets):
        for t, m in zip(out, masks):
            assert (t[1][:, ~m[1]] == 0).all()
    assert all((t >= 0).all() for t in offsets)


def test_regression_scale_is_per_level():
    features, masks = levels()
    head = RegressionHead(channels=8, n_levels=3)
    before = head(features, masks)
    with torch.no_grad():
        head.scales[1].scale.fill_(2.0)
    after = head(features, masks)
    torch.testing.assert_close(after[0], before[0])
    torch.testing.assert_close(after[1], 2 * before[1])
    with pytest.raises(ValueError, match="expected 3 levels"):
        head(features[:2], masks[:2])


@pytest.mark.parametrize("head_type", [ClassificationHead, RegressionHead])
def test_padding_never_changes_valid_outputs(head_type):
    torch.manual_seed(1)
    head = head_type(channels=8).double()
    with torch.no_grad():  # move LayerNorm biases off zero so a leak through padding would show
        for p in head.parameters():
            p.add_(0.5 * torch.randn_like(p))
    alone = [torch.randn(1, 8, n, dtype=torch.float64) for n in (5, 3, 2, 1, 1, 1)]
    extra = (11, 5, 2, 1, 1, 1)  # garbage steps appended to each level
    padded = [
        torch.cat([a, 1e3 * torch.randn(1, 8, n, dtype=torch.float64)], dim=2) for a, n in zip(alone, extra)
    ]
    full_masks = [torch.ones(1, a.shape[-1], dtype=torch.bool) for a in alone]
    pad_masks = [torch.arange(p.shape[-1])[None] < a.shape[-1] for a, p in zip(alone, padded)]
    for a, p in zip(head(alone, full_masks), head(padded, pad_masks)):
        torch.testing.assert_close(p[..., : a.shape[-1]], a, rtol=0, atol=1e-10)


@pytest.mark.parametrize("head_type", [ClassificationHead, RegressionHead])
def test_every_parameter_gets_a_gradient(head_type):
    features, masks = levels()
    head = head_type(channels=8) if head_type is ClassificationHead else head_type(channels=8, n_levels=3)
    with torch.no_grad():  # keep the regression ReLU open on every level
        for scale in getattr(head, "scales", []):
            scale.scale.fill_(1.0)
        head.trunk.out.conv.bias.fill_(5.0)
    sum(t.square().sum() for t in head(features, masks)).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
