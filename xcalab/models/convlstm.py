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

The time recurrence is the one per-step Python loop of the model. The input is split into per-step
tensors once (``unbind``), so each step's backward touches only its own slice: backward time grows
linearly with T (the reference indexes the input tensor at every step, so each step's backward
allocates a gradient the size of the whole input and the total grows with T^2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer's step: (x_t, (h, c)) -> (h_t, c_t), eq. 1.

    in_channels       channels of the input map x_t
    hidden_channels   channels C_h of the hidden and cell maps
    kernel_size       odd kernel of the gate convolution ("same" zero padding)
    bias              whether the gate convolution has a bias
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        # One convolution gives all four gates from [x_t, h_{t-1}] (channel concatenation).
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


class ConvLSTM(nn.Module):
    """A stack of ConvLSTM layers run forward in time; returns the last layer's hidden maps.

    in_channels       channels of each input map (1: one 64 x 64 vessel-feature map per step)
    hidden_channels   hidden channels per layer, bottom to top (reference: (8, 8, 1))
    kernel_size       gate-convolution kernel of every layer (reference: 3)
    bias              gate-convolution bias (reference: True)

    The state starts at zero. With a validity ``mask``, a step whose mask is False leaves the state
    unchanged and outputs zeros, so masked steps never reach any other step, wherever they are. For
    the usual right padding this changes nothing at valid steps: a forward recurrence never looks
    ahead, so steps after the end cannot reach the steps before it anyway.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: tuple[int, ...] = (8, 8, 1),
        kernel_size: int = 3,
        bias: bool = True,
    ):
        super().__init__()
        sizes = [in_channels, *hidden_channels]
        self.cells = nn.ModuleList(
            ConvLSTMCell(c_in, c_h, kernel_size, bias) for c_in, c_h in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, x: Tensor, mask: Tensor | None = None, gates: dict[str, Tensor] | None = None) -> Tensor:
        """x (B, T, C_in, H, W), mask (B, T) bool or None -> top-layer hidden maps (B, T, C_h, H, W).

        gates: a dict to fill with the top layer's gates, "input" / "forget" / "output", each
        (B, T, C_h, H, W) in (0, 1) (0 at masked steps), for looking at what the memory keeps.
        """
        batch, _, _, height, width = x.shape
        steps = list(x.unbind(dim=1))  # per-step views, taken once: backward stays linear in T
        keep = None if mask is None else [m.view(batch, 1, 1, 1) for m in mask.unbind(dim=1)]
        # Steps masked in every video (the padding after the longest one) are not computed at all: they
        # would keep every state and output zeros. Training crops are padded to max_seq_len, so this
        # saves most of the recurrence on short videos.
        idle = [False] * len(steps) if mask is None else (~mask.any(dim=0)).tolist()
        for layer, cell in enumerate(self.cells):
            h = x.new_zeros(batch, cell.hidden_channels, height, width)
            c = torch.zeros_like(h)
            outputs = []
            record = gates is not None and layer == len(self.cells) - 1
            trace: list[tuple[Tensor, Tensor, Tensor]] = []
            for t, x_t in enumerate(steps):
                if idle[t]:
                    outputs.append(torch.zeros_like(h))
                    trace.append((torch.zeros_like(h),) * 3)
                    continue
                h_new, c_new, ifo = cell.step(x_t, (h, c))
                if record:
                    trace.append(ifo if keep is None else tuple(g * keep[t] for g in ifo))
                if keep is None:
                    h, c = h_new, c_new
                    outputs.append(h)
                else:  # a masked step keeps the old state and outputs zeros
                    h = torch.where(keep[t], h_new, h)
                    c = torch.where(keep[t], c_new, c)
                    outputs.append(h_new * keep[t])
            steps = outputs
            if record:
                for k, name in enumerate(("input", "forget", "output")):
                    gates[name] = torch.stack([ifo[k] for ifo in trace], dim=1)
        return torch.stack(steps, dim=1)
