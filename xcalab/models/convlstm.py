"""ConvLSTM: the recurrent network behind the temporal attention TA (seed paper Sec. III-C, eq. 1).

A ConvLSTM is an LSTM whose gates are convolutions, so its hidden state is an image, not a vector.
At step t one convolution reads the input map and the previous hidden map side by side and gives the
four gates at once (the reference's formulation, which has no peephole terms W_c * c):

    i, f, o, g = split(Conv([x_t, h_{t-1}]))          4 * C_h channels, in this order
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

Layers are stacked: layer l+1 reads layer l's hidden maps. The STA-IPCon reference uses three layers
with 8, 8 and 1 hidden channels, 3 x 3 kernels, zero initial state, and returns the last layer's hidden
maps.

Two schedules of the same arithmetic, with the same parameters (``cells.<l>.gates.weight`` and ``.bias``:
every saved ``state_dict`` loads unchanged):

- With autograd (training), the steps run as the equation reads: per layer and step one convolution over
  [x_t, h_{t-1}], the three sigmoids and two tanh. This is the computation xcalab has always trained with,
  bit for bit, so a retrained model equals a shipped one. (The fast schedule below was tried there too and
  was no faster on the CPU: the backward passes of its two convolutions cost more than the one's.)
- Without autograd (inference) the recurrence does less per step. A convolution over the concatenation
  [x_t, h_{t-1}] is the sum of one convolution per part of its weight, W_x * x_t + W_h * h_{t-1} + b, and
  only the second part depends on the previous step: the input part runs for a block of steps at once
  (one convolution over the block's B * T frames), the time loop only the hidden part (none at t = 0,
  where h = 0). The gate update is one ``sigmoid`` over all four gates' contiguous channels and a few
  products: tanh(z) = 2 sigmoid(2 z) - 1, the factor 2 folded into the candidate's rows of the weight
  (exact), because the CPU's tanh costs about nine times its sigmoid. No per-step select between old and
  new state unless a video of the batch is masked at that step. Equal to the first schedule to float32
  rounding (~1e-7; tested against it and against a naive reading of eq. 1).

The time recurrence is the one per-step Python loop of the model; per-step tensors are views taken once
(``unbind``), so each step's backward touches only its own slice and backward time grows linearly with T.

Training memory. Autograd keeps about a dozen maps per step and layer for the backward pass (~4 MB per
step at the paper's sizes for a batch of 2, 2 GB at T = 512). With ``checkpoint_steps = K`` the training
forward runs in chunks of K steps under ``torch.utils.checkpoint``: only each chunk's input and the
(h, c) it starts from are kept, and backward recomputes one chunk at a time (one more forward pass in
time, the same gradients bit for bit: the recomputation repeats the same operations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

#: One state (h, c) per layer, each (B, C_h, H, W); None for the zero state before the first step.
States = list[tuple[Tensor, Tensor] | None]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer, eq. 1: its gate convolution and the gate update.

    in_channels       channels of the input map x_t
    hidden_channels   channels C_h of the hidden and cell maps
    kernel_size       odd kernel of the gate convolution ("same" zero padding)
    bias              whether the gate convolution has a bias

    ``forward`` / ``step`` run one step as the equation reads; ``gate_weights`` and ``fast_update`` are the
    parts of ``ConvLSTM``'s inference schedule.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        # One convolution gives all four gates from [x_t, h_{t-1}] (channel concatenation, input first).
        self.gates = nn.Conv2d(
            in_channels + hidden_channels,
            4 * hidden_channels,
            kernel_size,
            padding=kernel_size // 2,
            bias=bias,
        )
        self.gates.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """x (B, C_in, H, W); state = (h, c), each (B, C_h, H, W) -> (h_t, c_t), each (B, C_h, H, W)."""
        h, c, _ = self.step(x, state)
        return h, c

    def step(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """``forward`` that also returns the gates it used: (h_t, c_t, (i, f, o) after their sigmoid)."""
        h, c = state
        # channels-last: the CPU convolution kernels for these few-channel maps run ~1.5-2x faster so
        # (the same numbers up to float rounding; the gate convolution's weight is stored channels-last too).
        xh = torch.cat([x, h], dim=1).contiguous(memory_format=torch.channels_last)
        i, f, o, g = self.gates(xh).chunk(4, dim=1)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        c = f * c + i * torch.tanh(g)
        h = o * torch.tanh(c)
        return h, c, (i, f, o)

    def gate_weights(self) -> tuple[Tensor, Tensor | None]:
        """The gate convolution's weight (4 C_h, C_in + C_h, k, k) and bias (4 C_h,) (or None) as ``fast_update``
        wants them: the candidate g's rows doubled, so that the convolution gives 2 z_g for
        tanh(z_g) = 2 sigmoid(2 z_g) - 1 (a product by 2 is exact in floating point)."""
        n = self.hidden_channels
        weight, bias = self.gates.weight, self.gates.bias
        scale = torch.ones(4 * n, dtype=weight.dtype, device=weight.device)
        scale[3 * n :] = 2.0
        return weight * scale.view(-1, 1, 1, 1), None if bias is None else bias * scale

    def fast_update(self, z: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The gate update of eq. 1 in a few whole-tensor passes.

        z   (B, 4 C_h, H, W) the gate pre-activations [z_i, z_f, z_o, 2 z_g] (the candidate's doubled, see
            ``gate_weights``)
        c   (B, C_h, H, W) the cell map c_{t-1}
        ->  (h_t, c_t, ifo): h_t and c_t (B, C_h, H, W); ifo (B, 3 C_h, H, W) the input, forget and output
            gates after their sigmoid, stacked on channels in that order.

        One sigmoid over the four gates' contiguous channels, and every tanh as 2 sigmoid(2 x) - 1 (equal to
        float rounding, ~1e-7).
        """
        s = torch.sigmoid(z)
        i, f, o, s_g = s.chunk(4, dim=1)
        # f * c + i * g = f * c + i * (2 s_g - 1) = (f * c - i) + 2 i s_g
        c = torch.addcmul((f * c).sub_(i), i, s_g, value=2.0)
        # h = o * tanh(c) = 2 o sigmoid(2 c) - o
        h = torch.addcmul(-o, o, torch.sigmoid_(c * 2.0), value=2.0)
        return h, c, s[:, : 3 * self.hidden_channels]


