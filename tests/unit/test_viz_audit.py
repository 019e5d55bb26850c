"""The map-convention audit: each rule on hand-made figures, and save_figure's audit file."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xcalab.viz import save_figure  # noqa: E402
from xcalab.viz.audit import (  # noqa: E402
    audit_figure,
    colour_bars,
    convention_problems,
    declare_range,
    declared_range,
    describe_images,
    problems_of,
)

RAMP = np.linspace(0.2, 0.6, 16).reshape(4, 4)  # a map spanning (0.2, 0.6): autoscaling would stretch it


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _one(image_kwargs, bar_label=None):
    fig, ax = plt.subplots()
    image = ax.imshow(RAMP, **image_kwargs)
    if bar_label is not None:
        fig.colorbar(image, ax=ax, label=bar_label)
    return fig, image


def test_a_unit_map_with_its_bar_passes():
    fig, _ = _one({"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}, "attention A")
    assert convention_problems(fig) == []


def test_a_map_without_a_bar_is_named():
    fig, _ = _one({"cmap": "viridis", "vmin": 0.0, "vmax": 1.0})
    [problem] = convention_problems(fig)
    assert "without a colour bar" in problem and "viridis" in problem


def test_a_bar_with_other_limits_does_not_count():
    fig, ax = plt.subplots(1, 2)
    ax[0].imshow(RAMP, cmap="viridis", vmin=0, vmax=1)
    other = ax[1].imshow(RAMP, cmap="viridis", vmin=0, vmax=2)
    fig.colorbar(other, ax=ax[1], label="feature")
    [problem] = convention_problems(fig)
    assert problem.startswith("axes 0")


def test_one_bar_serves_every_map_on_the_same_scale():
    fig, ax = plt.subplots(1, 3)
    images = [a.imshow(RAMP, cmap="magma", vmin=0, vmax=1) for a in ax]
    fig.colorbar(images[0], ax=list(ax), label="vessel probability")
    assert convention_problems(fig) == []


def test_an_autoscaled_attention_map_is_caught_by_its_label():
    fig, image = _one({"cmap": "viridis"}, "attention A")  # autoscaled to (0.2, 0.6)
    assert image.get_clim() == pytest.approx((0.2, 0.6))
    [problem] = convention_problems(fig)
    assert "'attention A'" in problem and "(0, 1)" in problem


def test_a_declared_range_must_be_drawn_exactly():
    fig, image = _one({"cmap": "RdBu_r", "vmin": -0.6, "vmax": 0.6}, "TA(X)")
    declare_range(image, -1, 1)
    assert declared_range(image) == (-1.0, 1.0)
    [problem] = convention_problems(fig)
    assert "declared range is (-1.0, 1.0)" in problem
    image.set_clim(-1, 1)
    fig.axes[1]._colorbar.update_normal(image)
    assert convention_problems(fig) == []


def test_grey_frames_need_no_bar_but_must_sit_on_zero_one():
    fig, ax = plt.subplots(1, 2)
    ax[0].imshow(RAMP, cmap="gray", vmin=0, vmax=1)
    ax[1].imshow(RAMP, cmap="gray")  # autoscaled: a dark frame would look bright
    ax[1].set_title("frame 3")
    [problem] = convention_problems(fig)
    assert problem.startswith("axes 1 ('frame 3')") and "grey picture" in problem


def test_rgb_composites_and_line_plots_are_not_checked():
    fig, ax = plt.subplots(1, 2)
    ax[0].imshow(np.zeros((4, 4, 3)))
    ax[1].plot([0, 1], [1, 0])
    assert describe_images(fig)[0]["rgb"] is True and len(describe_images(fig)) == 1
    assert convention_problems(fig) == []


def test_pcolormesh_counts_as_a_map():
    fig, ax = plt.subplots()
    mesh = ax.pcolormesh(RAMP, cmap="viridis", vmin=0, vmax=1)
    assert convention_problems(fig) != []
    fig.colorbar(mesh, ax=ax)
    assert convention_problems(fig) == []


def test_colour_bars_are_described():
    fig, _ = _one({"cmap": "magma", "vmin": 0.0, "vmax": 1.0}, "vessel probability")
    assert colour_bars(fig) == [{"cmap": "magma", "limits": [0.0, 1.0], "label": "vessel probability"}]


def test_a_declared_range_needs_low_below_high():
    _, image = _one({"cmap": "viridis"})
    with pytest.raises(ValueError, match="low < high"):
        declare_range(image, 1, 1)


def test_save_figure_writes_the_audit_when_asked(tmp_path, monkeypatch):
    fig, _ = _one({"cmap": "viridis", "vmin": 0.0, "vmax": 1.0})
    save_figure(fig, "plain", tmp_path / "figs")
    assert not (tmp_path / "audit").exists()  # not asked: nothing written
    monkeypatch.setenv("XCALAB_FIGURE_AUDIT", str(tmp_path / "audit"))
    save_figure(fig, "asked", tmp_path / "figs")
    record = json.loads((tmp_path / "audit" / "asked.json").read_text())
    assert record == json.loads(json.dumps(audit_figure(fig)))
    assert problems_of(record) == convention_problems(fig) and len(problems_of(record)) == 1
