"""Scoring conventions worked out by hand: AD under rounding / truncation and the true / shifted truth."""

import pytest

from xcalab.data.annotations import Keyframes, VideoAnnotation
from xcalab.scoring import convention_effects, keyframe_metrics

FPS, N_FRAMES = 10.0, 60


def _pairs():
    # predicted (10.4, 20.6, 40.5): nearest (10, 21, 41), truncated (10, 20, 40); true (10, 20, 40), int(f - 2) = (8, 18, 38)
    truth = VideoAnnotation.from_keyframes("v", (10, 20, 40), FPS, N_FRAMES, "test")
    return [(Keyframes(10.4, 20.6, 40.5), truth)]


def test_ad_under_each_convention_by_hand():
    effects = convention_effects(_pairs(), window=4)
    assert effects.nearest == [[10, 21, 41]] and effects.truncated == [[10, 20, 40]] and effects.true == [[10, 20, 40]]
    assert effects.ad == pytest.approx({
        "xcalab: nearest vs f": 2 / 3,                    # |0| + |1| + |1|
        "truncated vs f": 0.0,
        "nearest vs int(f - 2)": 8 / 3,                   # |2| + |3| + |3|
        "reference: truncated vs int(f - 2)": 2.0,        # |2| + |2| + |2|
    })
    assert effects.n_frames == [N_FRAMES]


def test_the_corners_are_what_keyframe_metrics_reports():
    effects, metrics = convention_effects(_pairs(), window=4), keyframe_metrics(_pairs(), window=4)
    assert metrics["ad"] == effects.ad["xcalab: nearest vs f"]
    assert metrics["ad_paper"] == effects.ad["reference: truncated vs int(f - 2)"]
    assert metrics["prf"]["paper"] == effects.prf["with background (paper), f"]._asdict()
    assert metrics["prf"]["foreground"] == effects.prf["foreground only, f"]._asdict()
