"""Annotations: conversions against hand-worked values, keyframe <-> action round trips, JSON validation."""

import json

import pytest

from xcalab.data.annotations import (
    LABELS,
    Action,
    FeatureGrid,
    Keyframes,
    VideoAnnotation,
    actions_to_keyframes,
    keyframes_to_actions,
    read_annotations,
    write_annotations,
)
from xcalab.errors import XcalabInputError

# ---------------------------------------------------------------------------------------------------
# Frame <-> seconds <-> grid, worked by hand. Step k covers frames [s*k, s*k+4), centre s*k + 2.
# ---------------------------------------------------------------------------------------------------

# (stride, fps, seconds, frame coordinate, grid coordinate)
HAND_WORKED = [
    (4, 30.0, 0.5, 15.0, (15 - 2) / 4),  # 3.25
    (4, 15.0, 1.0, 15.0, 3.25),
    (4, 7.5, 2.0, 15.0, 3.25),
    (2, 30.0, 1.0, 30.0, (30 - 2) / 2),  # 14.0
    (2, 15.0, 0.4, 6.0, 2.0),
    (2, 7.5, 4.0, 30.0, 14.0),
    (1, 30.0, 0.1, 3.0, 1.0),
    (1, 15.0, 2.0, 30.0, 28.0),
    (1, 7.5, 0.0, 0.0, -2.0),
]


@pytest.mark.parametrize("stride, fps, seconds, frame, grid", HAND_WORKED)
def test_conversions_match_hand_worked_values(stride, fps, seconds, frame, grid):
    g = FeatureGrid(stride=stride, window=4)
    assert g.seconds_to_grid(seconds, fps) == pytest.approx(grid)
    assert g.frame_to_grid(frame) == pytest.approx(grid)
    assert g.grid_to_frame(grid) == pytest.approx(frame)
    assert g.grid_to_seconds(grid, fps) == pytest.approx(seconds)
    # the reference's ground-truth decoding drops the window centre: 2 frames early for window 4
    assert g.grid_to_frame(grid, paper_compatible=True) == pytest.approx(frame - 2)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_step_k_is_centred_on_grid_position_k(stride):
    g = FeatureGrid(stride=stride, window=4)
    for k in range(10):
        frames = list(g.step_frames(k))
        assert frames == [stride * k + i for i in range(4)]
        centre = (frames[0] + frames[-1] + 1) / 2  # middle of the frames' continuous extent
        assert g.step_centre(k) == centre
        assert g.frame_to_grid(centre) == pytest.approx(k)


@pytest.mark.parametrize(
    "stride, n_frames, steps", [(4, 96, 24), (4, 99, 24), (4, 3, 0), (4, 4, 1), (2, 96, 47), (1, 96, 93), (1, 4, 1)]
)
def test_number_of_steps(stride, n_frames, steps):
    # (n - 4) // stride + 1 complete windows: 96 frames at stride 4 -> 24 steps, at stride 1 -> 93
    assert FeatureGrid(stride=stride).n_steps(n_frames) == steps


def test_conversions_accept_arrays():
    import numpy as np

    g = FeatureGrid(stride=4)
    assert np.allclose(g.frame_to_grid(np.array([2.0, 6.0, 10.0])), [0, 1, 2])


def test_bad_grid():
    with pytest.raises(ValueError, match="stride"):
        FeatureGrid(stride=0)


# ---------------------------------------------------------------------------------------------------
# Keyframes <-> actions, settings 0/1/2 (seed paper eqs. 14, 19, 20)
# ---------------------------------------------------------------------------------------------------


def test_setting0_actions_by_hand():
    # start 15, apex 30, end 90 at 15 fps -> filling [1 s, 2 s], disappearing [2 s, 6 s]
    acts = keyframes_to_actions((15, 30, 90), fps=15.0, setting=0)
    assert acts == [Action("filling", 0, (1.0, 2.0)), Action("disappearing", 1, (2.0, 6.0))]


def test_setting1_and_2_actions_by_hand():
    a1 = keyframes_to_actions((15, 30, 90), fps=15.0, setting=1)
    assert a1 == [Action("filling", 0, (1.0, 2.0)), Action("whole", 1, (1.0, 6.0))]
    a2 = keyframes_to_actions((15, 30, 90), fps=15.0, setting=2)
    assert a2 == [Action("whole", 0, (1.0, 6.0)), Action("disappearing", 1, (2.0, 6.0))]


