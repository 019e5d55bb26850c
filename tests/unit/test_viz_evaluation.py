"""Evaluation figures: table bars, precision-recall curves, keyframe-deviation histograms (known answers)."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from xcalab.data.annotations import VideoAnnotation, write_annotations
from xcalab.viz.evaluation import plot_deviation_histograms, plot_precision_recall, plot_table_bars

TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------------------
# plot_table_bars
# --------------------------------------------------------------------------------------------------


def _row(label, maps, ads):
    """A ``summarise`` record from per-seed mAP and AD values (None: not computed)."""
    def stats(xs):
        xs = [x for x in xs if x is not None]
        if not xs:
            return None, None
        return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0

    (m_map, s_map), (m_ad, s_ad) = stats(maps), stats(ads)
    return {"label": label, "mean": {"mAP": m_map, "AD": m_ad}, "std": {"mAP": s_map, "AD": s_ad},
            "per_seed": [{"mAP": m, "AD": a} for m, a in zip(maps, ads)]}


ROWS = [_row("Baseline", [40.0, 50.0, 60.0], [6.0, 5.0, 4.0]),
        _row("STA", [70.0, 72.0, 74.0], [3.0, 3.5, 4.0]),
        _row("STA-IPCon", [80.0], [2.0])]


def _dots(ax):
    """The per-seed dots of a bar panel (black '.' markers), one Line2D per row."""
    return [line for line in ax.lines if line.get_marker() == "."]


def test_table_bars_lengths_are_the_means_and_dots_the_seeds():
    fig = plot_table_bars(ROWS, title="Table IV")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig._suptitle.get_text() == "Table IV"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Baseline", "STA", "STA-IPCon"]
    assert fig.axes[0].yaxis_inverted()  # the first row on top
    for ax, col in zip(fig.axes, ("mAP", "AD")):
        assert len(ax.patches) == len(ROWS)
        assert [p.get_width() for p in ax.patches] == pytest.approx([r["mean"][col] for r in ROWS])
        assert [p.get_y() + p.get_height() / 2 for p in ax.patches] == pytest.approx([0, 1, 2])
        dots = _dots(ax)
        assert len(dots) == len(ROWS)
        for i, (line, row) in enumerate(zip(dots, ROWS)):
            assert list(line.get_ydata()) == [i] * len(row["per_seed"])
            assert list(line.get_xdata()) == [s[col] for s in row["per_seed"]]
    assert fig.axes[0].get_title() == "higher is better" and fig.axes[1].get_title() == "lower is better"
    assert "mAP" in fig.axes[0].get_xlabel() and "deviation" in fig.axes[1].get_xlabel()


def test_table_bars_error_bars_are_the_std():
    fig = plot_table_bars(ROWS)
    ax = fig.axes[0]
    # ax.barh(xerr=...) draws one horizontal segment per bar from mean - std to mean + std.
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = errorbar.lines[2][0].get_segments()
    for seg, row in zip(segments, ROWS):
        low, high = sorted(seg[:, 0])
        assert low == pytest.approx(row["mean"]["mAP"] - row["std"]["mAP"])
        assert high == pytest.approx(row["mean"]["mAP"] + row["std"]["mAP"])
    assert ROWS[0]["std"]["mAP"] == pytest.approx(10.0)  # the hand-made spread is really drawn


def test_table_bars_missing_values_are_gaps():
    rows = [*ROWS[:1], _row("no keyframes", [30.0, 35.0], [None, None])]
    fig = plot_table_bars(rows)
    widths = [p.get_width() for p in fig.axes[1].patches]
    assert widths[0] == pytest.approx(5.0) and np.isnan(widths[1])
    assert list(_dots(fig.axes[1])[1].get_xdata()) == []  # no AD dots for the row without AD
    assert [p.get_width() for p in fig.axes[0].patches] == pytest.approx([50.0, 32.5])


def test_a_row_far_off_the_scale_is_cut_and_labelled():
    rows = [*ROWS, _row("Majority phase", [0.0, 0.0, 0.0], [46.0, 46.0, 46.0])]
    fig = plot_table_bars(rows)
    ad = fig.axes[1]
    # The other rows' largest AD + std is 5 + 1: the axis stops at 1.2 x 6; the cut bar keeps its length.
    assert ad.get_xlim() == pytest.approx((0.0, 7.2)) and ad.patches[3].get_width() == pytest.approx(46.0)
    assert [t.get_text() for t in ad.texts] == ["46.0 (off scale)"]
    assert len(fig.axes[0].texts) == 0 and fig.axes[0].get_xlim()[1] > 80  # nothing is off the mAP scale


def test_table_bars_refuses_no_rows():
    with pytest.raises(ValueError, match="no rows"):
        plot_table_bars([])


# --------------------------------------------------------------------------------------------------
# plot_precision_recall
# --------------------------------------------------------------------------------------------------


def _ground_truth(n_test=3, setting=0):
    """Three test cines and one training cine, 60 frames at 15 fps, keyframes shifted per cine."""
    videos = [VideoAnnotation.from_keyframes(f"v{i}", (5 + 2 * i, 20 + 2 * i, 40 + 2 * i), 15.0, 60,
                                             subset="test", setting=setting) for i in range(n_test)]
    videos.append(VideoAnnotation.from_keyframes("t0", (5, 20, 40), 15.0, 60, subset="train", setting=setting))
    return videos


def _perfect(videos, score=0.9):
    """Detections equal to the test cines' ground-truth actions."""
    return {"results": {v.video_id: [{"label": a.label, "score": score, "segment": list(a.segment)}
                                     for a in v.actions] for v in videos if v.subset == "test"}}


