"""Focal loss, DIoU loss, the loss normaliser and the batch loss (ActionFormer's): hand values and padding."""

import math

import pytest
import torch

from xcalab.train import LossNormaliser, detection_losses, diou_loss_1d, sigmoid_focal_loss


def test_focal_loss_hand_values():
    # z = 0,     y = 1: p = 1/2, p_t = 1/2, BCE = ln 2,      FL = 0.25 * (1/2)^2 * ln 2   = 0.0625   ln 2
    # z = ln 3,  y = 0: p = 3/4, p_t = 1/4, BCE = ln 4,      FL = 0.75 * (3/4)^2 * ln 4   = 0.421875 ln 4
    # z = ln 3,  y = 1: p = 3/4, p_t = 3/4, BCE = ln(4/3),   FL = 0.25 * (1/4)^2 * ln 4/3 = 0.015625 ln(4/3)
    logits = torch.tensor([0.0, math.log(3), math.log(3)], dtype=torch.float64)
    targets = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    expected = [0.0625 * math.log(2), 0.421875 * math.log(4), 0.015625 * math.log(4 / 3)]
    assert sigmoid_focal_loss(logits, targets, reduction="none").tolist() == pytest.approx(expected, rel=1e-12)
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(sum(expected), rel=1e-12)
    assert sigmoid_focal_loss(logits, targets, reduction="mean").item() == pytest.approx(sum(expected) / 3, rel=1e-12)


def test_focal_loss_equals_the_papers_formula():
    # Lin et al.: FL = -alpha (1 - p)^gamma log p for y = 1, -(1 - alpha) p^gamma log(1 - p) for y = 0.
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(50, 2, generator=generator, dtype=torch.float64)
    targets = (torch.rand(50, 2, generator=generator) < 0.3).double()
    p = torch.sigmoid(logits)
    for alpha, gamma in ((0.25, 2.0), (0.5, 1.0), (0.9, 0.0)):
        positive = -alpha * (1 - p) ** gamma * torch.log(p)
        negative = -(1 - alpha) * p**gamma * torch.log(1 - p)
        paper = torch.where(targets > 0, positive, negative)
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha, gamma, "none"), paper)
    # gamma = 0 and no alpha: plain binary cross-entropy.
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0), bce)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(logits, targets, reduction="max")


