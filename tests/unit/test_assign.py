"""Label assignment (ActionFormer's): hand-worked cases for levels, centre region, ranges, ties, padding."""

import pytest
import torch

from xcalab.train import assign_targets, concat_levels, pyramid_points

# A 16-step sequence: levels of 16, 8, 4, 2, 1, 1 points (strides 1 .. 32).
LENGTHS = (16, 8, 4, 2, 1, 1)
FIRST = (0, 16, 24, 28, 30, 31)  # index of each level's first point in the concatenation


def point(level, i):
    return FIRST[level] + i


def assign(segments, labels, **kwargs):
    points = pyramid_points(LENGTHS)
    return assign_targets(points, torch.tensor([segments]), torch.tensor([labels]), **kwargs)


def positives(targets, b=0):
    return torch.nonzero(targets.positive[b]).squeeze(1).tolist()


def test_points_are_level_by_level_without_offset():
    points = pyramid_points(LENGTHS)
    assert points.position.shape == (32,)
    assert points.position[FIRST[1] : FIRST[2]].tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert points.stride[FIRST[2] : FIRST[3]].tolist() == [4] * 4
    assert (points.reg_lo[FIRST[5]].item(), points.reg_hi[FIRST[5]].item()) == (64, 10000)
    assert points.level.tolist() == [0] * 16 + [1] * 8 + [2] * 4 + [3] * 2 + [4, 5]
    with pytest.raises(ValueError, match="one stride"):
        pyramid_points((4, 2), strides=(1,))


def test_concat_levels_orders_points_like_pyramid_points():
    per_level = [torch.arange(n).float().expand(3, 2, n) + 100 * level for level, n in enumerate((4, 2))]
    flat = concat_levels(per_level)
    assert flat.shape == (3, 6, 2)
    assert flat[0, :, 0].tolist() == [0, 1, 2, 3, 100, 101]
    assert concat_levels([torch.ones(3, 4), torch.zeros(3, 2)]).shape == (3, 6)


def test_short_segment_goes_to_level_0_centre_points():
    # [4.5, 9.5], centre 7. Level 0: centre region [max(4.5, 5.5), min(9.5, 8.5)] = [5.5, 8.5] -> t = 6, 7, 8,
    # farthest boundary 3.5, 2.5, 3.5, all in [0, 4]. Level 1 (s = 2): region [4.5, 9.5] -> t = 6, 8, but their
    # farthest boundary 3.5 is below its range [4, 8]. Level 2: t = 8, 3.5 not in [8, 16].
    targets = assign([[4.5, 9.5]], [0])
    assert positives(targets) == [6, 7, 8]
    assert targets.reg[0, 6:9].tolist() == [[1.5, 3.5], [2.5, 2.5], [3.5, 1.5]]
    assert targets.cls[0, 6:9].tolist() == [[1, 0]] * 3
    assert targets.cls[0].sum() == 3 and targets.reg[0, ~targets.positive[0]].abs().sum() == 0


def test_long_segment_goes_to_a_coarse_level_in_stride_units():
    # [0.5, 15.5] (length 15), centre 8. Level 2 (s = 4): region [max(0.5, 2), min(15.5, 14)] = [2, 14]
    # -> t = 4, 8, 12 with farthest boundary 11.5, 7.5, 11.5: only 4 and 12 are in [8, 16].
    # Level 3 (s = 8): region [0.5, 15.5] -> t = 8, farthest 7.5, not in [16, 32]. Level 1 (s = 2): region
    # [5, 11] -> t = 6, 8, 10, farthest 9.5, 7.5, 9.5: only t = 8 is in [4, 8].
    targets = assign([[0.5, 15.5]], [1])
    assert positives(targets) == [point(1, 4), point(2, 1), point(2, 3)]
    assert targets.reg[0, point(2, 1)].tolist() == [3.5 / 4, 11.5 / 4]  # (t - a, b - t) / stride
    assert targets.reg[0, point(1, 4)].tolist() == [7.5 / 2, 7.5 / 2]
    assert targets.cls[0, point(2, 3)].tolist() == [0, 1]


def test_centre_region_is_strictly_inside():
    # [0.5, 4.5], centre 2.5: level-0 region [1, 4]; t = 1 and t = 4 lie on its edges and are excluded.
    assert positives(assign([[0.5, 4.5]], [0])) == [2, 3]
    # [2, 3]: the region is the segment itself, whose ends 2 and 3 are the only nearby points -> nobody.
    assert positives(assign([[2.0, 3.0]], [0])) == []


