"""Long-term attention figures and explorer: the toy ConvLSTM's numbers, the mode maps, the panels, the slider."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xcalab.data.annotations import keyframe_grid, phase_steps
from xcalab.models.convlstm import ConvLSTMCell
from xcalab.models.long_term import LongTermAttention
from xcalab.probes import long_term as probe
from xcalab.viz import long_term as vz

RNG = np.random.default_rng(0)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------------------------------
# The hand-set cell
# --------------------------------------------------------------------------------------------------


def test_toy_blob_rises_and_fades_symmetrically():
    x = probe.toy_blob_sequence((0, 0.5, 1, 0.5, 0), size=7)
    assert x.shape == (5, 7, 7) and x[2, 3, 3] == pytest.approx(1.0) and x[0].max() == 0
    assert np.array_equal(x[1], x[3])  # the same map while coming and going
    with pytest.raises(ValueError):
        probe.toy_blob_sequence((), size=7)


def test_hand_set_gates_follow_their_formulas_at_the_blob_centre():
    x = probe.toy_blob_sequence()
    trace = probe.convlstm_gate_trace(probe.hand_set_convlstm_cell(), x)
    assert set(trace) == set(vz.TRACE_ROWS) and all(v.shape == x.shape for v in trace.values())
    centre = (4, 4)
    c_prev = 0.0
    for t in range(len(x)):
        xt = float(x[t][centre])
        i, f, o, g = sigmoid(6 * xt - 3), sigmoid(2.0), sigmoid(3.0), np.tanh(3 * xt)
        c = f * c_prev + i * g
        assert trace["i"][t][centre] == pytest.approx(i, abs=1e-5)
        assert trace["f"][t][centre] == pytest.approx(f, abs=1e-5)
        assert trace["g"][t][centre] == pytest.approx(g, abs=1e-5)
        assert trace["c"][t][centre] == pytest.approx(c, abs=1e-5)
        assert trace["h"][t][centre] == pytest.approx(o * np.tanh(c), abs=1e-5)
        c_prev = c
    # the point of the example: the same input, a different memory while the contrast goes than while it comes
    assert np.array_equal(x[2], x[4]) and trace["h"][4][centre] > 2 * trace["h"][2][centre]
    assert trace["h"][-1][centre] > 0.5  # and the memory outlasts the blob


def test_trace_equals_the_cell_itself():
    torch.manual_seed(0)
    cell = ConvLSTMCell(1, 1, kernel_size=3).eval()
    x = RNG.random((5, 6, 6)).astype(np.float32)
    trace = probe.convlstm_gate_trace(cell, x)
    h = c = torch.zeros(1, 1, 6, 6)
    with torch.no_grad():
        for t in range(5):
            h, c = cell(torch.from_numpy(x[t])[None, None], (h, c))
            assert np.allclose(trace["h"][t], h[0, 0].numpy(), atol=1e-6)
            assert np.allclose(trace["c"][t], c[0, 0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="1 input channel"):
        probe.convlstm_gate_trace(ConvLSTMCell(2, 1), x)


def test_plot_convlstm_gates_grid_and_pixel_curves():
    x = probe.toy_blob_sequence((0, 1, 0.5), size=5)
    trace = probe.convlstm_gate_trace(probe.hand_set_convlstm_cell(), x)
    fig = vz.plot_convlstm_gates(trace)
    assert isinstance(fig, Figure)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 7 * 3  # seven rows of maps, one column per step
    assert np.array_equal(image_axes[1].images[0].get_array(), x[1])  # row x, step 1
    curves = next(ax for ax in fig.axes if len(ax.lines) >= 7)
    assert [line.get_label() for line in curves.lines[:7]] == [row[0] for row in vz.TRACE_ROWS.values()]
    assert np.allclose(curves.lines[6].get_ydata(), trace["h"][:, 2, 2])  # default pixel: the blob centre
    with pytest.raises(ValueError, match="lacks"):
        vz.plot_convlstm_gates({"x": x})
    with pytest.raises(ValueError, match="outside"):
        vz.plot_convlstm_gates(trace, pixel=(9, 0))


# --------------------------------------------------------------------------------------------------
# Modes, steps, map grids
# --------------------------------------------------------------------------------------------------


def test_attention_by_mode_matches_the_module():
    torch.manual_seed(0)
    size, steps = 6, 5
    module = LongTermAttention("STA", map_size=size).eval()
    features = torch.rand(size * size, steps)
    maps = probe.attention_by_mode(module, features)
    with torch.no_grad():
        out = module(features[None])
    as_maps = lambda f: f[0].T.reshape(steps, size, size).numpy()  # noqa: E731
    assert set(maps) == {"TA", "SA", "STA"} and all(m.shape == (steps, size, size) for m in maps.values())
    assert np.allclose(maps["STA"], as_maps(out.attention), atol=1e-6)
    assert np.allclose(maps["TA"], torch.sigmoid(torch.from_numpy(as_maps(out.temporal))).numpy(), atol=1e-6)
    assert not np.allclose(maps["SA"], maps["STA"])  # TA changes what SA sees
    with pytest.raises(ValueError, match="both TA and SA"):
        probe.attention_by_mode(LongTermAttention("SA", map_size=size), features)
    with pytest.raises(ValueError, match="features"):
        probe.attention_by_mode(module, features[:10])


def test_keyframe_grid_and_phase_steps():
    assert keyframe_grid((10, 26, 50)) == {"start": 2.0, "apex": 6.0, "end": 12.0}
    steps = phase_steps((18, 42, 74), n_steps=20)  # grid 4, 10, 18
    assert steps == {"before": 2, "start": 4, "filling": 7, "apex": 10, "washout": 14, "end": 18, "after": 19}
    short = phase_steps((2, 10, 60), n_steps=6)  # start at step 0, end past the last step
    assert "before" not in short and list(short.values()) == sorted(short.values())
    assert short["washout"] == 5 and "end" not in short and "after" not in short  # clipped: the first name keeps it
    with pytest.raises(ValueError):
        phase_steps((2, 10, 60), n_steps=0)


def test_plot_long_term_maps_panels_and_keyframe_frames():
    frames, x, a = (RNG.random(shape).astype(np.float32) for shape in ((6, 16, 16), (6, 8, 8), (6, 8, 8)))
    ta = RNG.random((6, 8, 8)).astype(np.float32) - 0.5
    fig = vz.plot_long_term_maps(frames, {"X": x, "TA(X)": ta, "A": a}, steps=[1, 3, 5],
                                 labels=["start", "apex", "end"], keyframe_steps={"apex": 3})
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 4 * 3
    assert np.array_equal(maps[0].images[0].get_array(), frames[1]) and maps[1].get_title() == "step 3\napex"
    assert np.array_equal(maps[3 * 3 + 2].images[0].get_array(), a[5])
    assert len(maps[1].patches) == 1 and not maps[0].patches  # only the apex column is framed
    signed = maps[2 * 3].images[0]
    assert signed.get_cmap().name == "RdBu_r" and signed.norm.vmin == -signed.norm.vmax  # TA: centred on 0
    assert len(vz.plot_long_term_maps(None, {"A": a}, steps=[0]).axes) == 2  # one map + its colour bar
    assert len(fig.axes) == 4 * 3 + 4  # and one colour bar per row
    with pytest.raises(ValueError, match="one length"):
        vz.plot_long_term_maps(frames[:5], {"A": a}, steps=[0])
    with pytest.raises(ValueError, match="steps"):
        vz.plot_long_term_maps(frames, {"A": a}, steps=[6])
    with pytest.raises(ValueError, match="label"):
        vz.plot_long_term_maps(frames, {"A": a}, steps=[0, 1], labels=["x"])


def test_plot_attention_modes_rows_name_the_formula():
    maps = {mode: RNG.random((4, 8, 8)) for mode in ("TA", "SA", "STA")}
    fig = vz.plot_attention_modes(maps, steps=[0, 3])
    rows = [ax.get_ylabel() for ax in fig.axes if ax.images and ax.get_ylabel()]
    assert rows == ["TA: A = σ(TA(X))", "SA: A = SA(X)", "STA: A = SA(X + TA(X))"]
    with pytest.raises(ValueError):
        vz.plot_attention_modes({}, steps=[0])


# --------------------------------------------------------------------------------------------------
# Over time
# --------------------------------------------------------------------------------------------------


def test_region_means_inside_and_outside():
    maps = np.zeros((3, 4, 4), dtype=np.float32)
    maps[:, :2] = 1.0  # top half bright
    region = np.zeros((4, 4), dtype=bool)
    region[0] = True  # the top row: inside it everything is bright
    inside, outside = probe.region_means(maps, region)
    assert np.allclose(inside, 1.0) and np.allclose(outside, 4 / 12)
    per_step = np.zeros((3, 4, 4), dtype=bool)
    per_step[1, 3] = True  # only step 1 has a region, on the dark bottom row
    inside, outside = probe.region_means(maps, per_step)
    assert np.isnan(inside[0]) and inside[1] == 0.0 and outside[1] == pytest.approx(8 / 12)
    with pytest.raises(ValueError, match="region"):
        probe.region_means(maps, np.zeros((3, 3), dtype=bool))


def test_plot_attention_over_time_lines_and_keyframes():
    maps = {"X": RNG.random((10, 8, 8)), "A": RNG.random((10, 8, 8))}
    region = RNG.random((10, 8, 8)) > 0.7
    fig = vz.plot_attention_over_time(maps, region, keyframe_steps={"start": 1.5, "apex": 4.0, "end": 8.25})
    assert len(fig.axes) == 2
    top = fig.axes[0]
    assert [line.get_label() for line in top.lines] == ["vessel region", "background", "true start", "true apex",
                                                       "true end"]
    assert np.allclose(top.lines[0].get_ydata(), probe.region_means(maps["X"], region)[0])
    assert top.lines[3].get_xdata()[0] == 4.0 and fig.axes[1].get_ylabel() == "mean A"
    whole = vz.plot_attention_over_time(maps["A"])  # one array, no region: the whole map's mean
    assert [line.get_label() for line in whole.axes[0].lines] == ["whole map"]
    with pytest.raises(ValueError, match="shape"):
        vz.plot_attention_over_time({"X": maps["X"], "A": maps["A"][:5]})