def test_decoding_averages_the_shared_keyframe():
    # setting 0: apex = (e0 + s1) / 2; the two predicted segments disagree by 2 s about the apex
    acts = [Action("filling", 0, (1.0, 2.0)), Action("disappearing", 1, (4.0, 6.0))]
    assert actions_to_keyframes(acts, fps=10.0, setting=0) == pytest.approx((10, 30, 60))
    # setting 1: start = (s0 + s1) / 2
    acts = [Action("filling", 0, (1.0, 3.0)), Action("whole", 1, (2.0, 6.0))]
    assert actions_to_keyframes(acts, fps=10.0, setting=1) == pytest.approx((15, 30, 60))
    # setting 2: end = (e0 + e1) / 2
    acts = [Action("whole", 0, (1.0, 6.0)), Action("disappearing", 1, (3.0, 5.0))]
    assert actions_to_keyframes(acts, fps=10.0, setting=2) == pytest.approx((10, 30, 55))


@pytest.mark.parametrize("setting", [0, 1, 2])
@pytest.mark.parametrize("fps", [7.5, 15.0, 30.0])
@pytest.mark.parametrize("keyframes", [(0, 0, 0), (3, 17, 60), (12, 40, 40), (25, 41, 96)])
def test_keyframes_actions_round_trip(setting, fps, keyframes):
    acts = keyframes_to_actions(keyframes, fps, setting)
    assert [a.label for a in acts] == list(LABELS[setting])
    assert actions_to_keyframes(acts, fps, setting) == pytest.approx(keyframes)
    assert actions_to_keyframes(acts, fps, setting).rounded() == keyframes


def test_decoding_reads_by_label_not_position():
    acts = keyframes_to_actions((10, 20, 50), fps=10.0)
    assert actions_to_keyframes(list(reversed(acts)), fps=10.0) == pytest.approx((10, 20, 50))


def test_decoding_names_the_missing_class():
    with pytest.raises(ValueError, match="disappearing"):
        actions_to_keyframes([Action("filling", 0, (1.0, 2.0))], fps=10.0)


@pytest.mark.parametrize("bad", [(5, 3, 9), (-1, 3, 9), (1, 2), (1, float("nan"), 3)])
def test_bad_keyframes(bad):
    with pytest.raises(XcalabInputError, match="keyframes"):
        keyframes_to_actions(bad, fps=10.0)


def test_bad_setting():
    with pytest.raises(ValueError, match="setting"):
        keyframes_to_actions((1, 2, 3), fps=10.0, setting=3)


def test_rounding():
    assert Keyframes(2.5, 3.49, 7.5000001).rounded() == (3, 3, 8)


# ---------------------------------------------------------------------------------------------------
# ActivityNet-1.3 JSON
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", [0, 1, 2])
def test_json_round_trip(tmp_path, setting):
    videos = [
        VideoAnnotation.from_keyframes("xs_001", (12, 30, 88), fps=15.0, n_frames=100, subset="train", setting=setting),
        VideoAnnotation.from_keyframes("xs_002", (4, 9, 31), fps=7.5, n_frames=40, subset="test", setting=setting),
    ]
    path = write_annotations(tmp_path / "gt.json", videos)
    back = read_annotations(path)
    assert list(back) == ["xs_001", "xs_002"]
    for v in videos:
        assert back[v.video_id] == v
    assert list(read_annotations(path, subset="test")) == ["xs_002"]
    # no temporary file left next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json"]


def test_keyframes_decoded_when_absent(tmp_path):
    db = {"database": {"v": {"subset": "Train", "fps": 10, "duration": 8.0, "annotations": [
        {"segment": [3.0, 5.0], "label": "disappearing", "label_id": 1},
        {"segment": [1.0, 3.0], "label": "filling", "label_id": 0}]}}}
    (tmp_path / "a.json").write_text(json.dumps(db))
    v = read_annotations(tmp_path / "a.json")["v"]
    assert v.subset == "train"
    assert v.keyframes == pytest.approx((10, 30, 50))


