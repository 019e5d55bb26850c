"""The paper's Fig. 1 counterpart (notebook 00): the neighbour differences by hand, and the figure as 00 draws it."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from xcalab.data.keyframe_neighbours import frame_steps, mean_abs_difference, neighbour_differences
from xcalab.viz.keyframe_neighbours import DELTA_MEANING, plot_keyframe_neighbours
from xcalab.viz.locate import WHY_ABSENT

#: Grey level of each frame of a toy cine whose frames are flat: every difference is |c_i - c_j|.
LEVELS = np.array([0.0, 0.1, 0.3, 1.0, 0.9, 0.9])


def flat_cine(levels=LEVELS, size=4):
    """[N, size, size] frames, frame i filled with levels[i]."""
    return np.repeat(np.asarray(levels, dtype=np.float32)[:, None, None], size * size, axis=1).reshape(-1, size, size)


def test_mean_abs_difference_by_hand():
    a = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert mean_abs_difference(a, np.zeros((2, 2))) == pytest.approx(0.25)
    assert mean_abs_difference(np.zeros((2, 2)), a) == pytest.approx(0.25)  # symmetric
    b = np.array([[0.5, 0.5], [-0.5, 0.0]])
    assert mean_abs_difference(a, b) == pytest.approx((0.5 + 0.5 + 0.5 + 0.0) / 4)
    with pytest.raises(ValueError, match="shapes"):
        mean_abs_difference(np.zeros((2, 2)), np.zeros((2, 3)))


def test_frame_steps_by_hand():
    steps = frame_steps(flat_cine())
    np.testing.assert_allclose(steps, [0.1, 0.2, 0.7, 0.1, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_steps(flat_cine()[:1])


def test_neighbour_differences_by_hand():
    # start 1: |0.1 - 0| = 0.1, |0.3 - 0.1| = 0.2; apex 3: 0.7, 0.1; end 5 (the last frame): 0.0, no next.
    d = neighbour_differences(flat_cine(), (1, 3, 5))
    assert d.keyframes == (1, 3, 5)
    np.testing.assert_allclose(d.previous, [0.1, 0.7, 0.0], atol=1e-6)
    np.testing.assert_allclose(d.next[:2], [0.2, 0.1], atol=1e-6)
    assert np.isnan(d.next[2])
    assert d.contrast_change == pytest.approx(1.0)  # |1.0 - 0.0|
    assert d.typical_step == pytest.approx(0.1)  # median of 0.1, 0.2, 0.7, 0.1, 0.0
    np.testing.assert_allclose(d.relative_neighbours()[:2], [[0.1, 0.2], [0.7, 0.1]], atol=1e-6)


def test_relative_is_in_units_of_the_contrast_change():
    # The same cine at half the contrast: the absolute numbers halve, the relative ones do not move.
    full = neighbour_differences(flat_cine(), (1, 3, None))
    half = neighbour_differences(flat_cine(LEVELS * 0.5), (1, 3, None))
    assert half.contrast_change == pytest.approx(0.5 * full.contrast_change)
    np.testing.assert_allclose(half.relative_neighbours(), full.relative_neighbours(), atol=1e-6)


def test_absent_and_edge_keyframes_are_nan():
    d = neighbour_differences(flat_cine(), (None, 3, None))
    assert np.isnan(d.previous[[0, 2]]).all() and np.isnan(d.next[[0, 2]]).all()
    d = neighbour_differences(flat_cine(), (0, 3, 4))
    assert np.isnan(d.previous[0]) and d.next[0] == pytest.approx(0.1)
    # An apex at the first frame has no contrast change to measure by: the relative numbers are undefined.
    d = neighbour_differences(flat_cine(), (0, 0, 2))
    assert d.contrast_change == 0.0 and np.isnan(d.relative_neighbours()).all()


@pytest.mark.parametrize(
    ("frames", "keyframes", "match"),
    [
        (np.zeros((6, 4)), (1, 3, 5), r"\[N, H, W\]"),
        (np.zeros((1, 4, 4)), (0, 0, 0), "at least 2 frames"),
        (flat_cine(), (1, 3), r"\(start, apex, end\)"),
        (flat_cine(), (1, None, 5), "apex keyframe is required"),
        (flat_cine(), (1, 3, 6), "outside the cine's frames 0..5"),
        (flat_cine(), (-1, 3, 5), "outside"),
        (flat_cine(), (1.5, 3, 5), "whole frame index"),
        (flat_cine(), (True, 3, 5), "whole frame index"),
    ],
)
def test_bad_inputs_raise_clear_errors(frames, keyframes, match):
    with pytest.raises(ValueError, match=match):
        neighbour_differences(frames, keyframes)


def _neighbour_labels(ax):
    return [t.get_text() for t in ax.texts if t.get_text().startswith("Δ")]


def test_figure_as_notebook_00_draws_it_with_an_absent_end():
    """Called as 00 calls it for the real cine: start and apex present, the end absent (no washout)."""
    frames = flat_cine(np.linspace(0.0, 1.0, 8), size=6)  # 8 frames, each step 1/7
    keyframes = (2, 5, None)
    d = neighbour_differences(frames, keyframes)
    fig = plot_keyframe_neighbours(frames, keyframes, d, title="toy cine")
    assert isinstance(fig, Figure)
    # 2 rows x 3 frames + 1 text panel for the absent end + the curve panel.
    assert len(fig.axes) == 3 + 3 + 1 + 1
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["previous #1", "start #2", "next #3", "previous #4", "apex #5", "next #6"]
    why = [t.get_text() for t in fig.axes[6].texts]
    assert why == [f"end: {WHY_ABSENT['end']}"]
    # Each neighbour carries its Δ: a step of 1/7 against an apex - first of 5/7 is 0.20; the key frames carry none.
    for ax in (fig.axes[0], fig.axes[2], fig.axes[3], fig.axes[5]):
        assert _neighbour_labels(ax) == ["Δ 0.20"]
    assert _neighbour_labels(fig.axes[1]) == [] and _neighbour_labels(fig.axes[4]) == []
    # The curve: every consecutive pair, between its frames, in units of the contrast change.
    curve = fig.axes[7]
    x, y = curve.lines[0].get_data()
    np.testing.assert_allclose(x, np.arange(7) + 0.5)
    np.testing.assert_allclose(y, np.full(7, 0.2), atol=1e-6)
    labels = curve.get_legend_handles_labels()[1]
    assert "start 2" in labels and "apex 5" in labels and not any(label.startswith("end") for label in labels)
    assert fig._suptitle.get_text() == f"toy cine\n{DELTA_MEANING}"


def test_figure_neighbours_outside_the_cine_carry_no_number():
    frames = flat_cine()
    d = neighbour_differences(frames, (0, 3, 5))
    fig = plot_keyframe_neighbours(frames, (0, 3, 5), d)
    assert _neighbour_labels(fig.axes[0]) == []  # no frame before frame 0
    assert _neighbour_labels(fig.axes[2]) == ["Δ 0.10"]
    assert _neighbour_labels(fig.axes[8]) == []  # no frame after the last
    assert fig._suptitle.get_text() == DELTA_MEANING


def test_figure_without_differences_is_the_plain_triplets():
    frames = flat_cine()
    fig = plot_keyframe_neighbours(frames, (1, 3, 4))
    assert len(fig.axes) == 9 and all(_neighbour_labels(ax) == [] for ax in fig.axes)
    assert fig._suptitle is None


def test_figure_rejects_differences_of_another_cine():
    frames = flat_cine()
    d = neighbour_differences(frames, (1, 3, 5))
    with pytest.raises(ValueError, match="computed for keyframes"):
        plot_keyframe_neighbours(frames, (1, 3, None), d)
    with pytest.raises(ValueError, match="computed on 6 frames"):
        plot_keyframe_neighbours(frames[:5], (1, 3, 4), neighbour_differences(frames, (1, 3, 4)))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        plot_keyframe_neighbours(frames[0], (1, 3, 5))
    with pytest.raises(ValueError, match=r"\(start, apex, end\)"):
        plot_keyframe_neighbours(frames, (1, 3))
