"""Long-term attention (eqs. 5-6): the four modes' formulas, masked BatchNorm, gradients, SA trained in chunks."""

import copy

import pytest
import torch
from torch import nn

from xcalab.models import LongTermAttention
from xcalab.models.convlstm import channels_last
from xcalab.models.long_term import SpatialAttention

S = 6  # tiny maps: 6 x 6 = 36 features per step


def set_relu_identity_sa(module: LongTermAttention) -> None:
    """Known SA weights that make SA(Y) = sigmoid(ReLU(Y)) exactly (in eval mode).

    conv 1 -> 8 and conv 8 -> 16 pass channel 0 through (centre tap 1, rest 0); each BatchNorm has running
    mean 0 and running variance 1 - eps, so it divides by sqrt(1) = 1; the 1 x 1 conv keeps channel 0.
    """
    conv1, bn1, _, conv2, bn2, _, conv3, _ = module.spatial
    with torch.no_grad():
        for conv in (conv1, conv2):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
        for bn in (bn1, bn2):
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.zero_()
        conv3.weight.zero_()
        conv3.bias.zero_()
        conv3.weight[0, 0, 0, 0] = 1.0
    module.eval()


def maps_to_features(maps: torch.Tensor) -> torch.Tensor:
    """(B, T, S, S) -> (B, S*S, T), row-major."""
    return maps.flatten(2).transpose(1, 2)


def test_mode_none_is_identity_and_has_no_parameters():
    module = LongTermAttention("none", map_size=S)
    x = torch.randn(2, S * S, 4)
    out = module(x)
    assert out.features is x and out.attention is None and out.temporal is None
    assert not list(module.parameters())


def test_sa_on_a_hand_checkable_input():
    # Pixels of value 0 and 2: A = sigmoid(ReLU(0)) = 0.5 and sigmoid(2);
    # out = X * (1 + A) = 0 and 2 (1 + sigmoid(2)).
    module = LongTermAttention("SA", map_size=S)
    set_relu_identity_sa(module)
    maps = torch.zeros(1, 2, S, S)
    maps[0, 1, 2, 3] = 2.0
    out = module(maps_to_features(maps))
    attention = out.attention.transpose(1, 2).reshape(1, 2, S, S)
    features = out.features.transpose(1, 2).reshape(1, 2, S, S)
    assert attention[0, 0].eq(0.5).all()
    assert attention[0, 1, 2, 3].item() == pytest.approx(1 / (1 + torch.e**-2.0))
    assert features[0, 1, 2, 3].item() == pytest.approx(2 * (1 + 1 / (1 + torch.e**-2.0)))
    assert features.count_nonzero() == 1


def test_modes_follow_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, S * S, 5)

    def relu_sa(y):
        return torch.sigmoid(torch.relu(y))

    # SA: out = X (1 + SA(X)), residual Y = X
    sa = LongTermAttention("SA", map_size=S)
    set_relu_identity_sa(sa)
    out = sa(x)
    torch.testing.assert_close(out.attention, relu_sa(x))
    torch.testing.assert_close(out.features, x * (1 + relu_sa(x)))
    assert out.temporal is None and out.residual is x

    # TA: out = X (1 + sigmoid(TA(X))), TA = the ConvLSTM's raw top hidden maps
    ta = LongTermAttention("TA", map_size=S)
    out = ta(x)
    raw = maps_to_features(ta.temporal(x.transpose(1, 2).reshape(2, 5, 1, S, S)).squeeze(2))
    torch.testing.assert_close(out.temporal, raw)
    assert raw.abs().max() < 1  # bounded hidden state, no sigmoid applied to TA itself
    torch.testing.assert_close(out.features, x * (1 + torch.sigmoid(raw)))

    # STA: A = SA(X + TA(X)) with a raw TA; the gate multiplies X, not X + TA
    sta = LongTermAttention("STA", map_size=S)
    set_relu_identity_sa(sta)
    out = sta(x)
    raw = maps_to_features(sta.temporal(x.transpose(1, 2).reshape(2, 5, 1, S, S)).squeeze(2))
    torch.testing.assert_close(out.residual, x + raw)
    torch.testing.assert_close(out.attention, relu_sa(x + raw))
    torch.testing.assert_close(out.features, x * (1 + relu_sa(x + raw)))


def test_sta_gradcheck_float64_train_mode():
    torch.manual_seed(1)
    module = LongTermAttention("STA", map_size=4, hidden_channels=(2, 1), sa_channels=(2, 3)).double().train()
    x = torch.randn(2, 16, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])

    # Check the input and two weights deep in the path (the ConvLSTM's first gates, SA's first conv).
    names = ("temporal.cells.0.gates.weight", "spatial.0.weight")
    weights = tuple(dict(module.named_parameters())[n].detach().clone().requires_grad_() for n in names)

    def run(inp, *w):
        out = torch.func.functional_call(module, dict(zip(names, w)), (inp, mask))
        return out.features, out.attention

    assert torch.autograd.gradcheck(run, (x, *weights), eps=1e-6, atol=1e-6)


