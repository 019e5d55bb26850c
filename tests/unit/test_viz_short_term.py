"""Short-term attention figures and helpers: band -> dense matrices, dense attention, cost, heads, parameters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xcalab.config import get_preset
from xcalab.models import TransformerPyramid, local_attention
from xcalab.models.detector import KeyframeDetector
from xcalab.probes import short_term as probe
from xcalab.runtime import count_parameters
from xcalab.viz import short_term as vz
from xcalab.viz.audit import convention_problems

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def random_band(heads: int, steps: int, half_window: int, seed: int = 0) -> torch.Tensor:
    """Band weights of random local attention: (heads, T, 2w + 1), rows summing to 1 over existing keys."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, heads, steps, 4, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(1, steps, dtype=torch.bool)
    return local_attention(q, k, v, mask, mask, half_window)[1][0]


# --------------------------------------------------------------------------------------------------
# band_to_dense and dense attention
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "half_window"), [(7, 2), (4, 3), (5, 0), (1, 2)])
def test_band_to_dense_rows_sum_to_one_and_zero_outside_the_band(steps, half_window):
    band = random_band(3, steps, half_window)
    dense = probe.band_to_dense(band, half_window)
    assert dense.shape == (3, steps, steps) and dense.dtype == band.dtype
    torch.testing.assert_close(dense.sum(-1), torch.ones(3, steps, dtype=torch.float64))
    t = torch.arange(steps)
    outside = (t[:, None] - t[None, :]).abs() > half_window
    assert (dense[:, outside] == 0).all()
    # entry j of query t's window is key t - w + j
    for t_ in range(steps):
        for j in range(2 * half_window + 1):
            s = t_ - half_window + j
            if 0 <= s < steps:
                assert torch.equal(dense[:, t_, s], band[:, t_, j])


def test_band_to_dense_keeps_numpy_and_leading_axes():
    band = random_band(2, 6, 1).numpy()
    dense = probe.band_to_dense(band[None], 1)
    assert isinstance(dense, np.ndarray) and dense.shape == (1, 2, 6, 6)
    assert np.array_equal(dense[0, 1, 3, 2:5], band[1, 3])


def test_band_to_dense_refuses_bad_input():
    with pytest.raises(ValueError, match="2w \\+ 1"):
        probe.band_to_dense(np.zeros((2, 6, 4)), 2)
    with pytest.raises(ValueError):
        probe.band_to_dense(np.zeros(5), 2)
    bad = np.zeros((1, 6, 5))
    bad[0, 0, 0] = 1.0  # query 0 cannot see key -2
    with pytest.raises(ValueError, match="outside"):
        probe.band_to_dense(bad, 2)


def test_dense_attention_with_a_band_is_local_attention_and_without_is_softmax():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 4, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 7:] = False
    out, band = local_attention(q, k, v, mask, mask, 2)
    dense_out, dense = probe.dense_attention(q, k, v, mask, mask, half_window=2)
    torch.testing.assert_close(dense_out, out, rtol=0, atol=1e-12)
    torch.testing.assert_close(probe.band_to_dense(band, 2), dense, rtol=0, atol=1e-12)
    full_out, full = probe.dense_attention(q, k, v, mask, mask)
    torch.testing.assert_close(full[0], (q[0] @ k[0].transpose(-1, -2)).softmax(-1))
    assert (full[1, :, 7:] == 0).all() and (full[1, :, :, 7:] == 0).all()
    # the band restricts the softmax: renormalising dense weights inside the band gives the local ones
    t = torch.arange(9)
    inside = (t[:, None] - t[None, :]).abs() <= 2
    kept = full[0] * inside
    torch.testing.assert_close(kept / kept.sum(-1, keepdim=True), dense[0])
    # and a band as wide as the sequence is dense attention
    torch.testing.assert_close(local_attention(q, k, v, mask, mask, 8)[0], full_out)


