"""Metric figures and table readings: each figure draws the numbers xcalab.metrics computes, and refuses bad input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from xcalab.frame_metrics import frame_labels
from xcalab.metrics import Detection, GroundTruth, average_precision
from xcalab.viz import metrics as vm


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------------------
# tIoU
# --------------------------------------------------------------------------------------------------


def test_tiou_example_shows_intersection_union_and_value():
    fig = vm.plot_tiou_example((2, 8), (5, 11))
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and ax.get_title() == "tIoU = 3 / 9 = 0.333"
    bars = [p for p in ax.patches if p.get_width() > 0 and p.get_height() == 0.5]
    assert sorted((b.get_x(), b.get_width()) for b in bars) == [(2, 6), (5, 6)]
    assert any("union 9" in t.get_text() for t in ax.texts)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["prediction", "ground truth"]


def test_tiou_example_of_disjoint_segments_says_the_gap_is_not_counted():
    fig = vm.plot_tiou_example((0, 2), (5, 6), labels=("a", "b"), unit="frames")
    ax = fig.axes[0]
    assert ax.get_title() == "tIoU = 0 / 3 = 0.000"
    assert any("gap" in t.get_text() for t in ax.texts) and ax.get_legend() is None
    fig2, ax2 = plt.subplots()
    assert vm.plot_tiou_example((0, 1), (0, 1), ax=ax2) is fig2 and ax2.get_title().endswith("1.000")


@pytest.mark.parametrize("a, b", [((3, 1), (0, 1)), ((0, 1, 2), (0, 1)), ((0, np.nan), (0, 1))])
def test_tiou_example_refuses_bad_segments(a, b):
    with pytest.raises(ValueError):
        vm.plot_tiou_example(a, b)


# --------------------------------------------------------------------------------------------------
# AP of a ranked list
# --------------------------------------------------------------------------------------------------


def _area(ax) -> float:
    return sum(p.get_width() * p.get_height() for p in ax.patches)


def test_ranked_list_area_is_the_ap_of_xcalab_metrics():
    # AP test vector A (ActivityNet evaluator rules) at tIoU 0.5: T F T F T with 3 positives -> AP 34/45.
    gt = [GroundTruth("A", 0, 0, 10), GroundTruth("A", 0, 20, 30), GroundTruth("B", 0, 5, 15)]
    dets = [Detection("A", 0, 1, 10, 0.9), Detection("A", 0, 0, 9, 0.8), Detection("B", 0, 5, 12, 0.7),
            Detection("C", 0, 0, 5, 0.6), Detection("A", 0, 21, 29, 0.5)]
    fig = vm.plot_ranked_detections_ap([True, False, True, False, True], 3, labels=list("abcde"))
    left, right = fig.axes
    assert _area(right) == pytest.approx(average_precision(dets, gt, 0.5)) == pytest.approx(34 / 45)
    assert "AP = 0.756" in fig._suptitle.get_text()
    assert [t.get_text() for t in left.texts if t.get_text() in ("TP", "FP")] == ["TP", "FP", "TP", "FP", "TP"]
    # precision and recall after each detection, and the envelope (max precision to the right)
    np.testing.assert_allclose(right.lines[1].get_ydata(), [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(right.lines[1].get_xdata(), [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(right.lines[0].get_ydata()[1:], [1, 2 / 3, 2 / 3, 3 / 5, 3 / 5])


@pytest.mark.parametrize("hits, npos, ap", [([1, 1], 4, 0.5), ([0, 0, 1], 1, 1 / 3), ([0, 1, 1], 2, 2 / 3), ([0], 2, 0.0)])
def test_ranked_list_area_on_small_cases(hits, npos, ap):
    fig = vm.plot_ranked_detections_ap(hits, npos)
    assert _area(fig.axes[1]) == pytest.approx(ap)


@pytest.mark.parametrize("hits, npos", [([], 1), ([1, 2], 2), ([[1, 0]], 2), ([1, 1, 1], 2), ([1], 0), ([1], 1.5)])
def test_ranked_list_refuses_bad_input(hits, npos):
    with pytest.raises(ValueError):
        vm.plot_ranked_detections_ap(hits, npos)
    with pytest.raises(ValueError):
        vm.plot_ranked_detections_ap([1, 0], 2, labels=["only one"])


# --------------------------------------------------------------------------------------------------
# Frame labels
# --------------------------------------------------------------------------------------------------


def test_frame_label_strips_show_the_labels_frame_by_frame():
    pred, true = (6, 9, 18), (4, 10, 16)
    fig = vm.plot_frame_labels(pred, true, 20)
    ax = fig.axes[0]
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (3, 20, 3)  # truth, prediction, agreement; one RGB pixel per frame
    colours = {k: np.array(to_rgb(c)) for k, c in vm.LABEL_COLORS.items()}
    for row, kf in enumerate((true, pred)):
        expected = np.stack([colours[int(k)] for k in frame_labels(kf, 20)])
        np.testing.assert_allclose(image[row], expected)
    agree = frame_labels(pred, 20) == frame_labels(true, 20)
    np.testing.assert_allclose(image[2][agree], np.broadcast_to(to_rgb(vm.HIT_COLOR), (agree.sum(), 3)))
    np.testing.assert_allclose(image[2][~agree], np.broadcast_to(to_rgb(vm.MISS_COLOR), ((~agree).sum(), 3)))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["truth", "prediction", "agree (15/20)"]


def test_frame_label_strips_with_the_reference_truth_and_an_axes():
    fig, ax = plt.subplots()
    assert vm.plot_frame_labels((6, 9, 18), (4, 10, 16), 20, reference_keyframes=(2, 8, 14), ax=ax) is fig
    assert ax.images[0].get_array().shape == (4, 20, 3)
    assert ax.get_yticklabels()[2].get_text() == "reference truth"


@pytest.mark.parametrize("pred, true, n", [((1, 2), (1, 2, 3), 10), ((1, 2, 3), (3, 2, 1), 10), ((-1, 2, 3), (1, 2, 3), 10),
                                           ((1, 2, 3), (1, 2, 3), 0)])
def test_frame_label_strips_refuse_bad_input(pred, true, n):
    with pytest.raises(ValueError):
        vm.plot_frame_labels(pred, true, n)


# --------------------------------------------------------------------------------------------------
# Conventions
# --------------------------------------------------------------------------------------------------


def test_convention_effects_one_panel_per_metric_bars_equal_values():
    values = {"AD (frames)": {"xcalab": 1.5, "reference": 3.0}, "frame F": {"paper": 0.74, "foreground": 0.73, "x": 0.7}}
    fig = vm.plot_convention_effects(values)
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == list(values)
    for ax, conv in zip(fig.axes, values.values()):
        assert [p.get_width() for p in ax.patches] == pytest.approx(list(conv.values()))
        assert [t.get_text() for t in ax.get_yticklabels()] == list(conv)
    assert "(+1.5)" in fig.axes[0].texts[1].get_text()


@pytest.mark.parametrize("values", [{}, {"AD": {}}, {"AD": {"a": float("nan")}}, {"AD": {"a": None}}, {"AD": 3.0}])
def test_convention_effects_refuse_bad_values(values):
    with pytest.raises(ValueError):
        vm.plot_convention_effects(values)


# --------------------------------------------------------------------------------------------------
# Reproduced tables against the paper
# --------------------------------------------------------------------------------------------------


def _record(a_maps, b_maps, a_ad=(3.0, 3.0, 3.0), b_ad=(4.0, 4.0, 4.0)):
    def row(label, maps, ads):
        per_seed = [{"mAP": m, "AD": d - 2, "AD (reference)": d} for m, d in zip(maps, ads)]
        mean = {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}
        std = {k: float(np.std([s[k] for s in per_seed], ddof=min(1, len(maps) - 1))) for k in per_seed[0]}
        return {"label": label, "per_seed": per_seed, "mean": mean, "std": std}

    return {"table": "V", "preset": "teach", "tious": [0.3, 0.4, 0.5, 0.6, 0.7],
            "rows": [row("STA", b_maps, b_ad), row("STA+IPCon", a_maps, a_ad)],
            "paper": {"STA": [92.60, 89.42, 75.23, 57.94, 35.86, 70.21, 0.8177, 0.8422, 0.8115, 5.16],
                      "STA+IPCon": [98.44, 92.93, 80.91, 53.85, 36.10, 72.45, 0.8342, 0.8612, 0.8296, 4.71]}}


def test_paper_value_maps_columns_to_the_paper_layout():
    rec = _record((1, 2, 3), (1, 2, 3))
    assert vm.paper_value(rec, "STA", "mAP") == 70.21 and vm.paper_value(rec, "STA", "AP@0.5") == 75.23
    assert vm.paper_value(rec, "STA", "AD (reference)") == vm.paper_value(rec, "STA", "AD") == 5.16
    assert vm.paper_value(rec, "STA", "F") == 0.8115 and vm.paper_value(rec, "nope", "mAP") is None
    two = {"tious": [0.3, 0.4, 0.5, 0.6, 0.7], "paper": {"x": [1, 2, 3, 4, 5, 6]}}
    assert vm.paper_value(two, "x", "mAP") == 6 and vm.paper_value(two, "x", "AD") is None
    from xcalab.reproduce import PAPER

    table_ii = {"tious": [0.3, 0.4, 0.5, 0.6, 0.7], "paper": PAPER["II"]}  # AP, mAP and AD
    assert vm.paper_value(table_ii, "Ours (STA-IPCon)", "mAP") == 72.45
    assert vm.paper_value(table_ii, "Ours (STA-IPCon)", "AD (reference)") == 4.71
    assert vm.paper_value(table_ii, "Ours (STA-IPCon)", "F") is None
    viii = {"tious": [0.5], "paper": {"x": [0.8, 0.9, 0.85, 4.7]}}
    assert vm.paper_value(viii, "x", "AD") == 4.7 and vm.paper_value(viii, "x", "mAP") is None


def test_compare_rows_beats_when_every_seed_says_so():
    c = vm.compare_rows(_record((60, 62, 64), (58, 59, 60)), "STA+IPCon", "STA")
    np.testing.assert_allclose(c.per_seed, [2, 3, 4])
    assert (c.mean, c.std) == pytest.approx((3.0, 1.0)) and c.paper == pytest.approx(2.24)
    assert c.verdict == "better" and c.agreement == "agrees"
    assert c.sentence().startswith("STA+IPCon beats STA: mAP +3.00 ± 1.00 points") and "agrees" in c.sentence()


def test_compare_rows_worse_mixed_and_one_seed():
    worse = vm.compare_rows(_record((50, 51, 52), (58, 59, 60)), "STA+IPCon", "STA")
    assert worse.verdict == "worse" and worse.agreement == "disagrees" and "does not beat" in worse.sentence()
    mixed = vm.compare_rows(_record((60, 57, 61), (58, 59, 60)), "STA+IPCon", "STA")
    assert mixed.verdict == "unclear" and mixed.agreement == "unresolved"
    assert "better in 2, worse in 1 of 3 seeds" in mixed.sentence()
    tied = vm.compare_rows(_record((58, 59, 61), (58, 59, 60)), "STA+IPCon", "STA")
    assert (tied.n_better, tied.n_worse, tied.verdict) == (1, 0, "unclear")
    assert "better in 1, worse in 0, equal in 2 of 3 seeds" in tied.sentence()
    one = vm.compare_rows(_record((60,), (58,), (3.0,), (4.0,)), "STA+IPCon", "STA")
    assert one.verdict == "unclear" and one.std == 0.0 and "one seed" in one.sentence()


def test_compare_rows_lower_is_better_for_ad():
    c = vm.compare_rows(_record((1, 2, 3), (1, 2, 3), a_ad=(3, 3.5, 2.5), b_ad=(4, 4, 4)), "STA+IPCon", "STA",
                        "AD (reference)")
    assert c.mean == pytest.approx(-1.0) and c.paper == pytest.approx(-0.45)
    assert c.verdict == "better" and c.agreement == "agrees" and "frames" in c.sentence()
    with pytest.raises(ValueError, match="no row"):
        vm.compare_rows(_record((1,), (1,), (1,), (1,)), "STA", "missing")


def test_plot_versus_paper_bars_next_to_the_paper():
    rec = _record((60, 62, 64), (58, 59, 60))
    fig = vm.plot_versus_paper(rec)
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "AD (reference) (lower is better)"
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([59, 62, 70.21, 72.45])  # xcalab means, then the paper
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["STA", "STA+IPCon"]
    with pytest.raises(ValueError, match="not in the table"):
        vm.plot_versus_paper(rec, columns=("nope",))
    with pytest.raises(ValueError):
        vm.plot_versus_paper({"rows": []})