def test_sta_gradcheck_float64_eval_mode_reference_sizes():
    torch.manual_seed(2)
    module = LongTermAttention("STA", map_size=4).double().eval()
    x = torch.randn(1, 16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: module(inp).features, (x,), eps=1e-6, atol=1e-6)


def test_padding_never_changes_valid_steps_with_masked_batchnorm():
    torch.manual_seed(3)
    alone_x = torch.randn(2, S * S, 4, dtype=torch.float64)
    padded_x = torch.cat([alone_x, 50 * torch.randn(2, S * S, 3, dtype=torch.float64)], dim=2)
    mask = torch.tensor([[True] * 4 + [False] * 3] * 2)
    alone = LongTermAttention("STA", map_size=S).double().train()
    padded = LongTermAttention("STA", map_size=S).double().train()
    padded.load_state_dict(alone.state_dict())

    a = alone(alone_x, torch.ones(2, 4, dtype=torch.bool))
    p = padded(padded_x, mask)
    for name in ("features", "attention", "temporal", "residual"):
        torch.testing.assert_close(getattr(p, name)[..., :4], getattr(a, name), rtol=0, atol=1e-12)
    assert (p.attention[..., 4:] == 0).all() and (p.temporal[..., 4:] == 0).all()
    # BatchNorm's running statistics saw the same (valid) maps
    for key, value in alone.state_dict().items():
        torch.testing.assert_close(padded.state_dict()[key], value, rtol=0, atol=1e-12)

    # The reference's BN over padding: zero padding shifts the batch statistics, hence the valid outputs.
    reference = LongTermAttention("STA", map_size=S, bn_over_padding=True).double().train()
    reference.load_state_dict(alone.state_dict())
    zero_padded = torch.cat([alone_x, torch.zeros(2, S * S, 3, dtype=torch.float64)], dim=2)
    r = reference(zero_padded, mask)
    assert not torch.allclose(r.features[..., :4], a.features)


def test_bn_over_padding_runs_every_step_like_real_ones():
    torch.manual_seed(4)
    x = torch.randn(2, S * S, 5)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    module = LongTermAttention("STA", map_size=S, bn_over_padding=True).train()
    # With every step treated as valid the result is the same: the mask is ignored.
    torch.testing.assert_close(module(x, mask).features, module(x).features)


@pytest.mark.parametrize("mode", ["TA", "SA", "STA"])
def test_every_parameter_gets_a_gradient(mode):
    torch.manual_seed(5)
    module = LongTermAttention(mode, map_size=S).train()
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    out = module(torch.randn(2, S * S, 4), mask)
    (out.features.square().sum() + out.residual.sum()).backward()
    params = dict(module.named_parameters())
    assert params
    assert (module.temporal is None) == (mode == "SA") and (module.spatial is None) == (mode == "TA")
    for name, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_wrong_feature_size_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 4096"):
        LongTermAttention()(torch.zeros(1, 100, 3))


@pytest.mark.parametrize("mask", [None, torch.tensor([[True] * 40, [True] * 27 + [False] * 13])])
def test_eval_mode_scores_maps_in_blocks_with_the_same_numbers(mask):
    # In eval mode SA's BatchNorm uses running statistics, so scoring the maps in blocks changes nothing.
    torch.manual_seed(6)
    module = LongTermAttention("STA", map_size=S).eval()
    with torch.no_grad():
        module.spatial[1].running_mean.uniform_(-0.5, 0.5)
        module.spatial[4].running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, S * S, 40)
    with torch.no_grad():
        blocked = module(x, mask)
        module.SA_BLOCK = 10**6  # one pass over every map
        whole = module(x, mask)
    assert module.SA_BLOCK > LongTermAttention.SA_BLOCK == 16
    torch.testing.assert_close(blocked.attention, whole.attention, rtol=0, atol=1e-6)
    torch.testing.assert_close(blocked.features, whole.features, rtol=0, atol=1e-6)


def sa_pair(dtype, momentum=0.1):
    """Two SpatialAttention modules with the same weights: one run as written (nn.Sequential), one chunked."""
    torch.manual_seed(7)
    chunked = SpatialAttention().to(dtype).train()
    chunked.CHUNKED_ABOVE = 16  # chunks from 17 maps on (the default waits for 129)
    for bn in (chunked[1], chunked[4]):
        bn.momentum = momentum
        with torch.no_grad():  # not the defaults, so that a wrong update shows
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return chunked, copy.deepcopy(chunked)


