"""Metrics against hand-worked answers, the ActivityNet test vectors, scipy, and a literal oracle."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from xcalab.frame_metrics import (
    DISAPPEARING,
    FILLING,
    PRF,
    average_deviation,
    class_prf,
    confidence_interval,
    frame_labels,
    frame_prf,
    keyframe_deviations,
    mean_frame_prf,
    one_sided_ttest,
    paper_gt_keyframes,
)
from xcalab.metrics import (
    PAPER_TIOUS,
    Detection,
    GroundTruth,
    average_precision,
    deduplicate_ground_truth,
    mean_average_precision,
    parse_detections,
    parse_ground_truth,
    parse_label_ids,
    temporal_iou,
    top1_per_class,
)

G, D = GroundTruth, Detection
FAST = settings(max_examples=50, deadline=None)


# --------------------------------------------------------------------------------------------------
# temporal IoU
# --------------------------------------------------------------------------------------------------


def test_temporal_iou_by_hand():
    iou = temporal_iou([0, 10], np.array([[5, 15], [0, 10], [20, 30], [2, 4], [10, 12]]))
    np.testing.assert_allclose(iou, [5 / 15, 1.0, 0.0, 0.2, 0.0])


def test_temporal_iou_zero_length_and_errors():
    assert temporal_iou([3, 3], [[3, 3]]).tolist() == [0.0]  # no union, no overlap
    with pytest.raises(ValueError, match="t0 <= t1"):
        temporal_iou([5, 1], [[0, 10]])


# --------------------------------------------------------------------------------------------------
# AP: test vectors worked out with an independent re-implementation of the ActivityNet evaluator's rules
# --------------------------------------------------------------------------------------------------

CASE_A_GT = [G("A", 0, 0, 10), G("A", 0, 20, 30), G("B", 0, 5, 15)]
CASE_A_DET = [
    D("A", 0, 1, 10, 0.9),  # tIoU 0.9 with A[0,10]
    D("A", 0, 0, 9, 0.8),  # best GT already taken, next one has tIoU 0 -> FP
    D("B", 0, 5, 12, 0.7),  # tIoU 0.7
    D("C", 0, 0, 5, 0.6),  # video without ground truth -> FP
    D("A", 0, 21, 29, 0.5),  # tIoU 0.8 with A[20,30]
]


@pytest.mark.parametrize(
    "theta, expected",
    [
        # T F T F T: precision 1, 1/2, 2/3, 1/2, 3/5 -> envelope at the hits 1, 2/3, 3/5
        (0.50, (1 + 2 / 3 + 3 / 5) / 3),  # = 34/45
        (0.75, (1 + 2 / 5) / 3),  # T F F F T
        (0.85, 1 / 3),  # T F F F F
    ],
)
def test_case_a(theta, expected):
    assert average_precision(CASE_A_DET, CASE_A_GT, theta) == pytest.approx(expected, abs=1e-12)
    if theta == 0.5:
        assert expected == pytest.approx(34 / 45)


def test_case_b_fallback_matching():
    gt = [G("A", 0, 0, 10), G("A", 0, 2, 12)]
    det = [D("A", 0, 0, 10, 0.9), D("A", 0, 0, 11, 0.8)]
    # [0,11]: tIoU 10/11 with the taken [0,10], 9/12 = 0.75 with [2,12] -> falls back (VOC would say FP).
    assert average_precision(det, gt, 0.5) == pytest.approx(1.0)
    assert average_precision(det, gt, 0.8) == pytest.approx(0.5)


def test_case_c_miss_first():
    gt = [G("A", 0, 0, 10), G("A", 0, 20, 30)]
    det = [D("A", 0, 40, 50, 0.9), D("A", 0, 0, 10, 0.5)]
    assert average_precision(det, gt, 0.5) == pytest.approx(0.25)  # F T: precision 1/2 over recall 1/2


def test_precision_is_interpolated_and_the_threshold_is_inclusive():
    gt = [G("A", 0, 10 * k, 10 * k + 10) for k in range(4)]
    det = [D("A", 0, 0, 10, 0.9), D("A", 0, 50, 60, 0.8), D("A", 0, 10, 20, 0.7), D("A", 0, 20, 25, 0.6)]
    # T F T T: precision 1, 1/2, 2/3, 3/4; the envelope lifts 2/3 to 3/4 (raw precision would give 0.604)
    assert average_precision(det, gt, 0.5) == pytest.approx((1 + 3 / 4 + 3 / 4) / 4)
    # the last detection has tIoU exactly 0.5: a hit at 0.5, a miss just above
    assert average_precision(det, gt, 0.5 + 1e-9) == pytest.approx((1 + 2 / 3) / 4)


def test_perfect_detector_scores_one_and_blind_detector_zero():
    gt = CASE_A_GT
    perfect = [D(g.video_id, 0, g.t0, g.t1, 1.0 - 0.1 * i) for i, g in enumerate(gt)]
    assert average_precision(perfect, gt, 0.95) == 1.0
    blind = [D(g.video_id, 0, g.t1 + 100, g.t1 + 110, 0.9) for g in gt] + [D("Z", 0, 0, 10, 0.99)]
    assert average_precision(blind, gt, 0.1) == 0.0
    assert average_precision([], gt, 0.5) == 0.0


def test_single_class_rules_and_errors():
    mixed = [D("A", 0, 0, 10, 0.9), D("A", 1, 20, 30, 0.8)]
    gt = [G("A", 0, 0, 10), G("A", 1, 20, 25)]
    with pytest.raises(ValueError, match="one class"):
        average_precision(mixed, gt, 0.5)
    assert average_precision(mixed, gt, 0.5, label_id=0) == 1.0
    assert average_precision(mixed, gt, 0.6, label_id=1) == 0.0  # tIoU 0.5
    with pytest.raises(ValueError, match="empty ground truth"):
        average_precision(mixed[:1], [], 0.5)
    with pytest.raises(ValueError, match="tIoU"):
        average_precision(mixed[:1], gt[:1], 0.0)
    with pytest.raises(ValueError, match="negative duration"):
        average_precision([D("A", 0, 10, 0, 0.9)], gt[:1], 0.5)
    with pytest.raises(ValueError, match="negative duration"):
        average_precision([], [G("A", 0, 10, 0)], 0.5)
    with pytest.raises(ValueError, match="score"):
        average_precision([D("A", 0, 0, 1, float("nan"))], gt[:1], 0.5)


# --------------------------------------------------------------------------------------------------
# Ties (module docstring: score, then video id, t0, t1; ground truth of equal tIoU by (t0, t1))
# --------------------------------------------------------------------------------------------------


def test_score_ties_are_broken_by_video_id_not_by_input_order():
    gt = [G("a", 0, 0, 10)]
    hit, stray = D("a", 0, 0, 10, 0.5), D("b", 0, 0, 10, 0.5)
    # "a" ranks first: T F -> AP 1. (Ranked the other way, F T would give 1/2.)
    assert average_precision([hit, stray], gt, 0.5) == 1.0
    assert average_precision([stray, hit], gt, 0.5) == 1.0
    renamed = [G("z", 0, 0, 10)]
    assert average_precision([stray, D("z", 0, 0, 10, 0.5)], renamed, 0.5) == 0.5  # "b" < "z": F T


def test_ground_truth_ties_in_tiou_go_to_the_earlier_segment():
    # [5,15] overlaps [0,10] and [10,20] equally (1/3): it takes [0,10], so the later [0,10] finds its GT
    # taken and [10,20] too far: T F -> AP 1/2, whatever order the ground truth is listed in.
    det = [D("A", 0, 5, 15, 0.9), D("A", 0, 0, 10, 0.8)]
    for gt in ([G("A", 0, 0, 10), G("A", 0, 10, 20)], [G("A", 0, 10, 20), G("A", 0, 0, 10)]):
        assert average_precision(det, gt, 0.3) == 0.5


# --------------------------------------------------------------------------------------------------
# mAP: protocols, empty classes, subsets, de-duplication
# --------------------------------------------------------------------------------------------------

TWO_CLASS_GT = [G("v1", 0, 0, 10), G("v1", 1, 10, 30)]
TWO_CLASS_DET = [
    D("v1", 0, 0, 10, 0.9),
    D("v1", 0, 0, 10.5, 0.6),  # a duplicate: FP when every detection counts
    D("v1", 1, 10, 30, 0.8),
    D("v1", 1, 40, 50, 0.95),  # the most confident disappearing segment is wrong
]


def test_all_detections_versus_top1_protocol():
    everything = mean_average_precision(TWO_CLASS_DET, TWO_CLASS_GT, tious=(0.5,))
    # class 0: T F -> 1;  class 1: F T -> 1/2
    np.testing.assert_allclose(everything.ap[:, 0], [1.0, 0.5])
    assert everything.average_map == pytest.approx(0.75)
    paper = mean_average_precision(TWO_CLASS_DET, TWO_CLASS_GT, tious=(0.5,), protocol="top1")
    # only [0,10] (class 0) and [40,50] (class 1) survive
    np.testing.assert_allclose(paper.ap[:, 0], [1.0, 0.0])
    assert paper.average_map == pytest.approx(0.5)


def test_top1_per_class_keeps_the_best_of_each_class_and_video():
    dets = TWO_CLASS_DET + [D("v2", 0, 1, 2, 0.1), D("v2", 0, 1, 3, 0.3)]
    kept = top1_per_class(dets)
    assert kept == [D("v1", 1, 40, 50, 0.95), D("v1", 0, 0, 10, 0.9), D("v2", 0, 1, 3, 0.3)]


def test_map_result_layout_and_average_over_thresholds():
    res = mean_average_precision(CASE_A_DET, CASE_A_GT, tious=(0.5, 0.75, 0.85))
    assert res.labels == (0,) and res.tious == (0.5, 0.75, 0.85) and res.ap.shape == (1, 3)
    expected = [34 / 45, 1.4 / 3, 1 / 3]
    np.testing.assert_allclose(res.map, expected)
    assert res.average_map == pytest.approx(np.mean(expected))
    assert res.ap_at(0, 0.75) == pytest.approx(1.4 / 3)
    with pytest.raises(KeyError):
        res.ap_at(0, 0.3)
    assert res.as_dict()["ap"]["0"][0] == pytest.approx(34 / 45)
    assert "mAP" in str(res)
    assert mean_average_precision(CASE_A_DET, CASE_A_GT).tious == PAPER_TIOUS


def test_class_without_detections_scores_zero_and_class_without_ground_truth_is_nan():
    res = mean_average_precision(TWO_CLASS_DET[:1], TWO_CLASS_GT, tious=(0.5,), labels=(0, 1, 2))
    assert res.ap[0, 0] == 1.0 and res.ap[1, 0] == 0.0 and math.isnan(res.ap[2, 0])
    assert res.map[0] == pytest.approx(0.5)  # mean over the classes with ground truth
    assert res.as_dict()["ap"]["2"] == [None]
    with pytest.raises(ValueError, match="empty ground truth"):
        mean_average_precision(TWO_CLASS_DET, [])
    with pytest.raises(ValueError, match="no ground truth"):
        mean_average_precision(TWO_CLASS_DET, TWO_CLASS_GT, labels=(5,))
    with pytest.raises(ValueError, match="protocol"):
        mean_average_precision(TWO_CLASS_DET, TWO_CLASS_GT, protocol="best")


def test_detections_on_videos_outside_the_subset_are_false_positives():
    data = {
        "database": {
            "v1": {"subset": "Test", "annotations": [{"segment": [0, 10], "label": "filling", "label_id": 0}]},
            "v2": {"subset": "train", "annotations": [{"segment": [0, 10], "label": "filling", "label_id": 0}]},
        }
    }
    gt = parse_ground_truth(data, subset="test")
    assert gt == [G("v1", 0, 0.0, 10.0)]
    preds = {"results": {"v2": [{"segment": [0, 10], "score": 0.9, "label": "filling"}],
                         "v1": [{"segment": [0, 10], "score": 0.8, "label_id": 0}]}}
    det = parse_detections(preds, parse_label_ids(data))
    assert det == [D("v2", 0, 0.0, 10.0, 0.9), D("v1", 0, 0.0, 10.0, 0.8)]
    assert mean_average_precision(det, gt, tious=(0.5,)).average_map == 0.5  # F T
    assert len(parse_ground_truth(data)) == 2


def test_parse_errors_name_the_problem():
    with pytest.raises(ValueError, match="database"):
        parse_ground_truth({"videos": {}})
    with pytest.raises(ValueError, match="'v'.*negative duration"):
        parse_ground_truth({"database": {"v": {"annotations": [{"segment": [5, 1], "label_id": 0}]}}})
    with pytest.raises(ValueError, match="results"):
        parse_detections({})
    with pytest.raises(ValueError, match="'v'.*score"):
        parse_detections({"results": {"v": [{"segment": [0, 1], "score": "high", "label_id": 0}]}})
    with pytest.raises(ValueError, match="'v'.*unknown label 'rest'"):
        parse_detections({"results": {"v": [{"segment": [0, 1], "score": 0.5, "label": "rest"}]}}, {"filling": 0})


def test_ground_truth_deduplication_is_an_option():
    gt = [G("A", 0, 0, 10), G("A", 0, 0.0005, 10.0004), G("A", 0, 3, 3.0005), G("B", 0, 0, 10)]
    assert deduplicate_ground_truth(gt) == [G("A", 0, 0, 10), G("B", 0, 0, 10)]
    det = [D("A", 0, 0, 10, 0.9), D("B", 0, 0, 10, 0.8)]
    # 2 of 4 segments found at precision 1 -> 1/2; after de-duplication 2 of 2.
    assert mean_average_precision(det, gt, tious=(0.5,)).average_map == pytest.approx(0.5)
    assert mean_average_precision(det, gt, tious=(0.5,), deduplicate=True).average_map == 1.0


# --------------------------------------------------------------------------------------------------
# Properties, and agreement with a literal transcription of the official algorithm
# --------------------------------------------------------------------------------------------------


def _official_ap(dets, gts, theta):
    """The ActivityNet evaluator step by step: argsort by score, visit GTs by tIoU, pad and interpolate the PR curve."""
    npos = len(gts)
    order = np.argsort([-d.score for d in dets], kind="stable")
    matched = [False] * npos
    hits = []
    for i in order:
        d = dets[i]
        ious = []
        for j, g in enumerate(gts):
            if g.video_id == d.video_id:
                inter = max(0.0, min(d.t1, g.t1) - max(d.t0, g.t0))
                union = (d.t1 - d.t0) + (g.t1 - g.t0) - inter
                ious.append((inter / union if union > 0 else 0.0, j))
        hit = False
        for iou, j in sorted(ious, key=lambda x: -x[0]):
            if iou < theta:
                break
            if not matched[j]:
                matched[j] = hit = True
                break
        hits.append(hit)
    tp = np.cumsum(hits)
    fp = np.cumsum(np.logical_not(hits))
    rec = [0.0, *(tp / npos), 1.0]
    prec = [0.0, *(tp / np.maximum(tp + fp, 1)), 0.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    return sum((rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1])


@st.composite
def evaluation_sets(draw, videos=("v0", "v1", "v2", "v3"), classes=(0, 1), distinct_scores=False):
    """Integer segments on a few videos (plus "v9", never annotated); scores k/100, tied unless distinct_scores."""
    seg = st.tuples(st.integers(0, 12), st.integers(1, 6)).map(lambda s: (s[0], s[0] + s[1]))
    where = st.tuples(st.sampled_from(videos), st.sampled_from(classes), seg)
    gt = draw(st.lists(where, min_size=1, max_size=8))
    n = draw(st.integers(0, 10))
    scores = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n, unique=distinct_scores))
    det = draw(st.lists(st.tuples(st.sampled_from([*videos, "v9"]), st.sampled_from(classes), seg), min_size=n, max_size=n))
    return (
        [G(v, c, float(a), float(b)) for v, c, (a, b) in gt],
        [D(v, c, float(a), float(b), s / 100) for (v, c, (a, b)), s in zip(det, scores)],
    )


@FAST
@given(evaluation_sets(videos=("v0", "v1"), classes=(0,), distinct_scores=True), st.sampled_from([0.1, 0.3, 0.5, 0.7]))
def test_average_precision_matches_the_literal_official_algorithm(sets, theta):
    gt, det = sets
    gt = sorted(gt, key=lambda g: (g.t0, g.t1))  # our order for segments of equal tIoU
    assert average_precision(det, gt, theta) == pytest.approx(_official_ap(det, gt, theta), abs=1e-12)


@FAST
@given(evaluation_sets(), st.randoms(use_true_random=False), st.sampled_from(["all", "top1"]))
def test_map_is_invariant_to_video_order_and_monotone_score_rescaling_and_lies_in_unit_interval(sets, rnd, protocol):
    gt, det = sets
    base = mean_average_precision(det, gt, protocol=protocol)
    assert np.all((base.map >= 0) & (base.map <= 1)) and 0 <= base.average_map <= 1

    videos = sorted({r.video_id for r in [*gt, *det]})
    rnd.shuffle(videos)
    rank = {v: i for i, v in enumerate(videos)}
    shuffled = mean_average_precision(
        sorted(det, key=lambda d: rank[d.video_id]), sorted(gt, key=lambda g: rank[g.video_id]), protocol=protocol
    )
    np.testing.assert_array_equal(shuffled.ap, base.ap)

    rescaled = [d._replace(score=10 * d.score**3 - 4) for d in det]  # strictly increasing map
    np.testing.assert_array_equal(mean_average_precision(rescaled, gt, protocol=protocol).ap, base.ap)


# --------------------------------------------------------------------------------------------------
# Frame-level P / R / F (eq. 15)
# --------------------------------------------------------------------------------------------------


def test_frame_labels():
    assert frame_labels((2, 5, 8), 10).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 0, 0]
    assert frame_labels((2, 2, 12), 6).tolist() == [0, 0, 2, 2, 2, 2]  # no filling; cut at the last frame
    # a poor prediction out of order: [5, 2) is empty, [2, 8) still disappearing; [4, 3) empty too
    assert frame_labels((5, 2, 8), 10).tolist() == [0, 0, 2, 2, 2, 2, 2, 2, 0, 0]
    assert frame_labels((1, 4, 3), 6).tolist() == [0, 1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="non-negative frame indices"):
        frame_labels((2.5, 5, 8), 10)
    with pytest.raises(ValueError, match="non-negative frame indices"):
        frame_labels((-1, 5, 8), 10)
    with pytest.raises(ValueError, match="n_frames"):
        frame_labels((1, 2, 3), 0)


# gt (2,5,8) -> 0 0 1 1 1 2 2 2 0 0
# pd (3,5,9) -> 0 0 0 1 1 2 2 2 2 0
#   background: TP 3 (frames 0,1,9) of 4 predicted, 4 true -> P 3/4, R 3/4, F 3/4
#   filling:    TP 2 of 2 predicted, 3 true               -> P 1,   R 2/3, F 4/5
#   disappear.: TP 3 of 4 predicted, 3 true               -> P 3/4, R 1,   F 6/7
HAND_PAPER = PRF((3 / 4 + 1 + 3 / 4) / 3, (3 / 4 + 2 / 3 + 1) / 3, (3 / 4 + 4 / 5 + 6 / 7) / 3)
HAND_FOREGROUND = PRF((1 + 3 / 4) / 2, (2 / 3 + 1) / 2, (4 / 5 + 6 / 7) / 2)


def test_frame_prf_by_hand_both_conventions():
    np.testing.assert_allclose(frame_prf((3, 5, 9), (2, 5, 8), 10), HAND_PAPER)
    np.testing.assert_allclose(frame_prf((3, 5, 9), (2, 5, 8), 10, convention="foreground"), HAND_FOREGROUND)
    assert frame_prf((2, 5, 8), (2, 5, 8), 10) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="convention"):
        frame_prf((2, 5, 8), (2, 5, 8), 10, convention="micro")
    with pytest.raises(ValueError, match="ground-truth keyframes.*out of order"):
        frame_prf((2, 5, 8), (5, 2, 8), 10)


def test_class_prf_by_hand_per_class():
    pred, true = frame_labels((3, 5, 9), 10), frame_labels((2, 5, 8), 10)
    np.testing.assert_allclose(class_prf(pred, true, FILLING), (1, 2 / 3, 4 / 5))      # the comment above
    np.testing.assert_allclose(class_prf(pred, true, DISAPPEARING), (3 / 4, 1, 6 / 7))
    assert class_prf(pred, true, 7) == (0.0, 0.0, 0.0)                                   # 0/0 counts as 0


def test_frame_prf_averages_over_present_labels_with_zero_division_as_zero():
    # Nothing predicted: background P 4/10, R 1, F 8/14; both actions have no prediction -> 0.
    np.testing.assert_allclose(frame_prf((0, 0, 0), (2, 5, 8), 10), [0.4 / 3, 1 / 3, (8 / 14) / 3])
    assert frame_prf((0, 0, 0), (2, 5, 8), 10, convention="foreground") == (0.0, 0.0, 0.0)
    # Neither labelling has class 2, so it is not averaged in:
    # background TP 7 of 8 predicted, 7 true -> (7/8, 1, 14/15); filling TP 2 of 2, 3 true -> (1, 2/3, 4/5).
    np.testing.assert_allclose(frame_prf((3, 5, 5), (2, 5, 5), 10), [(7 / 8 + 1) / 2, (1 + 2 / 3) / 2, (14 / 15 + 4 / 5) / 2])
    # No action anywhere: nothing to find and nothing found.
    assert frame_prf((0, 0, 0), (0, 0, 0), 5, convention="foreground") == (1.0, 1.0, 1.0)


def test_frame_prf_paper_compatible_shifts_the_ground_truth_by_two_frames():
    # gt (2,5,8) becomes (0,3,6): 1 1 1 2 2 2 0 0 0 0 against the perfect 0 0 1 1 1 2 2 2 0 0
    #   background 2 of 4 / 4 -> 1/2 each; filling 1 of 3 / 3 -> 1/3; disappearing 1 of 3 / 3 -> 1/3
    shifted = frame_prf((2, 5, 8), (2, 5, 8), 10, paper_compatible=True)
    np.testing.assert_allclose(shifted, [7 / 18] * 3)
    # a ground-truth start at frame 1 becomes int(-1) = -1, clipped to 0 (the reference would wrap it)
    assert frame_prf((0, 3, 6), (1, 5, 8), 10, paper_compatible=True) == (1.0, 1.0, 1.0)


def test_mean_frame_prf_is_the_mean_over_videos():
    mean = mean_frame_prf([(3, 5, 9), (2, 5, 8)], [(2, 5, 8), (2, 5, 8)], [10, 10])
    np.testing.assert_allclose(mean, (np.array(HAND_PAPER) + 1) / 2)
    with pytest.raises(ValueError, match="same non-zero number"):
        mean_frame_prf([(3, 5, 9)], [], [10])


# --------------------------------------------------------------------------------------------------
# Average deviation (eq. 17)
# --------------------------------------------------------------------------------------------------

PREDS = [(3, 5, 9), (10, 20, 30)]
GTS = [(2, 5, 8), (12, 20, 27)]


def test_average_deviation_by_hand():
    np.testing.assert_array_equal(keyframe_deviations(PREDS, GTS), [[1, 0, 1], [2, 0, 3]])
    assert average_deviation(PREDS, GTS) == pytest.approx((2 / 3 + 5 / 3) / 2)


def test_average_deviation_paper_compatible():
    # ground truth read as (0,3,6) and (10,18,25): deviations (3,2,3) and (0,2,5)
    np.testing.assert_array_equal(keyframe_deviations(PREDS, GTS, paper_compatible=True), [[3, 2, 3], [0, 2, 5]])
    assert average_deviation(PREDS, GTS, paper_compatible=True) == pytest.approx((8 / 3 + 7 / 3) / 2)
    # the quirk: a perfect prediction is 2 frames off
    assert average_deviation(GTS, GTS) == 0.0
    assert average_deviation(GTS, GTS, paper_compatible=True) == 2.0


def test_paper_gt_keyframes_truncates_toward_zero():
    assert paper_gt_keyframes([1.5, 2.5, 7.9]).tolist() == [0, 0, 5]  # int(-0.5) = 0, not floor's -1
    assert paper_gt_keyframes([1, 2, 3]).tolist() == [-1, 0, 1]
    assert paper_gt_keyframes([10, 20, 30], window=8).tolist() == [6, 16, 26]


def test_deviation_errors():
    assert average_deviation([(9, 5, 3)], [(2, 5, 8)]) == pytest.approx((7 + 0 + 5) / 3)  # predictions: any order
    with pytest.raises(ValueError, match="ground-truth keyframes.*out of order"):
        average_deviation([(2, 5, 8)], [(9, 5, 3)])
    with pytest.raises(ValueError, match="same shape"):
        keyframe_deviations(PREDS, GTS[:1])
    with pytest.raises(ValueError, match="triples"):
        keyframe_deviations([1, 2], [1, 2])


# --------------------------------------------------------------------------------------------------
# Statistics (Table III)
# --------------------------------------------------------------------------------------------------

SAMPLE = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, SD sqrt(2.5), SEM sqrt(0.5)


def test_one_sided_ttest_against_the_formula():
    sem = math.sqrt(0.5)
    for r in one_sided_ttest(SAMPLE, popmeans=(2.0, 4.0, 6.0)):
        t = (3.0 - r.popmean) / sem
        assert r.statistic == pytest.approx(t)
        assert r.pvalue == pytest.approx(stats.t.cdf(t, df=4))  # H1: mean < popmean
    assert [r.popmean for r in one_sided_ttest(SAMPLE)] == [5.2, 5.4, 5.6, 5.8, 6.0, 6.2]


def test_confidence_intervals_by_hand_and_against_scipy():
    sem = math.sqrt(0.5)
    low, high = confidence_interval(SAMPLE)
    assert (low, high) == pytest.approx((3 - 2.776445 * sem, 3 + 2.776445 * sem), abs=1e-5)  # t_{0.975, 4}
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 4, loc=3.0, scale=stats.sem(SAMPLE)))
    assert confidence_interval(SAMPLE, kind="one-sided") == pytest.approx((0.0, 3 + 2.131847 * sem), abs=1e-5)
    assert confidence_interval(SAMPLE, kind="paper") == pytest.approx((0.0, 3 + 1.653 * sem))
    assert confidence_interval(SAMPLE, level=0.99)[1] > high


def test_table_iii_is_reproduced_by_a_sample_with_its_mean_and_sem():
    # The paper's t values step by -0.56 per +0.2 frames: SEM = 0.2 / 0.56 = 5/14 and mean = 5.2 - 1.36 SEM;
    # 64 test cines x 3 keyframes = 192 deviations (df 191, where t_0.95 = 1.653).
    n, sem = 192, 5 / 14
    mean = 5.2 - 1.36 * sem
    z = np.exp(stats.norm.ppf((np.arange(n) + 0.5) / n))  # a skewed, positive shape, like deviations
    d = mean + sem * math.sqrt(n) * (z - z.mean()) / z.std(ddof=1)
    assert d.min() >= 0
    table = [(-1.36, 0.09), (-1.92, 0.03), (-2.48, 0.01), (-3.04, 0.00), (-3.60, 0.00), (-4.16, 0.00)]
    for r, (t, p) in zip(one_sided_ttest(d), table):
        assert (round(r.statistic, 2), round(r.pvalue, 2)) == (t, p)
    paper_upper = confidence_interval(d, kind="paper")[1]
    assert round(paper_upper, 2) == 5.30  # Table III: CI "0-5.30"
    # 1.653 is the exact one-sided quantile to within 1e-4 frames here
    assert confidence_interval(d, kind="one-sided")[1] == pytest.approx(paper_upper, abs=1e-4)


def test_statistics_errors():
    with pytest.raises(ValueError, match="at least 2"):
        one_sided_ttest([1.0])
    with pytest.raises(ValueError, match="non-negative"):
        confidence_interval([1.0, -2.0])
    with pytest.raises(ValueError, match="kind"):
        confidence_interval(SAMPLE, kind="both")
    with pytest.raises(ValueError, match="level"):
        confidence_interval(SAMPLE, level=95)


def test_precision_recall_curve_by_hand_and_its_area_is_the_ap():
    # Ranked: hit, false positive, hit, of 3 ground-truth segments -> P = 1, 1/2, 2/3; R = 1/3, 1/3, 2/3.
    from xcalab.metrics import precision_recall_curve

    truth = [GroundTruth("a", 0, 0.0, 10.0), GroundTruth("b", 0, 0.0, 10.0), GroundTruth("c", 0, 0.0, 10.0)]
    dets = [Detection("a", 0, 0.0, 10.0, 0.9), Detection("a", 0, 20.0, 30.0, 0.8), Detection("b", 0, 1.0, 10.0, 0.7)]
    precision, recall = precision_recall_curve(dets, truth, tiou=0.5)
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3])
    # Envelope at the hits: 1 and 2/3, each worth 1/3 of recall.
    assert average_precision(dets, truth, 0.5) == pytest.approx((1 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="one class"):
        precision_recall_curve(dets + [Detection("a", 1, 0.0, 1.0, 0.5)], truth)
