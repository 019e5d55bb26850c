"""Probes of the long-term attention (seed paper Sec. III-C, eqs. 1, 5, 6): a toy ConvLSTM a student can
follow by hand, and what the trained module's parts give.

No figures (``xcalab.viz.long_term`` draws them):

    toy_blob_sequence(amplitudes)                 (T, S, S) maps of a blob that appears and fades
    hand_set_convlstm_cell()                      a 1-channel ConvLSTMCell whose gates are set by hand
    convlstm_gate_trace(cell, maps)               the gates i, f, o, the candidate g, the cell c and hidden h per step
    attention_by_mode(long_term, features)        what TA, SA and STA would give from one trained module's parts
    region_means(maps, region)                    per-step mean inside the vessel region and in the background
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xcalab.models.convlstm import ConvLSTMCell
from xcalab.models.long_term import LongTermAttention
from xcalab.runtime import as_array

#: The rows of a gate trace, in order: input, the three gates, the candidate, the cell, the hidden state.
TRACE_NAMES = ("x", "i", "f", "o", "g", "c", "h")


def toy_blob_sequence(amplitudes: Sequence[float] = (0, 0, 0.5, 1, 0.5, 0, 0, 0), size: int = 9,
                      sigma: float = 1.2) -> np.ndarray:
    """A Gaussian blob in the middle of a size x size map whose peak follows ``amplitudes``: (T, size, size).

    The default rises to 1 and fades symmetrically, so steps 2 and 4 are the *same* map: one seen while the
    contrast comes, one while it goes.
    """
    amplitudes = np.asarray(amplitudes, dtype=np.float32)
    if amplitudes.ndim != 1 or len(amplitudes) == 0 or size < 1 or sigma <= 0:
        raise ValueError(f"need 1-D amplitudes, size >= 1 and sigma > 0, got {amplitudes.shape}, {size}, {sigma}")
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2) / (2 * sigma**2)).astype(np.float32)
    return amplitudes[:, None, None] * blob[None]


def hand_set_convlstm_cell(input_gain: float = 6.0, input_bias: float = -3.0, forget_bias: float = 2.0,
                           output_bias: float = 3.0, candidate_gain: float = 3.0) -> ConvLSTMCell:
    """A 1-channel ConvLSTMCell (3 x 3 kernel) with weights set so that each gate does one readable thing.

    Only the centre tap of the x_t input is used (each pixel is its own little LSTM) and the recurrent
    weights W_h are zero, so per pixel, with sigma the logistic function:

        i_t = sigma(input_gain * x_t + input_bias)    open where contrast is, shut elsewhere
        f_t = sigma(forget_bias)                       keep most of the memory (0.88 by default)
        o_t = sigma(output_bias)                       show most of the memory (0.95)
        g_t = tanh(candidate_gain * x_t)               what would be written
        c_t = f_t * c_{t-1} + i_t * g_t,  h_t = o_t * tanh(c_t)
    """
    cell = ConvLSTMCell(1, 1, kernel_size=3)
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.zero_()
        # output channels (i, f, o, g); input channels (x, h); the centre tap is [1, 1]
        cell.gates.weight[0, 0, 1, 1] = input_gain
        cell.gates.bias[0] = input_bias
        cell.gates.bias[1] = forget_bias
        cell.gates.bias[2] = output_bias
        cell.gates.weight[3, 0, 1, 1] = candidate_gain
    return cell.eval()


@torch.no_grad()
def convlstm_gate_trace(cell: ConvLSTMCell, maps) -> dict[str, np.ndarray]:
    """Run one ConvLSTMCell over a map sequence and keep every intermediate map (eq. 1, reference form).

    cell  a ConvLSTMCell with 1 input channel
    maps  (T, H, W) input maps x_t
    ->    {"x", "i", "f", "o", "g", "c", "h"}: each (T, H, W) float32, hidden channel 0 (the gates after their
          sigmoid, g after its tanh). The state starts at zero, as in ``ConvLSTM``; h and c equal ``cell(x, state)``.
    """
    x = as_array(maps, 3, "maps", "(T, S, S) maps")
    if cell.gates.in_channels != 1 + cell.hidden_channels:
        raise ValueError(f"the cell must read 1 input channel, it reads {cell.gates.in_channels - cell.hidden_channels}")
    steps, height, width = x.shape
    inputs = torch.from_numpy(x).to(cell.gates.weight)[:, None, None]  # (T, 1, 1, H, W)
    h = inputs.new_zeros(1, cell.hidden_channels, height, width)
    c = torch.zeros_like(h)
    trace: dict[str, list[np.ndarray]] = {name: [] for name in TRACE_NAMES}
    for t in range(steps):
        i, f, o, g = cell.gates(torch.cat([inputs[t], h], dim=1)).chunk(4, dim=1)
        i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
        c = f * c + i * g
        h = o * torch.tanh(c)
        for name, value in zip(TRACE_NAMES, (inputs[t], i, f, o, g, c, h)):
            trace[name].append(value[0, 0].cpu().numpy())
    return {name: np.stack(values).astype(np.float32) for name, values in trace.items()}


@torch.no_grad()
def attention_by_mode(long_term: LongTermAttention, features) -> dict[str, np.ndarray]:
    """The attention A each mode would compute from the parts of one STA module: (T, S, S) per mode.

    long_term  a ``LongTermAttention`` in mode "STA" (both its ConvLSTM and its SA), put in eval mode here
    features   (D, T) features of one video, D = S * S (as the detector reads them)
    -> {"TA": sigmoid(TA(X)), "SA": SA(X), "STA": SA(X + TA(X))}. "STA" is exactly the module's own A; the
    other two feed the same trained weights what the TA-only and SA-only modes would, so they show what each
    part contributes, not what a model trained in that mode learns.
    """
    if long_term.temporal is None or long_term.spatial is None:
        raise ValueError(f"need a module with both TA and SA (mode 'STA'), got mode {long_term.mode!r}")
    was_training = long_term.training
    long_term.eval()
    x = torch.as_tensor(features, dtype=torch.float32)
    size = long_term.map_size
    if x.ndim != 2 or x.shape[0] != size * size:
        raise ValueError(f"features must be (D = {size * size}, T), got shape {tuple(x.shape)}")
    device = next(long_term.parameters()).device
    maps = x.T.reshape(1, -1, 1, size, size).to(device)  # (1, T, 1, S, S), row-major
    ta = long_term.temporal(maps)
    out = {
        "TA": torch.sigmoid(ta[0]),
        "SA": long_term.spatial(maps[0]),
        "STA": long_term.spatial((maps + ta)[0]),
    }
    long_term.train(was_training)
    return {mode: a[:, 0].cpu().numpy() for mode, a in out.items()}


def region_means(maps, region) -> tuple[np.ndarray, np.ndarray]:
    """Per-step means of (T, S, S) maps inside a region and outside it (the background): two (T,) arrays.

    region  bool (T, S, S) (a region per step) or (S, S) (one region for every step); NaN where a step's
            region (or its background) is empty.
    """
    maps = as_array(maps, 3, "maps", "(T, S, S) maps")
    region = np.asarray(region.cpu() if isinstance(region, torch.Tensor) else region).astype(bool)
    if region.shape == maps.shape[1:]:
        region = np.broadcast_to(region, maps.shape)
    if region.shape != maps.shape:
        raise ValueError(f"region must be (T, S, S) or (S, S) like maps {maps.shape}, got {region.shape}")
    inside_n, outside_n = region.sum(axis=(1, 2)), (~region).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.where(region, maps, 0).sum(axis=(1, 2)) / inside_n
        outside = np.where(region, 0, maps).sum(axis=(1, 2)) / outside_n
    return inside.astype(np.float32), outside.astype(np.float32)