def run_both(chunked, plain, frames, upstream):
    a = frames.clone().requires_grad_(True)
    b = frames.clone().requires_grad_(True)
    out_a, out_b = chunked(a), nn.Sequential.forward(plain, b)  # the chunks, and every layer at once
    (out_a * upstream).sum().backward()
    (out_b * upstream).sum().backward()
    return (out_a, a.grad), (out_b, b.grad)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_sa_training_in_chunks_equals_the_plain_network_float64(momentum):
    # 37 maps in chunks of 16: three chunks, the last one short. BatchNorm's statistics must be those of all 37.
    chunked, plain = sa_pair(torch.float64, momentum)
    frames = channels_last(2.0 * torch.randn(37, 1, 10, 10, dtype=torch.float64) + 0.5)
    upstream = torch.randn(37, 1, 10, 10, dtype=torch.float64)
    for _ in range(2):  # twice: the running statistics' second update (momentum None: a cumulative average)
        (out_a, grad_a), (out_b, grad_b) = run_both(chunked, plain, frames, upstream)
        assert out_a.grad_fn is not None and type(out_a.grad_fn).__name__.startswith("_ChunkedTraining")
        torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-13)
        torch.testing.assert_close(grad_a, grad_b, rtol=1e-11, atol=1e-13)
    for (name, p), q in zip(chunked.named_parameters(), plain.parameters()):
        if name in ("0.bias", "3.bias"):  # a bias right before BatchNorm: zero gradient, rounding noise only
            assert p.grad.abs().max() < 1e-10 and q.grad.abs().max() < 1e-10
        else:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-11, atol=1e-12, msg=name)
    for (name, a), b in zip(chunked.named_buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14, msg=name)
    assert int(chunked[1].num_batches_tracked) == 2


def test_sa_training_in_chunks_float32_paper_maps():
    # Against the float64 network: the chunks sum BatchNorm's terms and the weight gradients in float64, so in
    # float32 they land closer to it (~1e-6 relative) than autograd through the plain network does (~1e-3:
    # BatchNorm's float32 sums over 160k values a channel).
    chunked, plain = sa_pair(torch.float32)
    truth = copy.deepcopy(plain).double()
    frames = channels_last(torch.rand(40, 1, 64, 64))
    upstream = torch.randn(40, 1, 64, 64)
    (out, grad), _ = run_both(chunked, plain, frames, upstream)
    _, (out64, grad64) = run_both(copy.deepcopy(truth), truth, frames.double(), upstream.double())
    torch.testing.assert_close(out.double(), out64, rtol=0, atol=1e-5)
    assert (grad.double() - grad64).norm() < 1e-4 * grad64.norm()
    for (name, p), q in zip(chunked.named_parameters(), truth.parameters()):
        if name not in ("0.bias", "3.bias"):  # zero gradient before BatchNorm
            torch.testing.assert_close(p.grad.double(), q.grad, rtol=0, atol=1e-4 * q.grad.abs().max().item(), msg=name)


def test_sa_chunks_keep_only_input_and_output_and_run_only_when_needed():
    chunked, _ = sa_pair(torch.float32)
    frames = channels_last(torch.rand(20, 1, 8, 8)).requires_grad_(True)
    out = chunked(frames)
    kept = out.grad_fn.saved_tensors
    assert len(kept) == 2 and kept[0].shape == kept[1].shape == (20, 1, 8, 8)
    # Not chunked: up to CHUNKED_ABOVE maps, no gradients, eval mode.
    assert "_Chunked" not in type(chunked(frames[:16]).grad_fn).__name__
    assert "_Chunked" not in type(SpatialAttention()(frames).grad_fn).__name__  # 20 maps <= 128
    with torch.no_grad():
        assert chunked(frames).grad_fn is None
    chunked.eval()
    assert "_Chunked" not in type(chunked(frames).grad_fn).__name__
    # Frames without gradient: the parameters still get theirs.
    chunked.train()
    chunked(frames.detach()).sum().backward()
    assert all(p.grad is not None for p in chunked.parameters())


def test_sa_chunks_gradcheck_float64():
    chunked, _ = sa_pair(torch.float64)
    chunked.CHUNK, chunked.CHUNKED_ABOVE = 3, 3  # 7 maps: chunks of 3, 3 and 1
    frames = torch.randn(7, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    weight = chunked[3].weight.detach().clone().requires_grad_(True)

    def run(inp, w):
        return torch.func.functional_call(chunked, {"3.weight": w}, (inp,))

    assert torch.autograd.gradcheck(run, (frames, weight), eps=1e-6, atol=1e-6)


def test_sa_eval_mode_folds_batchnorm_into_the_convolutions():
    # With running statistics BatchNorm is a per-channel affine map; folded into the convolution before it,
    # it gives the same attention and the same gradients (float64).
    module, plain = sa_pair(torch.float64)
    module.eval(), plain.eval()
    frames = channels_last(torch.randn(9, 1, 12, 12, dtype=torch.float64))
    upstream = torch.randn(9, 1, 12, 12, dtype=torch.float64)
    (out_a, grad_a), (out_b, grad_b) = run_both(module, plain, frames, upstream)
    assert "_Chunked" not in type(out_a.grad_fn).__name__
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-14)
    torch.testing.assert_close(grad_a, grad_b, rtol=0, atol=1e-13)
    for (name, p), q in zip(module.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-13, msg=name)
    assert all(torch.equal(a, b) for a, b in zip(module.buffers(), plain.buffers()))  # eval: nothing moves
