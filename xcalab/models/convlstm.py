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

How it runs. A convolution over the concatenation [x_t, h_{t-1}] is the sum of one convolution per part
of its weight, W_x * x_t + W_h * h_{t-1} + b, and only the second part depends on the previous step: the
input part runs for a block of steps at once (one convolution over the block's B * T frames), the time
loop only the hidden part (none at t = 0, where h = 0). The gate update is one ``sigmoid`` over all four
gates' contiguous channels and a few products: tanh(z) = 2 sigmoid(2 z) - 1, the factor 2 folded into the
candidate's rows of the weight (exact), because the CPU's tanh costs about nine times its sigmoid. No
per-step select between old and new state unless a video of the batch is masked at that step. One video on
a CPU with two or more torch threads runs its layers on two threads (``_run_two_threads``): the first layer
on the calling thread, the others a block behind on a helper thread, each with one torch thread: a batch-1
recurrence leaves a second core idle otherwise.

Training: backpropagation through time written out (``_Backpropagation``), not left to autograd, which
would keep a dozen maps per step and layer and run one full convolution backward (input and weight) per
step. Going back in time, the only work that must be sequential is dh_{t-1} = W_h^T * dz_t (a
convolution) and the gates' elementwise derivatives; the weight gradients (W_x and W_h: sums over steps
of correlations with dz_t) and the gradient for the layer below are batched convolutions over blocks of
steps. With ``checkpoint_steps = K`` only the state (h, c) at the start
of every chunk of (at most) K steps is kept in the forward pass of a longer sequence; backward recomputes
one chunk at a time (one more forward pass). Otherwise the gates and states of every step are kept.

Both the inference and the training schedule equal a plain autograd reading of eq. 1 to float32
rounding (tested against ``ConvLSTMCell.step`` run step by step, against a naive reading of eq. 1, and
with ``gradcheck``). The plain reading (``_layer_stepwise``) is what runs when the top layer's gates
are recorded with autograd on, and under autocast (the CUDA bf16 path), where it keeps the state in
float32 as the gates come out in bf16.

