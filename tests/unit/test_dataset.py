"""Feature datasets: grid-unit ground truth, seeded training crops, padding with masks, clear file errors."""

import numpy as np
import pytest
import torch

from xcalab.data.annotations import Action, FeatureGrid, VideoAnnotation, write_annotations
from xcalab.data.dataset import FeatureDataset, collate, derive_seed, padded_length
from xcalab.errors import XcalabInputError

FPS = 15.0


def _feature_set(folder, lengths, subsets=None, dim=16):
    """Videos v0, v1, ... of the given lengths; step t of video i holds the value 100 i + t in every feature.

    A video of T steps lasts d = 4 T / fps seconds; filling is [0.2 d, 0.4 d] and disappearing [0.4 d, 0.8 d],
    i.e. grid units [0.2 T - 0.5, 0.4 T - 0.5] and [0.4 T - 0.5, 0.8 T - 0.5].
    """
    videos = []
    for i, steps in enumerate(lengths):
        values = 100 * i + np.arange(steps, dtype=np.float32)
        np.save(folder / f"v{i}.npy", np.repeat(values[:, None], dim, axis=1))
        subset = subsets[i] if subsets else "train"
        d = 4 * steps / FPS
        actions = [Action("filling", 0, (0.2 * d, 0.4 * d)), Action("disappearing", 1, (0.4 * d, 0.8 * d))]
        videos.append(VideoAnnotation(f"v{i}", subset, FPS, d, actions))
    return write_annotations(folder / "annotations.json", videos)


def test_items_are_channels_first_with_grid_unit_segments(tmp_path):
    ann = _feature_set(tmp_path, [20, 12], dim=16)
    ds = FeatureDataset(tmp_path, ann, "train", grid=FeatureGrid(stride=4, window=4), feature_dim=16)
    item = ds[1]
    assert item.video_id == "v1" and item.features.shape == (16, 12) and item.features.dtype == torch.float32
    assert torch.equal(item.features[3], torch.arange(12, dtype=torch.float32) + 100)
    # g = (seconds * fps - window / 2) / stride: 0.64 s at 15 fps is frame 9.6, grid (9.6 - 2) / 4 = 1.9
    assert torch.allclose(item.segments, torch.tensor([[1.9, 4.3], [4.3, 9.1]]))
    assert item.labels.tolist() == [0, 1] and item.fps == FPS and item.index == 1
    assert ds.lengths == [20, 12]


def test_subset_selects_videos(tmp_path):
    ann = _feature_set(tmp_path, [8, 8, 8], subsets=["train", "validation", "train"])
    assert [v.video_id for v in FeatureDataset(tmp_path, ann, "train", feature_dim=16).videos] == ["v0", "v2"]
    assert len(FeatureDataset(tmp_path, ann, "validation", feature_dim=16)) == 1
    assert len(FeatureDataset(tmp_path, ann, "test", feature_dim=16)) == 0


def test_collate_pads_right_and_masks_real_steps(tmp_path):
    ann = _feature_set(tmp_path, [5, 3])
    ds = FeatureDataset(tmp_path, ann, feature_dim=16)
    batch = collate([ds[0], ds[1]])
    assert batch.features.shape == (2, 16, 5)
    assert batch.mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    assert torch.equal(batch.features[1, 0], torch.tensor([100.0, 101.0, 102.0, 0.0, 0.0]))
    assert batch.video_ids == ["v0", "v1"] and len(batch.segments) == 2
    # Training pads to max_seq_len; the reference's inference pads to multiples of 128.
    assert collate([ds[1]], pad_to=8).features.shape[-1] == 8
    assert padded_length([130], pad_to=128, multiple=128) == 256
    assert padded_length([7, 3], multiple=4) == 8


def test_training_crops_depend_on_seed_epoch_and_item_only(tmp_path):
    ann = _feature_set(tmp_path, [40, 40, 40])

    def crops(epoch, order, seed=0):
        ds = FeatureDataset(tmp_path, ann, feature_dim=16, training=True, max_seq_len=16, seed=seed)
        ds.set_epoch(epoch)
        return {i: ds[i] for i in order}

    first, again = crops(0, [0, 1, 2]), crops(0, [2, 0, 1])  # another instance, another order: same crops
    for i in range(3):
        assert torch.equal(first[i].features, again[i].features)
        assert torch.equal(first[i].segments, again[i].segments)
        assert first[i].features.shape[-1] == 16  # longer than max_seq_len: cut to max_seq_len
    later, other_seed = crops(1, [0, 1, 2]), crops(0, [0, 1, 2], seed=1)
    starts = [int(first[i].features[0, 0]) % 100 for i in range(3)]
    assert starts != [int(later[i].features[0, 0]) % 100 for i in range(3)]
    assert starts != [int(other_seed[i].features[0, 0]) % 100 for i in range(3)]
    # Segments move with the window: disappearing is [15.5, 31.5] in the whole video, clipped to the
    # window widened by half a step.
    for i in range(3):
        kept = first[i].segments[first[i].labels == 1]
        if len(kept):
            expected = torch.tensor([max(15.5, starts[i] - 0.5), min(31.5, starts[i] + 16.5)]) - starts[i]
            assert torch.allclose(kept[0], expected)


def test_inference_items_are_never_cropped(tmp_path):
    ann = _feature_set(tmp_path, [40])
    ds = FeatureDataset(tmp_path, ann, feature_dim=16, training=True, max_seq_len=16)
    assert ds.video(0).features.shape[-1] == 40 and ds[0].features.shape[-1] == 16
    assert FeatureDataset(tmp_path, ann, feature_dim=16)[0].features.shape[-1] == 40