def _curves(fig):
    """{panel title: [(recall, precision, legend label) per tIoU]}."""
    return {ax.get_title(): [(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float),
                              line.get_label()) for line in ax.lines] for ax in fig.axes}


def test_perfect_predictions_reach_precision_one_at_recall_one(tmp_path):
    videos = _ground_truth()
    gt_path = write_annotations(tmp_path / "gt.json", videos)
    pred = _perfect(videos)
    fig = plot_precision_recall(pred, gt_path, TIOUS, title="perfect")
    assert len(fig.axes) == 2 and fig._suptitle.get_text() == "perfect"
    curves = _curves(fig)
    assert list(curves) == ["filling", "disappearing"]
    for lines in curves.values():
        assert [label for _, _, label in lines] == [f"tIoU {t:g}" for t in TIOUS]
        for recall, precision, _ in lines:
            assert recall[-1] == pytest.approx(1.0) and precision[-1] == pytest.approx(1.0)
            assert np.all(precision == 1.0)  # every detection is a hit
            assert recall == pytest.approx([0, 1 / 3, 2 / 3, 1])  # 3 test cines, the training cine ignored
    # Paths and dicts give the same figure.
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(pred))
    again = _curves(plot_precision_recall(pred_path, json.loads(gt_path.read_text()), TIOUS))
    for title in curves:
        for (r1, p1, _), (r2, p2, _) in zip(curves[title], again[title]):
            assert np.array_equal(r1, r2) and np.array_equal(p1, p2)


def test_top1_drops_the_lower_duplicates(tmp_path):
    """A second, wrong, lower-scoring segment per class: top-1 keeps the curve perfect; over all
    detections precision falls to 1/2 after recall 1 is reached."""
    videos = _ground_truth()
    pred = _perfect(videos)
    for entries in pred["results"].values():
        entries += [{"label": e["label"], "score": 0.1, "segment": [e["segment"][0] + 10.0, e["segment"][1] + 10.0]}
                    for e in list(entries)]
    gt = json.loads(write_annotations(tmp_path / "gt.json", videos).read_text())
    for lines in _curves(plot_precision_recall(pred, gt, TIOUS, top1=True)).values():
        for recall, precision, _ in lines:
            assert recall[-1] == 1.0 and np.all(precision == 1.0)
    for lines in _curves(plot_precision_recall(pred, gt, TIOUS, top1=False)).values():
        for recall, precision, _ in lines:
            assert recall.max() == 1.0 and precision[-1] == pytest.approx(0.5)
            reached = np.flatnonzero(recall == 1.0)[0]
            assert precision[reached] == 1.0  # the three hits come first


