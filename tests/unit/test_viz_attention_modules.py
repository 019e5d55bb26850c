"""Figures of GAF, TSA + TPP and the phase recogniser: what they draw, fixed (0, 1) limits, and bad input refused."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from xcalab.viz.attention_modules import plot_curves_over_phases, plot_module_maps, plot_step_matrices
from xcalab.viz.palette import PHASE_COLORS, PHASE_LINE_COLORS


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


PHASES = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4])


def test_curves_over_phases_shade_each_run_of_phases_and_colour_phase_curves():
    fig = plot_curves_over_phases({"P(filling)": np.linspace(0, 1, 10), "mean λ": np.full(10, 0.4)}, PHASES,
                                  {"start": 2.0})
    ax = fig.axes[0]
    spans = ax.patches  # the axvspan rectangles
    shaded = sorted((round(p.get_x() + 0.5), round(p.get_x() + p.get_width() + 0.5), to_hex(p.get_facecolor()))
                    for p in spans)
    assert shaded == [(0, 2, PHASE_COLORS[0]), (2, 5, PHASE_COLORS[1]), (5, 6, PHASE_COLORS[2]),
                      (6, 8, PHASE_COLORS[3]), (8, 10, PHASE_COLORS[4])]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert to_hex(lines["P(filling)"].get_color()) == PHASE_LINE_COLORS[1]
    assert lines["true start"].get_xdata()[0] == 2.0
    assert ax.get_ylim() == (0.0, 1.0)


def test_curves_refuse_mismatched_lengths_and_nothing():
    with pytest.raises(ValueError, match="one length"):
        plot_curves_over_phases({"a": np.zeros(9)}, PHASES)
    with pytest.raises(ValueError, match="at least one"):
        plot_curves_over_phases({})


def test_step_matrices_have_fixed_unit_limits_and_one_bar():
    m = np.full((6, 6), 0.2)
    fig = plot_step_matrices({"dot product": m, "fused": m * 2}, {"apex": 3})
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 and all(im.get_clim() == (0.0, 1.0) for im in images)
    assert len(fig.axes) == 3  # two panels and the colour bar
    with pytest.raises(ValueError, match="square"):
        plot_step_matrices({"a": np.zeros((3, 4))})


def test_module_maps_fix_the_unit_rows_only():
    maps = {"λ": np.full((4, 5, 5), 0.3), "X": np.random.default_rng(0).random((4, 5, 5)) * 0.1}
    fig = plot_module_maps(None, maps, [0, 2], unit_range=["λ"])
    rows = [ax for ax in fig.axes if ax.images]
    assert rows[0].images[0].get_clim() == (0.0, 1.0)  # λ's row
    lo, hi = rows[2].images[0].get_clim()  # X's row: its own scale
    assert 0.0 <= lo < hi <= 0.1
    with pytest.raises(ValueError, match="not given"):
        plot_module_maps(None, maps, [0], unit_range=["A"])