def test_missing_feature_file_is_named(tmp_path):
    ann = _feature_set(tmp_path, [8, 8])
    (tmp_path / "v1.npy").unlink()
    with pytest.raises(XcalabInputError, match=r"v1\.npy: feature file of video 'v1' is missing"):
        FeatureDataset(tmp_path, ann, feature_dim=16)


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.zeros((8, 15), np.float32), r"shape \(T, 16\).*got \(8, 15\)"),
        (np.zeros((8,), np.float32), r"shape \(T, 16\).*got \(8,\)"),
        (np.zeros((0, 16), np.float32), r"shape \(T, 16\) with T >= 1, got \(0, 16\)"),
    ],
)
def test_wrong_shape_is_named(tmp_path, array, problem):
    ann = _feature_set(tmp_path, [8])
    np.save(tmp_path / "v0.npy", array)
    with pytest.raises(XcalabInputError, match=r"v0\.npy: features must have " + problem):
        FeatureDataset(tmp_path, ann, feature_dim=16)


def test_nan_is_reported_with_its_step(tmp_path):
    ann = _feature_set(tmp_path, [8])
    bad = np.ones((8, 16), np.float32)
    bad[5, 3] = np.nan
    np.save(tmp_path / "v0.npy", bad)
    ds = FeatureDataset(tmp_path, ann, feature_dim=16)  # the header is fine
    with pytest.raises(XcalabInputError, match=r"v0\.npy: features hold NaN or infinite values \(first at step 5\)"):
        ds[0]


def test_missing_folder_and_non_array_file(tmp_path):
    ann = _feature_set(tmp_path, [8])
    with pytest.raises(XcalabInputError, match="no such feature folder"):
        FeatureDataset(tmp_path / "nowhere", ann)
    (tmp_path / "v0.npy").write_text("not an array")
    with pytest.raises(XcalabInputError, match=r"v0\.npy: not a readable \.npy array"):
        FeatureDataset(tmp_path, ann, feature_dim=16)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    seeds = {derive_seed(seed, stream, epoch) for seed in range(3) for stream in range(3) for epoch in range(3)}
    assert len(seeds) == 27 and all(0 <= s < 2**63 for s in seeds)


def test_feature_gain_scales_training_items_only_and_is_seeded(tmp_path):
    folder = tmp_path
    np.save(folder / "g.npy", np.full((20, 16), 0.3, np.float32))
    ann = write_annotations(folder / "a.json", [VideoAnnotation("g", "train", FPS, 80 / FPS, [])])
    fixed = FeatureDataset(folder, ann, feature_dim=16, training=True, max_seq_len=32, crop_ratio=None,
                           gain_range=(2.0, 2.0))
    assert torch.allclose(fixed[0].features, torch.full((16, 20), 0.6))
    clipped = FeatureDataset(folder, ann, feature_dim=16, training=True, crop_ratio=None, gain_range=(5.0, 5.0))
    assert float(clipped[0].features.max()) == 1.0  # probabilities stay in [0, 1]
    ranged = FeatureDataset(folder, ann, feature_dim=16, training=True, crop_ratio=None, gain_range=(0.5, 2.0))
    gains = []
    for epoch in range(4):
        ranged.set_epoch(epoch)
        gains.append(float(ranged[0].features[0, 0]) / 0.3)
    assert all(0.5 <= g <= 2.0 for g in gains) and len(set(gains)) == 4
    ranged.set_epoch(2)
    assert float(ranged[0].features[0, 0]) / 0.3 == pytest.approx(gains[2])  # a function of (seed, epoch, item)
    inference = FeatureDataset(folder, ann, feature_dim=16, gain_range=(2.0, 2.0))
    assert torch.allclose(inference[0].features, torch.full((16, 20), 0.3))  # never at inference


def test_feature_clutter_adds_one_static_map_with_the_drawn_level(tmp_path):
    folder = tmp_path
    donor = np.zeros((6, 16), np.float32)
    donor[:, :4] = np.arange(1, 7, dtype=np.float32)[:, None] / 10  # step k: 4 pixels at (k + 1) / 10
    np.save(folder / "d.npy", donor)
    np.save(folder / "e.npy", np.zeros((20, 16), np.float32))
    ann = write_annotations(folder / "a.json", [VideoAnnotation("d", "train", FPS, 24 / FPS, []),
                                                VideoAnnotation("e", "train", FPS, 80 / FPS, [])])
    fixed = FeatureDataset(folder, ann, feature_dim=16, training=True, max_seq_len=32, crop_ratio=None,
                           clutter_range=(0.05, 0.05))
    item = fixed[1].features  # the empty video: all it holds is the clutter
    assert torch.allclose(item, item[:, :1].expand_as(item))  # the same map at every step
    assert float(item.mean()) == pytest.approx(0.05) and int((item[:, 0] > 0).sum()) == 4  # the donor's shape
    ranged = FeatureDataset(folder, ann, feature_dim=16, training=True, crop_ratio=None, clutter_range=(0.0, 0.04))
    levels = []
    for epoch in range(8):
        ranged.set_epoch(epoch)
        levels.append(float(ranged[1].features.mean()))
    # the donor is any training video: an empty one (here "e" itself) lends no clutter
    assert all(0.0 <= v <= 0.04 for v in levels) and len({v for v in levels if v > 0}) >= 3
    ranged.set_epoch(2)
    assert float(ranged[1].features.mean()) == pytest.approx(levels[2])  # a function of (seed, epoch, item)
    inference = FeatureDataset(folder, ann, feature_dim=16, clutter_range=(0.05, 0.05))
    assert float(inference[1].features.abs().max()) == 0.0  # never at inference
    with pytest.raises(ValueError, match="feature_clutter"):
        from xcalab.config import TrainConfig
        TrainConfig(feature_clutter=(0.1, 0.05))
