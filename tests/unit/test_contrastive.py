"""Imagewise contrast (eqs. 9-10) and patchwise projection (Sec. III-F)."""

import math

import pytest
import torch
import torch.nn.functional as F

from xcalab.models import (
    ImagewiseContrast,
    PatchwiseProjection,
    foreground_background,
    patchwise_projection,
    sample_near_apex,
    soft_nearest_neighbour_loss,
)

# --------------------------------------------------------------------------------------------------
# Soft-nearest-neighbour loss
# --------------------------------------------------------------------------------------------------

# Three foreground anchors and one background vector in 2-D:
#   u1 = (1, 0), u2 = (2, 0), u3 = (0, 1), d1 = (0, -1)
# Cosines: cos(u1, u2) = 1, cos(u1, u3) = cos(u2, u3) = 0; cos(u1, d1) = cos(u2, d1) = 0, cos(u3, d1) = -1.
# With tau = 1 (L_i = -log(P_i / (P_i + Q_i))):
#   i = 1: P = e^1 + e^0 = e + 1, Q = e^0 = 1   -> L_1 = log((e + 2) / (e + 1)) = log(1.268941) = 0.238183
#   i = 2: the same as i = 1                    -> L_2 = 0.238183
#   i = 3: P = e^0 + e^0 = 2, Q = e^-1 = 0.367879 -> L_3 = log((2 + 0.367879) / 2) = 0.168848
#   L = (0.238183 + 0.238183 + 0.168848) / 3 = 0.215071
# With tau = 0.5 every exponent doubles:
#   L_1 = L_2 = log((e^2 + 2) / (e^2 + 1)), L_3 = log((2 + e^-2) / 2)  ->  L = 0.096903
U = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
D = torch.tensor([[0.0, -1.0]])


def test_snn_loss_hand_worked_value():
    assert soft_nearest_neighbour_loss(U, D).item() == pytest.approx(0.2150712254, abs=1e-6)
    e = math.e
    by_formula = (2 * math.log((e + 2) / (e + 1)) + math.log((2 + 1 / e) / 2)) / 3
    assert by_formula == pytest.approx(0.2150712254, abs=1e-9)


def test_snn_loss_temperature():
    assert soft_nearest_neighbour_loss(U, D, temperature=0.5).item() == pytest.approx(0.0969033352, abs=1e-6)


def test_snn_loss_is_scale_free_and_zero_without_positive_pairs():
    torch.testing.assert_close(soft_nearest_neighbour_loss(3 * U, 0.5 * D), soft_nearest_neighbour_loss(U, D))
    single = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss = soft_nearest_neighbour_loss(single, D)
    assert loss.item() == 0.0 and loss.requires_grad


# --------------------------------------------------------------------------------------------------
# Sampling next to the apex
# --------------------------------------------------------------------------------------------------


def test_sample_near_apex_picks_the_half_next_to_the_apex():
    segments = torch.tensor([[2.0, 9.0], [9.0, 30.0], [-0.5, 3.2], [28.0, 40.5], [30.0, 36.4]])
    labels = torch.tensor([0, 1, 0, 1, 0])
    # filling: [floor((s+e)/2), int(e)]; disappearing: [int(s), floor((s+e)/2)]; clamped to [0, 35]
    expected = [(5, 9), (9, 19), (1, 3), (28, 34), (33, 35)]
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_near_apex(segments, labels, 36, generator) for _ in range(400)])
    for j, (low, high) in enumerate(expected):
        assert set(draws[:, j].tolist()) == set(range(low, high + 1)), j  # inside, and both ends reached


def test_sample_near_apex_is_seeded():
    segments, labels = torch.tensor([[0.0, 20.0], [20.0, 60.0]]), torch.tensor([0, 1])
    a = sample_near_apex(segments, labels, 64, torch.Generator().manual_seed(7))
    b = sample_near_apex(segments, labels, 64, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------
# Imagewise contrast module
# --------------------------------------------------------------------------------------------------


def contrast_batch():
    torch.manual_seed(0)
    residual = torch.randn(3, 16, 12)
    attention = torch.rand(3, 16, 12)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[2, 8:] = False
    segments = [
        torch.tensor([[1.0, 4.0], [4.0, 10.0]]),
        torch.tensor([[0.0, 6.0]]),
        torch.tensor([[2.0, 7.6]]),
    ]
    labels = [torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1])]
    return residual, attention, mask, segments, labels


def test_imagewise_contrast_samples_and_projects_any_batch_size():
    residual, attention, mask, segments, labels = contrast_batch()
    module = ImagewiseContrast(in_features=16, hidden_features=8, out_features=4)
    out = module(residual, attention, mask, segments, labels, torch.Generator().manual_seed(1))
    assert out.video.tolist() == [0, 0, 1, 2]
    ranges = [(2, 4), (4, 7), (3, 6), (2, 4)]  # near-apex halves of the four segments
    for j, (low, high) in enumerate(ranges):
        assert low <= out.fg_step[j] <= high and low <= out.bg_step[j] <= high
    # the loss is eq. 10 on the projected foreground (anchors) and background maps of the sampled steps
    fg = residual[out.video, :, out.fg_step] * attention[out.video, :, out.fg_step]
    bg = residual[out.video, :, out.bg_step] * (1 - attention[out.video, :, out.bg_step])
    torch.testing.assert_close(out.foreground, module.projection(fg))
    torch.testing.assert_close(out.background, module.projection(bg))
    torch.testing.assert_close(out.loss, soft_nearest_neighbour_loss(out.foreground, out.background))
    # the same seed draws the same steps
    again = module(residual, attention, mask, segments, labels, torch.Generator().manual_seed(1))
    assert torch.equal(again.fg_step, out.fg_step) and torch.equal(again.bg_step, out.bg_step)


