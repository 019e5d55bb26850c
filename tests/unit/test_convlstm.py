"""ConvLSTM (eq. 1): equals a naive step-by-step implementation and the previous implementation, masks keep
padding out, all weights learn, backpropagation through time written out gives autograd's gradients,
activation checkpointing keeps the gradients, two threads compute what one computes."""

import threading

import pytest
import torch
import torch.nn.functional as F

from xcalab.config import ModelConfig, config_from_dict, config_to_dict, get_preset
from xcalab.models import ConvLSTM, LongTermAttention
from xcalab.models.detector import build_detector


def naive_convlstm(model: ConvLSTM, x: torch.Tensor) -> torch.Tensor:
    """An independent, plain reading of eq. 1 (no peepholes): separate input and hidden convolutions.

    The model's single convolution over [x_t, h_{t-1}] equals W_x * x_t + W_h * h_{t-1} + b, so we split
    its weight by input channel and run each gate's formula literally, one layer and one step at a time.
    """
    batch, steps, _, height, width = x.shape
    layer_input = [x[:, t] for t in range(steps)]
    for cell in model.cells:
        weight, bias = cell.gates.weight, cell.gates.bias
        n_in, n_h = layer_input[0].shape[1], cell.hidden_channels
        w_x, w_h = weight[:, :n_in], weight[:, n_in:]
        h = torch.zeros(batch, n_h, height, width, dtype=x.dtype)
        c = torch.zeros_like(h)
        outputs = []
        for x_t in layer_input:
            z = F.conv2d(x_t, w_x, bias, padding=1) + F.conv2d(h, w_h, padding=1)
            i = torch.sigmoid(z[:, 0 * n_h : 1 * n_h])
            f = torch.sigmoid(z[:, 1 * n_h : 2 * n_h])
            o = torch.sigmoid(z[:, 2 * n_h : 3 * n_h])
            g = torch.tanh(z[:, 3 * n_h : 4 * n_h])
            c = f * c + i * g
            h = o * torch.tanh(c)
            outputs.append(h)
        layer_input = outputs
    return torch.stack(layer_input, dim=1)


def stepwise_reference(
    model: ConvLSTM, x: torch.Tensor, mask: torch.Tensor | None = None, gates: dict | None = None
) -> torch.Tensor:
    """The ConvLSTM as xcalab computed it before the fast version (commit 7a17fd8), kept as the reference
    the fast one must equal: per layer and step, one convolution over the concatenation [x_t, h_{t-1}],
    three sigmoids and two tanh, and a select between the old and the new state wherever a mask is given.
    Same arguments and result as ``ConvLSTM.forward``; it reads the model's parameters."""
    batch, _, _, height, width = x.shape
    steps = list(x.unbind(dim=1))
    keep = None if mask is None else [m.view(batch, 1, 1, 1) for m in mask.unbind(dim=1)]
    idle = [False] * len(steps) if mask is None else (~mask.any(dim=0)).tolist()
    for layer, cell in enumerate(model.cells):
        h = x.new_zeros(batch, cell.hidden_channels, height, width)
        c = torch.zeros_like(h)
        outputs, trace = [], []
        record = gates is not None and layer == len(model.cells) - 1
        for t, x_t in enumerate(steps):
            if idle[t]:
                outputs.append(torch.zeros_like(h))
                trace.append((torch.zeros_like(h),) * 3)
                continue
            i, f, o, g = cell.gates(torch.cat([x_t, h], dim=1)).chunk(4, dim=1)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            c_new = f * c + i * torch.tanh(g)
            h_new = o * torch.tanh(c_new)
            if record:
                trace.append((i, f, o) if keep is None else tuple(v * keep[t] for v in (i, f, o)))
            if keep is None:
                h, c = h_new, c_new
                outputs.append(h)
            else:
                h = torch.where(keep[t], h_new, h)
                c = torch.where(keep[t], c_new, c)
                outputs.append(h_new * keep[t])
        steps = outputs
        if record:
            for k, name in enumerate(("input", "forget", "output")):
                gates[name] = torch.stack([v[k] for v in trace], dim=1)
    return torch.stack(steps, dim=1)


