"""Contrast phases per feature step: the centre frame's phase, cut with the features, padded with -1; and
keyframes read back off the phases of the steps."""

import numpy as np
import pytest
import torch

from xcalab.data.annotations import Action, FeatureGrid, VideoAnnotation, write_annotations
from xcalab.data.dataset import FeatureDataset, collate
from xcalab.data.phases import (
    NO_PHASE,
    PHASE_NAMES,
    change_point,
    keyframes_from_phases,
    phases_path,
    step_phases,
)
from xcalab.data.synth.dynamics import PHASES
from xcalab.errors import XcalabInputError

FPS = 15.0


def test_the_phase_names_are_the_simulators():
    assert PHASE_NAMES == PHASES == ("pre-contrast", "filling", "apex plateau", "washout", "after")


def test_a_step_takes_the_phase_of_its_centre_frame():
    # 14 frames: pre 0-3, filling 4-6, plateau 7, washout 8-10, after 11-13.
    frames = np.array([0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4])
    # stride 4, window 4: 3 steps (frames 0-3, 4-7, 8-11), centres 2, 6, 10.
    assert step_phases(frames, 3, FeatureGrid(4, 4)).tolist() == [0, 1, 3]
    # stride 2: 6 steps, centres 2, 4, 6, 8, 10, 12.
    assert step_phases(frames, 6, FeatureGrid(2, 4)).tolist() == [0, 1, 1, 3, 3, 4]
    assert step_phases(frames, 3).dtype == np.int8


def test_step_phases_refuses_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        step_phases(np.zeros((2, 3), dtype=int), 1)
    with pytest.raises(ValueError, match="integers in 0..4"):
        step_phases(np.array([0, 5, 1, 1]), 1)
    with pytest.raises(ValueError, match="integers"):
        step_phases(np.array([0.0, 1.0, 1.0, 1.0]), 1)
    with pytest.raises(ValueError, match="do not fit"):
        step_phases(np.zeros(8, dtype=int), 3)  # 8 frames hold 2 windows of 4 at stride 4


def test_labels_live_in_their_own_folder(tmp_path):
    assert phases_path(tmp_path / "synth-0003.npy") == tmp_path / "phases" / "synth-0003.npy"


def _feature_set(folder, lengths, with_phases=True, dim=8):
    """Videos v0, v1, ... whose step t holds the value t in every feature and phase t % 5."""
    videos = []
    for i, steps in enumerate(lengths):
        np.save(folder / f"v{i}.npy", np.repeat(np.arange(steps, dtype=np.float32)[:, None], dim, axis=1))
        if with_phases:
            phases_path(folder / f"v{i}.npy").parent.mkdir(exist_ok=True)
            np.save(phases_path(folder / f"v{i}.npy"), (np.arange(steps) % 5).astype(np.int8))
        d = 4 * steps / FPS
        actions = [Action("filling", 0, (0.2 * d, 0.4 * d)), Action("disappearing", 1, (0.4 * d, 0.8 * d))]
        videos.append(VideoAnnotation(f"v{i}", "train", FPS, d, actions))
    return write_annotations(folder / "annotations.json", videos)


def test_items_carry_their_phases(tmp_path):
    ds = FeatureDataset(tmp_path, _feature_set(tmp_path, [7]), feature_dim=8)
    assert ds[0].phases.tolist() == [0, 1, 2, 3, 4, 0, 1] and ds[0].phases.dtype == torch.int64


def test_training_crops_cut_phases_with_the_features(tmp_path):
    ann = _feature_set(tmp_path, [40, 300])
    for seed in range(5):
        ds = FeatureDataset(tmp_path, ann, feature_dim=8, training=True, max_seq_len=128, seed=seed)
        for item in (ds[0], ds[1]):
            steps = item.features[0].long()  # the step index each cropped column came from
            assert item.phases.tolist() == (steps % 5).tolist()
            assert item.features.shape == (8, len(item.phases))


def test_phases_do_not_change_the_crops(tmp_path):
    with_labels, without = tmp_path / "a", tmp_path / "b"
    with_labels.mkdir(), without.mkdir()
    a = FeatureDataset(with_labels, _feature_set(with_labels, [40, 300]), feature_dim=8, training=True, seed=3,
                       gain_range=(0.5, 2.0))
    b = FeatureDataset(without, _feature_set(without, [40, 300], with_phases=False), feature_dim=8, training=True,
                       seed=3, gain_range=(0.5, 2.0))
    for i in range(2):
        assert b[i].phases is None
        assert torch.equal(a[i].features, b[i].features) and torch.equal(a[i].segments, b[i].segments)


def test_collate_pads_phases_with_no_phase(tmp_path):
    ds = FeatureDataset(tmp_path, _feature_set(tmp_path, [3, 6]), feature_dim=8)
    batch = collate([ds[0], ds[1]], pad_to=8)
    assert batch.phases.tolist() == [[0, 1, 2, NO_PHASE, NO_PHASE, NO_PHASE, NO_PHASE, NO_PHASE],
                                     [0, 1, 2, 3, 4, 0, NO_PHASE, NO_PHASE]]
    assert batch.to("cpu").phases is not None


