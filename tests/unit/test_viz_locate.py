"""Keyframe frames: previous / key / next (``xcalab locate``'s summary) and true vs predicted (the paper's Fig. 4)."""

from __future__ import annotations

import types

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from xcalab.data.io import Cine
from xcalab.viz.locate import plot_keyframe_triplets, plot_locate_summary, plot_true_vs_predicted_keyframes
from xcalab.viz.palette import KEYFRAME_COLORS


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def ramp(n: int = 20) -> np.ndarray:
    """[n, 8, 8] frames whose frame i is uniformly i / n: a drawn image tells which frame it is."""
    return np.repeat((np.arange(n, dtype=np.float32) / n)[:, None, None], 8, axis=1).repeat(8, axis=2)


def frame_drawn(ax) -> int:
    (image,) = ax.images
    return round(float(np.asarray(image.get_array()).mean()) * 20)


def test_true_vs_predicted_titles_give_the_deviations():
    frames = ramp()
    fig = plot_true_vs_predicted_keyframes(frames, (2, 10, 17), (4, 10, 15), title="cine a")
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["true start #2", "predicted start #4 (+2 frames)", "true apex #10", "predicted apex #10 (+0 frames)",
                      "true end #17", "predicted end #15 (-2 frames)"]
    assert [frame_drawn(ax) for ax in fig.axes] == [2, 4, 10, 10, 17, 15]
    for ax, name in zip(fig.axes, ("start", "start", "apex", "apex", "end", "end")):
        assert ax.images[0].get_clim() == (0.0, 1.0)  # fixed grey limits, not autoscaled
        assert ax.spines["left"].get_edgecolor()[:3] == pytest.approx(plt.matplotlib.colors.to_rgb(KEYFRAME_COLORS[name]))
    assert fig.get_suptitle() == "cine a"


def test_true_vs_predicted_with_a_missing_class_or_absent_truth():
    fig = plot_true_vs_predicted_keyframes(ramp(), (None, 10, 17), None)
    assert not fig.axes[0].images and "not in this cine" in fig.axes[0].texts[0].get_text()
    assert all(not ax.images and "not detected" in ax.texts[0].get_text() for ax in fig.axes[1::2])
    # A deviation is only given where both frames exist.
    fig = plot_true_vs_predicted_keyframes(ramp(), (None, 10, 17), (3, 11, 17))
    assert fig.axes[1].get_title() == "predicted start #3"
    assert fig.axes[3].get_title() == "predicted apex #11 (+1 frames)"


def test_true_vs_predicted_bad_inputs():
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        plot_true_vs_predicted_keyframes(ramp()[0], (1, 2, 3), (1, 2, 3))
    with pytest.raises(ValueError, match="three frames"):
        plot_true_vs_predicted_keyframes(ramp(), (1, 2), (1, 2, 3))
    with pytest.raises(ValueError, match="outside the cine's 20 frames"):
        plot_true_vs_predicted_keyframes(ramp(), (1, 2, 3), (1, 2, 20))


def test_triplets_draw_previous_key_next_and_say_why_a_keyframe_is_absent():
    fig = plot_keyframe_triplets(ramp(), (0, 10, None))
    titles = [ax.get_title() for ax in fig.axes]
    # start at frame 0: its previous frame lies outside the cine
    assert titles[:6] == ["", "start #0", "next #1", "previous #9", "apex #10", "next #11"]
    assert fig.axes[0].texts[0].get_text() == "(outside the cine)"
    assert [frame_drawn(ax) for ax in fig.axes[1:6]] == [0, 1, 9, 10, 11]
    assert fig.axes[6].texts[0].get_text().startswith("end: not in this cine")


def test_locate_summary_keeps_its_triplets():
    rng = np.random.default_rng(0)
    seq = Cine(ramp(), 15.0, "fake", {"source": "x"})
    record = {"video_id": "fake", "status": "ok", "confidence": 0.8, "end_diastolic_frames": [],
              "start": {"frame": 2, "seconds": 0.13, "score": 0.9}, "apex": {"frame": 10, "seconds": 0.67, "score": 0.8},
              "end": {"frame": 17, "seconds": 1.13, "score": 0.7},
              "segments": {"filling": {"start_s": 0.13, "end_s": 0.67, "score": 0.9},
                           "disappearing": {"start_s": 0.67, "end_s": 1.13, "score": 0.7}}}
    result = types.SimpleNamespace(record=record, sequence=seq, step_times=np.arange(4) * 4 / 15 + 2 / 15,
                                   scores=rng.random((4, 2)), vessel_curve=rng.random(4))
    fig = plot_locate_summary(result, truth=(2, 11, 16))
    assert len(fig.axes) == 9 + 2  # the 3 x 3 triplets, the timeline and the score curves
    assert [ax.get_title() for ax in fig.axes[:9]] == ["previous #1", "start #2", "next #3", "previous #9", "apex #10",
                                                       "next #11", "previous #16", "end #17", "next #18"]


def test_true_vs_predicted_composes_into_a_larger_figure():
    fig = plt.figure(figsize=(8, 6))
    outer = fig.add_gridspec(1, 2)
    for spec, name in zip(outer, ("best", "worst")):
        plot_true_vs_predicted_keyframes(ramp(), (2, 10, 17), (3, 9, 17), title=name, fig=fig, subplot_spec=spec)
    titled = [ax.get_title() for ax in fig.axes if not ax.images]
    assert titled == ["best", "worst"] and sum(bool(ax.images) for ax in fig.axes) == 12
