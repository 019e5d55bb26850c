"""xcalab.inference: one rate, the ordered decode, the decision and its calibration (hand-worked answers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xcalab.data.io import Cine
from xcalab.decision import (
    Calibration,
    CalibrationCase,
    OrderedPair,
    VesselEvidence,
    calibrate,
    decide,
    decision_is_right,
    fit_platt,
    fuse_keyframes,
    ordered_pair,
    pair_scores,
)
from xcalab.errors import XcalabInputError
from xcalab.inference import locate_features, resample_cine, resample_index, step_scores
from xcalab.postprocess import VideoPrediction

# --- one rate -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps, n, expected", [
    (30.0, 13, [0, 4, 8, 12]),
    (15.0, 7, [0, 2, 4, 6]),
    (7.5, 5, [0, 1, 2, 3, 4]),
    (6.0, 4, [0, 1, 2, 3]),  # slower than 7.5: every frame, nothing invented
    (25.0, 11, [0, 3, 7, 10]),  # 25 / 7.5 = 3.33: the nearest frames 0, 3.33, 6.67, 10
])
def test_resample_index_by_hand(fps, n, expected):
    assert resample_index(n, fps).tolist() == expected


def test_resample_keeps_time():
    """Frame j of the result lies within half an original frame of time j / 7.5."""
    for fps in (12.5, 15.0, 25.0, 30.0, 60.0):
        index = resample_index(200, fps)
        assert np.all(np.abs(index / fps - np.arange(len(index)) / 7.5) <= 0.5 / fps + 1e-12)


def test_resample_cine_frames_and_rate():
    frames = np.stack([np.full((4, 4), i / 40, np.float32) for i in range(40)])
    small, index = resample_cine(Cine(frames, 30.0, "c"))
    assert small.fps == 7.5 and small.n_frames == 10 and index.tolist() == list(range(0, 40, 4))
    np.testing.assert_array_equal(small.frames, frames[::4])
    same, _ = resample_cine(Cine(frames, 7.5, "c"))
    assert same.fps == 7.5 and same.n_frames == 40


def test_resample_index_refuses_bad_values():
    with pytest.raises(ValueError):
        resample_index(0, 30.0)
    with pytest.raises(ValueError):
        resample_index(10, 0.0)


def test_locate_features_too_short_names_the_file():
    seq = Cine(np.zeros((6, 8, 8), np.float32), 30.0, "short", meta={"source": "/data/short.dcm"})
    with pytest.raises(XcalabInputError, match="short.dcm.*6 frames at 30 fps give 2 frames"):
        locate_features(seq, extractor=None, device="cpu")


# --- the ordered decode ---------------------------------------------------------------------------


def _prediction(segments, scores, labels):
    return VideoPrediction("v", torch.tensor(segments, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64),
                           torch.as_tensor(labels, dtype=torch.int64), ("filling", "disappearing"), (), None, None)


def test_top1_out_of_order_gives_the_best_ordered_pair():
    # Top-1 filling [3.0, 4.0] (0.9) lies after top-1 disappearing [0.5, 1.5] (0.8): decoded by top-1 the start
    # (3.0) would come after the end (1.5). The best ordered pair is filling [0.2, 1.0] (0.5) with
    # disappearing [1.0, 3.0] (0.6): they meet at 1.0 and score sqrt(0.5 * 0.6).
    pred = _prediction([[3.0, 4.0], [0.5, 1.5], [0.2, 1.0], [1.0, 3.0]], [0.9, 0.8, 0.5, 0.6], [0, 1, 0, 1])
    pair = ordered_pair(pred, sigma=0.2)
    assert pair.filling == (0.2, 1.0) and pair.disappearing == (1.0, 3.0)
    assert pair.score == pytest.approx(math.sqrt(0.5 * 0.6))
    assert pair.keyframes == (0.2, 1.0, 3.0)
    start, apex, end = pair.keyframes
    assert start <= apex <= end


def test_pair_score_by_hand():
    # Filling ends at 1.0, disappearing starts at 1.2: gap 0.2 = sigma -> exp(-1/2).
    table = pair_scores(torch.tensor([[0.0, 1.0]]), torch.tensor([0.81]), torch.tensor([[1.2, 2.0]]),
                        torch.tensor([0.25]), sigma=0.2)
    assert float(table) == pytest.approx(math.sqrt(0.81 * 0.25) * math.exp(-0.5))
    # Unordered: the apex (e0 + s1) / 2 = 3.0 lies after the end 2.0 -> 0.
    table = pair_scores(torch.tensor([[0.0, 4.0]]), torch.tensor([0.9]), torch.tensor([[2.0, 2.0]]),
                        torch.tensor([0.9]), sigma=10.0)
    assert float(table) == 0.0


def test_ordered_pair_prefers_meeting_segments_over_higher_scores():
    # A far-apart pair with higher scores loses to a meeting pair: 0.9 * exp(-(2/0.13)^2/2) ~ 0.
    pred = _prediction([[0.0, 1.0], [3.0, 4.0], [1.0, 2.0]], [0.9, 0.9, 0.3], [0, 1, 1])
    pair = ordered_pair(pred, sigma=2 / 15)
    assert pair.disappearing == (1.0, 2.0)


def test_ordered_pair_without_a_class_is_none():
    assert ordered_pair(_prediction([[0.0, 1.0]], [0.9], [0]), 0.1) is None
    assert ordered_pair(_prediction(np.zeros((0, 2)), [], torch.zeros(0, dtype=torch.int64)), 0.1) is None


def test_ordered_pair_refuses_other_settings():
    pred = _prediction([[0.0, 1.0], [1.0, 2.0]], [0.5, 0.5], [0, 1])
    object.__setattr__(pred, "setting", 1)
    with pytest.raises(ValueError, match="setting 0"):
        ordered_pair(pred, 0.1)


def test_step_scores_take_the_best_level():
    # Level 0 (stride 1) over 4 steps, level 1 (stride 2) over 2 points: each covers two steps.
    lv0 = torch.logit(torch.tensor([[[0.1, 0.2, 0.3, 0.4]], [[0.5, 0.1, 0.1, 0.1]]]).reshape(1, 2, 4))
    lv1 = torch.logit(torch.tensor([[0.6, 0.05], [0.0 + 1e-6, 0.7]]).reshape(1, 2, 2))
    scores = step_scores([lv0, lv1], [1, 2], 4)
    np.testing.assert_allclose(scores[:, 0], [0.6, 0.6, 0.3, 0.4], atol=1e-6)
    np.testing.assert_allclose(scores[:, 1], [0.5, 0.1, 0.7, 0.7], atol=1e-6)


# --- the decision and its calibration -------------------------------------------------------------


def _pair(start, apex, end, score):
    return OrderedPair((start, apex), score, (apex, end), score, score)


def test_decide_statuses():
    cal = Calibration(min_pair_score=0.3, start_edge_s=0.2, end_edge_s=0.2)
    ok = decide(_pair(1.0, 2.0, 4.0, 0.8), duration=5.0, cal=cal)
    assert ok.status == "ok" and ok.keyframes == (1.0, 2.0, 4.0) and ok.present == (True, True, True)
    late = decide(_pair(1.0, 2.0, 4.9, 0.8), 5.0, cal)
    assert late.status == "partial" and late.keyframes == (1.0, 2.0, None)
    early = decide(_pair(0.1, 2.0, 4.0, 0.8), 5.0, cal)
    assert early.status == "partial" and early.keyframes == (None, 2.0, 4.0)
    none = decide(_pair(1.0, 2.0, 4.0, 0.2), 5.0, cal)
    assert none.status == "no_contrast" and none.keyframes == (None, None, None)
    assert decide(None, 5.0, cal).status == "no_contrast"


def test_confidence_follows_platt():
    cal = Calibration(min_pair_score=0.1, platt_contrast=(2.0, -1.0))
    d = decide(_pair(1.0, 2.0, 4.0, 0.5), 5.0, cal)  # logit(0.5) = 0 -> sigmoid(-1)
    assert d.confidence == pytest.approx(1 / (1 + math.e))


def test_fit_platt_recovers_a_logistic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(1.5 * x - 0.5)))).astype(float)
    a, b = fit_platt(x, y, l2=0.0)
    assert a == pytest.approx(1.5, abs=0.15) and b == pytest.approx(-0.5, abs=0.12)


def test_fit_platt_one_class():
    a, b = fit_platt(np.array([0.1, 0.2, 0.3]), np.ones(3))
    assert a == 0.0 and 1 / (1 + math.exp(-b)) == pytest.approx(3.5 / 4)


def test_calibrate_separates_what_it_can():
    # Contrast cines score 0.6-0.9, no-contrast cines 0.05-0.2: the threshold falls between 0.2 and 0.6.
    # Starts present lie at >= 0.5 s, absent at <= 0.1 s; ends likewise from the last frame.
    cases = []
    for i, score in enumerate([0.6, 0.7, 0.8, 0.9]):
        cases.append(CalibrationCase(_pair(0.5 + 0.1 * i, 2.0, 4.0, score), 5.0, "ok", (0.5 + 0.1 * i, 2.0, 4.0)))
    cases.append(CalibrationCase(_pair(0.05, 2.0, 4.0, 0.7), 5.0, "partial", (None, 2.0, 4.0)))
    cases.append(CalibrationCase(_pair(0.6, 2.0, 4.95, 0.7), 5.0, "partial", (0.6, 2.0, None)))
    for score in (0.05, 0.1, 0.2):
        cases.append(CalibrationCase(_pair(1.0, 2.0, 3.0, score), 5.0, "no_contrast", (None, None, None)))
    cal = calibrate(cases)
    assert 0.2 < cal.min_pair_score <= 0.6
    assert 0.05 <= cal.start_edge_s < 0.5 and 0.05 <= cal.end_edge_s < 0.5
    for case in cases:
        d = decide(case.pair, case.duration, cal)
        assert d.status == case.status
        assert decision_is_right(d, case.status, case.keyframes, cal.tolerance_s)
    assert cal.n_cines == len(cases)
    round_trip = Calibration.from_dict(cal.to_dict())
    assert round_trip == cal


def test_calibrate_needs_cases():
    with pytest.raises(ValueError):
        calibrate([])


def test_decision_is_right_counts_invented_keyframes_as_wrong():
    cal = Calibration(min_pair_score=0.1)
    d = decide(_pair(1.0, 2.0, 4.0, 0.8), 5.0, cal)  # says ok with an end at 4.0
    assert not decision_is_right(d, "ok", (1.0, 2.0, None), 0.3)  # the true end is not in the cine
    assert not decision_is_right(d, "ok", (1.0, 2.5, 4.0), 0.3)  # apex 0.5 s off
    assert decision_is_right(d, "ok", (1.1, 2.2, 3.8), 0.3)


# --- what the vessel curve says -------------------------------------------------------------------

#: A passage on 11 steps 0.5 s apart: baseline 1, up to 11 at step 4 (t = 2 s), down to 1 at step 9.
PASSAGE = np.array([1, 1, 3, 7, 11, 11, 9, 6, 3, 1, 1], dtype=float)
TIMES = np.arange(11) * 0.5


def test_vessel_evidence_by_hand():
    ev = VesselEvidence.of(PASSAGE, TIMES)
    assert (ev.first, ev.last, ev.rise) == (0.0, 0.0, pytest.approx(10 / 11))
    # o = (c - 1) / 10: 0, 0, .2, .6, 1, 1, .8, .5, .2, 0, 0
    assert ev.rise_time(0.1) == pytest.approx(0.5 + 0.5 * 0.5)  # halfway from step 1 (0) to step 2 (0.2)
    assert ev.rise_time(0.4) == pytest.approx(1.0 + 0.5 * 0.5)  # halfway from .2 to .6
    assert ev.peak_time(0.9) == pytest.approx(2.0)
    assert ev.fall_time(0.5) == pytest.approx(3.5)  # exactly at step 7
    assert ev.fall_time(0.1) == pytest.approx(4.0 + 0.5 * 0.5)  # halfway from .2 (step 8) to 0 (step 9)
    assert ev.crossing("start", 0.1) == ev.rise_time(0.1) and ev.to_dict() == {"first": 0.0, "last": 0.0,
                                                                                "rise": round(10 / 11, 4)}
    still = VesselEvidence.of(PASSAGE[:6], TIMES[:6])  # the recording stops on the plateau
    assert still.last == 1.0 and still.fall_time(0.1) is None
    flat = VesselEvidence.of(np.full(5, 0.03))
    assert (flat.first, flat.last, flat.rise) == (0.0, 0.0, 0.0) and flat.rise_time(0.1) is None
    # scale-free: a brighter archive (x 4 + 2) reads the same
    bright = VesselEvidence.of(PASSAGE * 4 + 2, TIMES)
    assert (bright.first, bright.last) == (ev.first, ev.last) and bright.rise_time(0.4) == ev.rise_time(0.4)
    with pytest.raises(ValueError, match="one time per step"):
        VesselEvidence.of(PASSAGE, TIMES[:5])
    with pytest.raises(ValueError, match="finite"):
        VesselEvidence.of(np.array([1.0, np.nan]))


def test_decide_reads_the_vessel_curve():
    cal = Calibration(min_pair_score=0.1, start_edge_s=0.2, end_edge_s=0.2, min_rise=0.5, first_level=0.4,
                      last_level=0.4)
    pair = _pair(1.0, 2.0, 4.0, 0.8)  # the pair alone says ok
    assert decide(pair, 5.0, cal, VesselEvidence.of(PASSAGE, TIMES)).status == "ok"
    assert decide(pair, 5.0, cal).status == "ok"  # no evidence: the pair alone
    static = VesselEvidence.of(np.array([1.0, 1.1, 1.0, 1.05]))  # rises by 9 % of its peak
    assert decide(pair, 5.0, cal, static).status == "no_contrast"
    still = decide(pair, 5.0, cal, VesselEvidence.of(PASSAGE[:6], TIMES[:6]))  # last step at the peak
    assert still.status == "partial" and still.keyframes == (1.0, 2.0, None)
    late = decide(pair, 5.0, cal, VesselEvidence.of(PASSAGE[3:], TIMES[3:]))  # first step at .6 of the range
    assert late.status == "partial" and late.keyframes == (None, 2.0, 4.0)


def test_fused_keyframes_by_hand():
    ev = VesselEvidence.of(PASSAGE, TIMES)  # crossings: start(0.1) 0.75 s, apex(0.9) 2.0 s, end(0.1) 4.25 s
    fuse = {"start": (0.1, 0.5), "end": (0.1, 1.0)}
    assert fuse_keyframes((1.25, 2.5, 4.0), ev, fuse) == pytest.approx((1.0, 2.5, 4.25))
    cal = Calibration(min_pair_score=0.1, start_edge_s=0.2, end_edge_s=0.2, fuse=fuse)
    assert decide(_pair(1.25, 2.5, 4.0, 0.8), 5.0, cal, ev).keyframes == pytest.approx((1.0, 2.5, 4.25))
    # no fall after the peak: the end stays the pair's; unequal weights are kept in order
    still = VesselEvidence.of(PASSAGE[:6], TIMES[:6])
    assert fuse_keyframes((1.25, 2.5, 4.0), still, fuse)[2] == 4.0
    assert fuse_keyframes((0.5, 0.6, 0.7), ev, {"apex": (0.9, 1.0)}) == pytest.approx((0.5, 2.0, 2.0))


def test_calibrate_fits_the_curve_thresholds_and_the_fusion():
    """Cases whose curves tell statuses apart and whose pairs start 0.5 s late: calibrate learns both."""
    cases = []
    for i in range(6):
        shift = 0.5 * i
        times = TIMES + shift
        ev = VesselEvidence.of(PASSAGE, times)
        true_start = ev.rise_time(0.1)
        cases.append(CalibrationCase(_pair(true_start + 0.5, 2.0 + shift, 4.5 + shift, 0.7), 6.0 + shift, "ok",
                                     (true_start, 2.0 + shift, 4.5 + shift), ev))
    for i in range(3):  # recordings that stop on the plateau: the pair still puts an end 1 s before the last frame
        ev = VesselEvidence.of(PASSAGE[:6], TIMES[:6])
        cases.append(CalibrationCase(_pair(0.75 + 0.5, 2.0, 1.5 + 0.1 * i, 0.7), 2.5, "partial", (0.75, 2.0, None), ev))
    for i in range(3):  # static cines the pair would call contrast
        ev = VesselEvidence.of(np.array([1.0, 1.05, 1.0, 1.02, 1.0]) + 0.01 * i)
        cases.append(CalibrationCase(_pair(1.0, 2.0, 3.0, 0.7), 5.0, "no_contrast", (None, None, None), ev))
    cal = calibrate(cases)
    assert 0.05 < cal.min_rise <= 0.9 and cal.last_level is not None and cal.last_level <= 1.0
    assert cal.fuse["start"] == (0.1, 1.0)  # the curve's crossing at 0.1 is exactly the truth
    for case in cases:
        d = decide(case.pair, case.duration, cal, case.evidence)
        assert d.status == case.status
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_rise_over_a_baseline_and_the_fitted_min_rise_holds_over_real_baselines():
    from xcalab.decision import RISE_BASELINES

    ev = VesselEvidence.of(PASSAGE * 0.004, TIMES)  # XCA-Synth-like levels: 0.004 .. 0.044
    assert ev.rise_over(0.0) == pytest.approx(ev.rise)
    assert ev.rise_over(0.044) == pytest.approx(0.04 / 0.088)  # a static structure as bright as the peak halves it
    lifted = VesselEvidence.of(PASSAGE * 0.004 + 0.044, TIMES)
    assert (lifted.first, lifted.last) == (ev.first, ev.last)  # the min..max scale ignores the baseline
    # Contrast cines rise by 0.04 over 0.004; static cines wobble by 0.001. The fitted threshold must keep
    # every contrast cine above it even when lifted by the largest real baseline.
    cases = [CalibrationCase(_pair(1.0, 2.0, 4.0, 0.7), 5.0, "ok", (1.0, 2.0, 4.0), ev) for _ in range(4)]
    static = VesselEvidence.of(np.array([0.004, 0.005, 0.004, 0.0045]))
    cases += [CalibrationCase(_pair(1.0, 2.0, 4.0, 0.7), 5.0, "no_contrast", (None, None, None), static)] * 4
    cal = calibrate(cases)
    assert static.rise < cal.min_rise <= min(ev.rise_over(b) for b in RISE_BASELINES)
