"""XCA-Synth: physics and truth of single cines (tiny sizes; the benchmark builder is in test_synth_benchmark.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from xcalab.data.synth import KeyframeRule, Knobs, keyframes_from_curve, phases_from_curve, sample_params
from xcalab.data.synth.anatomy import build_tree, sample_anatomy, tortuosity_index
from xcalab.data.synth.dynamics import jitter_keyframes
from xcalab.data.synth.imaging import Tubes, rasterize_tubes
from xcalab.data.synth.params import SimParams
from xcalab.data.synth.simulator import contrast_passage, render, simulate_sequence

STILL = Knobs(motion=0.0, table_pan=0.0)


@pytest.fixture(scope="module")
def still_cine():
    """A 64^2 left-coronary cine with a still heart (so pixels can be compared across frames)."""
    return simulate_sequence(11, image_size=64, n_frames=48, fps=15.0, tree="left", knobs=STILL)


@pytest.fixture(scope="module")
def moving_cine():
    return simulate_sequence(5, image_size=64, n_frames=40, fps=15.0, tree="right")


# --------------------------------------------------------------------------------------------------
# Output contract
# --------------------------------------------------------------------------------------------------


def test_sequence_contract(moving_cine):
    seq = moving_cine
    n = seq.n_frames
    assert seq.frames.shape == (n, 64, 64) and seq.frames.dtype == np.float32
    assert 0.0 <= seq.frames.min() and seq.frames.max() <= 1.0
    assert np.allclose(seq.frames * 255, np.rint(seq.frames * 255), atol=1e-4)  # 8-bit grid
    assert seq.truth.vessel_maps.shape == (n, 64, 64) and seq.truth.vessel_maps.dtype == np.float32
    assert 0.0 <= seq.truth.vessel_maps.min() and seq.truth.vessel_maps.max() <= 1.0
    assert seq.truth.phases.dtype == np.int8 and set(np.unique(seq.truth.phases)) <= {0, 1, 2, 3, 4}
    assert seq.meta["source"] == "xca-synth" and seq.meta["seed"] == [5]
    json.dumps(seq.meta)  # every parameter is JSON


def test_params_round_trip_through_json_and_render_again():
    params = sample_params(3, image_size=32, n_frames=16, tree="right")
    again = SimParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params
    assert np.array_equal(render(params).frames, render(again).frames)


def test_same_seed_same_bytes_other_seed_other_cine():
    a = simulate_sequence(7, image_size=32, n_frames=20)
    b = simulate_sequence(7, image_size=32, n_frames=20)
    c = simulate_sequence(8, image_size=32, n_frames=20)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.truth.vessel_maps.tobytes() == b.truth.vessel_maps.tobytes()
    assert a.meta == b.meta and a.truth.keyframes == b.truth.keyframes
    assert a.frames.tobytes() != c.frames.tobytes() and a.meta["params"] != c.meta["params"]
    # The global RNG is never touched.
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    simulate_sequence(7, image_size=32, n_frames=20)
    assert np.array_equal(np.random.get_state()[1], state)


def test_knobs_are_validated():
    with pytest.raises(ValueError, match="dose"):
        Knobs(dose=0.0)
    with pytest.raises(ValueError, match="table_pan"):
        Knobs(table_pan=2.0)
    with pytest.raises(ValueError, match="tree"):
        sample_params(0, tree="middle")


# --------------------------------------------------------------------------------------------------
# Contrast: darker only while present, area up then down, keyframes by the rule
# --------------------------------------------------------------------------------------------------


def _darkening(seq, frame: int) -> float:
    """Mean grey change (vs frame 0) inside the apex vessel mask minus the change in a ring around it."""
    apex = seq.truth.keyframes[1]
    vessel = seq.truth.vessel_maps[apex] > 0.5
    ring = ndimage.binary_dilation(vessel, iterations=4) & ~ndimage.binary_dilation(vessel, iterations=1)
    change = (seq.frames[frame] - seq.frames[0]) * 255
    return float(change[vessel].mean() - change[ring].mean())


def test_vessels_darker_than_background_only_while_contrast_is_present(still_cine):
    seq = still_cine
    start, apex, end = seq.truth.keyframes
    at_apex = _darkening(seq, apex)
    assert at_apex < -8.0  # clearly darker than their surroundings
    for f in range(1, start):  # pre-contrast: nothing but noise
        assert abs(_darkening(seq, f)) < 2.0
    after = [f for f in range(seq.n_frames) if seq.truth.phases[f] == 4]
    assert after and all(_darkening(seq, f) > 0.35 * at_apex for f in after)  # mostly washed out


def test_opacified_area_rises_from_start_to_apex_and_falls_to_end(still_cine):
    seq = still_cine
    start, apex, end = seq.truth.keyframes
    area = seq.truth.vessel_maps.sum(axis=(1, 2))
    assert area[:start].max() < 0.05 * area.max()
    assert area[start] < area[apex] and area[end] < 0.5 * area[apex]
    rise, fall = area[start : apex + 1], area[apex : end + 1]
    assert np.corrcoef(np.arange(len(rise)), rise)[0, 1] > 0.8
    assert np.corrcoef(np.arange(len(fall)), fall)[0, 1] < -0.8
    assert np.allclose(area, seq.meta["curves"]["opacified_area_px"], rtol=1e-4, atol=1e-2)


def test_keyframes_are_ordered_inside_and_equal_the_rule_on_the_iodine_curve(moving_cine, still_cine):
    for seq in (moving_cine, still_cine):
        start, apex, end = seq.truth.keyframes
        assert 0 < start <= apex <= end < seq.n_frames
        mass = np.array(seq.meta["curves"]["iodine_mass_mg"])
        rule = KeyframeRule(**seq.meta["keyframe_rule"])
        (s, a, e), censored = keyframes_from_curve(mass, rule)
        assert (s, a, e) == seq.truth.keyframes and not censored
        assert np.array_equal(phases_from_curve(mass, (s, a, e), rule), seq.truth.phases)
        # The rule itself, read off the curve by hand.
        peak = mass.max()
        assert mass[s] >= 0.03 * peak > mass[s - 1]
        assert mass[a] >= 0.99 * peak and (mass[:a] < 0.99 * peak).all()
        assert mass[e] <= 0.10 * peak and (mass[a + 1 : e] > 0.10 * peak).all()


def test_keyframe_rule_on_a_known_curve():
    m = np.array([0, 0, 0.02, 0.1, 0.5, 0.995, 1.0, 0.996, 0.6, 0.3, 0.08, 0.05, 0.0])
    assert keyframes_from_curve(m) == ((3, 5, 10), False)
    assert keyframes_from_curve(m, KeyframeRule(apex="centre")) == ((3, 6, 10), False)
    assert keyframes_from_curve(m, KeyframeRule(start_fraction=0.01, end_fraction=0.2))[0] == (2, 5, 10)
    assert keyframes_from_curve(m[:9]) == ((3, 5, 8), True)  # never washed out: end censored at N - 1
    phases = phases_from_curve(m, (3, 5, 10))
    assert phases.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    with pytest.raises(ValueError):
        KeyframeRule(apex="middle")


def test_annotator_jitter_keeps_order_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        s, a, e = jitter_keyframes((1, 2, 3), 2.0, 6, rng)
        assert 0 <= s <= a <= e < 6
    seq = simulate_sequence(2, image_size=32, n_frames=30, knobs=Knobs(annotator_jitter=2.0))
    exact = seq.meta["keyframes_exact"]
    assert sorted(seq.truth.keyframes) == list(seq.truth.keyframes)
    assert all(abs(j - k) <= 8 for j, k in zip(seq.truth.keyframes, exact))  # 4 SD


def test_timelines_fit_every_preset_without_a_censored_end():
    """Cheap (no frames rendered): many seeds, the frame ranges and rates of all three presets."""
    cases = [((32, 48), 15.0), ((40, 160), 7.5), ((40, 160), 30.0), ((31, 379), 15.0)]
    for i in range(24):
        frames, fps = cases[i % len(cases)]
        params = sample_params((9, i), image_size=64, fps=fps, tree=("left", "right")[i % 2], frames_range=frames)
        assert frames[0] <= params.n_frames <= frames[1]
        _, _, _, (exact, censored, _, _) = contrast_passage(params)
        assert not censored and 1 <= exact[0] <= exact[1] <= exact[2] < params.n_frames - 1


# --------------------------------------------------------------------------------------------------
# Noise and motion
# --------------------------------------------------------------------------------------------------


def _temporal_sigma(seq) -> float:
    pre = seq.frames[: seq.truth.keyframes[0]] * 255
    return float(np.diff(pre, axis=0).std() / np.sqrt(2))


def test_noise_grows_as_dose_falls():
    """Raw 12-bit exports (no post-processing, no 8-bit rounding): quantum noise ~ 1 / sqrt(dose)."""
    sigmas = [
        _temporal_sigma(simulate_sequence(4, image_size=64, n_frames=40,
                                          knobs=Knobs(motion=0.0, table_pan=0.0, dose=d, postprocess=False, bits=12)))
        for d in (4.0, 1.0, 0.25)
    ]
    assert sigmas[0] < sigmas[1] < sigmas[2]
    assert 2.5 < sigmas[2] / sigmas[0] < 4.5  # sqrt(16) = 4, less the dose-independent read noise


def test_table_pan_moves_the_vessel_map_by_the_commanded_amount():
    params = sample_params(21, image_size=64, n_frames=48, fps=15.0, tree="left", knobs=STILL)
    _, _, _, (exact, _, _, phases) = contrast_passage(params)
    plateau = np.nonzero(phases == 2)[0]
    before, after = int(plateau[0]), int(plateau[0]) + 3
    shift_px = (5, -3)  # (d_col, d_row) commanded
    per_px = params.camera.pixel_mm / params.camera.magnification  # mm at the isocentre per pixel
    motion = dataclasses.replace(
        params.motion, pan_mm=(shift_px[0] * per_px, shift_px[1] * per_px),
        pan_start_s=(before + 0.2) / params.fps, pan_duration_s=1.6 / params.fps,
    )
    seq = render(dataclasses.replace(params, motion=motion))
    a, b = seq.truth.vessel_maps[before], seq.truth.vessel_maps[after]
    best = max(
        ((dr, dc) for dr in range(-8, 9) for dc in range(-8, 9)),
        key=lambda s: float((np.roll(a, s, axis=(0, 1))[10:-10, 10:-10] * b[10:-10, 10:-10]).sum()),
    )
    assert best == (shift_px[1], shift_px[0])
    # Moved back by the commanded amount, the map matches (away from the borders, where vessels leave the field).
    inner = (slice(10, -10), slice(10, -10))
    residual = np.abs(np.roll(a, best, axis=(0, 1))[inner] - b[inner]).sum()
    unmoved = np.abs(a[inner] - b[inner]).sum()
    assert residual < 0.15 * b[inner].sum() and residual < 0.25 * unmoved


def test_a_still_heart_keeps_the_vessels_in_place_and_a_beating_one_moves_them():
    still = simulate_sequence(6, image_size=64, n_frames=40, knobs=STILL)
    beating = simulate_sequence(6, image_size=64, n_frames=40, knobs=Knobs(table_pan=0.0, motion=1.5))
    for seq, moves in ((still, False), (beating, True)):
        plateau = np.nonzero(seq.truth.phases == 2)[0]
        maps = seq.truth.vessel_maps[plateau] > 0.5
        overlap = (maps & maps[:1]).sum(axis=(1, 2)) / np.maximum(maps.sum(axis=(1, 2)), 1)
        assert (overlap.min() < 0.9) == moves


# --------------------------------------------------------------------------------------------------
# Anatomy and drawing
# --------------------------------------------------------------------------------------------------


def test_anatomy_matches_the_sourced_dimensions():
    angles, ratios, tis = [], [], []
    for k in range(12):
        tree = build_tree(sample_anatomy(np.random.default_rng(k), "left", False))
        angles.append(tree.stats["lad_lcx_angle_deg"])
        tis.append(tree.stats["mean_tortuosity_index"])
        if tree.params.branching_law == "finet":
            ratios.append(tree.stats["lm_bifurcation_ratio"])
        assert 3.5 <= tree.stats["LM_proximal_diameter_mm"] <= 5.5  # Dodge 4.5 +- 2 SD [S1]
        assert 100 <= tree.stats["LAD_length_mm"] <= 131  # [S10]
    assert 63 <= np.median(angles) <= 74  # [S6][S7]
    assert np.allclose(np.median(ratios), 0.678, atol=0.04)  # Finet [S3] (after the LCx's wall trim)
    assert 1.02 <= np.median(tis) <= 1.12  # [S8]
    rca = build_tree(sample_anatomy(np.random.default_rng(0), "right", True))
    assert {b.spec.name for b in rca.branches} == {"RCA", "CB", "AM", "PDA"}
    assert tortuosity_index(np.stack([np.linspace(0, 100, 201), np.zeros(201), np.zeros(201)], 1)) == pytest.approx(1.0)


def test_rasterised_tube_has_the_chord_of_a_cylinder():
    """A long horizontal tube of radius 6 px: attenuation 2 sqrt(r^2 - d^2) * k across it, area-preserving."""
    tube = Tubes(*(np.array([v], dtype=float) for v in (5, 32, 59, 32, 6, 6, 0.1, 0.1, 1, 1)), group=np.array([0]))
    att, opacity = rasterize_tubes(tube, (64, 64), 1)
    column = att[:, 32]
    assert column.sum() == pytest.approx(0.1 * np.pi * 36, rel=0.02)  # integral of the chord = pi r^2
    assert column[32] == pytest.approx(0.1 * 2 * 6, rel=0.02)
    assert opacity[32, 32] == 1.0 and opacity[20, 32] == 0.0