def test_regression_range_is_inclusive_at_both_ends():
    # [0, 8], centre 4. Level 0: region [2.5, 5.5] -> t = 3, 4, 5 with farthest 5, 4, 5: only t = 4 (= hi 4).
    # Level 1: region [1, 7] -> t = 2, 4, 6 with farthest 6, 4 (= lo 4), 6: all three in [4, 8].
    # Level 2: region [0, 8] -> t = 4 only (0 and 8 are on the edge), farthest 4 < 8.
    targets = assign([[0.0, 8.0]], [0])
    assert positives(targets) == [4, point(1, 1), point(1, 2), point(1, 3)]
    assert targets.reg[0, 4].tolist() == [4.0, 4.0]
    assert targets.reg[0, point(1, 1) : point(1, 4)].tolist() == [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]


def test_shortest_segment_wins():
    # At t = 4 (level 0) both A = [0, 8] (label 0, length 8) and B = [2, 6] (label 1, length 4) qualify:
    # A's region [2.5, 5.5] and farthest 4; B's region [2.5, 5.5] and farthest 2. B is shorter.
    targets = assign([[0.0, 8.0], [2.0, 6.0]], [0, 1])
    assert targets.cls[0, 4].tolist() == [0, 1]
    assert targets.reg[0, 4].tolist() == [2.0, 2.0]
    # Order of the segments does not matter.
    swapped = assign([[2.0, 6.0], [0.0, 8.0]], [1, 0])
    assert torch.equal(swapped.cls, targets.cls) and torch.equal(swapped.reg, targets.reg)


def test_lengths_within_1e_3_of_the_shortest_all_add_their_class():
    # B = [2, 6] (label 1, length 4) and C = [2, 6.0005] (label 0, length 4.0005): within 1e-3, so t = 4 is
    # positive for both classes; the regression target is the shortest one's, B.
    near = assign([[2.0, 6.0], [2.0, 6.0005]], [1, 0])
    assert near.cls[0, 4].tolist() == [1, 1]
    assert near.reg[0, 4].tolist() == [2.0, 2.0]
    # 4.002 is 2e-3 longer: B alone.
    far = assign([[2.0, 6.0], [2.0, 6.002]], [1, 0])
    assert far.cls[0, 4].tolist() == [0, 1]
    # Identical segments of the same class: still one-hot (OR, clipped to 1).
    same = assign([[2.0, 6.0], [2.0, 6.0]], [1, 1])
    assert same.cls[0, 4].tolist() == [0, 1]


def test_padding_of_segments_and_points():
    points = pyramid_points(LENGTHS)
    one = assign_targets(points, torch.tensor([[[4.5, 9.5]]]), torch.tensor([[0]]))
    two = assign_targets(points, torch.tensor([[[0.5, 15.5], [2.0, 6.0]]]), torch.tensor([[1, 0]]))
    # Batch of both, video 0 padded with a garbage segment (and a label no class has) behind its mask.
    batch = assign_targets(
        points,
        torch.tensor([[[4.5, 9.5], [0.0, 100.0]], [[0.5, 15.5], [2.0, 6.0]]]),
        torch.tensor([[0, -1], [1, 0]]),
        segment_mask=torch.tensor([[True, False], [True, True]]),
    )
    for field in ("cls", "reg", "positive"):
        assert torch.equal(getattr(batch, field)[0], getattr(one, field)[0])
        assert torch.equal(getattr(batch, field)[1], getattr(two, field)[0])
    # Padded points are never positive.
    point_mask = torch.ones(1, 32, dtype=torch.bool)
    point_mask[0, 7:16] = False
    masked = assign_targets(points, torch.tensor([[[4.5, 9.5]]]), torch.tensor([[0]]), point_mask=point_mask)
    assert positives(masked) == [6]
    assert masked.cls[0, 7:9].sum() == 0 and masked.reg[0, 7:9].sum() == 0


def test_videos_without_segments_and_bad_labels():
    empty = assign_targets(pyramid_points(LENGTHS), torch.zeros(2, 0, 2), torch.zeros(2, 0, dtype=torch.long))
    assert empty.cls.shape == (2, 32, 2) and empty.reg.shape == (2, 32, 2) and not empty.positive.any()
    with pytest.raises(ValueError, match="labels must lie"):
        assign([[4.5, 9.5]], [2])
