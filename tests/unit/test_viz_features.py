"""Vessel-feature figures: each returns a Figure with the expected panels and lines, and refuses bad shapes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from xcalab.viz import features as vz

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _bar_limits(fig):
    """The colour limits of each colour bar of a figure."""
    return [ax._colorbar.mappable.get_clim() for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def test_plot_window_panels():
    frames, pred = RNG.random((4, 16, 16)), RNG.random((32, 32))
    fig = vz.plot_window(frames, pred, truth=RNG.random((16, 16)))
    assert isinstance(fig, Figure) and len(fig.axes) == 7  # 6 panels and the maps' colour bar
    assert fig.axes[2].get_title() == "frame 3 (target)" and fig.axes[5].get_title() == "true vessel map"
    assert [ax.images[0].get_clim() for ax in fig.axes[4:6]] == [(0.0, 1.0)] * 2  # probabilities: fixed (0, 1)
    assert _bar_limits(fig) == [(0.0, 1.0)]
    assert len(vz.plot_window(frames, pred).axes) == 6


@pytest.mark.parametrize("frames, pred", [(np.zeros((3, 8, 8)), np.zeros((8, 8))),
                                          (np.zeros((4, 8)), np.zeros((8, 8))),
                                          (np.zeros((4, 8, 8)), np.zeros((1, 8, 8)))])
def test_plot_window_refuses_bad_shapes(frames, pred):
    with pytest.raises(ValueError):
        vz.plot_window(frames, pred)


def test_plot_extractor_scores_one_bar_per_score_and_set():
    meta = {"validation": {"dice": 0.7, "soft_dice": 0.6, "auc": 0.99}, "check": {"dice": 0.8, "auc": 0.98},
            "training": {"size": "small", "steps": 10}, "parameters": 123}
    fig = vz.plot_extractor_scores(meta)
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and [t.get_text() for t in ax.get_xticklabels()] == ["dice", "soft dice", "auc"]
    assert "123 parameters" in ax.get_title()
    fig2, ax2 = plt.subplots()
    assert vz.plot_extractor_scores({"check": meta["check"]}, ax=ax2) is fig2 and len(ax2.patches) == 3
    with pytest.raises(ValueError):
        vz.plot_extractor_scores({"training": {}})


def test_plot_prediction_vs_truth_grid():
    frames, pred, truth = RNG.random((5, 16, 16)), RNG.random((5, 32, 32)), RNG.random((5, 16, 16))
    fig = vz.plot_prediction_vs_truth(frames, pred, truth, indices=[0, 2, 4], titles=["a", "b", "c"])
    assert len(fig.axes) == 10 and fig.axes[1].get_title() == "b"  # 3 x 3 panels and a colour bar
    assert {ax.images[0].get_clim() for ax in fig.axes[3:9]} == {(0.0, 1.0)} and _bar_limits(fig) == [(0.0, 1.0)]
    assert len(vz.plot_prediction_vs_truth(frames, pred).axes) == 11  # 2 rows x all 5 columns, a colour bar
    with pytest.raises(ValueError):
        vz.plot_prediction_vs_truth(frames, pred[:4])
    with pytest.raises(ValueError):
        vz.plot_prediction_vs_truth(frames, pred, indices=[5])
    with pytest.raises(ValueError):
        vz.plot_prediction_vs_truth(frames[0], pred)


def test_plot_feature_curves_lines_and_keyframes():
    centres = np.arange(10) * 4 + 2
    curves = {"learned": RNG.random(10), "frangi": RNG.random(10) * 50, "oracle": RNG.random(10)}
    fig = vz.plot_feature_curves(curves, centres, fps=15.0, keyframes=(6, 20, 60))  # end beyond the windows
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["learned", "frangi", "oracle", "true start", "true apex"]
    assert np.isclose(ax.lines[1].get_ydata().max(), 1.0) and np.isclose(ax.lines[1].get_ydata().min(), 0.0)
    fig2, ax2 = plt.subplots()
    assert vz.plot_feature_curves({"raw": RNG.random(10)}, centres, ax=ax2, normalise=False) is fig2
    with pytest.raises(ValueError):
        vz.plot_feature_curves({"raw": RNG.random(9)}, centres)
    with pytest.raises(ValueError):
        vz.plot_feature_curves({}, centres)


def test_plot_feature_strip_maps():
    features = RNG.random((12, 64 * 64)).astype(np.float32)
    fig = vz.plot_feature_strip(features, n=4, centres=np.arange(12) * 4 + 2, fps=15.0)
    assert len(fig.axes) == 5 and fig.axes[0].images[0].get_array().shape == (64, 64)
    assert fig.axes[3].get_title().startswith("row 11\nframe 46")
    assert _bar_limits(fig) == [(0.0, float(features.max()))]  # one scale for every row, and its bar
    assert len(vz.plot_feature_strip(features[:2], n=8).axes) == 3
    for bad in (features[0], RNG.random((3, 100 + 1))):
        with pytest.raises(ValueError):
            vz.plot_feature_strip(bad)


def test_training_curves_from_a_recorded_history():
    from xcalab.viz.features import plot_training_curves

    history = {"loss_steps": [10, 20, 30], "loss": [1.0, 0.7, 0.5],
               "validation": [{"step": 20, "dice": 0.4, "soft_dice": 0.3, "auc": 0.9, "loss": 0.8},
                              {"step": 30, "dice": 0.6, "soft_dice": 0.5, "auc": 0.95, "loss": 0.6}]}
    fig = plot_training_curves(history)
    left, right = fig.axes
    assert [list(line.get_ydata()) for line in left.lines] == [[1.0, 0.7, 0.5], [0.8, 0.6]]
    assert [line.get_label() for line in right.lines] == ["dice", "soft dice", "auc"]
    assert list(right.lines[2].get_xdata()) == [20, 30]
    with pytest.raises(ValueError, match="one length"):
        plot_training_curves({"loss_steps": [1, 2], "loss": [1.0]})


def test_shipped_extractor_records_its_history():
    import json

    from xcalab.config import REPO_ROOT

    meta = json.loads((REPO_ROOT / "data" / "weights" / "svsnet_small.json").read_text())
    history = meta["history"]
    assert history["loss_steps"][-1] == meta["training"]["steps"] and len(history["loss"]) == len(history["loss_steps"])
    assert history["validation"][-1]["dice"] == pytest.approx(meta["validation"]["dice"], abs=1e-6)
