"""The plotting functions notebooks 00 and 01 call: they return Figures with the right content."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from xcalab.viz import save_figure
from xcalab.viz.overview import (
    PIPELINE,
    TRAINING_BRANCHES,
    idealised_opacification,
    plot_keyframe_concept,
    plot_pipeline,
)
from xcalab.viz.sequences import plot_action_timelines, plot_frame_strip, plot_time_curves, strip_indices


def test_strip_indices_include_keyframes_and_spread():
    idx = strip_indices(100, 8, keyframes=(10, 40, 90))
    assert len(idx) == 8 and {10, 40, 90} <= set(idx) and idx == sorted(idx)
    assert strip_indices(100, 3) == [25, 50, 74]  # round(linspace(0, 99, 5)[1:-1])
    assert strip_indices(5, 10) == [0, 1, 2, 3, 4]  # never more frames than the cine has
    with pytest.raises(ValueError):
        strip_indices(0, 3)


def test_frame_strip_marks_keyframes():
    frames = np.random.default_rng(0).random((30, 16, 16)).astype(np.float32)
    fig = plot_frame_strip(frames, fps=15.0, n=6, keyframes=(3, 10, 25))
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert any("start" in t for t in titles) and any("apex" in t for t in titles) and any("end" in t for t in titles)
    assert titles[0].startswith("#")
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        plot_frame_strip(frames[0], fps=15.0)


def test_time_curves_one_panel_per_curve_with_keyframe_lines():
    fig = plot_time_curves({"a": np.arange(20.0), "b": np.ones(20)}, fps=10.0, keyframes=(2, 5, 15), marks=[3, 13])
    panels = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in panels] == ["a", "b"]
    vlines = [line for line in panels[0].lines if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]
    assert sorted(line.get_xdata()[0] for line in vlines) == [2, 5, 15]
    with pytest.raises(ValueError, match="empty"):
        plot_time_curves({})


def test_action_timelines_rows_and_extents():
    fig = plot_action_timelines((10, 20, 50), fps=10.0, n_frames=60)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "setting 0 · 0: filling" and labels[0] == "setting 2 · 1: disappearing"
    bars = sorted((round(p.get_x()), round(p.get_x() + p.get_width())) for p in ax.patches)
    assert bars == sorted([(10, 20), (20, 50), (10, 20), (10, 50), (10, 50), (20, 50)])


def test_idealised_opacification_shape():
    c = idealised_opacification((10, 20, 40), 50)
    assert c[:11].max() == 0 and c[20] == pytest.approx(1) and c[40:].max() == pytest.approx(0)
    assert np.all(np.diff(c[10:21]) >= 0) and np.all(np.diff(c[20:41]) <= 0)


def test_overview_figures():
    assert isinstance(plot_keyframe_concept((10, 20, 40), 50, 15.0), Figure)
    fig = plot_pipeline()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {module for _, _, module in PIPELINE} <= set(texts)
    # The training-only branches (the paper's Fig. 2): dashed boxes below the path, each marked "training only".
    assert {title for _, title, _, _ in TRAINING_BRANCHES} == {"imagewise contrast", "detection losses"} <= set(texts)
    assert texts.count("training only") == len(TRAINING_BRANCHES)
    boxes = [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == len(PIPELINE) + len(TRAINING_BRANCHES)
    assert [b.get_linestyle() for b in boxes].count("--") == len(TRAINING_BRANCHES)
    assert all(b.get_y() < 0 for b in boxes if b.get_linestyle() == "--")  # below the inference path
    assert len([p for p in plot_pipeline(branches=()).axes[0].patches if isinstance(p, FancyBboxPatch)]) == len(PIPELINE)
    with pytest.raises(ValueError, match="hang from a stage"):
        plot_pipeline(branches=[(7, "x", "y", "z")])


def test_save_figure_is_byte_stable(tmp_path):
    fig = plot_keyframe_concept((10, 20, 40), 50, 15.0)
    a = save_figure(fig, "x", tmp_path).read_bytes()
    b = save_figure(fig, "x", tmp_path).read_bytes()
    assert a[:8] == b"\x89PNG\r\n\x1a\n" and a == b
    svg1 = save_figure(fig, "y", tmp_path, fmt="svg").read_bytes()
    svg2 = save_figure(fig, "y", tmp_path, fmt="svg").read_bytes()
    assert svg1 == svg2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "y.svg"]
    with pytest.raises(ValueError, match="fmt"):
        save_figure(fig, "z", tmp_path, fmt="jpg")