def padded_mask(steps: int, lengths: list[int], holes: tuple[tuple[int, int], ...] = ()) -> torch.Tensor:
    """(len(lengths), steps) bool: video b valid on [0, lengths[b]), minus the (video, step) pairs in ``holes``."""
    mask = torch.arange(steps)[None] < torch.tensor(lengths)[:, None]
    for b, t in holes:
        mask[b, t] = False
    return mask


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def test_reference_architecture():
    model = ConvLSTM()
    assert [cell.hidden_channels for cell in model.cells] == [8, 8, 1]
    # gates: (1+8)->32, (8+8)->32, (8+1)->4, all 3x3 with bias: 2624 + 4640 + 328 (the reference's: about 7.6 k)
    assert sum(p.numel() for p in model.parameters()) == 7592


@pytest.mark.parametrize("grad", [True, False])
def test_matches_naive_loop(grad):
    # With autograd (one convolution over [x_t, h] per step) and without (the input part for a block of
    # steps at once): 11 steps span two blocks.
    torch.manual_seed(0)
    model = ConvLSTM().double()
    x = torch.randn(2, 11, 1, 6, 7, dtype=torch.float64)
    with torch.set_grad_enabled(grad):
        out = model(x)
    assert out.shape == (2, 11, 1, 6, 7)
    torch.testing.assert_close(out, naive_convlstm(model, x), rtol=0, atol=1e-12)


def test_the_single_step_cell_is_eq_1():
    torch.manual_seed(5)
    model = ConvLSTM(1, (3,)).double()
    x = torch.randn(2, 2, 1, 5, 5, dtype=torch.float64)
    h, c = torch.zeros(2, 3, 5, 5, dtype=torch.float64), torch.zeros(2, 3, 5, 5, dtype=torch.float64)
    for t in range(2):
        h, c = model.cells[0](x[:, t], (h, c))
    torch.testing.assert_close(h, naive_convlstm(model, x)[:, 1], rtol=0, atol=1e-12)


def test_right_padding_does_not_reach_valid_steps():
    torch.manual_seed(1)
    model = ConvLSTM().double()
    alone = torch.randn(1, 4, 1, 5, 5, dtype=torch.float64)
    padded = torch.cat([alone, 100 * torch.randn(1, 3, 1, 5, 5, dtype=torch.float64)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    expected = model(alone)
    torch.testing.assert_close(model(padded)[:, :4], expected, rtol=0, atol=0)  # causal: no mask needed
    with_mask = model(padded, mask)
    torch.testing.assert_close(with_mask[:, :4], expected, rtol=0, atol=0)
    assert (with_mask[:, 4:] == 0).all()


def test_masked_step_is_skipped_anywhere():
    # A masked step in the middle leaves the state alone: the valid outputs equal those of the
    # sequence with that step cut out.
    torch.manual_seed(2)
    model = ConvLSTM().double()
    x = torch.randn(1, 5, 1, 5, 5, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True, True]])
    out = model(x, mask)
    cut = model(x[:, [0, 1, 3, 4]])
    torch.testing.assert_close(out[:, [0, 1, 3, 4]], cut, rtol=0, atol=1e-12)
    assert (out[:, 2] == 0).all()


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(3)
    model = ConvLSTM()
    model(
        torch.randn(2, 3, 1, 6, 6), torch.tensor([[True] * 3, [True, True, False]])
    ).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_batch_of_different_lengths_equals_each_video_alone():
    # Steps masked in every video are not computed at all; steps masked in one video only are. Both must
    # give each video's own result, and padded inputs must get no gradient.
    torch.manual_seed(4)
    model = ConvLSTM().double()
    lengths = [3, 5]
    x = torch.randn(2, 7, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    out = model(x, mask)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out[b : b + 1, :n], model(x[b : b + 1, :n]), rtol=0, atol=1e-12)
        assert (out[b, n:] == 0).all()
    out.sum().backward()
    assert (x.grad[0, 3:] == 0).all() and (x.grad[1, 5:] == 0).all()
    assert (x.grad[1, :5] != 0).any()


# --------------------------------------------------------------------------------------------------
# The fast implementation equals the previous one (``stepwise_reference``)
# --------------------------------------------------------------------------------------------------

MASKS = {
    "none": None,
    "right padding": padded_mask(21, [21, 13]),
    "padding and holes": padded_mask(21, [17, 13], holes=((0, 0), (0, 9), (1, 5))),
}


