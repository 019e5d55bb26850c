"""TSA + TPP: refinement matrices by hand and by loop, row sums, padding, no ground truth, targets, loss, training."""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from xcalab.models.maps import UNIT_RANGE, MapKind
from xcalab.models.self_attention_refinement import (
    RefinementOutput,
    RefinementTargets,
    SelfAttentionRefinement,
    TemporalPyramidPooling,
    class_agreement,
    dot_product_attention,
    fused_attention,
    interval_overlap,
    masked_average_pool,
    refinement_loss,
    refinement_targets,
    upsample_linear,
)

DOUBLE = torch.float64


def small_module(**kwargs):
    return SelfAttentionRefinement(**({"channels": 8} | kwargs)).to(DOUBLE).eval()


# --------------------------------------------------------------------------------------------------
# A hand-made prediction, T = 4 valid steps + 1 padded step
# --------------------------------------------------------------------------------------------------

# Class probabilities (background, filling, disappearing) per step; step 4 is padding holding junk.
HAND_PROBS = torch.tensor(
    [[0.0, 1.0, 0.0], [0.2, 0.8, 0.0], [0.0, 0.25, 0.75], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=DOUBLE
).T[None]  # (1, 3, 5)
# Distances (l, r): intervals [0, 2], [0, 2], [1, 3], [3, 4], and junk [3, 5] at the padded step.
HAND_INTERVALS = torch.tensor([[0.0, 2.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]], dtype=DOUBLE).T[None]
HAND_MASK = torch.tensor([[True, True, True, True, False]])


def test_hand_made_refinement_matrices():
    # A_ij = p_i(fill) p_j(fill) + p_i(dis) p_j(dis), e.g. A_01 = 1 * .8 = .8, A_22 = .25^2 + .75^2 = .625,
    # A_23 = .25 * .5 = .125; row/column 4 (padded) is 0 whatever step 4 holds.
    agreement = class_agreement(HAND_PROBS, HAND_MASK)
    expected_agreement = torch.tensor(
        [
            [1.0, 0.8, 0.25, 0.5, 0],
            [0.8, 0.64, 0.2, 0.4, 0],
            [0.25, 0.2, 0.625, 0.125, 0],
            [0.5, 0.4, 0.125, 0.25, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=DOUBLE,
    )
    torch.testing.assert_close(agreement[0], expected_agreement, rtol=0, atol=1e-12)
    # Counting background adds p_i(bg) p_j(bg): .2 * .2 = .04 at (1, 1), .2 * .5 = .1 at (1, 3), .25 at (3, 3).
    with_background = expected_agreement.clone()
    with_background[1, 1], with_background[1, 3], with_background[3, 1], with_background[3, 3] = 0.68, 0.5, 0.5, 0.5
    torch.testing.assert_close(class_agreement(HAND_PROBS, HAND_MASK, count_background=True)[0], with_background)

    # tIoU: [0,2] vs [0,2] = 1; [0,2] vs [1,3]: I = 1, U = 2 + 2 - 1 = 3 -> 1/3; [0,2] vs [3,4] disjoint -> 0;
    # [1,3] vs [3,4] touch at one point: I = 0 -> 0. Step 3's junk neighbour [3,5] is padding -> 0.
    overlap = interval_overlap(HAND_INTERVALS, HAND_MASK)
    third = 1 / 3
    expected_overlap = torch.tensor(
        [[1, 1, third, 0, 0], [1, 1, third, 0, 0], [third, third, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]],
        dtype=DOUBLE,
    )
    torch.testing.assert_close(overlap[0], expected_overlap, rtol=0, atol=1e-12)

    # R = A * B: row 0 = [1, .8, .25/3 = 1/12, 0], row 1 = [.8, .64, .2/3 = 1/15, 0].
    refinement = agreement * overlap
    torch.testing.assert_close(refinement[0, 0, :4], torch.tensor([1, 0.8, 1 / 12, 0], dtype=DOUBLE))
    torch.testing.assert_close(refinement[0, 1, :4], torch.tensor([0.8, 0.64, 1 / 15, 0], dtype=DOUBLE))
    # Steps 0 and 1 (same class, same interval) weigh each other most; step 2 (mostly the other class,
    # overlapping) less; step 3 (half the same class, disjoint interval) least.
    assert refinement[0, 1].argmax() == 0  # even above step 1 itself (.8 > .64)
    assert refinement[0, 0, 1] > refinement[0, 0, 2] > refinement[0, 0, 3] == 0

    # Fused, with a flat dot product (q = k = 0, M uniform) and g = 4 ln 2, so e^{g R} = 2^{4 R}:
    # row 3: R = [0, 0, 0, .25] -> weights [1, 1, 1, 2] / 5 = [.2, .2, .2, .4], padded key 0.
    # row 0: [2^4, 2^3.2, 2^(1/3), 1] / sum.
    zeros = torch.zeros(1, 6, 5, dtype=DOUBLE)
    fused = fused_attention(zeros, zeros, refinement, HAND_MASK, 4 * math.log(2))
    torch.testing.assert_close(fused[0, 3], torch.tensor([0.2, 0.2, 0.2, 0.4, 0], dtype=DOUBLE))
    row0 = torch.tensor([16, 2**3.2, 2 ** (1 / 3), 1, 0], dtype=DOUBLE)
    torch.testing.assert_close(fused[0, 0], row0 / row0.sum())
    assert fused[0, 1].argmax() == 0 and fused[0, 0, 1] > fused[0, 0, 2] > fused[0, 0, 3]
    assert (fused[0, 4] == 0).all()
    # with g = 0 the refinement has no effect: G = M
    torch.testing.assert_close(fused_attention(zeros, zeros, refinement, HAND_MASK, 0.0),
                               dot_product_attention(zeros, zeros, HAND_MASK))


# --------------------------------------------------------------------------------------------------
# Matrices = direct formulas; rows sum to 1 over valid keys
# --------------------------------------------------------------------------------------------------


def random_mask(lengths, steps):
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def test_interval_overlap_equals_a_python_tiou_loop():
    gen = torch.Generator().manual_seed(3)
    steps, lengths = 7, [7, 5]
    intervals = 3 * torch.rand(2, 2, steps, generator=gen, dtype=DOUBLE)
    intervals[0, :, 2] = 0.0  # an empty interval [2, 2]: tIoU 0 with everything, itself included
    mask = random_mask(lengths, steps)
    overlap = interval_overlap(intervals, mask)
    for b in range(2):
        for i in range(steps):
            for j in range(steps):
                s_i, e_i = i - intervals[b, 0, i].item(), i + intervals[b, 1, i].item()
                s_j, e_j = j - intervals[b, 0, j].item(), j + intervals[b, 1, j].item()
                inter = max(0.0, min(e_i, e_j) - max(s_i, s_j))
                union = (e_i - s_i) + (e_j - s_j) - inter
                expected = inter / union if union > 0 else 0.0
                if i >= lengths[b] or j >= lengths[b]:
                    expected = 0.0
                assert overlap[b, i, j].item() == pytest.approx(expected, abs=1e-12)
    assert (overlap[0, 2] == 0).all()


@pytest.mark.parametrize("count_background", [False, True])
def test_class_agreement_equals_einsum_and_loop(count_background):
    gen = torch.Generator().manual_seed(4)
    steps, lengths = 6, [6, 4]
    probs = torch.rand(2, 3, steps, generator=gen, dtype=DOUBLE).softmax(dim=1)
    mask = random_mask(lengths, steps)
    agreement = class_agreement(probs, mask, count_background)
    first = 0 if count_background else 1
    einsum = torch.einsum("bki,bkj->bij", probs[:, first:], probs[:, first:]) * (mask[:, :, None] & mask[:, None])
    torch.testing.assert_close(agreement, einsum, rtol=0, atol=1e-12)
    for b in range(2):
        for i in range(lengths[b]):
            for j in range(lengths[b]):
                expected = sum(probs[b, k, i].item() * probs[b, k, j].item() for k in range(first, 3))
                assert agreement[b, i, j].item() == pytest.approx(expected, abs=1e-12)
    assert agreement.min() >= 0 and agreement.max() <= 1


def test_dot_product_and_fused_rows_sum_to_one_over_valid_keys():
    gen = torch.Generator().manual_seed(5)
    steps, lengths = 8, [8, 5]
    q, k = (torch.randn(2, 4, steps, generator=gen, dtype=DOUBLE) for _ in range(2))
    refinement = torch.rand(2, steps, steps, generator=gen, dtype=DOUBLE)
    mask = random_mask(lengths, steps)
    dot = dot_product_attention(q, k, mask)
    fused = fused_attention(q, k, refinement, mask, 1.5)

    # the dot product against a direct softmax over the valid keys only
    direct = torch.softmax(q[1, :, :5].T @ k[1, :, :5] / 2.0, dim=-1)  # sqrt(d) = 2
    torch.testing.assert_close(dot[1, :5, :5], direct)
    # fused = M e^{g R}, renormalised
    reweighted = dot * torch.exp(1.5 * refinement)
    torch.testing.assert_close(fused, reweighted / reweighted.sum(-1, keepdim=True).clamp(min=1e-300))
    for weights in (dot, fused):
        torch.testing.assert_close(weights[0].sum(-1), torch.ones(steps, dtype=DOUBLE))
        torch.testing.assert_close(weights[1, :5].sum(-1), torch.ones(5, dtype=DOUBLE))
        assert (weights[1, :, 5:] == 0).all() and (weights[1, 5:] == 0).all()

    # the module's captured maps follow the same rules
    module = small_module()
    x = torch.randn(2, 8, steps, generator=gen, dtype=DOUBLE)
    out = module(x, mask, return_attention=True)
    for name in ("TSA.dot_product", "TSA.fused"):
        rows = out.attention[name]
        torch.testing.assert_close(rows[1, :5].sum(-1), torch.ones(5, dtype=DOUBLE))
        assert (rows[1, :, 5:] == 0).all() and (rows[1, 5:] == 0).all()


# --------------------------------------------------------------------------------------------------
# TPP: pooling and upsampling against direct formulas
# --------------------------------------------------------------------------------------------------


def test_masked_average_pool_and_upsampling_against_direct_formulas():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 10, generator=gen, dtype=DOUBLE)
    mask = random_mask([10, 7], 10)
    pooled, pooled_mask = masked_average_pool(x, mask, 4)
    assert pooled_mask.tolist() == [[True, True, True], [True, True, False]]
    # video 1: bins [0, 4) and [4, 7) (steps 7.. are padding), bin 2 empty
    torch.testing.assert_close(pooled[1, :, 0], x[1, :, 0:4].mean(-1))
    torch.testing.assert_close(pooled[1, :, 1], x[1, :, 4:7].mean(-1))
    assert (pooled[1, :, 2] == 0).all()
    torch.testing.assert_close(pooled[0, :, 2], x[0, :, 8:10].mean(-1))

    # unpadded and T a multiple of the stride: exactly F.interpolate's linear, align_corners=False
    low = torch.randn(1, 3, 4, generator=gen, dtype=DOUBLE)
    up = upsample_linear(low, torch.ones(1, 4, dtype=torch.bool), 4, 16)
    torch.testing.assert_close(up, F.interpolate(low, scale_factor=4, mode="linear", align_corners=False))
    # padded: the video's last valid bin (1) is held, the padded bin 2 is never read
    low = torch.tensor([[[1.0, 3.0, 100.0]]], dtype=DOUBLE)
    up = upsample_linear(low, torch.tensor([[True, True, False]]), 4, 12)
    # u = (t + .5) / 4 - .5: t = 0, 1 -> clamped 0; t = 2 -> 0.125; t = 5 -> 0.875; t >= 6 -> clamped 1
    torch.testing.assert_close(up[0, 0, [0, 1, 2, 5, 6, 11]], torch.tensor([1, 1, 1.25, 2.75, 3, 3], dtype=DOUBLE))


# --------------------------------------------------------------------------------------------------
# The module: padding, batching, no ground truth, capture
# --------------------------------------------------------------------------------------------------


def test_padding_and_batching_do_not_change_valid_outputs():
    torch.manual_seed(7)
    module = small_module()
    gen = torch.Generator().manual_seed(7)
    video = torch.randn(1, 8, 7, generator=gen, dtype=DOUBLE)
    alone = module(video, torch.ones(1, 7, dtype=torch.bool), return_attention=True)

    # padded to 13 with junk at the padded steps, next to a longer video; then the batch order reversed
    longer = torch.randn(1, 8, 13, generator=gen, dtype=DOUBLE)
    padded = torch.cat([video, 50 * torch.randn(1, 8, 6, generator=gen, dtype=DOUBLE)], dim=2)
    mask = random_mask([7, 13], 13)
    batch = module(torch.cat([padded, longer]), mask, return_attention=True)
    swapped = module(torch.cat([longer, padded]), mask.flip(0), return_attention=True)

    for out, b in ((batch, 0), (swapped, 1)):
        torch.testing.assert_close(out.features[b, :, :7], alone.features[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(out.class_probs[b, :, :7], alone.class_probs[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(out.intervals[b, :, :7], alone.intervals[0], rtol=0, atol=1e-12)
        for name, value in alone.attention.items():
            index = (b, slice(0, 7), slice(0, 7)) if value.dim() == 3 else (b, slice(0, 7))
            torch.testing.assert_close(out.attention[name][index], value[0], rtol=0, atol=1e-12)
        # outputs at padded steps are 0
        assert (out.features[b, :, 7:] == 0).all() and (out.class_probs[b, :, 7:] == 0).all()
        assert (out.intervals[b, :, 7:] == 0).all() and (out.attention["TPP.actionness"][b, 7:] == 0).all()
    torch.testing.assert_close(swapped.features[0], batch.features[1], rtol=0, atol=1e-10)


def test_matrices_come_from_the_predictions_not_from_ground_truth():
    # nothing in the forward can receive ground truth
    assert list(inspect.signature(SelfAttentionRefinement.forward).parameters) == ["self", "x", "mask",
                                                                                   "return_attention"]
    torch.manual_seed(8)
    module = small_module()
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 8, 9, generator=gen, dtype=DOUBLE)
    mask = random_mask([9, 6], 9)
    out = module(x, mask, return_attention=True)
    # the captured matrices are the pure functions of the module's own predictions
    agreement = class_agreement(out.class_probs, mask)
    overlap = interval_overlap(out.intervals, mask)
    torch.testing.assert_close(out.attention["TSA.agreement"], agreement)
    torch.testing.assert_close(out.attention["TSA.overlap"], overlap)
    q, k, _ = module.tsa.queries_keys_values(x * mask[:, None])
    torch.testing.assert_close(out.attention["TSA.fused"], fused_attention(q, k, agreement * overlap, mask,
                                                                           module.tsa.gain))

    # perturb the class prediction only: A and G move, B does not
    with torch.no_grad():
        module.predictions.classes.conv.bias += torch.tensor([2.0, -1.0, 0.5], dtype=DOUBLE)
    moved = module(x, mask, return_attention=True)
    assert not torch.allclose(moved.attention["TSA.agreement"], out.attention["TSA.agreement"])
    assert not torch.allclose(moved.attention["TSA.fused"], out.attention["TSA.fused"])
    torch.testing.assert_close(moved.attention["TSA.overlap"], out.attention["TSA.overlap"], rtol=0, atol=0)
    # perturb the interval prediction only: B moves, A does not
    with torch.no_grad():
        module.predictions.distances.conv.bias += torch.tensor([1.5, -0.5], dtype=DOUBLE)
    shifted = module(x, mask, return_attention=True)
    assert not torch.allclose(shifted.attention["TSA.overlap"], moved.attention["TSA.overlap"])
    torch.testing.assert_close(shifted.attention["TSA.agreement"], moved.attention["TSA.agreement"], rtol=0, atol=0)


def test_attention_capture_names_shapes_kinds():
    module = small_module()
    x, mask = torch.randn(2, 8, 6, dtype=DOUBLE, requires_grad=True), random_mask([6, 4], 6)
    plain = module(x, mask)
    assert isinstance(plain, RefinementOutput) and plain.attention is None and plain.kinds is None
    out = module(x, mask, return_attention=True)
    shapes = {name: tuple(value.shape) for name, value in out.attention.items()}
    matrices = ("TSA.dot_product", "TSA.agreement", "TSA.overlap", "TSA.fused")
    assert shapes == {**{name: (2, 6, 6) for name in matrices}, "TPP.actionness": (2, 6)}
    assert out.kinds == {**{name: MapKind("matrix", UNIT_RANGE) for name in matrices},
                         "TPP.actionness": MapKind("curve", UNIT_RANGE)}
    for value in out.attention.values():
        assert not value.requires_grad and value.min() >= 0 and value.max() <= 1
    torch.testing.assert_close(out.attention["TPP.actionness"], (1 - out.class_probs[:, 0]) * mask)
    torch.testing.assert_close(out.features, plain.features)  # capturing changes nothing
    assert out.class_probs.shape == (2, 3, 6) and out.intervals.shape == (2, 2, 6)
    torch.testing.assert_close(out.class_probs[1, :, :4].sum(0), torch.ones(4, dtype=DOUBLE))
    assert (out.intervals[:, :, :4] > 0).all()


# --------------------------------------------------------------------------------------------------
# Auxiliary supervision: targets and loss
# --------------------------------------------------------------------------------------------------


def test_refinement_targets_by_hand():
    # video 0: filling [1, 4] and disappearing [4, 7.5] share step 4; the shorter (filling, 3 < 3.5) wins.
    # video 1: one segment [0.5, 2], no label 1; video 2: no segment at all.
    segments = [torch.tensor([[1.0, 4.0], [4.0, 7.5]]), torch.tensor([[0.5, 2.0]]), torch.zeros(0, 2)]
    labels = [torch.tensor([0, 1]), torch.tensor([1]), torch.zeros(0, dtype=torch.int64)]
    targets = refinement_targets(segments, labels, 9)
    assert isinstance(targets, RefinementTargets)
    assert targets.classes.dtype == torch.int64 and targets.intervals.shape == (3, 2, 9)
    assert targets.classes.tolist() == [
        [0, 1, 1, 1, 1, 2, 2, 2, 0],
        [0, 2, 2, 0, 0, 0, 0, 0, 0],
        [0] * 9,
    ]
    # step t in [t0, t1]: (t - t0, t1 - t); e.g. step 5 of video 0: (5 - 4, 7.5 - 5) = (1, 2.5)
    assert targets.intervals[0, 0].tolist() == [0, 0, 1, 2, 3, 1, 2, 3, 0]
    assert targets.intervals[0, 1].tolist() == [0, 3, 2, 1, 0, 2.5, 1.5, 0.5, 0]
    assert targets.intervals[1, 0].tolist() == [0, 0.5, 1.5, 0, 0, 0, 0, 0, 0]
    assert targets.intervals[1, 1].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert (targets.intervals[2] == 0).all()
    # equal lengths tie: the first listed wins
    tie = refinement_targets([torch.tensor([[4.0, 6.0], [2.0, 4.0]])], [torch.tensor([1, 0])], 7)
    assert tie.classes.tolist() == [[0, 0, 1, 1, 2, 2, 2]]


def hand_output(probs, intervals):
    return RefinementOutput(torch.zeros(1, 1, probs.shape[2]), probs, intervals, None, None)


def test_refinement_loss_by_hand_and_without_foreground():
    # uniform probabilities: CE = ln 3 at every valid step. Foreground step 1: predicted (1, 1) vs target
    # (1, 3): I = 1 + 1, U = 2 + 4 - 2 = 4 -> 1 - tIoU = 0.5; foreground step 2: prediction = target -> 0.
    probs = torch.full((1, 3, 4), 1 / 3, dtype=DOUBLE, requires_grad=True)
    intervals = torch.tensor([[[5.0, 1.0, 2.0, 9.0], [5.0, 1.0, 2.0, 9.0]]], dtype=DOUBLE, requires_grad=True)
    targets = RefinementTargets(torch.tensor([[0, 1, 2, 1]]), torch.tensor([[[0.0, 1.0, 2.0, 0.0],
                                                                              [0.0, 3.0, 2.0, 1.0]]]))
    mask = torch.tensor([[True, True, True, False]])  # step 3 is padding: its wrong prediction is ignored
    loss, parts = refinement_loss(hand_output(probs, intervals), targets, mask)
    assert parts["tsa_cls"].item() == pytest.approx(math.log(3))
    assert parts["tsa_iou"].item() == pytest.approx(0.25)  # (0.5 + 0) / 2 foreground steps
    assert loss.item() == pytest.approx(math.log(3) + 0.25)

    # no foreground step in the batch: the interval term is 0, finite, and still in the graph
    background = RefinementTargets(torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, 2, 4))
    loss, parts = refinement_loss(hand_output(probs, intervals), background, mask)
    assert torch.isfinite(loss) and parts["tsa_iou"].item() == 0.0
    loss.backward()
    assert torch.isfinite(probs.grad).all() and (intervals.grad == 0).all()

    # a confidently wrong probability of exactly 0 still gives a finite loss
    certain = torch.tensor([[[1.0], [0.0], [0.0]]], dtype=DOUBLE)
    wrong = RefinementTargets(torch.tensor([[2]]), torch.ones(1, 2, 1))
    loss, _ = refinement_loss(hand_output(certain, torch.ones(1, 2, 1, dtype=DOUBLE)), wrong,
                              torch.ones(1, 1, dtype=torch.bool))
    assert torch.isfinite(loss)


def training_batch():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 8, 16, generator=gen)
    mask = random_mask([16, 12], 16)
    segments = [torch.tensor([[2.0, 6.0], [6.0, 11.0]]), torch.tensor([[1.0, 4.0], [4.0, 9.0]])]
    labels = [torch.tensor([0, 1]), torch.tensor([0, 1])]
    return x, mask, refinement_targets(segments, labels, 16)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(10)
    module = SelfAttentionRefinement(8)
    x, mask, targets = training_batch()
    out = module(x, mask)
    loss, _ = refinement_loss(out, targets, mask)
    (out.features.sum() + loss).backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_a_tiny_module_overfits_the_refinement_targets_of_two_sequences():
    torch.manual_seed(11)
    module = SelfAttentionRefinement(8, pyramid_dilations=(1, 2), pyramid_strides=(1, 2))
    readout = torch.nn.Conv1d(8, 3, 1)  # a linear per-step class readout of the refined features
    x, mask, targets = training_batch()
    optimiser = torch.optim.Adam([*module.parameters(), *readout.parameters()], lr=1e-2)

    def total_loss():
        out = module(x, mask)
        loss, parts = refinement_loss(out, targets, mask)
        readout_ce = F.cross_entropy(readout(out.features).transpose(1, 2)[mask], targets.classes[mask])
        return loss + readout_ce, parts

    first, first_parts = total_loss()
    for _ in range(80):
        optimiser.zero_grad()
        loss, _ = total_loss()
        loss.backward()
        optimiser.step()
    last, last_parts = total_loss()
    assert last.item() < first.item() / 5
    assert last_parts["tsa_cls"] < first_parts["tsa_cls"] / 5 and last_parts["tsa_iou"] < first_parts["tsa_iou"] / 5


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    module = small_module()
    x, mask = torch.zeros(2, 8, 5, dtype=DOUBLE), torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"x must be \(B, C, T\) with C = 8"):
        module(torch.zeros(2, 7, 5, dtype=DOUBLE), mask)
    with pytest.raises(ValueError, match=r"x must be"):
        module(torch.zeros(8, 5, dtype=DOUBLE), mask)
    with pytest.raises(ValueError, match=r"mask must be a \(B, T\) = \(2, 5\) bool"):
        module(x, torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"bool"):
        module(x, torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"channels and n_classes must be >= 1"):
        SelfAttentionRefinement(0)
    with pytest.raises(ValueError, match=r"attention_dim must be >= 1"):
        SelfAttentionRefinement(8, attention_dim=0)
    with pytest.raises(ValueError, match=r"one stride per dilation"):
        TemporalPyramidPooling(9, 8, dilations=(1, 2), strides=(1,))
    with pytest.raises(ValueError, match=r"integers >= 1"):
        TemporalPyramidPooling(9, 8, dilations=(0, 2), strides=(1, 2))

    probs, intervals = torch.full((1, 3, 4), 1 / 3), torch.ones(1, 2, 4)
    mask4 = torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"class_probs must be \(B, K\+1, T\)"):
        class_agreement(torch.ones(1, 1, 4), mask4)
    with pytest.raises(ValueError, match=r"mask must be"):
        class_agreement(probs, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"intervals must be \(B, 2, T\)"):
        interval_overlap(torch.ones(1, 3, 4), mask4)
    with pytest.raises(ValueError, match=r"must be >= 0"):
        interval_overlap(-intervals, mask4)
    with pytest.raises(ValueError, match=r"refinement must be \(B, T, T\)"):
        fused_attention(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.zeros(1, 4, 3), mask4, 1.0)
    with pytest.raises(ValueError, match=r"queries and keys"):
        dot_product_attention(torch.zeros(1, 2, 4), torch.zeros(1, 3, 4), mask4)

    seg, lab = [torch.tensor([[1.0, 2.0]])], [torch.tensor([0])]
    with pytest.raises(ValueError, match=r"one labels tensor per segments tensor"):
        refinement_targets(seg, [], 4)
    with pytest.raises(ValueError, match=r"n_steps must be >= 1"):
        refinement_targets(seg, lab, 0)
    with pytest.raises(ValueError, match=r"video 0: segments must be \(K, 2\)"):
        refinement_targets([torch.ones(1, 3)], lab, 4)
    for bad_seg, bad_lab in (([[2.0, 1.0]], [0]), ([[float("nan"), 1.0]], [0]), ([[1.0, 2.0]], [-1])):
        with pytest.raises(ValueError, match=r"video 0: segments must be finite with t0 <= t1, labels >= 0"):
            refinement_targets([torch.tensor(bad_seg)], [torch.tensor(bad_lab)], 4)

    output = hand_output(probs, intervals)
    targets = refinement_targets(seg, lab, 4)
    with pytest.raises(ValueError, match=r"targets must be classes \(B, T\) = \(1, 4\)"):
        refinement_loss(output, refinement_targets(seg, lab, 5), mask4)
    with pytest.raises(ValueError, match=r"class targets must lie in 0 .. 2"):
        refinement_loss(output, targets._replace(classes=torch.full((1, 4), 3)), mask4)
    with pytest.raises(ValueError, match=r"mask must be"):
        refinement_loss(output, targets, torch.ones(1, 4))
