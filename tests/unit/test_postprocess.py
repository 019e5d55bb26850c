"""Post-processing (the reference's inference): decoding, Soft-NMS, voting, top-1, missing classes, keyframes."""

import math

import pytest
import torch

from xcalab.data.annotations import LABELS as SETTING_LABELS
from xcalab.data.annotations import FeatureGrid, VideoAnnotation, keyframes_to_actions
from xcalab.errors import XcalabInputError
from xcalab.metrics import Detection, parse_detections, top1_per_class
from xcalab.postprocess import (
    PostprocessConfig,
    decode_batch,
    decode_candidates,
    decode_video,
    prediction_from_keyframes,
    segment_voting,
    soft_nms,
)
from xcalab.scoring import score_predictions
from xcalab.train import assign_targets, pyramid_points

GRID = FeatureGrid(stride=4, window=4)
STRIDES = (1, 2, 4, 8, 16, 32)


def logit(p):
    return math.log(p / (1 - p))


class Head:
    """Hand-made head outputs of one video: every class at probability ~2e-9 until set."""

    def __init__(self, length=32, strides=STRIDES):
        self.strides = strides
        self.logits = [torch.full((2, length // s), -20.0) for s in strides]
        self.offsets = [torch.zeros(2, length // s) for s in strides]
        self.masks = [torch.ones(length // s, dtype=torch.bool) for s in strides]

    def put(self, level, i, label, prob, left, right):
        """Point i of ``level`` fires for ``label`` with segment [t - left * s, t + right * s]."""
        self.logits[level][label, i] = logit(prob)
        self.offsets[level][:, i] = torch.tensor([left, right])
        return self

    def decode(self, fps=10.0, duration=100.0, **kwargs):
        return decode_video(self.logits, self.offsets, self.masks, self.strides, fps, duration, GRID, **kwargs)


# --------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------


def test_decode_candidates_by_hand():
    head = Head(length=8, strides=(1, 2))
    head.put(1, 3, 1, 0.8, 1.5, 2.0)  # level 1, t = 6: [6 - 3, 6 + 4] = [3, 10]
    head.put(0, 2, 0, 0.6, 0.01, 0.02)  # [1.99, 2.02]: length 0.03 <= 0.05, dropped
    head.put(0, 5, 0, 0.5, 1.0, 1.0)  # masked out below
    head.put(0, 1, 1, 0.3, 1.0, 0.0)  # [0, 1]
    head.masks[0][5] = False
    cand = decode_candidates(head.logits, head.offsets, head.masks, head.strides)
    assert cand.segments.tolist() == [[0.0, 1.0], [3.0, 10.0]]  # level by level
    assert cand.scores.tolist() == pytest.approx([0.3, 0.8])
    assert cand.labels.tolist() == [1, 1]
    # Top-k comes before the length filter: with k = 1, level 0 keeps only the 0.6 entry, which is too short.
    top1 = decode_candidates(head.logits, head.offsets, head.masks, head.strides, PostprocessConfig(pre_nms_topk=1))
    assert top1.segments.tolist() == [[3.0, 10.0]]
    # A batch dimension of 1 is accepted.
    same = decode_candidates([x[None] for x in head.logits], [x[None] for x in head.offsets], head.masks, head.strides)
    assert torch.equal(same.segments, cand.segments)


def test_seconds_and_clamping():
    # [3, 10] grid -> ((4 * 3 + 2) / 10, (4 * 10 + 2) / 10) = (1.4, 4.2) s, clamped to a 3 s video.
    head = Head(length=8, strides=(1, 2)).put(1, 3, 1, 0.8, 1.5, 2.0)
    pred = head.decode(fps=10.0, duration=3.0)
    assert pred.segments.tolist() == [pytest.approx([1.4, 3.0])]


# --------------------------------------------------------------------------------------------------
# Soft-NMS and voting
# --------------------------------------------------------------------------------------------------

SEGMENTS = torch.tensor([[0.0, 10.0], [1.0, 11.0], [20.0, 30.0]], dtype=torch.float64)
SCORES = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
LABELS = torch.tensor([0, 1, 0])


def test_soft_nms_by_hand():
    # Pick A (0.9). B overlaps it: I = 9, IoU = 9 / (10 + 1e-6 + 10 + 1e-6 - 9) = 9 / 11.000002, so
    # B <- 0.8 exp(-IoU^2 / 0.5) = 0.8 exp(-2 * 0.669421) = 0.8 * 0.262149 = 0.209719. C does not overlap A: 0.7.
    # Pick C (0.7 > 0.2097); C does not overlap B. Pick B.
    iou = 9 / 11.000002
    index, scores = soft_nms(SEGMENTS, SCORES, LABELS)
    assert index.tolist() == [0, 2, 1]
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.8 * math.exp(-(iou**2) / 0.5)], rel=1e-12)
    assert scores[2].item() == pytest.approx(0.209719, abs=1e-6)
    # max_seg_num stops the picking.
    assert soft_nms(SEGMENTS, SCORES, LABELS, max_seg_num=2)[0].tolist() == [0, 2]
    # Per class, A (class 0) no longer decays B (class 1).
    index, scores = soft_nms(SEGMENTS, SCORES, LABELS, multiclass=True)
    assert index.tolist() == [0, 2, 1] and scores.tolist() == pytest.approx([0.9, 0.7, 0.8])


def test_soft_nms_discards_scores_below_min_score():
    # D duplicates A with score 0.005: IoU = 10 / 10.000002 ~ 1, 0.005 exp(-2) = 0.00068 < 0.001.
    segments = torch.cat((SEGMENTS, torch.tensor([[0.0, 10.0]], dtype=torch.float64)))
    scores = torch.cat((SCORES, torch.tensor([0.005], dtype=torch.float64)))
    index, _ = soft_nms(segments, scores, torch.tensor([0, 1, 0, 1]))
    assert index.tolist() == [0, 2, 1]
    # Decays chain: E = [0.5, 10.5] at 0.85 overlaps A and B with I = 9.5, IoU = 9.5 / 10.500002 = 0.904762.
    # Pick A: B -> 0.209719 (above), E -> 0.85 exp(-2 * 0.818594) = 0.85 * 0.194526 = 0.165347.
    # Pick C (0.7): no overlap with anything. Pick B (0.2097 > 0.1654): E -> 0.165347 * 0.194526 = 0.032164.
    e = torch.tensor([[0.5, 10.5]], dtype=torch.float64)
    segments, scores = torch.cat((SEGMENTS, e)), torch.cat((SCORES, torch.tensor([0.85], dtype=torch.float64)))
    index, out = soft_nms(segments, scores, torch.tensor([0, 1, 0, 1]))
    decay_e = math.exp(-((9.5 / 10.500002) ** 2) / 0.5)
    b = 0.8 * math.exp(-((9 / 11.000002) ** 2) / 0.5)
    assert index.tolist() == [0, 2, 1, 3]
    assert out.tolist() == pytest.approx([0.9, 0.7, b, 0.85 * decay_e * decay_e], rel=1e-12)
    assert out[3].item() == pytest.approx(0.032164, abs=1e-6)


def test_segment_voting_by_hand():
    kept = torch.tensor([[0.0, 10.0]], dtype=torch.float64)
    candidates = torch.tensor([[0.0, 10.0], [1.0, 11.0], [0.0, 12.0], [20.0, 30.0], [4.0, 10.0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.6, 0.3, 0.5, 0.4], dtype=torch.float64)
    # IoU with [0, 10]: 1, 9/11, 10/12, 0, 6/10. The last two are below 0.7 and do not vote.
    # Weights p * IoU: 0.9, 0.6 * 9/11 = 0.490909, 0.3 * 10/12 = 0.25; sum W = 1.640909.
    # start = (0.9 * 0 + 0.490909 * 1 + 0.25 * 0) / W = 0.299169; end = (0.9 * 10 + 0.490909 * 11 + 0.25 * 12) / W
    #       = (9 + 5.4 + 3) / W = 10.603878.
    w = 0.9 + 0.6 * 9 / 11 + 0.3 * 10 / 12
    voted = segment_voting(kept, candidates, scores, 0.7)
    assert voted.tolist() == [pytest.approx([0.6 * 9 / 11 / w, 17.4 / w], rel=1e-12)]
    assert voted[0].tolist() == pytest.approx([0.299169, 10.603878], abs=1e-6)
    # A kept segment that no candidate overlaps enough is left as it is.
    assert segment_voting(torch.tensor([[50.0, 60.0]], dtype=torch.float64), candidates, scores).tolist() == [[50.0, 60.0]]


def test_voting_in_the_decode_path():
    # Level 0 points 5 and 6 (class 0) propose [0, 10] (0.9) and [1, 11] (0.6); point 20 (class 1) [20, 30] (0.5).
    head = Head(length=32).put(0, 5, 0, 0.9, 5, 5).put(0, 6, 0, 0.6, 5, 5).put(0, 25, 1, 0.5, 5, 5)
    pred = head.decode(fps=4.0, duration=100.0)  # 4 fps and grid (4, 4): seconds = g + 0.5
    w = 0.9 + 0.6 * 9 / 11
    # [0, 10] is voted to (0.6 * 9/11 * 1 + 0.9 * 0) / w, (0.9 * 10 + 0.6 * 9/11 * 11) / w; [1, 11] kept too
    # (decayed) and voted with the same two; [20, 30] votes alone.
    first = [0.6 * 9 / 11 / w + 0.5, (9 + 5.4) / w + 0.5]
    assert pred.segments[0].tolist() == pytest.approx(first, rel=1e-5)
    assert pred.labels.tolist() == [0, 1, 0]
    assert pred.segments[1].tolist() == pytest.approx([20.5, 30.5])
    # No voting with voting_thresh = 0 or per-class NMS: the boundaries stay on the grid.
    for config in (PostprocessConfig(voting_thresh=0.0), PostprocessConfig(multiclass=True)):
        assert head.decode(fps=4.0, config=config).segments[0].tolist() == [0.5, 10.5]


# --------------------------------------------------------------------------------------------------
# Top-1 per class, missing classes, keyframes
# --------------------------------------------------------------------------------------------------


def _ranked(labels):
    """Equally scored detections of one video, t0 = rank: only the listed order can pick the top-1."""
    return [Detection("v", c, float(i), float(i) + 1.0, 0.5) for i, c in enumerate(labels)]


def test_top1_of_a_ranked_list_is_the_first_of_each_class():
    assert [(d.label_id, d.t0) for d in top1_per_class(_ranked([1, 1, 0, 1, 0]), ties="listed")] == [(1, 0.0), (0, 2.0)]
    assert [(d.label_id, d.t0) for d in top1_per_class(_ranked([1, 1]), ties="listed")] == [(1, 0.0)]
    assert top1_per_class([], ties="listed") == []
    # content ties (the metrics' rule) would pick the same here: t0 grows with the rank
    assert top1_per_class(_ranked([1, 1, 0, 1, 0])) == top1_per_class(_ranked([1, 1, 0, 1, 0]), ties="listed")
    with pytest.raises(ValueError, match="ties"):
        top1_per_class(_ranked([0]), ties="random")


def test_top1_per_class_and_formats():
    head = Head(length=32).put(0, 5, 0, 0.7, 2, 2).put(0, 20, 0, 0.9, 2, 2).put(1, 12, 1, 0.6, 2, 2)
    pred = head.decode(fps=4.0, duration=100.0, video_id="v1")
    assert pred.labels.tolist() == [0, 0, 1]
    # [20, 28] (class 1) overlaps [18, 22] (class 0, picked first): IoU = 2 / 10, 0.6 exp(-0.04 / 0.5).
    assert pred.scores.tolist() == pytest.approx([0.9, 0.7, 0.6 * math.exp(-0.08)], rel=1e-5)
    assert [(d.label_id, d.t0, d.t1) for d in pred.top1] == [(0, 18.5, 22.5), (1, 20.5, 28.5)]
    assert pred.missing == {} and pred.label_names == ("filling", "disappearing")
    assert len(pred.detections()) == 3 and pred.detections(top1_only=True) == list(pred.top1)
    entries = pred.to_activitynet(top1_only=True)
    assert entries[0] == {"label": "filling", "label_id": 0, "score": pytest.approx(0.9), "segment": [18.5, 22.5]}
    assert parse_detections({"results": {"v1": entries}}) == list(pred.top1)
    # Keyframes (setting 0): start = 18.5 s, apex = (22.5 + 20.5) / 2 = 21.5 s, end = 28.5 s, times 4 fps.
    assert pred.keyframes == pytest.approx((74.0, 86.0, 114.0)) and pred.ordered
    assert pred.frame_indices() == (74, 86, 114)


def test_missing_class_is_reported_with_its_reason():
    only_filling = Head(length=32).put(0, 5, 0, 0.9, 2, 2).decode()
    assert [d.label_id for d in only_filling.top1] == [0]
    assert only_filling.keyframes is None and only_filling.ordered is None and only_filling.frame_indices() is None
    assert list(only_filling.missing) == ["disappearing"]
    assert "pre_nms_thresh=0.001" in only_filling.missing["disappearing"]
    assert "best probability 2.06e-09" in only_filling.missing["disappearing"]

    # Class 1 proposes the same segment as class 0 with score 0.002: class-agnostic Soft-NMS decays it to
    # 0.002 exp(-2) = 0.00027 < min_score.
    suppressed = Head(length=32).put(0, 5, 0, 0.9, 2, 2).put(0, 5, 1, 0.002, 2, 2).decode()
    assert "Soft-NMS" in suppressed.missing["disappearing"]
    kept = Head(length=32).put(0, 5, 0, 0.9, 2, 2).put(0, 5, 1, 0.002, 2, 2).decode(config=PostprocessConfig(multiclass=True))
    assert kept.missing == {}

    too_short = Head(length=32).put(0, 5, 0, 0.9, 2, 2).put(0, 9, 1, 0.9, 0, 0).decode()
    assert "duration_thresh" in too_short.missing["disappearing"]

    head = Head(length=32).put(0, 5, 0, 0.9, 2, 2)
    head.masks = [torch.zeros_like(m) for m in head.masks]
    nothing = head.decode(setting=2)
    assert set(nothing.missing) == {"whole", "disappearing"} and len(nothing.segments) == 0
    assert "no valid feature steps" in nothing.missing["whole"]


def test_keyframes_out_of_order_are_reported_as_decoded():
    # filling [10, 12] and disappearing [2, 20] (grid): apex = (e0 + s1) / 2 lies before the start.
    head = Head(length=32).put(0, 11, 0, 0.9, 1, 1).put(3, 1, 1, 0.8, 0.75, 1.5)
    pred = head.decode(fps=10.0)
    # frames 4 g + 2: start 42, e0 = 50, s1 = 10, end 82, apex = (50 + 10) / 2 = 30.
    assert pred.keyframes == pytest.approx((42.0, 30.0, 82.0))
    assert pred.ordered is False
    assert pred.frame_indices("truncate") == tuple(math.trunc(v) for v in pred.keyframes)


def perfect_head(keyframes, setting, fps=15.0, length=64):
    """Head outputs that encode the true actions exactly: logit +8 where assignment says positive, else -8,
    and the assigned regression targets as offsets."""
    actions = keyframes_to_actions(keyframes, fps, setting)
    segments = torch.tensor([[GRID.seconds_to_grid(t, fps) for t in a.segment] for a in actions])
    lengths = [length // s for s in STRIDES]
    targets = assign_targets(pyramid_points(lengths), segments[None], torch.tensor([[0, 1]]))
    logits = torch.where(targets.cls[0] > 0, 8.0, -8.0)  # [P, 2]
    assert targets.cls[0].amax(0).tolist() == [1, 1]  # both actions have positive points

    def per_level(x):  # [P, C] -> per level [C, T_l]
        return [part.t().contiguous() for part in torch.split(x, lengths)]

    masks = [torch.ones(n, dtype=torch.bool) for n in lengths]
    return per_level(logits), per_level(targets.reg[0]), masks, actions


CASES = [
    (0, (20, 60, 100), {}),
    (0, (17, 43, 131), {}),
    (1, (20, 60, 100), {}),
    (1, (17, 43, 131), {}),
    (2, (20, 60, 100), {}),
    # whole [3.75, 32.25] and disappearing [10.25, 32.25] overlap with IoU 0.77 >= 0.7: class-agnostic voting
    # would average the two classes' boundaries (the reference's behaviour); per-class NMS decodes exactly.
    (2, (17, 43, 131), {"multiclass": True}),
]


@pytest.mark.parametrize(("setting", "keyframes", "config"), CASES)
def test_perfect_head_decodes_the_true_keyframes(setting, keyframes, config):
    fps = 15.0
    logits, offsets, masks, actions = perfect_head(keyframes, setting, fps)
    pred = decode_video(logits, offsets, masks, STRIDES, fps, 256 / fps, GRID, setting, PostprocessConfig(**config))
    assert pred.missing == {} and pred.ordered
    for detection, action in zip(pred.top1, actions):
        assert detection.label_id == action.label_id
        assert (detection.t0, detection.t1) == pytest.approx(action.segment, abs=1e-5)
    assert pred.keyframes == pytest.approx(keyframes, abs=1e-3)
    assert pred.frame_indices() == keyframes


def test_class_agnostic_voting_blends_overlapping_classes():
    logits, offsets, masks, _ = perfect_head((17, 43, 131), 2)
    pred = decode_video(logits, offsets, masks, STRIDES, 15.0, 256 / 15.0, GRID, setting=2)
    assert abs(pred.keyframes.start - 17) > 1  # documented reference behaviour, see CASES


def test_decode_batch_ignores_padding():
    # Video 1 has 48 valid steps; its padded tail fires everywhere and must be ignored.
    a = perfect_head((20, 60, 100), 0)
    b = perfect_head((17, 43, 131), 0)
    valid = [math.ceil(48 / s) for s in STRIDES]
    for level, n in enumerate(valid):
        b[2][level][n:] = False
        b[0][level][:, n:] = 8.0
        b[1][level][:, n:] = 3.0
    logits, offsets, masks = ([torch.stack((x, y)) for x, y in zip(a[i], b[i])] for i in range(3))
    preds = decode_batch(logits, offsets, masks, STRIDES, [15.0, 12.5], [17.0, 20.0], GRID, video_ids=["a", "b"])
    alone = decode_video(
        [x[:, :n] for x, n in zip(b[0], valid)], [x[:, :n] for x, n in zip(b[1], valid)], None,
        STRIDES, 12.5, 20.0, GRID, video_id="b",
    )
    assert [p.video_id for p in preds] == ["a", "b"]
    assert preds[1].top1 == alone.top1 and torch.equal(preds[1].segments, alone.segments)
    assert preds[0].frame_indices() == (20, 60, 100)


@pytest.mark.parametrize("setting", [0, 1, 2])
def test_a_prediction_from_keyframes_holds_them_and_scores_like_the_truth(setting):
    fps, keyframes = 10.0, (10.0, 20.0, 40.0)
    p = prediction_from_keyframes("v", keyframes, fps, setting, score=0.75)
    assert p.keyframes == keyframes and p.ordered is True and p.missing == {} and p.setting == setting
    assert p.label_names == SETTING_LABELS[setting] and p.labels.tolist() == [0, 1] and p.scores.tolist() == [0.75, 0.75]
    actions = keyframes_to_actions(keyframes, fps, setting)
    assert p.segments.tolist() == [list(a.segment) for a in actions]
    assert [(d.label_id, d.t0, d.t1, d.score) for d in p.top1] == [(a.label_id, *a.segment, 0.75) for a in actions]
    # The true keyframes, scored: every AP 1 and no deviation.
    truth = VideoAnnotation.from_keyframes("v", (10, 20, 40), fps, 60, "test", setting=setting)
    scored = score_predictions([p], [truth], window=4)
    assert scored.map_top1.average_map == 1.0 and scored.ad == 0.0 and scored.n_missing == 0
    with pytest.raises(XcalabInputError, match="start <= apex <= end"):
        prediction_from_keyframes("v", (20.0, 10.0, 40.0), fps)