@pytest.mark.parametrize("block", ["level0.block1", "transformer/level1.block0", "level2.block0"])
def test_module_band_weights_equal_dense_attention_under_a_band_mask(block):
    torch.manual_seed(3)
    pyramid = TransformerPyramid(in_channels=12, channels=8, n_heads=2, n_levels=3).double().eval()
    with torch.no_grad():
        for p in pyramid.parameters():  # away from the initial values, so every layer matters
            p.add_(0.5 * torch.randn_like(p))
    x = torch.randn(2, 12, 11, dtype=torch.float64)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 8:] = False
    weights = pyramid(x, mask, return_attention=True).attention[block.removeprefix("transformer/")]
    inputs = probe.attention_inputs(pyramid, x, mask, block)
    _, dense = probe.dense_attention(inputs.q, inputs.k, inputs.v, inputs.mask, inputs.mask, half_window=2)
    torch.testing.assert_close(probe.band_to_dense(weights, 2), dense, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="no block"):
        probe.attention_inputs(pyramid, x, mask, "level5.block0")
    with pytest.raises(ValueError, match="block name"):
        probe.attention_inputs(pyramid, x, mask, "stem0")


def test_attention_inputs_of_a_detector():
    cfg = get_preset("smoke").model
    torch.manual_seed(0)
    detector = KeyframeDetector(cfg).eval()
    x, mask = torch.rand(1, 4096, 8), torch.ones(1, 8, dtype=torch.bool)
    out = detector(x, mask, return_attention=True, generator=torch.Generator().manual_seed(1))
    inputs = probe.attention_inputs(detector, x, mask, "level0.block0", generator=torch.Generator().manual_seed(1))
    _, band = local_attention(inputs.q, inputs.k, inputs.v, inputs.mask, inputs.mask, cfg.half_window)
    torch.testing.assert_close(band, out.attention["transformer/level0.block0"])


# --------------------------------------------------------------------------------------------------
# cost and parameters
# --------------------------------------------------------------------------------------------------


def test_allocated_megabytes_counts_new_storage_not_views():
    x = torch.zeros(256, 256)
    assert probe.allocated_megabytes(lambda: x.t().unfold(0, 3, 1)) == 0.0
    assert probe.allocated_megabytes(lambda: x @ x) == pytest.approx(256 * 256 * 4 / 2**20)


def test_time_attention_records_and_dense_memory_grows_quadratically():
    results = probe.time_attention([16, 64], half_window=2, n_heads=1, head_dim=4, repeats=1)
    assert [(r["steps"], r["method"]) for r in results] == [(16, "local"), (16, "dense"), (64, "local"), (64, "dense")]
    assert all(r["seconds"] > 0 and r["megabytes"] > 0 for r in results)
    mb = {(r["steps"], r["method"]): r["megabytes"] for r in results}
    assert mb[64, "dense"] / mb[16, "dense"] > 10  # T x T score matrices: 16x the entries
    assert mb[64, "local"] / mb[16, "local"] < 5  # windows: linear in T
    with pytest.raises(ValueError):
        probe.time_attention([], repeats=1)


def test_parameter_groups_add_up_and_short_term_off_drops_the_stem():
    cfg = get_preset("smoke").model
    full, without = KeyframeDetector(cfg), KeyframeDetector(cfg.ablation(short_term=False))
    groups, groups_off = probe.parameter_counts(full), probe.parameter_counts(without)
    assert sum(groups.values()) == count_parameters(full)
    assert sum(groups_off.values()) == count_parameters(without)
    assert groups_off["stem transformers"] == 0 and groups["stem transformers"] > 0
    assert {k: v for k, v in groups.items() if k != "stem transformers"} == {
        k: v for k, v in groups_off.items() if k != "stem transformers"}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