def max_relative_difference(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """The largest of max |a - b| / max |b| over pairs of tensors."""
    assert len(got) == len(want)
    return max(relative_difference(a, b) for a, b in zip(got, want))


#: How ``ConvLSTM.forward`` runs: with autograd (backpropagation through time by hand), with autograd and the
#: gates recorded (the plain reading, ``cell.step`` under autograd), without autograd.
SCHEDULES = ["training", "recorded", "inference"]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_equals_the_previous_implementation(schedule, mask):
    # The reference's sizes: 3 layers (8, 8, 1) on 64 x 64 maps, float32, 21 steps (three blocks). Recorded
    # gates with autograd run the previous computation itself: bit for bit, gradients included. The
    # training schedule gives the outputs to float32 rounding and every gradient within 1e-4 of the largest
    # (about 2e-5 here: the weight gradients are sums over B * T * H * W terms); inference the outputs and gates.
    torch.manual_seed(6)
    model = ConvLSTM()
    x = torch.rand(2, 21, 1, 64, 64)
    grad, record = schedule != "inference", schedule != "training"
    results = []
    for run in (model.forward, lambda *a: stepwise_reference(model, *a)):
        model.zero_grad()
        inp = x.clone().requires_grad_(grad)
        gates: dict[str, torch.Tensor] = {}
        with torch.set_grad_enabled(grad):
            out = run(inp, mask, gates if record else None)
            if grad:
                (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads = [inp.grad] + [p.grad for p in model.parameters()] if grad else []
        results.append((out.detach(), {k: v.detach() for k, v in gates.items()}, grads))
    (fast, fast_gates, fast_grads), (ref, ref_gates, ref_grads) = results
    assert fast_gates.keys() == ref_gates.keys() == ({"input", "forget", "output"} if record else set())
    if schedule == "recorded":
        assert torch.equal(fast, ref)
        assert all(torch.equal(fast_gates[name], ref_gates[name]) for name in ref_gates)
        assert len(fast_grads) == 7 and all(torch.equal(a, b) for a, b in zip(fast_grads, ref_grads))
        return
    assert (fast - ref).abs().max() <= 1e-5
    for name in ref_gates:
        assert (fast_gates[name] - ref_gates[name]).abs().max() <= 1e-5, name
    if schedule == "training":
        assert len(fast_grads) == 7 and all(g.abs().max() > 0 for g in ref_grads)
        assert max_relative_difference(fast_grads, ref_grads) <= 1e-4


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_backpropagation_through_time_is_exact_in_float64(mask):
    # In float64 the written-out backward pass and autograd through the plain reading agree to ~1e-15: the
    # same derivatives, only the order of the sums differs. Checkpointed (chunks of 8 steps) and not.
    torch.manual_seed(14)
    x = torch.rand(2, 21, 1, 9, 7, dtype=torch.float64)
    for steps in (0, 8):
        model = ConvLSTM(checkpoint_steps=steps).double().train()
        results = []
        for reference in (False, True):
            model.zero_grad()
            inp = x.clone().requires_grad_()
            out = stepwise_reference(model, inp, mask) if reference else model(inp, mask)
            (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
            results.append([out.detach(), inp.grad] + [p.grad for p in model.parameters()])
        assert max_relative_difference(*results) <= 1e-12


@pytest.mark.parametrize("preset", ["paper", "teach"])
def test_the_detector_computes_what_it_computed_before(preset):
    """The preset's detector, once with its ConvLSTM and once with ``stepwise_reference`` in its place.

    Eval mode without autograd (the fast schedule): the long-term outputs and the detector's logits and offsets
    to float32 rounding. Train mode: in float64 every gradient
    that is not zero by construction agrees to 1e-9 (the same derivatives). In float32 the paper detector's
    ConvLSTM gradients agree within 1e-4 of their largest entry, everything else within 1e-3: float32 rounding
    of the forward pass (~1e-7) is amplified by SA's BatchNorm chain, whose float32 gradients are themselves
    only ~2e-3 from float64's, old and new alike (the teach detector's ConvLSTM reaches 1.1e-4)."""
    cfg = get_preset(preset)
    torch.manual_seed(7)
    model = build_detector(cfg)
    features = torch.rand(2, cfg.features.dim, 80)  # ten blocks of steps
    mask = padded_mask(80, [80, 67])

    def run(model, train: bool, reference: bool):
        temporal = model.long_term.temporal
        model.train(train)
        model.zero_grad()
        if reference:
            temporal.forward = lambda x, m=None, gates=None: stepwise_reference(temporal, x, m, gates)
        try:
            torch.manual_seed(8)  # the same drop-path draws in both runs
            dtype = next(model.parameters()).dtype
            with torch.set_grad_enabled(train):
                long_term = model.long_term(features.to(dtype), mask)
                out = model(features.to(dtype), mask)
                if train:
                    (sum(z.square().mean() for z in out.cls_logits) + sum(o.mean() for o in out.offsets)).backward()
        finally:
            temporal.__dict__.pop("forward", None)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None} if train else {}
        return long_term, out, grads

    fast, ref = run(model, False, False), run(model, False, True)
    for name in ("features", "attention", "temporal", "residual"):
        assert (getattr(fast[0], name) - getattr(ref[0], name)).abs().max() <= 1e-5, name
    for a, b in zip(fast[1].cls_logits + fast[1].offsets, ref[1].cls_logits + ref[1].offsets):
        assert (a - b).abs().max() <= 1e-5
    fast, ref = run(model, True, False)[2], run(model, True, True)[2]
    assert fast.keys() == ref.keys() and any(k.startswith("long_term.temporal.") for k in ref)
    double = build_detector(cfg).double()
    double.load_state_dict(model.state_dict())
    fast64, ref64 = run(double, True, False)[2], run(double, True, True)[2]
    # Zero by construction (a bias before BatchNorm, the attention keys' biases): rounding noise only.
    real = [name for name, grad in ref64.items() if grad.abs().max() > 1e-12]
    assert any(name.startswith("long_term.temporal.") for name in real) and len(real) > len(ref) / 2
    for name in real:
        assert relative_difference(fast64[name], ref64[name]) <= 1e-9, name
        tolerance = 1e-4 if preset == "paper" and name.startswith("long_term.temporal.") else 1e-3
        assert relative_difference(fast[name], ref[name]) <= tolerance, name


def test_parameters_keep_their_names_and_shapes():
    # Shipped weights load unchanged: the split of the gate convolution happens at run time.
    shapes = {name: tuple(p.shape) for name, p in ConvLSTM().state_dict().items()}
    assert shapes == {
        "cells.0.gates.weight": (32, 9, 3, 3), "cells.0.gates.bias": (32,),
        "cells.1.gates.weight": (32, 16, 3, 3), "cells.1.gates.bias": (32,),
        "cells.2.gates.weight": (4, 9, 3, 3), "cells.2.gates.bias": (4,),
    }


def count_calls(model, op: str, *args) -> int:
    """How often the ATen operator ``op`` (e.g. "aten::where") runs in ``model(*args)`` without autograd."""
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model(*args)
    return sum(event.count for event in prof.key_averages() if event.key == op)


def test_no_per_step_select_unless_a_video_is_padded():
    torch.manual_seed(9)
    model = ConvLSTM(1, (2, 1))
    x = torch.rand(2, 6, 1, 5, 5)
    assert count_calls(model, "aten::where", x) == 0
    assert count_calls(model, "aten::where", x, torch.ones(2, 6, dtype=torch.bool)) == 0
    # Padding after the longest video only: those steps are dropped, the rest needs no select.
    assert count_calls(model, "aten::where", x, padded_mask(6, [4, 4])) == 0
    # One video shorter than the other: a select (h and c, 2 layers) at each of its 2 padded steps.
    assert count_calls(model, "aten::where", x, padded_mask(6, [6, 4])) == 2 * 2 * 2


def test_autocast_bf16_keeps_the_state_in_float32():
    # The CUDA path runs under bf16 autocast; the CPU's autocast exercises the same code. As before, the
    # gates come out in bf16 while c and h stay in the input's float32, so the output is float32.
    torch.manual_seed(10)
    model = ConvLSTM()
    x = torch.rand(2, 12, 1, 16, 16)
    mask = padded_mask(12, [12, 9])
    expected = model(x, mask)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, mask)
        assert out.dtype == torch.float32
        assert (out - expected).abs().max() < 0.05


# --------------------------------------------------------------------------------------------------
# Activation checkpointing over chunks of steps
# --------------------------------------------------------------------------------------------------


def checkpointed_pair(steps: int = 3) -> tuple[ConvLSTM, ConvLSTM]:
    plain = ConvLSTM(1, (3, 2, 1)).double().train()
    chunked = ConvLSTM(1, (3, 2, 1), checkpoint_steps=steps).double().train()
    chunked.load_state_dict(plain.state_dict())
    return plain, chunked


@pytest.mark.parametrize("record", [False, True], ids=["training schedule", "recorded gates"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_checkpointing_gives_the_same_outputs_and_gradients(mask, dtype, record):
    # 21 steps in chunks of 5, rounded up to 8 (the last one shorter), the states carried from chunk to chunk;
    # padded batches included. Backward reruns the same operations on the same blocks of steps, so everything
    # is equal bit for bit, with the gates recorded (the plain reading under torch's checkpoint) or not.
    torch.manual_seed(11)
    plain, chunked = checkpointed_pair(5)
    x = torch.rand(2, 21, 1, 6, 6, dtype=torch.float64)
    results = []
    for model in (plain, chunked):
        model.to(dtype)
        inp = x.to(dtype).requires_grad_()
        gates: dict[str, torch.Tensor] = {}
        out = model(inp, mask, gates if record else None)
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum().backward()
        results.append([out, *gates.values(), inp.grad, *(p.grad for p in model.parameters())])
    assert len(results[0]) == 1 + 3 * record + 1 + 6
    assert all(torch.equal(got, want) for got, want in zip(*results))


def kept_bytes(model: ConvLSTM, x: torch.Tensor) -> int:
    """Bytes kept for backward after ``model(x)``: what autograd saves (outside checkpointed regions) and what
    the written-out backward pass keeps on its node (the chunk start states, or every block's maps), each
    storage counted once."""
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def walk(value) -> None:
        if isinstance(value, torch.Tensor):
            keep(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        out = model(x)
    node = out.grad_fn
    walk([getattr(node, "starts", None), getattr(node, "kept", None)])
    out.sum().backward()
    return sum(storages.values())


def test_checkpointing_keeps_only_each_chunks_input_and_state():
    torch.manual_seed(12)
    plain, chunked = checkpointed_pair(8)
    x = torch.rand(1, 64, 1, 8, 8, dtype=torch.float64)
    kept, everything = kept_bytes(chunked, x), kept_bytes(plain, x)
    # x and the states at 8 chunk starts against x and every step's gates and states
    assert kept < everything / 5
    # Only in training: in eval mode (gradients on, e.g. for a saliency map) every activation is kept.
    assert kept_bytes(chunked.eval(), x) == everything
    # Only sequences longer than checkpoint_steps are recomputed, in chunks of at most CHECKPOINT_CHUNK steps.
    long_threshold = ConvLSTM(1, (3, 2, 1), checkpoint_steps=64).double().train()
    long_threshold.load_state_dict(plain.state_dict())
    assert kept_bytes(long_threshold, x) == everything
    assert ConvLSTM.CHECKPOINT_CHUNK == 32
    longer = torch.rand(1, 72, 1, 8, 8, dtype=torch.float64)
    assert kept_bytes(long_threshold, longer) < kept_bytes(plain, longer) / 3


def test_gradcheck_through_checkpointed_chunks_with_a_mask():
    # 10 steps in chunks of 8: the state and its gradient cross a chunk boundary; a hole and padding.
    torch.manual_seed(13)
    model = ConvLSTM(1, (2, 1), checkpoint_steps=8).double().train()
    x = torch.randn(2, 10, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    mask = padded_mask(10, [10, 9], holes=((0, 2), (1, 8)))
    names = ("cells.0.gates.weight", "cells.1.gates.bias", "cells.1.gates.weight")
    weights = tuple(dict(model.named_parameters())[n].detach().clone().requires_grad_() for n in names)

    def run(inp, *w):
        return torch.func.functional_call(model, dict(zip(names, w)), (inp, mask))

    assert torch.autograd.gradcheck(run, (x, *weights), eps=1e-6, atol=1e-6)


def test_checkpoint_setting_is_how_training_runs_not_what_it_trains():
    teach = get_preset("teach")
    assert teach.model.convlstm_checkpoint_steps > 0
    off = teach.replace(model=teach.model.ablation(convlstm_checkpoint_steps=0))
    assert off.training_identity() == teach.training_identity()
    assert "convlstm_checkpoint_steps" not in teach.training_identity()["model"]
    # A configuration saved before the setting existed loads with the default and is the same training.
    saved = config_to_dict(teach)
    del saved["model"]["convlstm_checkpoint_steps"]
    assert config_from_dict(saved) == teach
    assert build_detector(off).long_term.temporal.checkpoint_steps == 0
    assert LongTermAttention("STA", map_size=4, checkpoint_steps=5).temporal.checkpoint_steps == 5


def test_bad_settings_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="checkpoint_steps"):
        ConvLSTM(checkpoint_steps=-1)
    with pytest.raises(ValueError, match="convlstm_checkpoint_steps"):
        ModelConfig(convlstm_checkpoint_steps=-2)
    with pytest.raises(ValueError, match=r"mask must be \(B, T\)"):
        ConvLSTM()(torch.zeros(2, 3, 1, 4, 4), torch.ones(2, 4, dtype=torch.bool))


# --------------------------------------------------------------------------------------------------
# Two threads: the first layer on the calling thread, the others on a helper thread
# --------------------------------------------------------------------------------------------------


def layer_threads(monkeypatch) -> dict[int, set[str]]:
    """Record which thread ran each layer's blocks: {layer index: {thread names}}."""
    seen: dict[int, set[str]] = {}
    original = ConvLSTM._layer_fast

    def spy(cell, *args, **kwargs):
        seen.setdefault(cell.hidden_channels * 100 + cell.in_channels, set()).add(threading.current_thread().name)
        return original(cell, *args, **kwargs)

    monkeypatch.setattr(ConvLSTM, "_layer_fast", staticmethod(spy))
    return seen


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_two_threads_compute_what_one_computes(mask, two_torch_threads, monkeypatch):
    # One video: inference, and training with and without checkpointing (the recomputation in backward runs
    # on two threads too): outputs and every gradient bit for bit, the thread count given back afterwards.
    torch.manual_seed(12)
    x = torch.rand(1, 21, 1, 16, 16)
    mask = None if mask is None else mask[1:]
    results = {}
    for two in (True, False):
        monkeypatch.setattr(ConvLSTM, "TWO_THREADS", two)
        for chunk in (0, 8):
            torch.manual_seed(13)
            model = ConvLSTM(checkpoint_steps=chunk)
            with torch.no_grad():
                inferred = model(x, mask)
            inp = x.clone().requires_grad_(True)
            out = model(inp, mask)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            results[two, chunk] = [inferred, out.detach(), inp.grad] + [p.grad for p in model.parameters()]
            assert torch.get_num_threads() == 2
    for chunk in (0, 8):
        assert all(torch.equal(a, b) for a, b in zip(results[True, chunk], results[False, chunk]))


def test_two_threads_split_the_layers_and_only_when_they_can(two_torch_threads, monkeypatch):
    model = ConvLSTM()  # layers keyed 800 + 1, 800 + 8, 100 + 8 (hidden * 100 + input channels)
    x = torch.rand(1, 17, 1, 8, 8)
    seen = layer_threads(monkeypatch)
    with torch.no_grad():
        model(x)
    caller = threading.current_thread().name
    assert seen == {801: {caller}, 808: {"convlstm-upper-layers"}, 108: {"convlstm-upper-layers"}}
    # One torch thread, recorded gates, one block of steps, two videos: one thread.
    for run in (lambda: model(x, None, {}), lambda: model(x[:, :8]), lambda: model(x.expand(2, -1, -1, -1, -1))):
        seen.clear()
        with torch.no_grad():
            run()
        assert set().union(*seen.values()) == {caller}
    torch.set_num_threads(1)
    seen.clear()
    with torch.no_grad():
        model(x)
    assert set().union(*seen.values()) == {caller}


def test_a_failure_on_the_helper_thread_is_raised_by_the_caller(two_torch_threads, monkeypatch):
    original = ConvLSTM._layer_fast

    def failing(cell, *args, **kwargs):
        if threading.current_thread().name == "convlstm-upper-layers":
            raise RuntimeError("layer failed")
        return original(cell, *args, **kwargs)

    monkeypatch.setattr(ConvLSTM, "_layer_fast", staticmethod(failing))
    with pytest.raises(RuntimeError, match="layer failed"), torch.no_grad():
        ConvLSTM()(torch.rand(1, 40, 1, 8, 8))
    assert torch.get_num_threads() == 2
    assert not any(t.name == "convlstm-upper-layers" for t in threading.enumerate())