def test_foreground_and_background_steps_are_independent_draws():
    residual, attention, mask, _, _ = contrast_batch()
    segments = [torch.tensor([[0.0, 11.0]] * 50)]
    labels = [torch.zeros(50, dtype=torch.long)]
    module = ImagewiseContrast(in_features=16, hidden_features=8, out_features=4)
    out = module(residual[:1], attention[:1], mask[:1], segments, labels, torch.Generator().manual_seed(2))
    assert not torch.equal(out.fg_step, out.bg_step)


def test_foreground_background_is_eq_9():
    y, a = torch.tensor([2.0, -1.0]), torch.tensor([0.25, 1.0])
    fg, bg = foreground_background(y, a)
    assert fg.tolist() == [0.5, -1.0] and bg.tolist() == [1.5, 0.0]


def test_imagewise_contrast_every_parameter_gets_a_gradient():
    residual, attention, mask, segments, labels = contrast_batch()
    residual.requires_grad_()
    module = ImagewiseContrast(in_features=16, hidden_features=8, out_features=4)
    assert all(layer.bias.eq(0).all() for layer in module.projection)
    module(residual, attention, mask, segments, labels, torch.Generator().manual_seed(3)).loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert residual.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# Patchwise projection
# --------------------------------------------------------------------------------------------------


def correlate_by_definition(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """out[i, j] = sum_{u,v} kernel[u, v] * image[i + u - k, j + v - k], zero outside the image."""
    k = kernel.shape[0] // 2
    padded = F.pad(image, (k, k, k, k))
    out = torch.zeros_like(image)
    for u in range(kernel.shape[0]):
        for v in range(kernel.shape[1]):
            out += kernel[u, v] * padded[u : u + image.shape[0], v : v + image.shape[1]]
    return out


def test_patchwise_projection_matches_its_definition():
    torch.manual_seed(0)
    size, steps = 8, 3
    x = torch.randn(2, size * size, steps, dtype=torch.float64)
    centre = torch.tensor([[2, 5], [5, 3]])
    bias = 0.1
    out = patchwise_projection(x, centre, bias, patch_size=5, map_size=size)
    maps = x.reshape(2, size, size, steps)
    for b in range(2):
        r, c = centre[b].tolist()
        kernel = maps[b, r - 2 : r + 3, c - 2 : c + 3, 0]  # the video's own step 0, not flipped
        for t in range(steps):
            expected = torch.relu(correlate_by_definition(maps[b, :, :, t], kernel) + bias)
            torch.testing.assert_close(out[b, :, t].reshape(size, size), expected)


def test_patchwise_projection_gradcheck_float64():
    torch.manual_seed(1)
    x = torch.randn(2, 36, 3, dtype=torch.float64, requires_grad=True)
    centre = torch.tensor([[1, 3], [4, 2]])
    assert torch.autograd.gradcheck(
        lambda inp: patchwise_projection(inp, centre, 0.05, patch_size=3, map_size=6),
        (x,),
        eps=1e-6,
        atol=1e-6,
    )
    assert x.grad is None  # no in-place writes into the input


def test_patchwise_module_draws_seeded_centres_and_optional_bias():
    x = torch.randn(4, 64 * 64, 2)
    module = PatchwiseProjection()
    assert not list(module.parameters())
    a = module(x, torch.Generator().manual_seed(5))
    b = module(x, torch.Generator().manual_seed(5))
    assert torch.equal(a.centre, b.centre) and torch.equal(a.features, b.features)
    assert a.bias.item() == 0.0
    centres = module(torch.randn(500, 64 * 64, 1), torch.Generator().manual_seed(6)).centre
    assert centres.min() == 2 and centres.max() == 60  # the reference's U{2, ..., 60}

    biased = PatchwiseProjection(random_bias=True)
    biases = torch.stack([biased(x, torch.Generator().manual_seed(s)).bias for s in range(50)])
    assert biases.abs().max() <= 0.2 and biases.unique().numel() == 50


def test_patchwise_module_fixed_centre():
    x = torch.randn(2, 64 * 64, 3)
    out = PatchwiseProjection(centre=(10, 40))(x)
    assert out.centre.tolist() == [[10, 40], [10, 40]]
    torch.testing.assert_close(out.features, patchwise_projection(x, torch.tensor([10, 40])))
    override = PatchwiseProjection()(x, centre=torch.tensor([[3, 3], [60, 60]]))
    assert override.centre.tolist() == [[3, 3], [60, 60]]
    with pytest.raises(ValueError, match="patch centres"):
        patchwise_projection(x, torch.tensor([1, 30]))
