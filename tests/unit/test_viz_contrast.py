"""Image-to-patch contrast figures: panels, drawn data equal to the input, helpers with hand-checked values."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xcalab.models import sample_near_apex
from xcalab.probes import contrast as probe
from xcalab.viz import contrast as vz
from xcalab.viz.audit import convention_problems

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _maps(t: int = 6, s: int = 16) -> np.ndarray:
    return RNG.random((t, s, s)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Imagewise contrast
# --------------------------------------------------------------------------------------------------


def _colour_bars(fig):
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def test_foreground_background_grid_draws_the_maps_given():
    frames, y, a = _maps(), _maps(), 0.5 + 0.01 * _maps()
    fg, bg = y * a, y * (1 - a)
    fig = vz.plot_foreground_background(frames, fg, bg, steps=[1, 4], centres=np.arange(6) * 4 + 2)
    assert isinstance(fig, Figure) and len(fig.axes) == 7  # 3 rows (frame, fg, bg) x 2 steps, one colour bar
    assert fig.axes[0].get_title() == "step 1\nframe 6" and fig.axes[1].get_title() == "step 4\nframe 18"
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), fg[1])  # row 2, column 1
    np.testing.assert_array_equal(fig.axes[5].images[0].get_array(), bg[4])
    # foreground and background share one colour scale and its bar, so their brightness compares
    assert fig.axes[2].images[0].get_clim() == fig.axes[4].images[0].get_clim()
    (bar,) = _colour_bars(fig)
    assert bar._colorbar.mappable.get_clim() == fig.axes[2].images[0].get_clim()

    with_a = vz.plot_foreground_background(frames, fg, bg, steps=[0, 2, 5], attention=a)
    assert len(with_a.axes) == 14  # 4 rows x 3 steps, a bar for A and one for the maps
    image = with_a.axes[3].images[0]  # the attention row, first column
    np.testing.assert_array_equal(image.get_array(), a[0])
    assert image.get_clim() == (0.0, 1.0)  # a gate: on its declared range, never stretched
    assert "attention A" in with_a.axes[3].get_ylabel()
    # This A spans 0.01: the row's title says it is nearly flat, with its range.
    assert with_a.axes[3].get_title(loc="left").startswith("⚠ nearly flat: range 0.0")
    bars = _colour_bars(with_a)
    assert len(bars) == 2 and bars[0]._colorbar.mappable.get_clim() == (0.0, 1.0)
    varied = vz.plot_foreground_background(frames, fg, bg, steps=[0, 2, 5], attention=_maps())
    assert varied.axes[3].get_title(loc="left") == ""


@pytest.mark.parametrize("change", ["short background", "bad step", "flat frames", "centres"])
def test_foreground_background_refuses_bad_input(change):
    frames, fg, bg, steps, centres = _maps(), _maps(), _maps(), [0, 1], None
    if change == "short background":
        bg = bg[:5]
    elif change == "bad step":
        steps = [6]
    elif change == "flat frames":
        frames = frames[0]
    else:
        centres = [2, 6]
    with pytest.raises(ValueError):
        vz.plot_foreground_background(frames, fg, bg, steps, centres=centres)


def test_attention_comparison_rows_share_one_fixed_scale():
    frames = _maps()
    flat = 0.55 + 0.01 * _maps()  # a nearly uniform A
    sharp = _maps()
    fig = vz.plot_attention_comparison(frames, {"inference": sharp, "reference EMA": flat}, steps=[1, 4],
                                       centres=np.arange(6) * 4 + 2)
    grid = np.array(fig.axes[:6]).reshape(3, 2)  # 3 rows (frame, two A rows) x 2 steps, then the colour bar
    assert len(fig.axes) == 7 and fig.axes[6].get_ylabel() == "A"
    assert grid[0, 1].get_title() == "step 4\nframe 18"
    np.testing.assert_array_equal(grid[1, 0].images[0].get_array(), sharp[1])
    np.testing.assert_array_equal(grid[2, 1].images[0].get_array(), flat[4])
    # every A image on the same fixed scale: the flat map is not stretched to its own range
    assert {ax.images[0].get_clim() for ax in grid[1:].ravel()} == {(0.0, 1.0)}
    label = grid[2, 0].get_ylabel()
    assert label.startswith("reference EMA\nA ") and f"{flat[[1, 4]].min():.2f}" in label
    assert grid[0, 0].get_ylabel() == "frame"
    scaled = vz.plot_attention_comparison(frames, {"a": torch.tensor(flat)}, steps=[0], vmin=0.5, vmax=0.6)
    assert scaled.axes[1].images[0].get_clim() == (0.5, 0.6)


@pytest.mark.parametrize("change", ["empty", "short attention", "bad step", "centres", "scale"])
def test_attention_comparison_refuses_bad_input(change):
    frames, attentions, steps, centres, scale = _maps(), {"a": _maps()}, [0, 1], None, (0.0, 1.0)
    if change == "empty":
        attentions = {}
    elif change == "short attention":
        attentions = {"a": _maps(), "b": _maps(5)}
    elif change == "bad step":
        steps = [-1]
    elif change == "centres":
        centres = [2, 6]
    else:
        scale = (1.0, 1.0)
    with pytest.raises(ValueError):
        vz.plot_attention_comparison(frames, attentions, steps, centres=centres, vmin=scale[0], vmax=scale[1])


def test_snn_loss_vs_temperature_lines():
    tau = [0.1, 0.5, 1.0, 2.0]
    losses = {"separated": [0.0, 0.01, 0.1, 0.3], "mixed": [0.9, 0.8, 0.7, 0.7]}
    fig = vz.plot_snn_loss_vs_temperature(tau, losses)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["separated", "mixed", "reference τ = 1"]
    assert list(ax.lines[1].get_ydata()) == losses["mixed"] and list(ax.lines[0].get_xdata()) == tau
    assert ax.get_xscale() == "log"
    fig2, ax2 = plt.subplots()
    assert vz.plot_snn_loss_vs_temperature(tau, {"a": tau}, reference=None, ax=ax2) is fig2 and len(ax2.lines) == 1
    for bad_tau, bad_losses in (([0.0, 1.0], {"a": [1, 2]}), (tau, {"a": [1.0]}), (tau, {})):
        with pytest.raises(ValueError):
            vz.plot_snn_loss_vs_temperature(bad_tau, bad_losses)


def test_pca_2d_recovers_a_plane_and_is_deterministic():
    plane = RNG.normal(size=(30, 2)) * [3.0, 1.0]
    basis = np.linalg.qr(RNG.normal(size=(7, 2)))[0].T  # an orthonormal 2-D plane in 7-D
    x = plane @ basis + 5.0  # shifted away from the origin
    out = probe.pca_2d(x, normalise=False)
    assert out.points.shape == (30, 2) and out.explained.sum() == pytest.approx(1.0)
    assert out.explained[0] > out.explained[1]
    # a rotation/reflection of the centred plane: every pairwise distance is kept
    dist = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(out.points), dist(plane), atol=1e-9)
    np.testing.assert_array_equal(probe.pca_2d(x, normalise=False).points, out.points)
    assert (out.points[np.abs(out.points).argmax(axis=0), [0, 1]] > 0).all()  # sign convention
    # normalised: only directions count, so scaling one row changes nothing
    scaled = x.copy()
    scaled[3] *= 10
    np.testing.assert_allclose(probe.pca_2d(scaled).points, probe.pca_2d(x).points, atol=1e-9)
    for bad in (x[:1], x[:, :1], x[0]):
        with pytest.raises(ValueError):
            probe.pca_2d(bad)


def test_cosine_summary_hand_values():
    u = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    d = torch.tensor([[0.0, -1.0], [-1.0, 0.0]])
    out = probe.cosine_summary(u, d)
    # fg pairs: cos(u1, u2) = 1, cos(u1, u3) = cos(u2, u3) = 0 -> mean 1/3; bg pair: cos = 0
    assert out["fg–fg"] == pytest.approx(1 / 3) and out["bg–bg"] == pytest.approx(0.0)
    # fg-bg: (0 + -1) + (0 + -1) + (-1 + 0) over 6 pairs = -1/2
    assert out["fg–bg"] == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        probe.cosine_summary(u, np.zeros((2, 3)))


def test_embeddings_2d_panels_scatter_the_points():
    before = RNG.normal(size=(10, 2))
    labels = np.array([1] * 4 + [0] * 6)
    fig = vz.plot_embeddings_2d({"fresh": before, "trained": probe.pca_2d(RNG.normal(size=(10, 5)))}, labels,
                                losses={"fresh": 0.6931, "trained": 0.25})
    left, right = fig.axes
    assert left.get_title() == "fresh\nSNN loss 0.693" and right.get_title().endswith("0.250")
    background, foreground = left.collections  # background drawn first
    np.testing.assert_allclose(foreground.get_offsets(), before[:4])
    np.testing.assert_allclose(background.get_offsets(), before[4:])
    assert right.get_xlabel().startswith("PC1 (") and not left.get_xlabel()
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["background (6)", "foreground (4)"]
    toy = vz.plot_embeddings_2d({"toy": before}, {"toy": labels.astype(bool)}, show_origin=True)
    assert len(toy.axes[0].lines) == 2  # unit circle and origin
    with pytest.raises(ValueError):
        vz.plot_embeddings_2d({"x": before}, labels[:9])
    with pytest.raises(ValueError):
        vz.plot_embeddings_2d({"x": RNG.normal(size=(10, 3))}, labels)
    with pytest.raises(ValueError):
        vz.plot_embeddings_2d({}, labels)


def test_sampled_steps_marks_every_draw():
    segments, labels = torch.tensor([[1.0, 5.5], [5.5, 12.0]]), torch.tensor([0, 1])
    gen = torch.Generator().manual_seed(0)
    fg = torch.stack([sample_near_apex(segments, labels, 14, gen) for _ in range(5)])  # (R, N)
    bg = torch.stack([sample_near_apex(segments, labels, 14, gen) for _ in range(5)])
    fig = vz.plot_sampled_steps(segments, labels, 14, fg, bg, stride=4)
    top, bottom = fig.axes[:2]
    assert len(top.patches) == 2  # one bar per segment
    assert [p.get_width() for p in top.patches] == pytest.approx([4.5, 6.5])
    assert len(bottom.lines) == 5 * 2 * 2  # R draws x N segments x (fg, bg)
    fg_x = sorted(line.get_xdata()[0] + 0.12 for line in bottom.lines if line.get_marker() == "o")
    assert fg_x == pytest.approx(sorted(fg.flatten().tolist()))
    assert bottom.get_xlim() == pytest.approx((-0.6, 13.6))
    assert len(vz.plot_sampled_steps(segments, labels, 14, fg).axes[1].lines) == 10
    with pytest.raises(ValueError):
        vz.plot_sampled_steps(segments, labels, 14, fg[:, :1])
    with pytest.raises(ValueError):
        vz.plot_sampled_steps(segments, labels[:1], 14, fg)
    with pytest.raises(ValueError):
        vz.plot_sampled_steps(segments, labels, 14, fg, bg[:3])


# --------------------------------------------------------------------------------------------------
# Patchwise projection
# --------------------------------------------------------------------------------------------------


def test_patch_of_cuts_the_kernel():
    m = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(probe.patch_of(m, (3, 5), 3), m[2:5, 4:7])
    for centre, size in (((1, 4), 5), ((4, 6), 5), ((4, 4), 4)):
        with pytest.raises(ValueError):
            probe.patch_of(m, centre, size)


def test_patch_and_responses_panels():
    maps, responses, frames = _maps(8), _maps(8), _maps(8, 32)
    fig = vz.plot_patch_and_responses(maps, responses, (6, 9), steps=[2, 7], frames=frames,
                                      centres=np.arange(8) * 4 + 2)
    assert len(fig.axes) == 12  # 3 rows (frame, input, response) x (step 0 + 2 steps), 3 colour bars
    assert convention_problems(fig) == []  # the kernel's own scale has its own bar
    grid = np.array(fig.axes[:9]).reshape(3, 3)
    np.testing.assert_array_equal(grid[2, 0].images[0].get_array(), maps[0, 4:9, 7:12])  # the kernel
    np.testing.assert_array_equal(grid[2, 2].images[0].get_array(), responses[7])
    np.testing.assert_array_equal(grid[1, 1].images[0].get_array(), maps[2])
    box = [p for p in grid[1, 0].patches if isinstance(p, Rectangle)][0]
    assert box.get_xy() == (6.5, 3.5) and box.get_width() == 5  # columns 7..11, rows 4..8
    assert grid[0, 1].get_title() == "step 2 · frame 10"
    assert grid[2, 1].images[0].get_clim() == grid[2, 2].images[0].get_clim()  # responses share a scale
    bars = [ax._colorbar.mappable.get_clim() for ax in _colour_bars(fig)]
    kernel = maps[0, 4:9, 7:12]
    assert bars == [(kernel.min(), kernel.max()), grid[1, 1].images[0].get_clim(),
                    grid[2, 1].images[0].get_clim()]  # kernel, input, response
    assert bars[2] == (0.0, float(responses[[2, 7]].max()))
    assert len(vz.plot_patch_and_responses(maps, responses, (2, 2), steps=[1]).axes) == 7
    with pytest.raises(ValueError):
        vz.plot_patch_and_responses(maps, responses[:, :8], (6, 9), steps=[1])
    with pytest.raises(ValueError):
        vz.plot_patch_and_responses(maps, responses, (1, 9), steps=[1])
    with pytest.raises(ValueError):
        vz.plot_patch_and_responses(maps, responses, (6, 9), steps=[1], frames=frames[:3])


def test_response_histograms_split_vessel_and_background():
    values = RNG.random((4, 8, 8))
    vessel = values > 0.7
    fig = vz.plot_response_histograms({"input": values, "response": torch.tensor(values**2)}, vessel, bins=10,
                                      notes={"response": "AUC 1.000"}, log_x=False)
    left, right = fig.axes
    assert len(left.patches) == 20 and right.get_title() == "response\nAUC 1.000"
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels == [f"background ({(~vessel).sum():,} px)", f"vessel ({vessel.sum():,} px)"]
    medians = sorted(line.get_xdata()[0] for line in left.lines)
    assert medians == pytest.approx(sorted([np.median(values[~vessel]), np.median(values[vessel])]))
    assert left.get_yscale() == "log" and left.get_xscale() == "linear"
    with pytest.raises(ValueError):
        vz.plot_response_histograms({"x": values}, np.zeros_like(vessel))
    with pytest.raises(ValueError):
        vz.plot_response_histograms({"x": values[:2]}, vessel)


def test_response_histograms_log_bins_show_shares():
    # responses over several decades, with ReLU zeros: each group's bars sum to 1, zeros land in the first bin
    values = np.concatenate([np.zeros(5), 10.0 ** RNG.uniform(-6, -4, 95), 10.0 ** RNG.uniform(-3, -1, 20)])
    vessel = np.r_[np.zeros(100, bool), np.ones(20, bool)]
    ax = vz.plot_response_histograms({"r": values}, vessel, bins=12).axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "share of pixels per bin"
    heights = np.array([p.get_height() for p in ax.patches]).reshape(2, 12)  # background bars, then vessel bars
    np.testing.assert_allclose(heights.sum(axis=1), [1.0, 1.0])
    assert heights[0, 0] >= 5 / 100  # the five zeros are in the lowest bin
    assert heights[1, :4].sum() == 0  # vessel values sit in the upper decades


def test_patch_choices_bars():
    scores = {"seed 0": {"mAP (%)": 60.0, "AD (frames)": 3.5}, "seed 1": {"mAP (%)": 58.5, "AD (frames)": np.nan}}
    fig = vz.plot_patch_choices(scores)
    left, right = fig.axes
    assert [p.get_height() for p in left.patches] == [60.0, 58.5] and right.get_title() == "AD (frames)"
    assert [t.get_text() for t in right.texts] == ["3.5", "–"]  # a NaN gets no bar, only a dash
    assert left.patches[0].get_facecolor() != left.patches[1].get_facecolor()  # the highlighted choice
    with pytest.raises(ValueError):
        vz.plot_patch_choices({"a": {"mAP": 1.0}, "b": {"AD": 1.0}})
    with pytest.raises(ValueError):
        vz.plot_patch_choices({})