def test_focal_loss_is_stable_for_extreme_logits():
    logits = torch.tensor([-200.0, 200.0], requires_grad=True)
    loss = sigmoid_focal_loss(logits, torch.tensor([1.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_diou_hand_values():
    pred = torch.tensor(
        [
            [2.0, 3.0],  # identical to its target: I = U = C = 5, rho = 0           -> 0
            [0.0, 1.0],  # [t, t+1] vs [t-1, t]: I = 0, U = 2, C = 2, rho = (1 + 1)/2 = 1 -> 1 - 0 + (1/2)^2 = 1.25
            [1.0, 1.0],  # nested in (2, 2): I = 2, U = 4, C = 4, rho = 0            -> 1 - 1/2 = 0.5
            [1.0, 3.0],  # vs (2, 2): I = 1 + 2 = 3, U = 4 + 4 - 3 = 5, C = 2 + 3 = 5, rho = (2 - 0)/2 = 1
            #                                                                       -> 1 - 3/5 + (1/5)^2 = 0.44
            [0.0, 0.0],  # both empty: I = U = C = 0 (clamped to 1e-8), rho = 0     -> 1
        ]
    )
    target = torch.tensor([[2.0, 3.0], [1.0, 0.0], [2.0, 2.0], [2.0, 2.0], [0.0, 0.0]])
    assert diou_loss_1d(pred, target, reduction="none").tolist() == pytest.approx([0.0, 1.25, 0.5, 0.44, 1.0])
    assert diou_loss_1d(pred, target).item() == pytest.approx(3.19)
    # Symmetric in prediction and target; invariant to a common scale.
    torch.testing.assert_close(diou_loss_1d(target, pred, "none"), diou_loss_1d(pred, target, "none"))
    torch.testing.assert_close(diou_loss_1d(3 * pred, 3 * target, "none"), diou_loss_1d(pred, target, "none"))
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        diou_loss_1d(pred[:, :1], target[:, :1])


def test_normaliser_arithmetic():
    norm = LossNormaliser()
    assert norm.value == 100.0
    assert norm.update(20) == pytest.approx(92.0)  # 0.9 * 100 + 0.1 * 20
    assert norm.update(0) == pytest.approx(82.9)  # 0.9 * 92 + 0.1 * max(0, 1)
    restored = LossNormaliser(init=5.0)
    restored.load_state_dict(norm.state_dict())
    assert restored.value == norm.value
    with pytest.raises(ValueError):
        LossNormaliser(momentum=1.0)


def test_detection_losses_hand_value():
    # One video, three points, two classes; point 1 is positive for class 0.
    logits = torch.tensor([[[0.0, math.log(3)], [math.log(3), 0.0], [0.0, 0.0]]])
    cls_targets = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])
    offsets = torch.tensor([[[9.0, 9.0], [1.0, 3.0], [9.0, 9.0]]])
    reg_targets = torch.tensor([[[0.0, 0.0], [2.0, 2.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])  # point 2 is padding
    norm = LossNormaliser()
    out = detection_losses(logits, offsets, cls_targets, reg_targets, valid, norm)
    # N = 0.9 * 100 + 0.1 * 1 = 90.1.
    # FL over the 4 valid entries: (0, y=0): 0.75 * (1/2)^2 ln 2; (ln 3, y=0): 0.75 * (3/4)^2 ln 4;
    # (ln 3, y=1): 0.25 * (1/4)^2 ln(4/3); (0, y=0): 0.75 * (1/2)^2 ln 2. DIoU of (1, 3) vs (2, 2): 0.44.
    focal = 2 * 0.1875 * math.log(2) + 0.421875 * math.log(4) + 0.015625 * math.log(4 / 3)
    assert out["num_pos"] == 1 and out["normaliser"] == pytest.approx(90.1) and norm.value == pytest.approx(90.1)
    assert out["cls"].item() == pytest.approx(focal / 90.1, rel=1e-6)
    assert out["reg"].item() == pytest.approx(0.44 / 90.1, rel=1e-6)
    assert out["total"].item() == pytest.approx((focal + 0.44) / 90.1, rel=1e-6)
    # A fixed float normaliser is used as given and nothing is updated.
    fixed = detection_losses(logits, offsets, cls_targets, reg_targets, valid, 2.0)
    assert fixed["normaliser"] == 2.0 and fixed["reg"].item() == pytest.approx(0.22)


def test_no_positive_points_gives_zero_regression_in_the_graph():
    logits = torch.zeros(2, 5, 2, requires_grad=True)
    offsets = torch.ones(2, 5, 2, requires_grad=True)
    zeros = torch.zeros(2, 5, 2)
    out = detection_losses(logits, offsets, zeros, zeros, torch.ones(2, 5, dtype=torch.bool), LossNormaliser())
    assert out["num_pos"] == 0 and out["reg"].item() == 0.0
    out["total"].backward()
    assert torch.equal(offsets.grad, torch.zeros_like(offsets)) and logits.grad.abs().sum() > 0


def test_padding_never_changes_the_losses():
    generator = torch.Generator().manual_seed(3)

    def sample(n):
        logits = 3 * torch.randn(n, 2, generator=generator)
        cls = (torch.rand(n, 2, generator=generator) < 0.2).float()
        offsets = 2 * torch.rand(n, 2, generator=generator)
        reg = 2 * torch.rand(n, 2, generator=generator) * cls.amax(1, keepdim=True)
        return logits, offsets, cls, reg

    a, b = sample(7), sample(4)
    # Unpadded reference: both videos' points side by side in one row.
    flat = [torch.cat((x, y))[None] for x, y in zip(a, b)]
    ref_norm = LossNormaliser()
    ref = detection_losses(*flat, torch.ones(1, 11, dtype=torch.bool), ref_norm)

    # Padded batch: video b is padded from 4 to 7 points with garbage, including positive targets and NaN logits.
    garbage = (torch.full((3, 2), float("nan")), torch.full((3, 2), 1e6), torch.ones(3, 2), torch.full((3, 2), 5.0))
    padded = [torch.stack((x, torch.cat((y, g)))) for x, y, g in zip(a, b, garbage)]
    valid = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    norm = LossNormaliser()
    out = detection_losses(*padded, valid, norm)
    assert out["num_pos"] == ref["num_pos"] and norm.value == ref_norm.value
    for term in ("cls", "reg", "total"):
        assert torch.isfinite(out[term])
        torch.testing.assert_close(out[term], ref[term], rtol=1e-6, atol=0)
