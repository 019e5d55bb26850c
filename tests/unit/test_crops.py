"""Training crops (ActionFormer's ``truncate_feats``): the window rules on hand-made cases, and determinism."""

import torch

from xcalab.data.crops import crop_window, truncate_features


def video(length, segments, labels):
    """Features whose single channel holds the step index, so a crop shows where it starts."""
    feats = torch.arange(length, dtype=torch.float32).expand(3, length).clone()
    return feats, torch.tensor(segments, dtype=torch.float32), torch.tensor(labels)


def test_crop_window_clips_shifts_and_keeps_by_fraction():
    feats, segments, labels = video(20, [[2.0, 6.0], [15.0, 19.0]], [0, 1])
    # Window [4, 12), widened by 0.5 to [3.5, 12.5]: A -> [3.5, 6] keeps 2.5 / 4 = 0.625 >= 0.5, shifted by -4
    # to [-0.5, 2]; B -> [15, 12.5] keeps nothing.
    crop, has_action = crop_window(feats, segments, labels, start=4, length=8)
    assert has_action
    assert crop.feats.shape == (3, 8) and crop.feats[0].tolist() == list(range(4, 12))
    assert crop.segments.tolist() == [[-0.5, 2.0]] and crop.labels.tolist() == [0]
    # Window [5, 13) -> [4.5, 13.5]: A keeps [4.5, 6] = 1.5 / 4 < 0.5 and is dropped.
    crop, has_action = crop_window(feats, segments, labels, start=5, length=8)
    assert not has_action and crop.segments.shape == (0, 2) and crop.labels.shape == (0,)


def test_crop_window_threshold_is_inclusive():
    feats, segments, labels = video(30, [[10.0, 21.0]], [1])
    # Window [0, 15) -> [-0.5, 15.5]: keeps [10, 15.5] = 5.5 / 11 = 0.5 exactly -> kept.
    crop, has_action = crop_window(feats, segments, labels, start=0, length=15)
    assert has_action and crop.segments.tolist() == [[10.0, 15.5]]
    # Window [0, 14) -> [-0.5, 14.5]: 4.5 / 11 < 0.5.
    assert not crop_window(feats, segments, labels, start=0, length=14)[1]


def test_crop_window_zero_length_segment_kept_only_inside():
    feats, segments, labels = video(20, [[3.0, 3.0], [15.0, 15.0]], [0, 1])
    crop, _ = crop_window(feats, segments, labels, start=0, length=8)
    assert crop.segments.tolist() == [[3.0, 3.0]] and crop.labels.tolist() == [0]


def test_short_video_without_crop_ratio_is_untouched():
    feats, segments, labels = video(100, [[-0.5, 120.0]], [0])
    crop = truncate_features(feats, segments, labels, crop_ratio=None, generator=torch.Generator().manual_seed(0))
    assert crop.feats is feats and crop.segments is segments and crop.labels is labels


def test_crop_length_is_drawn_from_the_rounded_ratio_range():
    # L = 20: lengths in [max(round(18.0), 1), min(round(20.0), 20)] = {18, 19, 20}; 20 means untouched.
    feats, segments, labels = video(20, [[0.0, 20.0]], [0])
    seen = set()
    for seed in range(60):
        crop = truncate_features(feats, segments, labels, generator=torch.Generator().manual_seed(seed))
        seen.add(crop.feats.shape[1])
        if crop.feats.shape[1] == 20:
            assert crop.segments is segments  # not clipped either
    assert seen == {18, 19, 20}
    # L = 5: 0.9 * 5 = 4.5 and Python's round(4.5) = 4 (halves to even), so {4, 5}.
    feats, segments, labels = video(5, [[0.0, 5.0]], [0])
    seen = {
        truncate_features(feats, segments, labels, generator=torch.Generator().manual_seed(s)).feats.shape[1]
        for s in range(40)
    }
    assert seen == {4, 5}


def test_long_video_is_cut_to_max_len_and_keeps_an_action():
    feats, segments, labels = video(200, [[10.0, 14.0], [150.0, 190.0]], [0, 1])
    for seed in range(20):
        crop = truncate_features(feats, segments, labels, max_len=32, generator=torch.Generator().manual_seed(seed))
        start = int(crop.feats[0, 0])
        assert crop.feats.shape == (3, 32) and crop.feats[0].tolist() == list(range(start, start + 32))
        assert len(crop.labels) >= 1  # retried until at least one action survives
        for (a, b), label in zip(crop.segments.tolist(), crop.labels.tolist()):
            orig_a, orig_b = segments[label].tolist()
            assert -0.5 <= a <= b <= 32.5  # inside the widened window
            assert (b - a) >= 0.5 * (orig_b - orig_a)
            assert a + start == max(orig_a, start - 0.5) and b + start == min(orig_b, start + 32.5)


def test_when_every_trial_fails_the_last_window_has_no_actions():
    # A 100-step action never has half of itself inside a 9-step widened window.
    feats, segments, labels = video(200, [[50.0, 150.0]], [0])
    crop = truncate_features(feats, segments, labels, max_len=8, generator=torch.Generator().manual_seed(0))
    assert crop.feats.shape == (3, 8) and crop.segments.shape == (0, 2) and crop.labels.shape == (0,)


def test_crops_are_deterministic_given_the_generator():
    feats, segments, labels = video(300, [[20.0, 60.0], [60.0, 200.0]], [0, 1])

    def crop(seed):
        return truncate_features(feats, segments, labels, max_len=128, generator=torch.Generator().manual_seed(seed))

    first, again = crop(7), crop(7)
    for x, y in zip(first, again):
        assert torch.equal(x, y)
    starts = {int(crop(seed).feats[0, 0]) for seed in range(10)}
    assert len(starts) > 1
