"""Training figures: curves carry the logged numbers, timelines carry the segments and keyframes."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xcalab.data.annotations import FeatureGrid, VideoAnnotation
from xcalab.metrics import Detection
from xcalab.postprocess import (
    Candidates,
    VideoPrediction,
    decode_video,
    postprocess_stages,
    stages_from_candidates,
)
from xcalab.train.assign import assign_targets, assignment_by_level, level_lengths, pyramid_points
from xcalab.viz import training as vz
from xcalab.viz.palette import ACTION_COLORS


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def history(n: int = 6, contrast=(0, 2)) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / (e + 1), "cls": 0.5 / (e + 1), "reg": 0.3 / (e + 1),
             "con": 0.2 if e in contrast else None, "lr": 1e-3 * min(1, (e + 1) / 2),
             "val_average_map": None if e < 3 else 0.1 * e, "val_ad": None if e < 3 else 10.0 - e,
             "best_epoch": 5} for e in range(n)]


def test_training_history_draws_the_logged_values():
    h = history()
    fig = vz.plot_training_history(h, contrast_epochs=(0, 2, 40), best_epoch=5)
    assert isinstance(fig, Figure)
    ax_loss, ax_val = fig.axes[0], fig.axes[1]
    lines = {line.get_label(): line for line in ax_loss.get_lines()}
    np.testing.assert_allclose(lines["total"].get_ydata(), [r["loss"] for r in h])
    con = lines["contrastive (SNN, eq. 10)"].get_ydata()
    assert np.isfinite(con).sum() == 2  # only the contrastive epochs have a value
    # Two shaded contrastive epochs (epoch 40 lies beyond the history and is not drawn).
    assert len(ax_loss.patches) == 2
    val = ax_val.get_lines()[0].get_ydata()
    np.testing.assert_allclose(val[3:], [30.0, 40.0, 50.0])
    assert np.isnan(val[:3]).all()
    assert any(line.get_label() == "selected epoch 5" for line in ax_val.get_lines())


def test_learning_rate_curve_and_empty_history():
    fig = vz.plot_learning_rate(history())
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [r["lr"] for r in history()])
    with pytest.raises(ValueError, match="empty"):
        vz.plot_training_history([])


def prediction(video_id: str, fps: float, found: bool = True) -> VideoPrediction:
    # filling [1.0 s, 2.0 s], disappearing [2.0 s, 4.0 s] -> keyframes at 10, 20, 40 frames at 10 fps
    top1 = (Detection(video_id, 0, 1.0, 2.0, 0.9), Detection(video_id, 1, 2.0, 4.0, 0.8)) if found else ()
    from xcalab.data.annotations import Keyframes

    return VideoPrediction(video_id, torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                           ("filling", "disappearing"), top1, Keyframes(10.0, 20.0, 40.0) if found else None,
                           True if found else None, {} if found else {"filling": "no candidate"}, 0, fps)


def test_timeline_records_convert_seconds_to_frames_and_plot():
    fps = 10.0
    truth = {v: VideoAnnotation.from_keyframes(v, (12, 20, 37), fps, 50, subset="test") for v in ("a", "b")}
    preds = [prediction("a", fps), prediction("b", fps, found=False)]
    features = {"a": np.ones((12, 4096), np.float32)}
    records = vz.timeline_records(preds, truth, features, stride=4)
    a, b = records
    assert a["pred_segments"] == [(0, 10.0, 20.0, 0.9), (1, 20.0, 40.0, 0.8)]
    assert a["pred_keyframes"] == (10, 20, 40) and a["true_keyframes"] == (12, 20, 37)
    np.testing.assert_array_equal(a["curve"][0], 4 * np.arange(12) + 2)
    assert b["pred_keyframes"] is None and "curve" not in b and b["missing"] == {"filling": "no candidate"}

    fig = vz.plot_predicted_segments(records)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title(loc="left") == "a: predicted - true = start -2, apex +0, end +3 frames"
    assert fig.axes[1].get_title(loc="left").startswith("b: no keyframes (filling: no candidate")
    # true keyframes (3 solid) + predicted (3 dashed) in the first row, only the 3 true ones in the second
    assert len(fig.axes[0].get_lines()) == 6 and len(fig.axes[1].get_lines()) == 3
    with pytest.raises(ValueError):
        vz.plot_predicted_segments([])


# --------------------------------------------------------------------------------------------------
# Label assignment per pyramid level (xcalab.train.assign.assignment_by_level -> plot_point_assignment)
# --------------------------------------------------------------------------------------------------

# Filling [2, 10] (8 steps, centre 6) and disappearing [10, 14] (4 steps, centre 12) on a 16-step video, three
# levels of strides 1, 2, 4 with ranges [0, 4], [4, 8], [8, 16] and r = 1.5. Worked by hand:
#   level 0: filling's centre region (4.5, 7.5) holds 5, 6, 7, whose farthest boundary is 5, 4, 5 steps away:
#            only 6 is within [0, 4]. Disappearing's (10.5, 13.5) holds 11, 12, 13 (farthest 3, 2, 3): all in.
#   level 1: filling's (3, 9) holds 4, 6, 8 (farthest 6, 4, 6): all in [4, 8]. Disappearing's (10, 14) holds
#            12 (farthest 2 < 4): out of range.
#   level 2: filling's (2, 10) holds 4, 8 (farthest 6 < 8): none. Disappearing's (10, 14) holds 12: none.
HAND_SEGMENTS = [[2.0, 10.0], [10.0, 14.0]]
HAND_LABELS = [0, 1]
HAND_STRIDES = (1, 2, 4)
HAND_RANGES = ((0, 4), (4, 8), (8, 16))
HAND_POSITIVE = {0: ([6], [11, 12, 13]), 1: ([4, 6, 8], []), 2: ([], [])}
HAND_IN_CENTRE_ONLY = {0: ([5, 7], []), 1: ([], [12]), 2: ([4, 8], [12])}
HAND_CENTRE = {0: [[4.5, 7.5], [10.5, 13.5]], 1: [[3, 9], [10, 14]], 2: [[2, 10], [10, 14]]}


def hand_levels():
    return assignment_by_level(HAND_SEGMENTS, HAND_LABELS, 16, HAND_STRIDES, HAND_RANGES)


def test_assignment_by_level_matches_the_hand_worked_case():
    levels = hand_levels()
    assert [lv.stride for lv in levels] == [1, 2, 4] and [len(lv.position) for lv in levels] == [16, 8, 4]
    np.testing.assert_array_equal(levels[2].position, [0, 4, 8, 12])
    for lv in levels:
        for c in (0, 1):
            assert lv.position[lv.positive[:, c]].tolist() == HAND_POSITIVE[lv.level][c], (lv.level, c)
            only_centre = lv.in_centre[:, c] & ~lv.positive[:, c]
            assert lv.position[only_centre].tolist() == HAND_IN_CENTRE_ONLY[lv.level][c], (lv.level, c)
        np.testing.assert_allclose(lv.centre, HAND_CENTRE[lv.level])
        assert lv.reg_range == tuple(map(float, HAND_RANGES[lv.level]))


def test_assignment_by_level_is_assign_targets_and_lies_inside_its_centre_regions():
    generator = torch.Generator().manual_seed(0)
    starts = torch.rand(3, generator=generator) * 30
    segments = torch.stack((starts, starts + 1 + torch.rand(3, generator=generator) * 25), 1)
    labels = torch.tensor([0, 1, 0])
    levels = assignment_by_level(segments, labels, 60)
    points = pyramid_points(level_lengths(60), regression_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 1e4)))
    direct = assign_targets(points, segments[None].double(), labels[None]).cls[0].bool()
    np.testing.assert_array_equal(torch.cat([lv.positive for lv in levels]), direct)
    for lv in levels:
        for c in (0, 1):
            # a positive point passes the centre test of an action of its class, strictly inside its region,
            # and its farthest boundary lies in the level's range
            owners = (labels == c).numpy()
            for i in np.nonzero(lv.positive[:, c].numpy())[0]:
                t = float(lv.position[i])
                ok = [k for k in np.nonzero(owners)[0] if lv.in_centre[i, k]
                      and lv.centre[k, 0] < t < lv.centre[k, 1]
                      and lv.reg_range[0] <= lv.farthest[i, k] <= lv.reg_range[1]]
                assert ok, (lv.level, c, t)


def test_level_lengths_and_bad_assignment_inputs():
    assert level_lengths(12, (1, 2, 4, 8)) == [12, 6, 3, 2]
    with pytest.raises(ValueError, match="at least one feature step"):
        level_lengths(0)
    with pytest.raises(ValueError, match="one label per segment"):
        assignment_by_level(HAND_SEGMENTS, [0], 16, HAND_STRIDES, HAND_RANGES)
    with pytest.raises(ValueError, match="start <= end"):
        assignment_by_level([[5.0, 2.0]], [0], 16, HAND_STRIDES, HAND_RANGES)
    with pytest.raises(ValueError, match="labels must lie"):
        assignment_by_level(HAND_SEGMENTS, [0, 2], 16, HAND_STRIDES, HAND_RANGES)


def scatter_x(ax, gid: str) -> list[float]:
    (collection,) = [c for c in ax.collections if c.get_gid() == gid]
    return sorted(collection.get_offsets()[:, 0].tolist()) if len(collection.get_offsets()) else []


def test_point_assignment_draws_the_positives_assign_returns():
    fig = vz.plot_point_assignment(hand_levels(), HAND_SEGMENTS, HAND_LABELS)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    for level, ax in enumerate(fig.axes):
        for c in (0, 1):
            assert scatter_x(ax, f"positive:{c}") == HAND_POSITIVE[level][c]
            assert scatter_x(ax, f"in-centre-out-of-range:{c}") == HAND_IN_CENTRE_ONLY[level][c]
        counts = (len(HAND_POSITIVE[level][0]), len(HAND_POSITIVE[level][1]))
        assert ax.get_title(loc="right") == f"positive points: filling {counts[0]}, disappearing {counts[1]}"
        lo, hi = HAND_RANGES[level]
        assert ax.get_ylabel() == f"level {level}\nstride {HAND_STRIDES[level]}\nrange [{lo}, {hi}]"
    # the positives take the action colours of the one palette
    ax0 = fig.axes[0]
    for c, name in enumerate(("filling", "disappearing")):
        (chosen,) = [x for x in ax0.collections if x.get_gid() == f"positive:{c}"]
        np.testing.assert_allclose(chosen.get_facecolor()[0][:3], matplotlib.colors.to_rgb(ACTION_COLORS[name]))


def test_point_assignment_bad_inputs():
    with pytest.raises(ValueError, match="no pyramid levels"):
        vz.plot_point_assignment([], HAND_SEGMENTS, HAND_LABELS)
    with pytest.raises(ValueError, match="one label per segment"):
        vz.plot_point_assignment(hand_levels(), HAND_SEGMENTS, [0])
    with pytest.raises(ValueError, match="labels must lie"):
        vz.plot_point_assignment(hand_levels(), HAND_SEGMENTS, [0, 3])
    with pytest.raises(ValueError, match="do not match"):
        vz.plot_point_assignment(hand_levels(), HAND_SEGMENTS[:1], [0])


# --------------------------------------------------------------------------------------------------
# Soft-NMS before / after (xcalab.postprocess.stages_from_candidates -> plot_soft_nms)
# --------------------------------------------------------------------------------------------------

# Three candidates: filling [0, 10] 0.9, filling [1, 10] 0.8, disappearing [20, 30] 0.7. Soft-NMS (sigma 0.5)
# picks [0, 10] first; [1, 10] overlaps it with IoU 9 / 10, so its score becomes 0.8 exp(-0.81 / 0.5) = 0.1583;
# [20, 30] does not overlap and keeps 0.7; then [1, 10] is picked with 0.1583. Voting moves [0, 10] to the
# IoU-and-score-weighted mean of [0, 10] (weight 0.9 x 1) and [1, 10] (0.8 x 0.9): start 0.72 / 1.62 = 0.444.
HAND_CANDIDATES = Candidates(torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]]), torch.tensor([0.9, 0.8, 0.7]),
                             torch.tensor([0, 0, 1]))


def test_stages_from_candidates_hand_worked():
    stages = stages_from_candidates(HAND_CANDIDATES)
    assert stages.kept.tolist() == [0, 2, 1]
    np.testing.assert_allclose(stages.kept_scores, [0.9, 0.7, 0.8 * np.exp(-0.81 / 0.5)], rtol=1e-5)
    np.testing.assert_allclose(stages.voted[0], [0.72 / 1.62, 10.0], rtol=1e-5)
    assert [t[0] for t in stages.top1] == [0, 1]
    np.testing.assert_allclose([t[1:] for t in stages.top1], [[0.72 / 1.62, 10.0, 0.9], [20.0, 30.0, 0.7]], rtol=1e-5)
    frames = stages.in_frames(FeatureGrid(stride=4, window=4))  # f = 4 g + 2
    np.testing.assert_allclose(frames.candidates.segments[2], [82.0, 122.0])
    assert frames.top1[1][1:3] == (82.0, 122.0)
    with pytest.raises(ValueError, match="one score and one label"):
        stages_from_candidates(HAND_CANDIDATES._replace(scores=torch.tensor([0.5])))


def test_postprocess_stages_agree_with_decode_video():
    generator = torch.Generator().manual_seed(3)
    lengths, strides = (16, 8, 4), (1, 2, 4)
    logits = [torch.randn(2, n, generator=generator) * 2 for n in lengths]
    offsets = [torch.rand(2, n, generator=generator) * 3 for n in lengths]
    grid, fps = FeatureGrid(stride=4, window=4), 10.0
    stages = postprocess_stages(logits, offsets, None, strides)
    prediction = decode_video(logits, offsets, None, strides, fps, 1e3, grid)
    np.testing.assert_allclose(sorted(stages.kept_scores.tolist()), sorted(prediction.scores.tolist()), rtol=1e-6)
    assert [d.label_id for d in prediction.top1] == [t[0] for t in stages.top1]
    for d, (_, g0, g1, score) in zip(prediction.top1, stages.top1):
        np.testing.assert_allclose([d.t0, d.t1, d.score],
                                   [max(0.0, grid.grid_to_seconds(g0, fps)), grid.grid_to_seconds(g1, fps), score],
                                   rtol=1e-5, atol=1e-6)


def test_soft_nms_figure_counts_what_postprocess_keeps():
    stages = stages_from_candidates(HAND_CANDIDATES)
    fig = vz.plot_soft_nms(stages, truth=[(0, 0.0, 9.0), (1, 21.0, 30.0)], threshold=0.5, unit="grid step")
    before, after, top = fig.axes
    assert before.get_title(loc="left").startswith("before Soft-NMS: 3 candidate segments")
    drawn = sum(len(c.get_segments()) for c in before.collections)
    assert drawn == 3
    assert "3 kept" in after.get_title(loc="left") and "2 at or above 0.5" in after.get_title(loc="left")
    # the survivors are drawn at their decayed scores, the grey lines at the scores they had before
    coloured = [c for c in after.collections if c.get_label() != "score before the decay"]
    heights = sorted(s[0][1] for c in coloured for s in c.get_segments())
    np.testing.assert_allclose(heights, sorted(stages.kept_scores.tolist()), rtol=1e-6)
    assert before.get_ylim() == (0, 1.02) and after.get_ylim() == (0, 1.02)
    # two kept top-1 bars, one row per class, and the two true ones on a row of their own
    assert len(top.collections) == 4 and top.get_xlabel() == "grid step"
    assert [t.get_text() for t in top.get_yticklabels()] == ["top-1 filling", "top-1 disappearing", "true"]
    bars = {tuple(np.round(c.get_paths()[0].vertices.min(0), 3)) for c in top.collections}
    assert (0.444, 2.15) in bars and (20.0, 1.15) in bars and (0.0, 0.15) in bars and (21.0, 0.15) in bars
    texts = sorted(t.get_text() for t in top.texts)
    assert texts == ["disappearing 0.70", "filling 0.90"]


def test_soft_nms_figure_bad_inputs():
    stages = stages_from_candidates(HAND_CANDIDATES)
    with pytest.raises(ValueError, match="threshold"):
        vz.plot_soft_nms(stages, threshold=1.5)
    with pytest.raises(ValueError, match="kept indices"):
        vz.plot_soft_nms(stages._replace(kept=torch.tensor([0, 5, 1])))
    with pytest.raises(ValueError, match="inconsistent"):
        vz.plot_soft_nms(stages._replace(kept_scores=torch.tensor([0.9])))
    with pytest.raises(ValueError, match="labels must lie"):
        vz.plot_soft_nms(stages, truth=[(2, 0.0, 5.0)])


def test_soft_nms_figure_shades_outside_the_cine():
    stages = stages_from_candidates(HAND_CANDIDATES)
    fig = vz.plot_soft_nms(stages, extent=(0.0, 25.0))
    for ax in fig.axes:
        assert len(ax.patches) == 2  # one shade before the first position, one after the last
    assert fig.axes[2].get_xlim() == (-2.5, 27.5)  # the cine and a tenth of its length on each side
    with pytest.raises(ValueError, match="extent"):
        vz.plot_soft_nms(stages, extent=(5.0, 5.0))


def test_assignment_default_strides_follow_the_ranges():
    levels = assignment_by_level(HAND_SEGMENTS, HAND_LABELS, 16, regression_ranges=HAND_RANGES)
    assert [lv.stride for lv in levels] == [1, 2, 4]
    with pytest.raises(ValueError, match="one stride per regression range"):
        assignment_by_level(HAND_SEGMENTS, HAND_LABELS, 16, (1, 2), HAND_RANGES)