def test_plot_window_diagram_shows_the_band():
    fig = vz.plot_window_diagram(9, 2, queries=[0, 4])
    ax = fig.axes[0]
    t = np.arange(9)
    picture = ax.images[0].get_array()  # RGB: a diagram of two categories, no colour scale to explain
    assert picture.ndim == 3 and np.array_equal(picture[..., 0] < 0.9, np.abs(t[:, None] - t[None, :]) <= 2)
    assert convention_problems(fig) == []
    assert len(ax.patches) == 2 and "keys 0..2 (3)" in ax.texts[0].get_text()
    assert "keys 2..6 (5)" in ax.texts[1].get_text()
    _, ax2 = plt.subplots()
    assert vz.plot_window_diagram(5, 1, ax=ax2).axes[0] is ax2 and len(ax2.patches) == 3
    for bad in [dict(steps=0, half_window=2), dict(steps=5, half_window=-1), dict(steps=5, half_window=1, queries=[5])]:
        with pytest.raises(ValueError):
            vz.plot_window_diagram(**bad)


def test_plot_attention_matrices_grid_images_and_keyframes():
    attention = {
        "transformer/level0.block0": random_band(2, 12, 2, seed=1),
        "transformer/level0.block1": random_band(2, 12, 2, seed=2),
        "transformer/level1.block0": random_band(2, 6, 2, seed=3),
        "TA": torch.zeros(12, 4, 4),  # not a transformer block: ignored
    }
    fig = vz.plot_attention_matrices(attention, 2, keyframe_steps=(1.0, 4.0, 10.0))
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 2 + 1  # blocks x heads + colour bar
    panel = fig.axes[2 + 1]  # row 1 (level0.block1), head 1
    expected = probe.band_to_dense(attention["transformer/level0.block1"], 2)[1].numpy()
    shown = panel.images[0].get_array()  # a masked array: keys outside the window are masked (drawn grey)
    t = np.arange(12)
    assert np.array_equal(np.ma.getmaskarray(shown), np.abs(t[:, None] - t[None, :]) > 2)
    assert np.allclose(shown.filled(0.0), expected) and np.allclose(shown.sum(1), 1.0)
    assert len(panel.lines) == 6  # 3 keyframes, row and column each
    assert panel.images[0].get_clim() == (0.0, 1.0)
    assert list(panel.get_xticks()) == list(range(0, 12, 2)) == list(panel.get_yticks())  # step ticks, <= 8 each
    level1 = fig.axes[4]
    assert list(level1.get_xticks()) == list(range(6))
    assert [line.get_xdata()[0] for line in level1.lines[::2]] == [0.5, 2.0, 5.0]  # steps / 2
    assert "level 1" in level1.get_ylabel()
    one_head = vz.plot_attention_matrices(attention, 2, heads=[1])
    assert len(one_head.axes) == 3 + 1 and not one_head.axes[0].lines
    with pytest.raises(ValueError, match="no 'level"):
        vz.plot_attention_matrices({"TA": torch.zeros(3, 3)}, 2)
    with pytest.raises(ValueError, match="heads"):
        vz.plot_attention_matrices(attention, 2, heads=[2])
    with pytest.raises(ValueError, match="same number of heads"):
        vz.plot_attention_matrices({**attention, "level2.block0": random_band(3, 3, 2)}, 2)


def test_plot_dense_vs_local_panels():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 8, 4) for _ in range(3))
    mask = torch.ones(1, 8, dtype=torch.bool)
    _, dense = probe.dense_attention(q, k, v, mask, mask)
    _, local = probe.dense_attention(q, k, v, mask, mask, half_window=1)
    fig = vz.plot_dense_vs_local(dense[0, 0], local[0, 0], 1, output_gaps={0: 0.5, 3: 0.2, 7: 0.0})
    assert len(fig.axes) == 5  # 4 panels and the matrices' colour bar
    assert [ax.images[0].get_clim() for ax in fig.axes[:2]] == [(0.0, 1.0)] * 2  # weights on (0, 1)
    assert fig.axes[4]._colorbar.mappable.get_clim() == (0.0, 1.0)
    assert list(fig.axes[0].get_xticks()) == list(range(8)) == list(fig.axes[1].get_yticks())  # step ticks
    assert np.allclose(fig.axes[0].images[0].get_array(), dense[0, 0].numpy())
    t = np.arange(8)
    outside = np.where(np.abs(t[:, None] - t[None, :]) <= 1, 0, dense[0, 0].numpy()).sum(1)
    assert np.allclose([p.get_height() for p in fig.axes[2].patches], outside)
    assert list(fig.axes[3].lines[0].get_ydata()) == [0.5, 0.2, 0.0]
    assert len(vz.plot_dense_vs_local(dense[0, 0], local[0, 0], 1).axes) == 4
    with pytest.raises(ValueError):
        vz.plot_dense_vs_local(dense[0, 0], local[0, 0, :4], 1)