class ConvLSTM(nn.Module):
    """A stack of ConvLSTM layers run forward in time; returns the last layer's hidden maps.

    in_channels       channels of each input map (1: one 64 x 64 vessel-feature map per step)
    hidden_channels   hidden channels per layer, bottom to top (reference: (8, 8, 1))
    kernel_size       gate-convolution kernel of every layer (reference: 3)
    bias              gate-convolution bias (reference: True)
    checkpoint_steps  in training (``self.training`` with gradients on), run the recurrence in chunks of
                      this many steps under activation checkpointing: less memory, one more forward pass
                      in backward, the same gradients. 0: keep every activation.

    The state starts at zero. With a validity ``mask``, a step whose mask is False leaves the state
    unchanged and outputs zeros, so masked steps never reach any other step, wherever they are. For
    the usual right padding this changes nothing at valid steps: a forward recurrence never looks
    ahead, so steps after the end cannot reach the steps before it anyway.
    """

    #: Steps per batched input convolution (inference). A few MB per block: one buffer for the whole
    #: sequence (256 MB per layer at T = 512) would be paged in afresh on every call and runs no faster.
    INPUT_BLOCK = 8

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: tuple[int, ...] = (8, 8, 1),
        kernel_size: int = 3,
        bias: bool = True,
        checkpoint_steps: int = 0,
    ):
        super().__init__()
        if checkpoint_steps < 0:
            raise ValueError(f"checkpoint_steps must be >= 0 (0: off), got {checkpoint_steps}")
        sizes = [in_channels, *hidden_channels]
        self.cells = nn.ModuleList(
            ConvLSTMCell(c_in, c_h, kernel_size, bias) for c_in, c_h in zip(sizes[:-1], sizes[1:])
        )
        self.checkpoint_steps = checkpoint_steps

    def forward(self, x: Tensor, mask: Tensor | None = None, gates: dict[str, Tensor] | None = None) -> Tensor:
        """x (B, T, C_in, H, W), mask (B, T) bool or None -> top-layer hidden maps (B, T, C_h, H, W).

        gates: a dict to fill with the top layer's gates, "input" / "forget" / "output", each
        (B, T, C_h, H, W) in (0, 1) (0 at masked steps), for looking at what the memory keeps.
        """
        batch, steps = x.shape[:2]
        if mask is not None and tuple(mask.shape) != (batch, steps):
            raise ValueError(f"mask must be (B, T) = {(batch, steps)}, got {tuple(mask.shape)}")
        active = None
        if mask is not None:
            # Steps masked in every video (the padding after the longest one) are not computed at all: they
            # would keep every state and output zeros. Training crops are padded to max_seq_len, so this
            # saves most of the recurrence on short videos.
            any_valid = mask.any(dim=0)
            if not bool(any_valid.all()):
                active = any_valid.nonzero().squeeze(1)
                x, mask = x.index_select(1, active), mask.index_select(1, active)
            # No masked step left: no per-step select between the old and the new state.
            if bool(mask.all()):
                mask = None
        record = gates is not None
        zero: States = [None] * len(self.cells)

        chunk = self.checkpoint_steps
        if chunk and self.training and torch.is_grad_enabled() and x.shape[1] > chunk:
            # Only each chunk's input and the states it starts from are kept; backward reruns the chunk.
            states, hidden, ifo = zero, [], []
            for start in range(0, x.shape[1], chunk):
                part = None if mask is None else mask[:, start : start + chunk]
                h_part, ifo_part, states = checkpoint(
                    self._run, x[:, start : start + chunk], part, states, record, use_reentrant=False
                )
                hidden.append(h_part)
                ifo.append(ifo_part)
            out = torch.cat(hidden, dim=1)
            top_ifo = torch.cat(ifo, dim=1) if record else None
        else:
            out, top_ifo, _ = self._run(x, mask, zero, record)

        if active is not None:  # the skipped steps output zeros (and record zero gates)
            out = out.new_zeros(batch, steps, *out.shape[2:]).index_copy(1, active, out)
            if top_ifo is not None:
                top_ifo = top_ifo.new_zeros(batch, steps, *top_ifo.shape[2:]).index_copy(1, active, top_ifo)
        if gates is not None:
            for name, value in zip(("input", "forget", "output"), top_ifo.chunk(3, dim=2)):
                gates[name] = value
        return out

    def _run(self, x: Tensor, mask: Tensor | None, states: States, record: bool) -> tuple[Tensor, Tensor | None, States]:
        """Every layer over a run of steps, starting from ``states``.

        x (B, T, C_in, H, W); mask (B, T) bool, or None when no step is masked; states (h, c) per layer, or
        None for zero -> (top hidden maps (B, T, C_top, H, W), the top layer's gates (B, T, 3 C_top, H, W) if
        ``record`` else None, the states after the last step).

        With autograd, layer by layer over all the steps (``_layer_stepwise``); without, in blocks of
        ``INPUT_BLOCK`` steps, every layer over one block before the next block (``_layer_fast``).
        """
        fast = not torch.is_grad_enabled()
        layer_step = self._layer_fast if fast else self._layer_stepwise
        block_steps = self.INPUT_BLOCK if fast else max(x.shape[1], 1)
        states = list(states)
        outputs: list[Tensor] = []
        trace: list[Tensor] = []
        for start in range(0, x.shape[1], block_steps):
            block = list(x[:, start : start + block_steps].unbind(dim=1))  # per-step views
            keep = self._selects(None if mask is None else mask[:, start : start + block_steps], len(block))
            for layer, cell in enumerate(self.cells):
                block, ifo, states[layer] = layer_step(cell, block, keep, states[layer], record and layer == len(self.cells) - 1)
            outputs.extend(block)
            trace.extend(ifo)
        return torch.stack(outputs, dim=1), torch.stack(trace, dim=1) if record else None, states

    @staticmethod
    def _selects(mask: Tensor | None, steps: int) -> list[Tensor | None]:
        """Per step: None where every video is valid (no select needed), else mask[:, t] as (B, 1, 1, 1)."""
        keep: list[Tensor | None] = [None] * steps
        if mask is not None:
            for t in (~mask.all(dim=0)).nonzero().flatten().tolist():
                keep[t] = mask[:, t].view(-1, 1, 1, 1)
        return keep

    @staticmethod
    def _layer_stepwise(
        cell: ConvLSTMCell, x: list[Tensor], keep: list[Tensor | None], state: tuple[Tensor, Tensor] | None, record: bool
    ) -> tuple[list[Tensor], list[Tensor], tuple[Tensor, Tensor]]:
        """One layer over steps as eq. 1 reads (``cell.step``): x T input maps (B, C_in, H, W), ``keep`` from
        ``_selects``, state (h, c) or None (zero) -> (T hidden maps (B, C_h, H, W), T gate stacks
        (B, 3 C_h, H, W) if ``record`` else [], the last state)."""
        batch, _, height, width = x[0].shape
        if state is None:
            h = x[0].new_zeros(batch, cell.hidden_channels, height, width)
            state = (h, torch.zeros_like(h))
        h, c = state
        outputs, trace = [], []
        for x_t, k in zip(x, keep):
            h_new, c_new, ifo = cell.step(x_t, (h, c))
            if k is None:
                h, c = h_new, c_new
                outputs.append(h_new)
            else:  # a masked step keeps the old state and outputs zeros (and zero gates)
                h, c = torch.where(k, h_new, h), torch.where(k, c_new, c)
                outputs.append(h_new * k)
                ifo = tuple(g * k for g in ifo) if record else ifo
            if record:
                trace.append(torch.cat(ifo, dim=1))
        return outputs, trace, (h, c)

    @staticmethod
    def _layer_fast(
        cell: ConvLSTMCell, x: list[Tensor], keep: list[Tensor | None], state: tuple[Tensor, Tensor] | None, record: bool
    ) -> tuple[list[Tensor], list[Tensor], tuple[Tensor, Tensor]]:
        """``_layer_stepwise`` without autograd, faster (see the module docstring): the input part of the gates
        for the whole block in one convolution, the hidden part and ``cell.fast_update`` per step."""
        steps, (batch, c_in, height, width) = len(x), x[0].shape
        weight, bias = cell.gate_weights()
        pad = cell.gates.padding
        # Dense copies of the weight's two parts (a slice on input channels is strided).
        w_x, w_h = weight[:, :c_in].contiguous(), weight[:, c_in:].contiguous()
        # W_x * x_t for every step of the block in one convolution over its (B * T) frames.
        frames = F.conv2d(torch.stack(x, dim=1).view(batch * steps, c_in, height, width), w_x, None, padding=pad)
        x_gates = frames.view(batch, steps, -1, height, width).unbind(dim=1)
        # h = None stands for the zero state (no convolution needed). c is a real zero map: under CUDA's bf16
        # autocast the gates come out in bf16, and f * c then keeps the cell state in the input's float32.
        h, c = (None, x[0].new_zeros(batch, cell.hidden_channels, height, width)) if state is None else state
        outputs, trace = [], []
        for t, k in enumerate(keep):
            if h is None:  # before a sequence's first step h = 0, so W_h * h = 0
                z = x_gates[t] if bias is None else x_gates[t] + bias.view(-1, 1, 1)
            else:  # in place on the convolution's own output
                z = F.conv2d(h, w_h, bias, padding=pad).add_(x_gates[t])
            h_new, c_new, ifo = cell.fast_update(z, c)
            if k is None:
                h, c = h_new, c_new
                outputs.append(h_new)
            else:  # a masked step keeps the old state and outputs zeros (and zero gates)
                h = torch.where(k, h_new, 0.0 if h is None else h)
                c = torch.where(k, c_new, c)
                outputs.append(h_new * k)
                ifo = ifo * k if record else ifo
            if record:
                trace.append(ifo)
        return outputs, trace, (h, c)
