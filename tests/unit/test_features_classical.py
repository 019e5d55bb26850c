"""Frangi vesselness (checked against scikit-image), raw intensity and the oracle."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import filters as skimage_filters  # the reference implementation (test dependency)

from xcalab.features.classical import frangi, frangi_maps, hessian_eigenvalues, oracle_maps, raw_maps


def _image_with_dark_line(seed: int = 0, shape=(64, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), 3) * 0.3 + 0.5
    img[30:33, 10:70] -= 0.3  # a dark vessel, 3 px wide
    return img.astype(np.float32)


@pytest.mark.parametrize("sigmas", [(1, 3, 5, 7, 9), (1.5, 2.0, 3.0)])
def test_frangi_matches_scikit_image(sigmas):
    img = _image_with_dark_line()
    expected = skimage_filters.frangi(img, sigmas=sigmas, black_ridges=True)
    ours = frangi(torch.from_numpy(img)[None], sigmas=sigmas)[0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_eigenvalues_ordered_by_magnitude():
    h_rr, h_rc, h_cc = (torch.tensor([v]) for v in (3.0, 1.0, -2.0))
    l1, l2 = hessian_eigenvalues(h_rr, h_rc, h_cc)
    expected = np.linalg.eigvalsh([[3.0, 1.0], [1.0, -2.0]])
    expected = expected[np.argsort(np.abs(expected))]
    np.testing.assert_allclose([l1.item(), l2.item()], expected, rtol=1e-6)


def test_frangi_maps_find_the_vessel_and_share_one_scale_per_cine():
    with_line = _image_with_dark_line()
    without = _image_with_dark_line()
    without[30:33, 10:70] += 0.3
    maps = frangi_maps(torch.from_numpy(np.stack([with_line, without])))
    assert maps.shape == (2, 64, 80) and 0 <= maps.min() and maps.max() <= 1
    assert maps[0, 31, 40] > 0.5 and maps[0, 31, 40] > 5 * maps[0, 10, 40]
    # One structureness scale for the cine: the frame without the vessel stays low (per-image scaling
    # would stretch its background texture up to the same range).
    assert maps[1].max() < 0.5 * maps[0].max()


def test_frangi_ignores_bright_ridges():
    img = np.full((40, 40), 0.5, np.float32)
    img[19:22, :] = 0.9  # a bright line is not a dark vessel (its flanks curve up and may answer a little)
    frames = torch.from_numpy(img)[None]
    assert frangi_maps(frames, sigmas=(1.5,))[0, 20].max() == 0
    # scikit-image's convention answers on the centre of a perfectly straight bright line (l1 == 0 there)
    assert frangi(frames, sigmas=(1.5,))[0, 20].max() > 0.5


def test_raw_and_oracle():
    frames = torch.rand(3, 8, 8)
    assert torch.equal(raw_maps(frames), 1 - frames)
    truth = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    picked = oracle_maps(truth, [4, 1])
    assert picked.dtype == torch.float32 and np.array_equal(picked.numpy(), truth[[4, 1]])
