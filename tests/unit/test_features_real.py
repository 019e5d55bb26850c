"""The shipped extractor on a real cine: features rise when the contrast arrives (needs ../shared/data/real)."""

from pathlib import Path

import numpy as np
import pytest

from xcalab.data.io import read_dicom
from xcalab.features.extract import extract_features, window_centres

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
RCA = REAL / "xa_rca_cine_96f_30fps.dcm"

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not RCA.is_file(), reason=f"real cine not found at {RCA} (only in the project's shared folder)"),
]


@pytest.fixture(scope="module")
def rca():
    return read_dicom(RCA)  # read in place, never copied


def test_real_cine_feature_contract(rca):
    feats = extract_features(rca, "raw", stride=4)
    assert feats.shape == (24, 4096) and feats.dtype == np.float32  # (96 - 4) // 4 + 1 windows
    np.testing.assert_array_equal(window_centres(rca.n_frames, 4), 4 * np.arange(24) + 2)


def test_learned_vessel_area_rises_with_the_contrast(rca):
    # Frames 0-~17: catheter only; contrast fills ~18-40 and stays to the last frame (shared/data/real/README.md).
    area = extract_features(rca, "learned", stride=4).mean(axis=1)
    centres = window_centres(rca.n_frames, 4)
    pre, plateau = area[centres <= 14].mean(), area[centres >= 46].mean()
    assert plateau > 3 * pre
    half = (pre + plateau) / 2
    first_above = centres[np.argmax(area >= half)]
    assert 18 <= first_above <= 42