def test_a_batch_with_an_unlabelled_video_has_no_phases(tmp_path):
    ds = FeatureDataset(tmp_path, _feature_set(tmp_path, [3, 6]), feature_dim=8)
    phases_path(tmp_path / "v1.npy").unlink()
    assert collate([ds[0], ds[1]]).phases is None and collate([ds[0]]).phases is not None


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros(5, dtype=np.int8), "must be 6 integers"), (np.zeros(6, dtype=np.float32), "must be 6 integers"),
     (np.full(6, 7, dtype=np.int8), "must lie in 0..4")],
)
def test_bad_phase_files_are_named(tmp_path, bad, message):
    ds = FeatureDataset(tmp_path, _feature_set(tmp_path, [6]), feature_dim=8)
    np.save(phases_path(tmp_path / "v0.npy"), bad)
    with pytest.raises(XcalabInputError, match=message) as err:
        ds[0]
    assert "phases" in str(err.value)


# --------------------------------------------------------------------------------------------------
# Keyframes read off the phases of the steps
# --------------------------------------------------------------------------------------------------


def _frame_phases(n_frames, start, apex, plateau_end, end):
    """Phases of the frames of a cine with these keyframes (as ``phases_from_curve`` labels them)."""
    phases = np.full(n_frames, 3)
    phases[:start], phases[start:apex], phases[apex:plateau_end], phases[end + 1:] = 0, 1, 2, 4
    return phases


def test_change_point_by_hand():
    assert change_point(np.array([False, False, True, True])) == 2
    assert change_point(np.ones(5, bool)) == 0 and change_point(np.zeros(5, bool)) == 5
    # [no, yes, no, yes, yes]: a switch at 1 or at 3 gets one step wrong; the first is taken.
    assert change_point(np.array([False, True, False, True, True])) == 1
    # One stray "yes" among six "no" before the switch does not move it.
    assert change_point(np.array([0, 0, 1, 0, 0, 0, 1, 1, 1, 1], bool)) == 6


def test_keyframes_from_phases_by_hand():
    # 100 frames, start 10, apex 30, plateau to 39, end 70. Stride 4, window 4: 25 steps, centres 4k + 2.
    steps = step_phases(_frame_phases(100, 10, 30, 40, 70), 25, FeatureGrid(4, 4))
    # The first step at or past each boundary: centre 10 (filling), 30 (plateau), 74 (after). Each keyframe is
    # that centre - 1.5 (the middle of the frames the boundary can be), end one frame less.
    assert keyframes_from_phases(steps, 100, FeatureGrid(4, 4)) == (8.5, 28.5, 71.5)


def test_keyframes_from_the_true_phases_are_within_the_step_resolution():
    rng = np.random.default_rng(0)
    for stride, window in ((4, 4), (2, 4), (1, 1), (4, 8)):
        grid = FeatureGrid(stride, window)
        for _ in range(50):
            n = int(rng.integers(40, 160))
            start = int(rng.integers(window, n // 3))
            apex = int(rng.integers(start + 1, n // 2))
            end = int(rng.integers(apex + 2, n - window))
            frames = _frame_phases(n, start, apex, int(rng.integers(apex + 1, end + 1)), end)
            found = keyframes_from_phases(step_phases(frames, grid.n_steps(n), grid), n, grid)
            errors = np.abs(np.array(found) - (start, apex, end))
            assert errors.max() <= (stride - 1) / 2 + 1e-9, (stride, window, (start, apex, end), found)


def test_a_constant_phase_puts_the_keyframes_at_the_ends():
    grid = FeatureGrid(4, 4)
    # Every step at the plateau: start and apex before the first centre (2 - 1.5), end past the last frame.
    assert keyframes_from_phases(np.full(25, 2), 100, grid) == (0.5, 0.5, 99.0)
    assert keyframes_from_phases(np.zeros(25, int), 100, grid) == (99.0, 99.0, 99.0)
    assert keyframes_from_phases(np.full(25, 4), 100, grid) == (0.5, 0.5, 0.5)  # end never before apex


def test_stray_steps_do_not_move_the_keyframes():
    grid = FeatureGrid(4, 4)
    steps = step_phases(_frame_phases(100, 30, 50, 60, 80), 25, grid)  # pre-contrast: steps 0-6
    noisy = steps.copy()
    noisy[3], noisy[16], noisy[22] = 4, 0, 1  # an "after" early, a "pre" in the washout, a "filling" at the end
    assert keyframes_from_phases(noisy, 100, grid) == keyframes_from_phases(steps, 100, grid)


def test_keyframes_from_phases_refuses_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        keyframes_from_phases(np.zeros((2, 3), dtype=int), 12)
    with pytest.raises(ValueError, match="1-D"):
        keyframes_from_phases(np.zeros(0, dtype=int), 12)
    with pytest.raises(ValueError, match="integers in 0..4"):
        keyframes_from_phases(np.array([0, 5]), 12)
    with pytest.raises(ValueError, match="integers"):
        keyframes_from_phases(np.array([0.0, 1.0]), 12)
    with pytest.raises(ValueError, match="n_frames"):
        keyframes_from_phases(np.array([0, 1]), 0)