def test_plot_attention_cost_loglog_lines():
    results = [{"steps": n, "method": m, "seconds": s * n, "megabytes": s * n * n}
               for n in (64, 128, 256) for m, s in (("local", 1e-5), ("dense", 1e-6))]
    fig = vz.plot_attention_cost(results)
    left, right = fig.axes
    assert left.get_xscale() == "log" and left.get_yscale() == "log" and right.get_yscale() == "log"
    labels = [line.get_label() for line in left.lines]
    assert labels == ["local", "∝ T", "dense", "∝ T²"]
    assert list(left.lines[0].get_xdata()) == [64, 128, 256]
    assert np.allclose(right.lines[2].get_ydata(), [1e-6 * n * n for n in (64, 128, 256)])
    with pytest.raises(ValueError):
        vz.plot_attention_cost([])


def test_plot_level_scores_levels_bars_and_timeline():
    strides = [1, 2, 4]
    scores = [RNG.random((2, n)) for n in (12, 6, 3)]
    offsets = [RNG.random((2, n)) * 2 for n in (12, 6, 3)]
    truth, predicted = [(0, 1.0, 4.0), (1, 4.0, 9.0)], [(0, 1.5, 4.5), (1, 4.5, 8.0)]
    fig = vz.plot_level_scores(scores, strides, offsets, truth, predicted, min_score=0.0)
    assert len(fig.axes) == 4
    level1 = fig.axes[1]
    assert np.allclose(level1.lines[0].get_ydata(), scores[1][0])
    assert np.allclose(level1.lines[0].get_xdata(), np.arange(6) * 2)
    i = int(scores[1][1].argmax())  # class 1's best point on level 1 draws its regressed segment
    seg = level1.lines[3].get_xdata()
    assert np.allclose(seg, [2 * i - 2 * offsets[1][0, i], 2 * i + 2 * offsets[1][1, i]])
    assert len(level1.patches) == 2  # the two true segments, shaded
    assert len(fig.axes[-1].patches) == 4  # predicted and true bars
    assert len(vz.plot_level_scores(scores, strides).axes) == 3
    quiet = vz.plot_level_scores(scores, strides, offsets, min_score=1.1)  # no point is that sure: no bars
    assert [len(ax.lines) for ax in quiet.axes] == [2, 2, 2]
    with pytest.raises(ValueError):
        vz.plot_level_scores(scores, [1, 2])
    with pytest.raises(ValueError):
        vz.plot_level_scores([RNG.random((3, 4))], [1])
    with pytest.raises(ValueError):
        vz.plot_level_scores(scores, strides, offsets[:2])
    with pytest.raises(ValueError):
        vz.plot_level_scores(scores, strides, true_segments=[(0, 5.0, 2.0)])


def test_plot_parameter_breakdown_bars():
    counts = {"with S-T": {"embedding": 100, "stem transformers": 50}, "w/o S-T": {"embedding": 100}}
    fig = vz.plot_parameter_breakdown(counts)
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_yticklabels()] == ["embedding", "stem transformers"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["with S-T: 150 in total", "w/o S-T: 100 in total"]
    with pytest.raises(ValueError):
        vz.plot_parameter_breakdown({})