def test_precision_recall_without_detections_and_other_settings(tmp_path):
    videos = _ground_truth(setting=1)
    gt = json.loads(write_annotations(tmp_path / "gt.json", videos).read_text())
    fig = plot_precision_recall({"results": {}}, gt, (0.5,))
    curves = _curves(fig)
    assert list(curves) == ["filling", "whole"]  # setting 1's classes
    for lines in curves.values():
        (recall, precision, _), = lines
        assert recall.max() == 0.0 and precision.max() == 0.0
    perfect = _curves(plot_precision_recall(_perfect(videos), gt, (0.5,), subset="test"))
    assert all(lines[0][0][-1] == 1.0 for lines in perfect.values())


def test_precision_recall_refuses_empty_ground_truth(tmp_path):
    videos = [v for v in _ground_truth() if v.subset == "train"]
    gt = json.loads(write_annotations(tmp_path / "gt.json", videos).read_text())
    with pytest.raises(ValueError):
        plot_precision_recall({"results": {}}, gt)  # no test cine: nothing to draw
    with pytest.raises(ValueError):
        plot_precision_recall({"results": {}}, {"version": "x", "database": {}})


def test_precision_recall_refuses_unknown_labels(tmp_path):
    videos = _ground_truth()
    pred = {"results": {"v0": [{"label": "nonsense", "score": 0.5, "segment": [0.0, 1.0]}]}}
    with pytest.raises(ValueError, match="unknown label 'nonsense'"):
        plot_precision_recall(pred, json.loads(write_annotations(tmp_path / "gt.json", videos).read_text()))


# --------------------------------------------------------------------------------------------------
# plot_deviation_histograms
# --------------------------------------------------------------------------------------------------

MAX_ABS = 20
N_BINS = 2 * MAX_ABS + 1  # one-frame bins centred on -20..20


def _counts(patch):
    """The bin counts of a ``histtype="step"`` outline: its vertices run (x0, 0), (x0, c0), (x1, c0), (x1, c1), ..."""
    y = patch.get_xy()[:, 1]
    return y[1::2][:N_BINS]


def _centres(patch):
    return patch.get_xy()[:, 0][1::2][:N_BINS] + 0.5


DEVIATIONS = {
    "A": [[0, 1, -2], [3, 0, 25], [-30, 0, 0], [1, 1, 1]],  # 25 and -30 are clipped into the outer bins
    "B": [[2, -1, 4]],
}


def test_deviation_histograms_count_every_video_per_keyframe():
    fig = plot_deviation_histograms(DEVIATIONS, max_abs=MAX_ABS)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["start", "apex", "end"]
    assert fig.axes[0].get_ylabel() == "videos"
    for k, ax in enumerate(fig.axes):
        assert len(ax.patches) == len(DEVIATIONS)
        for patch, (label, devs) in zip(ax.patches, DEVIATIONS.items()):
            counts = _counts(patch)
            assert counts.sum() == len(devs)
            expected = np.zeros(N_BINS)
            for d in devs:
                expected[int(np.clip(d[k], -MAX_ABS, MAX_ABS)) + MAX_ABS] += 1
            assert np.array_equal(counts, expected), (label, k)
            assert _centres(patch)[0] == -MAX_ABS and _centres(patch)[-1] == MAX_ABS
    start = fig.axes[0]
    assert _counts(start.patches[0])[0] == 1  # -30 clipped to -20
    assert _counts(fig.axes[2].patches[0])[-1] == 1  # 25 clipped to 20
    legend = [t.get_text() for t in start.get_legend().get_texts()]
    assert legend == ["A (mean |d| 8.5)", "B (mean |d| 2.0)"]  # the mean uses the unclipped values


def test_deviation_histograms_other_range_and_a_variant_without_videos():
    fig = plot_deviation_histograms({"A": [[0, 5, -5]], "none": []}, max_abs=3)
    for k, ax in enumerate(fig.axes):
        y = ax.patches[0].get_xy()[:, 1][1::2][:7]
        assert y.sum() == 1 and y[[3, 6, 0][k]] == 1  # 0 -> centre bin, +-5 -> the outer bins
        assert ax.patches[1].get_xy()[:, 1].max() == 0  # an empty outline
        assert [t.get_text() for t in ax.get_legend().get_texts()][1] == "none"


def test_deviation_histograms_refuse_nothing():
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_deviation_histograms({})


def test_deviation_histograms_refuse_rows_that_are_not_triples():
    with pytest.raises(ValueError):
        plot_deviation_histograms({"A": [[1, 2], [3, 4], [5, 6]]})
