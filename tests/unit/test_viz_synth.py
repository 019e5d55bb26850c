"""XCA-Synth figures: every function returns a Figure (with and without a given axes) and never shows it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from xcalab.data.io import Cine
from xcalab.data.synth import realism_table, sample_params, simulate_sequence
from xcalab.viz import synth as vz


@pytest.fixture(scope="module")
def seq():
    return simulate_sequence(0, image_size=48, n_frames=40, fps=15.0, tree="left")


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_anatomy_figures(seq):
    assert isinstance(vz.plot_tree(seq), Figure)
    assert isinstance(vz.plot_tree(sample_params(1, image_size=64, tree="right")), Figure)
    fig, ax = plt.subplots()
    assert vz.plot_projection(seq, ax=ax) is fig and len(ax.lines) >= 5  # branches + catheter


def test_contrast_curves_mark_the_keyframes(seq):
    fig = vz.plot_contrast_curves(seq)
    ax = fig.axes[0]
    xs = {round(float(line.get_xdata()[0]), 6) for line in ax.lines if len(line.get_xdata()) == 2}
    assert {round(k / seq.fps, 6) for k in seq.truth.keyframes} <= xs
    fig2, ax2 = plt.subplots()
    assert vz.plot_contrast_curves(seq, ax=ax2, seconds=False) is fig2


def test_strip_motion_and_real_vs_synth(seq):
    strip = vz.plot_synth_strip(seq, n=5)
    spread = {13, 26}  # n=5: the 3 keyframes + 2 frames spread over 40
    assert len(strip.axes) == 2 * len({*seq.truth.keyframes, *spread}) + 1  # and the maps' colour bar
    (bar,) = [ax for ax in strip.axes if getattr(ax, "_colorbar", None) is not None]
    assert bar._colorbar.mappable.get_clim() == (0.0, 1.0) and bar.get_ylabel() == "vessel opacity"
    assert isinstance(vz.plot_motion(seq), Figure)
    fig, ax = plt.subplots()
    assert vz.plot_motion_curves(seq, ax=ax) is fig
    real = Cine(np.random.default_rng(0).random((6, 64, 64), dtype=np.float32), 30.0, "fake-real")
    assert len(vz.plot_real_vs_synth(real, seq).axes) == 3


def test_realism_table_figure(seq):
    rows = realism_table(synth=[seq], real=Cine(seq.frames, seq.fps, "as-real"))
    fig = vz.plot_realism_table(rows)
    assert isinstance(fig, Figure) and fig.axes[0].tables


def test_clear_error_for_a_cine_without_synthetic_truth():
    plain = Cine(np.zeros((4, 8, 8), np.float32), 15.0, "plain")
    with pytest.raises(ValueError, match="XCA-Synth"):
        vz.plot_contrast_curves(plain)
    with pytest.raises(ValueError, match="XCA-Synth"):
        vz.plot_tree(plain)
