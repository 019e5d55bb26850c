"""The composed detector: ablation switches, gradients everywhere, padding invariance, attention capture."""

import pytest
import torch

from xcalab.config import ACTIONFORMER, get_preset
from xcalab.models.detector import KeyframeDetector
from xcalab.runtime import count_parameters

SMOKE = get_preset("smoke").model


def _batch(lengths=(20, 14), seed=0):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    x = torch.randn(len(lengths), 4096, t, generator=g)
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    segments = [torch.tensor([[2.0, 6.0], [6.0, n - 2.0]]) for n in lengths]
    labels = [torch.tensor([0, 1]) for _ in lengths]
    return x, mask, segments, labels


def test_every_trainable_parameter_receives_a_gradient():
    torch.manual_seed(0)
    model = KeyframeDetector(SMOKE)
    x, mask, segments, labels = _batch()
    out = model(x, mask, segments, labels, contrast=True, generator=torch.Generator().manual_seed(1))
    loss = sum(c.sum() for c in out.cls_logits) + sum(o.sum() for o in out.offsets) + out.contrast.loss
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


@pytest.mark.parametrize(
    "switches, present, absent",
    [
        (ACTIONFORMER, {"pyramid", "cls_head", "reg_head"}, {"imagewise", "patchwise", "long_term.temporal", "long_term.spatial"}),
        ({"long_term": "TA", "imagewise": False, "patchwise": False}, {"long_term.temporal"}, {"long_term.spatial"}),
        ({"long_term": "SA", "imagewise": False}, {"long_term.spatial"}, {"long_term.temporal", "imagewise"}),
        ({}, {"long_term.temporal", "long_term.spatial", "imagewise"}, set()),
        ({"short_term": False}, {"pyramid.branch"}, {"pyramid.stem"}),
    ],
)
def test_ablation_switches_build_only_what_they_use(switches, present, absent):
    model = KeyframeDetector(SMOKE.ablation(**switches))
    names = {n for n, _ in model.named_parameters()}
    for prefix in present:
        assert any(n.startswith(prefix) for n in names), prefix
    for prefix in absent:
        assert not any(n.startswith(prefix) for n in names), prefix


def test_actionformer_baseline_is_smaller_than_sta_ipcon():
    full, base = KeyframeDetector(SMOKE), KeyframeDetector(SMOKE.ablation(**ACTIONFORMER))
    assert count_parameters(full) > count_parameters(base)


def test_icon_needs_attention():
    with pytest.raises(ValueError, match="ICon"):
        SMOKE.ablation(long_term="TA")


def test_padding_never_changes_valid_outputs():
    torch.manual_seed(0)
    model = KeyframeDetector(SMOKE).eval()
    x, mask, *_ = _batch(lengths=(20, 20))
    centre = torch.tensor([30, 30])
    model.patchwise.centre = (30, 30)
    with torch.no_grad():
        alone = model(x[:1, :, :13], mask[:1, :13], return_attention=True)
        padded_x = torch.cat([x[:1, :, :13], 7 * torch.randn(1, 4096, 7)], dim=2)
        padded = model(padded_x, torch.arange(20)[None] < 13, return_attention=True)
    for level, (a, p) in enumerate(zip(alone.cls_logits, padded.cls_logits)):
        n = a.shape[-1]
        assert torch.allclose(a, p[..., :n], atol=1e-5), f"level {level}"
    for a, p in zip(alone.offsets, padded.offsets):
        assert torch.allclose(a, p[..., : a.shape[-1]], atol=1e-5)
    un_a, un_p = alone.attention_of(0), padded.attention_of(0)
    assert un_a.keys() == un_p.keys() and torch.equal(un_a["patch_centre"], centre)
    for name in un_a:
        assert un_a[name].shape == un_p[name].shape, name
        assert torch.allclose(un_a[name], un_p[name], atol=1e-5), name


def test_attention_capture_names_and_shapes():
    model = KeyframeDetector(SMOKE)
    x, mask, *_ = _batch()
    out = model(x, mask, return_attention=True)
    assert {"TA", "A", "STA", "foreground", "background", "patchwise", "patch_centre"} <= out.attention.keys()
    assert out.attention["STA"].shape == (2, 20, 64, 64)
    assert out.attention["transformer/level1.block0"].shape == (2, SMOKE.n_heads, 10, 5)
    one = out.attention_of(1)
    assert one["A"].shape == (14, 64, 64) and one["transformer/level1.block0"].shape == (SMOKE.n_heads, 7, 5)
    assert model(x, mask).attention is None
    with pytest.raises(ValueError, match="return_attention"):
        model(x, mask).attention_of(0)


def test_contrast_needs_ground_truth():
    model = KeyframeDetector(SMOKE)
    x, mask, *_ = _batch()
    with pytest.raises(ValueError, match="segments"):
        model(x, mask, contrast=True)


def test_same_seed_same_model_and_outputs():
    x, mask, *_ = _batch()
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = KeyframeDetector(SMOKE).eval()
        with torch.no_grad():
            outs.append(model(x, mask, generator=torch.Generator().manual_seed(2)).cls_logits[0])
    assert torch.equal(outs[0], outs[1])
