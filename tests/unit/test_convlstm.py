"""ConvLSTM (eq. 1): equals a naive step-by-step implementation, masks keep padding out, all weights learn."""

import torch
import torch.nn.functional as F

from xcalab.models import ConvLSTM


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


def test_reference_architecture():
    model = ConvLSTM()
    assert [cell.hidden_channels for cell in model.cells] == [8, 8, 1]
    # gates: (1+8)->32, (8+8)->32, (8+1)->4, all 3x3 with bias: 2624 + 4640 + 328 (the reference's: about 7.6 k)
    assert sum(p.numel() for p in model.parameters()) == 7592


def test_matches_naive_loop():
    torch.manual_seed(0)
    model = ConvLSTM().double()
    x = torch.randn(2, 5, 1, 6, 7, dtype=torch.float64)
    out = model(x)
    assert out.shape == (2, 5, 1, 6, 7)
    torch.testing.assert_close(out, naive_convlstm(model, x), rtol=0, atol=1e-12)


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
