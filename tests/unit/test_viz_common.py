"""The map convention of ``xcalab.viz.common``: colour bars, the flat-gate warning and step ticks."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from xcalab.viz.common import FLAT_GATE, UNIT_RANGE, colour_bar, flat_warning, step_ticks


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_flat_warning_by_hand():
    assert FLAT_GATE == 0.05 and UNIT_RANGE == (0.0, 1.0)
    assert flat_warning([0.50, 0.52, 0.54]) == "⚠ nearly flat: range 0.040 < 0.05"
    assert flat_warning([0.2, 0.3]) == "" and flat_warning([0.0, 1.0]) == ""
    assert flat_warning(np.zeros((3, 4, 4))) == "⚠ nearly flat: range 0.000 < 0.05"
    assert flat_warning([0.0, 0.2], threshold=0.5).endswith("range 0.200 < 0.5")


def test_step_ticks_are_integers_from_zero_at_most_max_ticks():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((30, 12)))
    step_ticks(ax, 30, 12)
    assert list(ax.get_yticks()) == list(range(0, 30, 4))  # ceil(30 / 8) = 4
    assert list(ax.get_xticks()) == list(range(0, 12, 2))
    step_ticks(ax, 5)
    assert list(ax.get_xticks()) == list(ax.get_yticks()) == [0, 1, 2, 3, 4]


def test_colour_bar_is_labelled_and_shows_the_images_limits():
    fig, axes = plt.subplots(1, 3)
    image = axes[0].imshow(np.random.default_rng(0).random((4, 4)), vmin=0.0, vmax=1.0)
    bar = colour_bar(fig, image, axes, "A")
    assert bar.ax in fig.axes and bar.ax.get_ylabel() == "A" and bar.mappable.get_clim() == (0.0, 1.0)
    assert colour_bar(fig, image, axes[0]).ax.get_ylabel() == ""