The parameters are ``cells.<l>.gates.weight`` and ``.bias``, one convolution per layer as in the
reference: every saved ``state_dict`` loads unchanged.
"""

from __future__ import annotations

import queue
import threading
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

#: One state (h, c) per layer, each (B, C_h, H, W); None for the zero state before the first step.
States = list[tuple[Tensor, Tensor] | None]
#: Each layer's gate convolution (weight (4 C_h, C_in + C_h, k, k), bias (4 C_h,) or None).
Weights = list[tuple[Tensor, Tensor | None]]
#: The memory layout of every map the recurrence computes: the CPU's convolution kernels for these
#: few-channel maps run about twice as fast on channels-last tensors (the same numbers up to rounding).
CHANNELS_LAST = torch.channels_last


def channels_last(maps: Tensor) -> Tensor:
    """(N, C, H, W) maps with channels-last strides, also for C = 1: there ``.contiguous(memory_format=...)``
    keeps the (equivalent) NCHW strides, and the CPU convolution then takes a path ~3-8x slower."""
    if maps.shape[1] == 1 and maps.is_contiguous():
        _, _, height, width = maps.shape
        return maps.as_strided(maps.shape, (height * width, 1, width, 1))
    return maps.contiguous(memory_format=CHANNELS_LAST)


#: Frames per weight-gradient convolution in backward. Its float32 sum over frames x pixels loses digits as
#: it grows: 4 frames (2 steps of a batch of 2) are as accurate as autograd's per-step sums (~2e-6 relative
#: against float64 at the paper's sizes; 16 frames: ~2e-5) and cost no measurable time more.
WEIGHT_GRADIENT_FRAMES = 4


class Block(NamedTuple):
    """What the fast schedule computes for one layer over a block of K steps. Every map is step-major (rows
    t B ... t B + B - 1 hold step t of the B videos) and channels-last.

    inputs    the inputs x_t, (K B, C_in, H, W)
    gates     s_t = [sigmoid(z_i), sigmoid(z_f), sigmoid(z_o), sigmoid(2 z_g)], (K B, 4 C_h, H, W)
    cells     the cell states c, ((K + 1) B, C_h, H, W): the state before the block, then after each step
    hidden    the hidden states h, likewise
    outputs   the layer's outputs (K B, C_h, H, W): ``hidden[B:]``, or 0 where a step is masked
    """

    inputs: Tensor
    gates: Tensor
    cells: Tensor
    hidden: Tensor
    outputs: Tensor


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer, eq. 1: its gate convolution and the gate update.

    in_channels       channels of the input map x_t
    hidden_channels   channels C_h of the hidden and cell maps
    kernel_size       odd kernel of the gate convolution ("same" zero padding)
    bias              whether the gate convolution has a bias

    ``forward`` / ``step`` run one step as the equation reads; ``ConvLSTM`` runs whole sequences faster
    with the same parameters.
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


def split_gate_weights(weight: Tensor, bias: Tensor | None, in_channels: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """A gate convolution's weight (4 C_h, C_in + C_h, k, k) and bias (4 C_h,) as the fast schedule uses them:
    (W_x, W_h, b) with the candidate g's rows doubled, so that the convolutions give 2 z_g for
    tanh(z_g) = 2 sigmoid(2 z_g) - 1 (a product by 2 is exact in floating point). Dense copies: a slice on
    input channels is strided. Channels-last, like every map of the recurrence."""
    hidden = weight.shape[0] // 4
    scale = torch.ones(4 * hidden, dtype=weight.dtype, device=weight.device)
    scale[3 * hidden :] = 2.0
    weight = weight * scale.view(-1, 1, 1, 1)
    w_x = weight[:, :in_channels].contiguous(memory_format=CHANNELS_LAST)
    w_h = weight[:, in_channels:].contiguous(memory_format=CHANNELS_LAST)
    return w_x, w_h, None if bias is None else bias * scale


def gate_update(s: Tensor, c: Tensor, out: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """The state update of eq. 1 from the gates after one sigmoid over all four.

    s     (B, 4 C_h, H, W) [sigmoid(z_i), sigmoid(z_f), sigmoid(z_o), sigmoid(2 z_g)]
    c     (B, C_h, H, W) the cell map c_{t-1}
    out   optional (h, c) maps to write the result into
    ->    (h_t, c_t), each (B, C_h, H, W). Every tanh is 2 sigmoid(2 x) - 1 (equal to float rounding, ~1e-7).
    """
    i, f, o, s_g = s.chunk(4, dim=1)
    h_out, c_out = out if out is not None else (None, None)
    # f * c + i * g = f * c + i * (2 s_g - 1) = (f * c - i) + 2 i s_g
    c = torch.addcmul((f * c).sub_(i), i, s_g, value=2.0, out=c_out)
    # h = o * tanh(c) = 2 o sigmoid(2 c) - o
    h = torch.addcmul(-o, o, torch.sigmoid_(c * 2.0), value=2.0, out=h_out)
    return h, c


class ConvLSTM(nn.Module):
    """A stack of ConvLSTM layers run forward in time; returns the last layer's hidden maps.

    in_channels       channels of each input map (1: one 64 x 64 vessel-feature map per step)
    hidden_channels   hidden channels per layer, bottom to top (reference: (8, 8, 1))
    kernel_size       gate-convolution kernel of every layer (reference: 3)
    bias              gate-convolution bias (reference: True)
    checkpoint_steps  in training (``self.training`` with gradients on), a sequence longer than this keeps
                      only the state at the start of every chunk of ``min(checkpoint_steps,
                      CHECKPOINT_CHUNK)`` steps (rounded up to a multiple of ``INPUT_BLOCK``) and recomputes
                      the chunk in backward: less memory, one more forward pass. Shorter sequences keep every
                      step's gates and states. 0: never recompute. The chunks split the sequence into the
                      same blocks as without checkpointing: the same numbers, bit for bit.

    The state starts at zero. With a validity ``mask``, a step whose mask is False leaves the state
    unchanged and outputs zeros, so masked steps never reach any other step, wherever they are. For
    the usual right padding this changes nothing at valid steps: a forward recurrence never looks
    ahead, so steps after the end cannot reach the steps before it anyway.
    """

    #: Steps per batched input convolution. A few MB per block: one buffer for the whole sequence
    #: (256 MB per layer at T = 512) would be paged in afresh on every call and runs no faster.
    INPUT_BLOCK = 8
    #: Longest recomputed chunk: what backward holds at once (~3.3 MB per step at the paper's sizes, batch 2).
    #: The recomputation costs one forward pass whatever the chunk length.
    CHECKPOINT_CHUNK = 32

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
        weights: Weights = [(cell.gates.weight, cell.gates.bias) for cell in self.cells]
        chunk = 0  # 0: no recomputation
        if self.training and 0 < self.checkpoint_steps < x.shape[1]:
            chunk = -(-min(self.checkpoint_steps, self.CHECKPOINT_CHUNK) // self.INPUT_BLOCK) * self.INPUT_BLOCK

        top_ifo = None
        if not torch.is_grad_enabled():
            out, top_ifo, _ = self._run(x, mask, zero, weights, record)
        elif not record and not torch.is_autocast_enabled(x.device.type):
            params = [p for pair in weights for p in pair]
            out = _Backpropagation.apply(self, chunk or x.shape[1], x, mask, *params)
        elif chunk:
            # The plain reading under activation checkpointing: only each chunk's input and the states it
            # starts from are kept; backward reruns the chunk.
            states, hidden, ifo = zero, [], []
            for start in range(0, x.shape[1], chunk):
                part = None if mask is None else mask[:, start : start + chunk]
                h_part, ifo_part, states = checkpoint(
                    self._run_stepwise, x[:, start : start + chunk], part, states, record, use_reentrant=False
                )
                hidden.append(h_part)
                ifo.append(ifo_part)
            out = torch.cat(hidden, dim=1)
            top_ifo = torch.cat(ifo, dim=1) if record else None
        else:
            out, top_ifo, _ = self._run_stepwise(x, mask, zero, record)

        if active is not None:  # the skipped steps output zeros (and record zero gates)
            out = out.new_zeros(batch, steps, *out.shape[2:]).index_copy(1, active, out)
            if top_ifo is not None:
                top_ifo = top_ifo.new_zeros(batch, steps, *top_ifo.shape[2:]).index_copy(1, active, top_ifo)
        if gates is not None:
            for name, value in zip(("input", "forget", "output"), top_ifo.chunk(3, dim=2)):
                gates[name] = value
        return out

    # ----------------------------------------------------------------------------------------------
    # The fast schedule (inference, and the training schedule's forward pass)
    # ----------------------------------------------------------------------------------------------

    def _run(
        self, x: Tensor, mask: Tensor | None, states: States, weights: Weights, record: bool,
        saved: list[list[Block]] | None = None,
    ) -> tuple[Tensor, Tensor | None, States]:
        """Every layer over a run of steps, starting from ``states``, without autograd's bookkeeping.

        x (B, T, C_in, H, W); mask (B, T) bool, or None when no step is masked; states (h, c) per layer, or
        None for zero; weights each layer's gate convolution -> (top hidden maps (B, T, C_top, H, W), the
        top layer's gates (B, T, 3 C_top, H, W) if ``record`` else None, the states after the last step).
        ``saved``: one list per layer, to which every block's ``Block`` is appended (for backward).

        In blocks of ``INPUT_BLOCK`` steps, every layer over one block before the next block.
        """
        split = [split_gate_weights(w, b, cell.in_channels) for cell, (w, b) in zip(self.cells, weights)]
        batch, steps = x.shape[:2]
        if self._two_threads(x, record):
            return self._run_two_threads(x, mask, list(states), split, saved)
        states = list(states)
        outputs: list[Tensor] = []
        trace: list[Tensor] = []
        for start in range(0, steps, self.INPUT_BLOCK):
            stop = min(start + self.INPUT_BLOCK, steps)
            inputs = channels_last(x[:, start:stop].transpose(0, 1).reshape(-1, *x.shape[2:]))
            keep = self._selects(None if mask is None else mask[:, start:stop], stop - start)
            for layer, cell in enumerate(self.cells):
                top = record and layer == len(self.cells) - 1
                block, ifo, states[layer] = self._layer_fast(cell, split[layer], inputs, keep, states[layer], top)
                if saved is not None:
                    saved[layer].append(block)
                inputs = block.outputs
            outputs.append(inputs)
            trace.extend(ifo)
        out = torch.cat(outputs).view(steps, batch, *outputs[0].shape[1:]).transpose(0, 1).contiguous()
        return out, torch.stack(trace, dim=1) if record else None, states

    #: Run one video on two threads (``_run_two_threads``) when torch has at least two CPU threads. A class
    #: attribute, so that a test or a benchmark can switch it off.
    TWO_THREADS = True

    def _two_threads(self, x: Tensor, record: bool) -> bool:
        """Whether ``_run`` splits its layers over two threads: on the CPU, one video (a batch of 2 already
        keeps two cores busy: two single-threaded layers run it ~1.3x slower), more than one block of steps,
        more than one layer, no recorded gates."""
        return (self.TWO_THREADS and x.device.type == "cpu" and x.shape[0] == 1 and len(self.cells) > 1
                and not record and x.shape[1] > self.INPUT_BLOCK and torch.get_num_threads() > 1)

    def _run_two_threads(
        self, x: Tensor, mask: Tensor | None, states: States, split: list, saved: list[list[Block]] | None,
    ) -> tuple[Tensor, None, States]:
        """``_run`` with the layers split over two threads, one torch thread each: this thread runs the first
        layer block by block, and the input convolution of the second on each finished block; a helper thread
        runs the other layers on the blocks it is handed. Each recurrence is sequential and its per-step
        convolutions are too small to keep two cores busy (two threads make a batch-1 ConvLSTM only ~1.2x
        faster); two layers at once do. The same operations in the same order: the same numbers.
        """
        batch, steps = x.shape[:2]
        handoff: queue.Queue = queue.Queue(maxsize=2)  # bounds how far the first layer runs ahead
        outputs: list[Tensor] = []
        failure: list[BaseException] = []
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def upper_layers() -> None:
            torch.set_num_threads(1)  # this thread's own (OpenMP) team size
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                while (item := handoff.get()) is not None:
                    if failure:
                        continue  # drain, so that the first layer never waits on a full queue
                    try:
                        keep, inputs, x_gates = item
                        for layer in range(1, len(self.cells)):
                            block, _, states[layer] = self._layer_fast(
                                self.cells[layer], split[layer], inputs, keep, states[layer], False,
                                x_gates=x_gates if layer == 1 else None,
                            )
                            if saved is not None:
                                saved[layer].append(block)
                            inputs = block.outputs
                        outputs.append(inputs)
                    except BaseException as error:  # re-raised in the calling thread
                        failure.append(error)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        helper = threading.Thread(target=upper_layers, name="convlstm-upper-layers", daemon=True)
        helper.start()
        try:
            w_x, pad = split[1][0], self.cells[1].gates.padding
            for start in range(0, steps, self.INPUT_BLOCK):
                if failure:
                    break
                stop = min(start + self.INPUT_BLOCK, steps)
                inputs = channels_last(x[:, start:stop].transpose(0, 1).reshape(-1, *x.shape[2:]))
                keep = self._selects(None if mask is None else mask[:, start:stop], stop - start)
                block, _, states[0] = self._layer_fast(self.cells[0], split[0], inputs, keep, states[0], False)
                if saved is not None:
                    saved[0].append(block)
                handoff.put((keep, block.outputs, F.conv2d(block.outputs, w_x, None, padding=pad)))
        finally:
            handoff.put(None)
            helper.join()
            torch.set_num_threads(threads)
        if failure:
            raise failure[0]
        out = torch.cat(outputs).view(steps, batch, *outputs[0].shape[1:]).transpose(0, 1).contiguous()
        return out, None, states

    @staticmethod
    def _selects(mask: Tensor | None, steps: int) -> list[Tensor | None]:
        """Per step: None where every video is valid (no select needed), else mask[:, t] as (B, 1, 1, 1)."""
        keep: list[Tensor | None] = [None] * steps
        if mask is not None:
            for t in (~mask.all(dim=0)).nonzero().flatten().tolist():
                keep[t] = mask[:, t].view(-1, 1, 1, 1)
        return keep

    @staticmethod
    def _layer_fast(
        cell: ConvLSTMCell, split: tuple[Tensor, Tensor, Tensor | None], inputs: Tensor, keep: list[Tensor | None],
        state: tuple[Tensor, Tensor] | None, record: bool, x_gates: Tensor | None = None,
    ) -> tuple[Block, list[Tensor], tuple[Tensor, Tensor]]:
        """One layer over a block of K steps: the input part of the gates for the whole block in one
        convolution, the hidden part and the gate update per step.

        split (W_x, W_h, b) from ``split_gate_weights``; inputs (K B, C_in, H, W) step-major; ``keep`` from
        ``_selects``; state (h, c) or None (zero) -> (the ``Block``, the gates (B, 3 C_h, H, W) per step if
        ``record`` else [], the state after the block). ``x_gates``: W_x * inputs, if already computed.
        """
        w_x, w_h, bias = split
        steps, n, pad = len(keep), cell.hidden_channels, cell.gates.padding
        batch, (_, _, height, width) = inputs.shape[0] // steps, inputs.shape
        # W_x * x_t for every step of the block in one convolution over its K B frames.
        if x_gates is None:
            x_gates = F.conv2d(inputs, w_x, None, padding=pad)
        layout = dict(dtype=inputs.dtype, device=inputs.device, memory_format=CHANNELS_LAST)
        gates = torch.empty(steps * batch, 4 * n, height, width, **layout)
        # The states stay in the input's dtype: under CUDA's bf16 autocast the gates come out in bf16.
        cells = torch.empty((steps + 1) * batch, n, height, width, **layout)
        hidden = torch.empty_like(cells)
        if state is None:
            cells[:batch], hidden[:batch] = 0.0, 0.0
        else:
            hidden[:batch], cells[:batch] = state
        masked = any(k is not None for k in keep)
        outputs = torch.empty(steps * batch, n, height, width, **layout) if masked else hidden[batch:]
        # One video's one-channel hidden map (the top layer's, in inference): where both layouts are the same
        # memory, the CPU's convolution for so small an input runs ~2.5x faster when it is told NCHW.
        one_map = n == 1 and batch == 1 and inputs.device.type == "cpu"
        trace = []
        for t, k in enumerate(keep):
            now, after = slice(t * batch, (t + 1) * batch), slice((t + 1) * batch, (t + 2) * batch)
            if t == 0 and state is None:  # before a sequence's first step h = 0, so W_h * h = 0
                z = x_gates[now] if bias is None else x_gates[now] + bias.view(-1, 1, 1)
            else:  # in place on the convolution's own output
                h = hidden[now]
                if one_map:
                    h = h.as_strided(h.shape, (height * width, height * width, width, 1))
                z = F.conv2d(h, w_h, bias, padding=pad).add_(x_gates[now])
            s = torch.sigmoid(z, out=gates[now])
            if k is None:
                gate_update(s, cells[now], out=(hidden[after], cells[after]))
                if masked:
                    outputs[now] = hidden[after]
            else:  # a masked step keeps the old state and outputs zeros (and zero gates)
                h_new, c_new = gate_update(s, cells[now])
                torch.where(k, h_new, hidden[now], out=hidden[after])
                torch.where(k, c_new, cells[now], out=cells[after])
                torch.mul(h_new, k, out=outputs[now])
            if record:
                trace.append(s[:, : 3 * n] if k is None else s[:, : 3 * n] * k)
        block = Block(inputs, gates, cells, hidden, outputs)
        return block, trace, (hidden[steps * batch :], cells[steps * batch :])

    # ----------------------------------------------------------------------------------------------
    # The plain reading with autograd (recorded gates with gradients, autocast)
    # ----------------------------------------------------------------------------------------------

    def _run_stepwise(self, x: Tensor, mask: Tensor | None, states: States, record: bool) -> tuple[Tensor, Tensor | None, States]:
        """``_run`` as eq. 1 reads, layer by layer over all the steps (``ConvLSTMCell.step``), for autograd."""
        steps = list(x.unbind(dim=1))
        keep = self._selects(mask, len(steps))
        states = list(states)
        trace: list[Tensor] = []
        for layer, cell in enumerate(self.cells):
            top = record and layer == len(self.cells) - 1
            steps, ifo, states[layer] = self._layer_stepwise(cell, steps, keep, states[layer], top)
            trace = ifo if top else trace
        return torch.stack(steps, dim=1), torch.stack(trace, dim=1) if record else None, states

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


class _Backpropagation(torch.autograd.Function):
    """The training schedule: ``ConvLSTM._run`` forward, backpropagation through time by hand backward.

    forward(module, chunk, x (B, T, C_in, H, W), mask (B, T) or None, w_0, b_0, w_1, b_1, ...) -> (B, T, C_top, H, W)

    The forward pass runs in chunks of ``chunk`` steps and keeps the states at the chunk starts (and, if the
    whole sequence is one chunk, every ``Block``). Backward goes through the chunks last to first; in each,
    top layer to bottom, and in each layer block by block, last step to first (``_layer_backward``).
    """

    @staticmethod
    def forward(ctx, module: ConvLSTM, chunk: int, x: Tensor, mask: Tensor | None, *params: Tensor | None) -> Tensor:
        weights: Weights = list(zip(params[0::2], params[1::2]))
        states: States = [None] * len(module.cells)
        starts, hidden = [], []
        keep_all = chunk >= x.shape[1]
        saved = [[] for _ in module.cells] if keep_all else None
        for start in range(0, x.shape[1], chunk):
            part = None if mask is None else mask[:, start : start + chunk]
            # (copies: the states are views of their block's maps, which need not stay)
            starts.append((start, [None if st is None else (st[0].clone(), st[1].clone()) for st in states]))
            out, _, states = module._run(x[:, start : start + chunk], part, states, weights, False, saved)
            hidden.append(out)
        ctx.module, ctx.chunk, ctx.starts, ctx.kept = module, chunk, starts, saved
        ctx.has_mask, ctx.has_bias = mask is not None, [b is not None for b in params[1::2]]
        empty = x.new_empty(0)
        ctx.save_for_backward(x, empty if mask is None else mask, *[empty if p is None else p for p in params])
        return hidden[0] if len(hidden) == 1 else torch.cat(hidden, dim=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, mask, *params = ctx.saved_tensors
        mask = mask if ctx.has_mask else None
        weights: Weights = [(w, b if has else None) for w, b, has in zip(params[0::2], params[1::2], ctx.has_bias)]
        module, cells, block = ctx.module, ctx.module.cells, ConvLSTM.INPUT_BLOCK
        batch, steps = x.shape[:2]
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[2] else None
        grad_w = [torch.zeros(w.shape, dtype=torch.float64, device=w.device) for w, _ in weights]
        grad_b = [None if b is None else torch.zeros(b.shape, dtype=torch.float64, device=b.device) for _, b in weights]
        carry: list[tuple[Tensor, Tensor] | None] = [None] * len(cells)  # (dh, dc) from the chunk after
        for start, states in reversed(ctx.starts):
            stop = min(start + ctx.chunk, steps)
            part = None if mask is None else mask[:, start:stop]
            saved = ctx.kept
            if saved is None:  # recompute the chunk: the same operations as in forward, the same numbers
                saved = [[] for _ in cells]
                module._run(x[:, start:stop], part, states, weights, False, saved)
            bounds = [(b, min(b + block, stop)) for b in range(start, stop, block)]  # _run's blocks
            keeps = [module._selects(None if mask is None else mask[:, b0:b1], b1 - b0) for b0, b1 in bounds]
            # dL/d(top outputs), step-major per block like the blocks' maps
            grads = [grad_out[:, b0:b1].transpose(0, 1).reshape(-1, *grad_out.shape[2:]) for b0, b1 in bounds]
            for layer in reversed(range(len(cells))):
                need_input = layer > 0 or grad_x is not None
                grads, carry[layer] = _layer_backward(
                    cells[layer], weights[layer], saved[layer], keeps, states[layer], grads, carry[layer], need_input,
                    (grad_w[layer], grad_b[layer]),
                )
            if grad_x is not None:
                for (b0, b1), grad in zip(bounds, grads):
                    grad_x[:, b0:b1] = grad.view(b1 - b0, batch, *x.shape[2:]).transpose(0, 1)
        grad_params = [g.to(p.dtype) if g is not None else None
                       for g, p in zip((g for pair in zip(grad_w, grad_b) for g in pair), params)]
        return None, None, grad_x, None, *grad_params


def _layer_backward(
    cell: ConvLSTMCell, weight_bias: tuple[Tensor, Tensor | None], blocks: list[Block],
    keeps: list[list[Tensor | None]], state: tuple[Tensor, Tensor] | None, grad_outputs: list[Tensor],
    carry: tuple[Tensor, Tensor] | None, need_input: bool, grad_weight_bias: tuple[Tensor, Tensor | None],
) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
    """Backpropagation through time for one layer over a run of blocks of steps.

    blocks         the layer's ``Block`` per block, from the forward pass
    keeps          per block and step None or the (B, 1, 1, 1) validity mask (``ConvLSTM._selects``)
    state          (h, c) before the first step, or None for the zero state
    grad_outputs   per block dL/d(outputs), (K B, C_h, H, W) step-major
    carry          (dL/dh, dL/dc) of the state after the last step (from later steps), or None
    grad_weight_bias   float64 (dL/dW, dL/db) (or None) to add this run's share to
    -> (per block dL/d(inputs) (K B, C_in, H, W) (empty if not ``need_input``), (dL/dh, dL/dc) of ``state``).

    With s = [i, f, o, s_g], g = tanh(z_g) = 2 s_g - 1 and u = tanh(c_t), from h_t = o u, c_t = f c_{t-1} + i g:
        dc = dL/dc_t + dh o (1 - u^2)     dz_i = dc g i (1 - i)      dz_f = dc c_{t-1} f (1 - f)
        dz_o = dh u o (1 - o)              dz_g = dc i (1 - g^2) = 4 dc i s_g (1 - s_g)
        dL/dc_{t-1} = dc f                 dL/dh_{t-1} = W_h^T * dz       (a transposed convolution)
    A masked step passes the state's gradient through (it kept the state) and has dz = 0 where masked.

    After each block, one convolution backward over its K B frames gives its dL/d(inputs), and one per
    ``WEIGHT_GRADIENT_FRAMES`` frames its share of dL/dW, summed in float64.
    """
    weight, bias = weight_bias
    n, c_in, pad = cell.hidden_channels, cell.in_channels, list(cell.gates.padding)
    w_x = weight[:, :c_in].contiguous(memory_format=CHANNELS_LAST)
    w_h = weight[:, c_in:].contiguous(memory_format=CHANNELS_LAST)
    # W_h^T * dz as a plain convolution: swap the weight's in and out channels and turn its kernel around.
    w_h_transposed = w_h.transpose(0, 1).flip(2, 3).contiguous(memory_format=CHANNELS_LAST)
    batch = blocks[0].hidden.shape[0] // (len(keeps[0]) + 1)
    dh, dc = carry if carry is not None else (None, None)
    scale = torch.ones(4 * n, 1, 1, dtype=weight.dtype, device=weight.device)
    scale[3 * n :] = 4.0
    grad_w, grad_b = grad_weight_bias
    grad_inputs: list[Tensor | None] = [None] * len(blocks) if need_input else []  # filled last block first
    conv = dict(stride=[1, 1], padding=pad, dilation=[1, 1], transposed=False, output_padding=[0, 0], groups=1)
    for j in reversed(range(len(blocks))):
        blk, keep, grad_out = blocks[j], keeps[j], grad_outputs[j]
        dz = torch.empty_like(blk.gates)
        for t in reversed(range(len(keep))):
            now, after = slice(t * batch, (t + 1) * batch), slice((t + 1) * batch, (t + 2) * batch)
            s, c_prev, c_t = blk.gates[now], blk.cells[now], blk.cells[after]
            i, f, o, s_g = s.chunk(4, dim=1)
            k = keep[t]
            grad_h = grad_out[now] if dh is None else dh + grad_out[now]
            grad_c = dc
            if k is not None:  # where masked: no gradient into this step's gates, the state's passes through
                pass_h, pass_c = (None if dh is None else dh * ~k), (None if dc is None else dc * ~k)
                grad_h = grad_h * k
                grad_c = None if grad_c is None else grad_c * k
            u = torch.sigmoid(c_t * 2.0).mul_(2.0).sub_(1.0)  # tanh(c_t), as the forward pass computed it
            grad_c_total = torch.ops.aten.tanh_backward(o * grad_h, u)
            if grad_c is not None:
                grad_c_total += grad_c
            # dL/d[i, f, o, s_g] (s_g's with its factor 4 folded in), then through the sigmoid in one pass
            g = s_g * 2.0 - 1.0
            grad_s = torch.cat([g * grad_c_total, c_prev * grad_c_total, u * grad_h, i * grad_c_total], dim=1)
            dz_t = torch.ops.aten.sigmoid_backward.grad_input(grad_s.mul_(scale), s, grad_input=dz[now])
            dc = grad_c_total * f
            at_start = j == 0 and t == 0 and state is None  # the zero state needs no gradient
            dh = None if at_start else F.conv2d(dz_t, w_h_transposed, None, padding=pad)
            if k is not None:
                if pass_c is not None:
                    dc = dc + pass_c
                if pass_h is not None:
                    dh = pass_h if dh is None else dh + pass_h
        grad_in = torch.ops.aten.convolution_backward(
            dz, blk.inputs, w_x, None, **conv, output_mask=[True, False, False]
        )[0] if need_input else None
        h_before = blk.hidden[: len(keep) * batch]
        for rows in range(0, len(keep) * batch, WEIGHT_GRADIENT_FRAMES):
            part = slice(rows, rows + WEIGHT_GRADIENT_FRAMES)
            grad_w[:, :c_in] += torch.ops.aten.convolution_backward(
                dz[part], blk.inputs[part], w_x, None, **conv, output_mask=[False, True, False]
            )[1]
            grad_w[:, c_in:] += torch.ops.aten.convolution_backward(
                dz[part], h_before[part], w_h, None, **conv, output_mask=[False, True, False]
            )[1]
        if grad_b is not None:
            grad_b += dz.sum(dim=(0, 2, 3)).double()
        if need_input:
            grad_inputs[j] = grad_in
    first = blocks[0].hidden[:batch]
    return grad_inputs, (torch.zeros_like(first) if dh is None else dh, torch.zeros_like(first) if dc is None else dc)