def _one_video(**overrides):
    rec = {"subset": "train", "fps": 15.0, "duration": 6.0,
           "annotations": [{"segment": [1.0, 2.0], "label": "filling", "label_id": 0},
                           {"segment": [2.0, 5.0], "label": "disappearing", "label_id": 1}]}
    rec.update(overrides)
    return {"database": {"vid7": rec}}


BAD_RECORDS = [
    (_one_video(subset="holdout"), "subset"),
    (_one_video(fps=0), "fps"),
    (_one_video(fps="15"), "fps"),
    (_one_video(duration=-2), "duration"),
    (_one_video(annotations={}), "annotations"),
    (_one_video(annotations=[{"segment": [2.0], "label": "filling", "label_id": 0}]), r"annotations\[0\].segment"),
    (_one_video(annotations=[{"segment": [3.0, 2.0], "label": "filling", "label_id": 0}]), "t0 <= t1"),
    (_one_video(annotations=[{"segment": [1.0, 9.0], "label": "filling", "label_id": 0}]), "after the video"),
    (_one_video(annotations=[{"segment": [1.0, 2.0], "label": "", "label_id": 0}]), "label must"),
    (_one_video(annotations=[{"segment": [1.0, 2.0], "label": "filling", "label_id": "0"}]), "label_id"),
    (_one_video(keyframes={"start": 1, "apex": 2}), "keyframes"),
    (_one_video(keyframes={"start": 5, "apex": 2, "end": 9}), "start <= apex"),
    (_one_video(setting=4), "setting"),
]


@pytest.mark.parametrize("data, message", BAD_RECORDS)
def test_bad_records_name_file_video_and_field(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(XcalabInputError, match=message) as err:
        read_annotations(path)
    assert "bad.json" in str(err.value) and "vid7" in str(err.value)


def test_missing_field(tmp_path):
    data = _one_video()
    del data["database"]["vid7"]["fps"]
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(XcalabInputError, match='missing field "fps"'):
        read_annotations(tmp_path / "m.json")


def test_inconsistent_label_names(tmp_path):
    data = _one_video()
    other = json.loads(json.dumps(data["database"]["vid7"]))
    other["annotations"][0]["label"] = "inflow"
    data["database"]["vid8"] = other
    (tmp_path / "l.json").write_text(json.dumps(data))
    with pytest.raises(XcalabInputError, match="label_id 0 is called 'inflow'"):
        read_annotations(tmp_path / "l.json")


def test_not_json_and_not_activitynet(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(XcalabInputError, match="not valid JSON"):
        read_annotations(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"results": {}}')
    with pytest.raises(XcalabInputError, match="database"):
        read_annotations(tmp_path / "y.json")
    with pytest.raises(XcalabInputError, match="no such annotation file"):
        read_annotations(tmp_path / "missing.json")


def test_duplicate_video_ids_refused(tmp_path):
    v = VideoAnnotation.from_keyframes("a", (1, 2, 3), 10.0, 10)
    with pytest.raises(ValueError, match="twice"):
        write_annotations(tmp_path / "d.json", [v, v])
    assert not any(tmp_path.iterdir())


def test_end_beyond_sequence_refused():
    with pytest.raises(XcalabInputError, match="beyond the last frame"):
        VideoAnnotation.from_keyframes("a", (1, 2, 30), 10.0, n_frames=20)


def test_activitynet_official_subset_names_are_read(tmp_path):
    """ActivityNet-1.3 (and ActionFormer / OpenTAD) files say "training" / "validation" / "testing"."""
    from xcalab.data.annotations import canonical_subset

    data = _one_video(subset="training")
    other = json.loads(json.dumps(data["database"]["vid7"]))
    other["subset"] = "Testing"
    data["database"]["vid8"] = other
    path = tmp_path / "anet.json"
    path.write_text(json.dumps(data))
    videos = read_annotations(path)
    assert (videos["vid7"].subset, videos["vid8"].subset) == ("train", "test")
    assert list(read_annotations(path, subset="testing")) == ["vid8"] == list(read_annotations(path, subset="test"))
    assert [canonical_subset(s) for s in ("training", "validation", "testing", "TEST")] == ["train", "validation",
                                                                                         "test", "test"]
