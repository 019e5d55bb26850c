"""Time curves on hand-made cines whose answer is known exactly."""

import numpy as np
import pytest

from xcalab.data.curves import black_tophat, downsample, mean_intensity, vessel_area


def _cine_with_a_line(n=10, appear=4, size=64, depth=0.3):
    frames = np.full((n, size, size), 0.8, dtype=np.float32)
    frames[appear:, 20:22, 8:56] -= depth  # a 2-px dark "vessel" of 48 px length from frame `appear` on
    return frames


def test_vessel_area_counts_the_line_only_after_it_appears():
    frames = _cine_with_a_line()
    area = vessel_area(frames, threshold=0.1, size=9, max_size=64)
    assert np.all(area[:4] == 0)
    assert np.allclose(area[4:], 2 * 48 / 64**2)


def test_wide_dark_regions_are_not_vessels():
    frames = np.full((3, 64, 64), 0.8, dtype=np.float32)
    frames[:, :, :32] = 0.3  # a dark half-image (a spine, a diaphragm): wider than the top-hat
    assert np.all(vessel_area(frames, threshold=0.1, size=9, max_size=64) == 0)


def test_tophat_depth_equals_line_depth():
    frames = _cine_with_a_line(depth=0.25)
    th = black_tophat(frames, size=9)
    assert th.min() >= 0
    assert th[5, 20, 30] == pytest.approx(0.25) and th[5, 40, 30] == pytest.approx(0.0)


def test_mean_intensity_by_hand():
    frames = np.zeros((2, 4, 4), dtype=np.float32)
    frames[1, :2] = 1.0
    assert mean_intensity(frames).tolist() == [0.0, 0.5]


def test_downsample_block_means():
    frames = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    small = downsample(frames, max_size=4)
    assert small.shape == (2, 4, 4)
    assert small[0, 0, 0] == pytest.approx(np.mean([0, 1, 8, 9]))
    assert downsample(frames, max_size=8) is not None and downsample(frames, max_size=8).shape == (2, 8, 8)
