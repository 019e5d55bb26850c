"""XCA-Synth realism: the proxy statistics of ``realism.py`` on synthetic and real cines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xcalab.data.synth import (
    TARGETS,
    format_realism_table,
    realism_statistics,
    realism_table,
    simulate_sequence,
)
from xcalab.data.synth.realism import DERIVED_TARGETS

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "xa_rca_cine_96f_30fps.dcm"
needs_real = pytest.mark.skipif(not REAL.is_file(), reason=f"real fixture {REAL} absent (../shared is not in a user's clone)")

#: Statistics that default cines may miss, and why (see the realism table in the report).
MAY_MISS = {
    "rise_s": "proxy curve: the 10 % level of a noisy vessel index jumps a few frames either way",
    "fall_s": "same proxy; a blush tail keeps the index above 10 % a little longer",
    "cnr_ring": "the ring std includes rib and texture edges that vary from view to view",
    "lowrank_top3": "the simulated heart has fewer independent motions than a real one (3 periodic modes with "
    "beat-to-beat strength), so the top singular values hold ~0.05-0.1 more of the variance, most in RCA views",
    "lowrank_top5": "as lowrank_top3",
}


@pytest.fixture(scope="module")
def default_cines():
    """Two default cines at the real exports' 512^2 (left and right tree), at 7.5 fps to keep them short."""
    return [simulate_sequence((0, i), image_size=512, fps=7.5, tree=("left", "right")[i]) for i in range(2)]


@pytest.mark.slow
def test_default_knobs_land_inside_the_targets(default_cines):
    stats = [realism_statistics(seq) for seq in default_cines]
    outside = {}
    for name, (lo, hi, _) in {**TARGETS, **DERIVED_TARGETS}.items():
        value = float(np.nanmean([s.get(name, np.nan) for s in stats]))
        if np.isfinite(value) and not lo * 0.9 <= value <= hi * 1.1:  # 10 % slack: two cines, not a population
            outside[name] = round(value, 3)
    assert set(outside) <= set(MAY_MISS), f"outside the realism targets: {outside}"


def test_statistics_respond_to_the_knobs():
    from xcalab.data.synth import Knobs

    quiet = realism_statistics(simulate_sequence(3, image_size=128, n_frames=32, knobs=Knobs(dose=4.0, motion=0.0)))
    noisy = realism_statistics(simulate_sequence(3, image_size=128, n_frames=32, knobs=Knobs(dose=0.25, motion=0.0)))
    assert noisy["temporal_noise_sigma"] > quiet["temporal_noise_sigma"]
    faint = realism_statistics(simulate_sequence(3, image_size=128, n_frames=32, knobs=Knobs(vessel_contrast=0.3)))
    assert faint["vessel_index_peak"] < quiet["vessel_index_peak"]


@needs_real
def test_the_same_code_measures_the_real_cine_like_the_spec_did():
    from xcalab.data.io import read_dicom

    stats = realism_statistics(read_dicom(REAL))
    assert 0.045 <= stats["vessel_index_peak"] <= 0.066  # measured on real cines
    assert 21 <= stats["local_contrast"] <= 36  # measured on real exports
    assert 2.0 <= stats["noise_fwhm_px"] <= 3.6  # this cine (Rubo): 3.3 px, measured
    assert 0.27 <= stats["lowrank_top1"] <= 0.46  # measured on real cines
    assert np.isnan(stats["start_to_apex_s"])  # no truth


@needs_real
def test_realism_table_puts_synth_beside_targets_and_the_real_cine():
    synth = [simulate_sequence((0, i), image_size=96, n_frames=40, tree=("left", "right")[i]) for i in range(2)]
    rows = realism_table(synth=synth)
    names = [r.name for r in rows]
    assert names[: len(TARGETS)] == list(TARGETS)
    row = rows[names.index("vessel_index_peak")]
    assert np.isfinite(row.real) and row.synth_min <= row.synth_median <= row.synth_max
    text = format_realism_table(rows)
    assert text.count("\n") == len(rows) + 1 and "vessel_index_peak" in text
