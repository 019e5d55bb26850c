"""The simulator: parameters -> anatomy -> contrast transport -> motion -> images, one frame at a time.

    params  = sample_params(seed, ...)          every random number, drawn once (params.py)
    tree    = build_tree(params.anatomy)        centrelines, radii, catheter (anatomy.py)
    passage = simulate_transport(...)           c(l, t), iodine mass m(t), blush (dynamics.py)
    keyframes, phases from m(t)                 the documented rule (dynamics.KeyframeRule)
    motion  = cardiac / respiratory / pan       displacements per frame (motion.py)
    frames  = render each frame                 log-domain image, detector, post-processing (imaging.py)

``simulate_sequence`` does all of it; ``render`` does the last five steps for a given ``SimParams`` (e.g. one
whose motion a test has replaced), for the whole run or for a window of its frames (``scenarios.py`` cuts
truncated cines out of a longer natural run that way).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from xcalab.data.io import Cine, Truth
from xcalab.data.synth.anatomy import SAMPLE_SPACING_MM, Tree, build_tree
from xcalab.data.synth.dynamics import (
    PHASES,
    KeyframeRule,
    Transport,
    jitter_keyframes,
    keyframes_from_curve,
    phases_from_curve,
    simulate_transport,
)
from xcalab.data.synth.imaging import (
    Display,
    Tubes,
    build_background,
    crop_shifted,
    detect,
    diaphragm_layer,
    expected_signal,
    exposure_reference,
    heart_layer,
    quantise,
    rasterize_tubes,
    shutter_mask,
    spatial_postprocess,
)
from xcalab.data.synth.motion import (
    cardiac_displacement,
    cardiac_phase,
    contraction_profiles,
    peak_speed,
    respiration,
    rwave_frames,
    table_pan,
)
from xcalab.data.synth.params import Knobs, SimParams, sample_params

#: Catheter: wall attenuation (polymer with a steel braid), mm^-1 (assumption), and wall thickness, mm.
CATHETER_WALL_MU = 0.05
CATHETER_WALL_MM = 0.3
#: The catheter follows the heart over this length from its tip, mm (it is held by the ostium).
CATHETER_FOLLOW_MM = 40.0
#: Ribs move with the chest wall: this share of the heart's respiratory shift (assumption).
RIB_SHARE = 0.5
#: Share of the tree (by fill delay) whose territory blushes (the distal tree; assumption).
BLUSH_FROM = 0.4


def simulate_sequence(
    seed: int | Sequence[int],
    image_size: int = 256,
    n_frames: int | None = None,
    fps: float = 15.0,
    tree: str = "left",
    knobs: Knobs | None = None,
    frames_range: tuple[int, int] = (31, 379),
    rule: KeyframeRule | None = None,
    video_id: str | None = None,
) -> Cine:
    """One synthetic cine with exact ground truth.

    Args:
        seed: int or tuple of ints; the only source of randomness.
        image_size: frames are image_size^2 pixels (the field of view is fixed, ~10 cm at the isocentre).
        n_frames: force the length (the contrast timeline is fitted to it); None: natural length in ``frames_range``.
        fps: frame rate (7.5, 15, 30 clinically).
        tree: "left" or "right" coronary injection.
        knobs: difficulty knobs (``Knobs()`` are the validated defaults).
        frames_range: (min, max) frames when ``n_frames`` is None (31-379: the paper's clinical range).
        rule: the keyframe rule.
        video_id: name of the sequence (default "xcasynth-<seed>").

    Returns:
        ``Cine`` with frames float32 [N, H, W] in [0, 1] (2^bits - 1 levels; vessels dark), fps, and
        truth = Truth(keyframes (start, apex, end), vessel_maps float32 [N, H, W] in [0, 1], phases int8 [N]);
        meta holds "source" = "xca-synth", "seed", "params" (every parameter, JSON), "curves" (iodine mass,
        opacified area, ...), "keyframes_exact", "rwave_frames" and derived statistics.
    """
    params = sample_params(seed, image_size=image_size, fps=fps, tree=tree, n_frames=n_frames,
                           frames_range=frames_range, knobs=knobs, rule=rule)
    return render(params, video_id=video_id)


def _segments(tree: Tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (a, b) [S] of consecutive centreline samples within each branch, and their layer [S]."""
    starts = np.cumsum([0] + [len(b.arc) for b in tree.branches])
    a = np.concatenate([np.arange(s, e - 1) for s, e in zip(starts[:-1], starts[1:])])
    group = np.concatenate([np.full(len(b.arc) - 1, b.group) for b in tree.branches])
    return a, a + 1, group


def _in_view(tree: Tree, params: SimParams, fov: np.ndarray) -> np.ndarray:
    """[P] 1 for centreline samples that project inside the collimated field (reference pose), else 0."""
    col, row, _ = params.camera.project(tree.points)
    n = params.camera.size
    c, r = np.rint(col).astype(int), np.rint(row).astype(int)
    inside = (c >= 0) & (c < n) & (r >= 0) & (r < n)
    out = np.zeros(len(col))
    out[inside] = fov[r[inside], c[inside]] > 0.5
    return out


def peak_vessel_speed(tree: Tree, params: SimParams) -> float:
    """Largest 3-D speed of any centreline sample from the heartbeat and breathing, mm/s (22-109 in [S38])."""
    pts = tree.points[:: max(1, len(tree.points) // 200)]
    return peak_speed(pts, params.motion, tree.heart, params.n_frames / params.fps)


def contrast_passage(params: SimParams, tree: Tree | None = None):
    """The contrast passage and the ground truth of a run, without rendering a single frame (cheap).

    Returns (tree, transport, fov, (keyframes_exact, end_censored, keyframes, phases)):
        tree        the ``anatomy.Tree``;  transport  ``dynamics.Transport`` (concentrations, iodine mass [N], ...)
        fov         [H, W] collimated field of view
        keyframes_exact  (start, apex, end) from the iodine curve by ``params.rule``
        end_censored     True when the curve never fell to the end threshold (end = N - 1)
        keyframes        the truth, with ``knobs.annotator_jitter`` applied;  phases  int8 [N]

    A run without contrast by construction (``contrast.c_lumen_mg_ml == 0``) has keyframes (0, 0, 0) and every
    frame pre-contrast; any other run whose in-view iodine mass stays 0 raises RuntimeError (a geometry bug).
    """
    tree = tree if tree is not None else build_tree(params.anatomy)
    m, size = params.motion, params.camera.size
    fov = shutter_mask(params.imaging.shutter, params.imaging.shutter_size, (size, size))
    weights = math.pi * tree.radius**2 * SAMPLE_SPACING_MM * _in_view(tree, params, fov)
    passage = simulate_transport(tree, params.contrast, params.times, lambda t: cardiac_phase(m, t), weights)
    if passage.iodine_mass_mg.max() <= 0:
        if params.contrast.c_lumen_mg_ml > 0:
            raise RuntimeError(f"seed {params.seed}: no opacified vessel inside the field of view")
        none = (0, 0, 0)  # no contrast by construction: no keyframes (the curve rules need a positive maximum)
        return tree, passage, fov, (none, False, none, np.zeros(params.n_frames, dtype=np.int8))
    exact, censored = keyframes_from_curve(passage.iodine_mass_mg, params.rule)
    phases = phases_from_curve(passage.iodine_mass_mg, exact, params.rule)
    rng = np.random.default_rng(params.jitter_seed)
    keyframes = jitter_keyframes(exact, params.knobs.annotator_jitter, params.n_frames, rng)
    return tree, passage, fov, (exact, censored, keyframes, phases)


def render(params: SimParams, video_id: str | None = None, window: tuple[int, int] | None = None) -> Cine:
    """Render the sequence that ``params`` describe (deterministic). See ``simulate_sequence`` for the output.

    window: (first, count) renders only frames first .. first + count - 1 of the run, as a recording of just
        those frames would show them: exposure, display, noise and the recursive filter start at ``first``.
        The passage, motion and truth are the whole run's, cut to the window: vessel maps and phases are the
        run's frames, keyframes are shifted and clamped into [0, count - 1], "rwave_frames" and "curves" are
        cut, "end_censored" says whether the end lies outside, and meta["window"] records
        {"first_frame", "n_frames", "run_frames"}. None: the whole run (the frames themselves then equal the
        window's only where noise and filter agree, i.e. for first = 0).
    """
    cam, ip, m = params.camera, params.imaging, params.motion
    n, size = params.n_frames, cam.size
    lo, hi = _window_bounds(window, n)
    shape = (size, size)
    times = params.times
    tree = build_tree(params.anatomy)

    # --- Contrast passage and ground truth --------------------------------------------------------------
    tree, passage, fov, (exact, censored, keyframes, phases) = contrast_passage(params, tree)

    # --- Motion -------------------------------------------------------------------------------------------
    prof = contraction_profiles(m, times)  # [N, 3]: squeeze, shortening, twist
    s, s_long = prof[:, 0], prof[:, 1]
    breath = respiration(m, times)  # [N, 3] mm, heart translation (over the whole run: a hold drifts over all of it)
    pts0 = tree.points
    # 3-D positions only for the rendered frames (the row of frame i is i - lo); pointwise in time.
    moved = pts0[None] + cardiac_displacement(pts0, prof[lo:hi], m, tree.heart) + breath[lo:hi, None, :]
    cath_follow = np.clip(1.0 - np.arange(len(tree.catheter)) * SAMPLE_SPACING_MM / CATHETER_FOLLOW_MM, 0.0, 1.0)
    cath = tree.catheter[None] + cath_follow[None, :, None] * cardiac_displacement(tree.catheter, prof[lo:hi], m,
                                                                                   tree.heart)
    cath = cath + breath[lo:hi, None, :]
    resp_px = cam.image_axes_mm(breath)[:, ::-1]  # (d_row, d_col)
    pan_px = table_pan(m, times)[:, ::-1] * cam.magnification / cam.pixel_mm  # (d_row, d_col)

    # --- Static precomputation ------------------------------------------------------------------------------
    reach = np.abs(pan_px).max() + np.abs(resp_px).max() * max(RIB_SHARE, 1.0) + 4
    bg = build_background(ip, cam, tree.heart, int(math.ceil(reach)))
    a_idx, b_idx, seg_group = _segments(tree)
    n_groups = int(seg_group.max()) + 3  # vessel layers + catheter wall + catheter lumen
    mu = ip.mu_iodine_cm2_g * 1e-4  # per mm, per mgI/mL
    c_lumen = params.contrast.c_lumen_mg_ml
    r_cath = tree.catheter_radius_mm
    k_lumen = mu * params.contrast.c_agent_mg_ml - CATHETER_WALL_MU  # the lumen replaces wall material
    blush_map, blush_amp = _blush_territory(tree, params, passage, bg.pad)
    fill_threshold = 1e-3 * c_lumen
    col0, row0, _ = cam.project(pts0)
    ref_centre = np.array([row0.mean(), col0.mean()])

    def compose(i: int) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free attenuation A [H, W] and opacity (vessel map) [H, W] of frame i (lo <= i < hi)."""
        col, row, scale = cam.project(moved[i - lo])
        col, row = col + pan_px[i, 1], row + pan_px[i, 0]
        c = passage.concentration[i]
        live = np.maximum(c[a_idx], c[b_idx]) > fill_threshold
        a, b = a_idx[live], b_idx[live]
        k = mu * c / scale
        o = np.clip(c / c_lumen, 0.0, 1.0) if c_lumen > 0 else np.zeros_like(c)  # c_lumen 0: no contrast run
        r_px = tree.radius * scale
        parts = [Tubes(col[a], row[a], col[b], row[b], r_px[a], r_px[b], k[a], k[b], o[a], o[b], seg_group[live])]
        cc, cr, cs = cam.project(cath[i - lo])
        cc, cr = cc + pan_px[i, 1], cr + pan_px[i, 0]
        ca, cb = np.arange(len(cc) - 1), np.arange(1, len(cc))
        zero = np.zeros(len(cc))
        for radius, kk, g in ((r_cath, CATHETER_WALL_MU, n_groups - 2), (r_cath - CATHETER_WALL_MM, k_lumen, n_groups - 1)):
            rp, kp = radius * cs, kk / cs
            parts.append(Tubes(cc[ca], cr[ca], cc[cb], cr[cb], rp[ca], rp[cb], kp[ca], kp[cb], zero[ca], zero[cb],
                               np.full(len(ca), g)))
        att, opacity = rasterize_tubes(Tubes.concat(parts), shape, n_groups)
        moved_mean = np.array([row.mean(), col.mean()]) - ref_centre  # how far the tree moved (for the blush)
        a_total = (
            crop_shifted(bg.static, bg.pad, pan_px[i], shape)
            + crop_shifted(bg.breathing, bg.pad, pan_px[i] + RIB_SHARE * resp_px[i], shape)
            + diaphragm_layer(bg, shape, pan_px[i] + m.diaphragm_ratio * resp_px[i])
            + heart_layer(tree.heart, 1.0 - m.radial * s[i], 1.0 - m.longitudinal * s_long[i],
                          m.longitudinal * s_long[i] * tree.heart.a_long * tree.heart.e_l + breath[i],
                          cam, ip.heart_mu_per_mm, shape, pan_px[i])
            + att
        )
        if blush_amp > 0 and passage.blush[i] > 1e-4:
            a_total = a_total + blush_amp * passage.blush[i] * crop_shifted(blush_map, bg.pad, moved_mean, shape)
        return a_total, opacity * fov

    # --- Display LUT from a noise-free first frame (of the recording: the window's) ---------------------------
    a0, _ = compose(lo)
    a_ref = exposure_reference(a0, fov)
    clean = spatial_postprocess(detect(expected_signal(a0, ip, cam, bg, a_ref), ip, cam, None), ip, cam, fov)
    display = Display.fit(clean, fov, ip)

    # --- Frames -----------------------------------------------------------------------------------------------
    rng = np.random.default_rng(ip.noise_seed)
    frames = np.empty((hi - lo, size, size), dtype=np.float32)
    vessel_maps = np.empty((hi - lo, size, size), dtype=np.float32)
    recursive = None
    for i in range(lo, hi):
        a_i, opacity = compose(i)
        y = spatial_postprocess(detect(expected_signal(a_i, ip, cam, bg, a_ref), ip, cam, rng), ip, cam, fov)
        if ip.postprocess:
            recursive = y if recursive is None else ip.recursive_alpha * y + (1.0 - ip.recursive_alpha) * recursive
            y = recursive
        frames[i - lo] = quantise(display(y) * fov, ip.bits, ip.jpeg_quality)
        vessel_maps[i - lo] = opacity

    # --- The record (cut to the window; for the whole run every cut below is the identity) -------------------
    vid = video_id or "xcasynth-" + "-".join(str(v) for v in params.seed)
    cut = slice(lo, hi)
    exact_cut, keyframes_cut = _clamp_keyframes(exact, lo, hi), _clamp_keyframes(keyframes, lo, hi)
    meta = {
        "source": "xca-synth",
        "format": "xca-synth",
        "seed": list(params.seed),
        "bits_stored": ip.bits,
        "params": params.to_dict(),
        "keyframe_rule": dataclasses.asdict(params.rule),
        "keyframes_exact": list(exact_cut),
        "end_censored": bool(censored or exact[2] >= hi),
        "phase_names": list(PHASES),
        "rwave_frames": [f - lo for f in rwave_frames(m, n, params.fps) if lo <= f < hi],
        "curves": _curves(passage, vessel_maps, s, cut),
        "derived": {
            **{k: round(v, 4) for k, v in tree.stats.items()},
            "peak_vessel_speed_mm_s": round(peak_vessel_speed(tree, params), 2),
            "pixel_iso_mm": cam.pixel_iso_mm,
            "magnification": cam.magnification,
            "time_scale": params.contrast.time_scale,
            "quanta_per_pixel": ip.dqe * ip.photons_per_mm2_ugy * ip.dose_ngy * 1e-3 * cam.pixel_mm**2,
        },
    }
    if window is not None:
        meta["window"] = {"first_frame": lo, "n_frames": hi - lo, "run_frames": n}
    return Cine(frames, params.fps, video_id=vid, meta=meta,
                    truth=Truth(keyframes=keyframes_cut, vessel_maps=vessel_maps, phases=phases[cut]))


def _window_bounds(window: tuple[int, int] | None, n: int) -> tuple[int, int]:
    """(lo, hi): the run's frames lo <= i < hi that ``render`` draws; the whole run for None."""
    if window is None:
        return 0, n
    first, count = (int(v) for v in window)
    if first < 0 or count < 1 or first + count > n:
        raise ValueError(f"window (first, count) = {tuple(window)} must lie inside the run's {n} frames")
    return first, first + count


def _clamp_keyframes(keyframes: tuple[int, int, int], lo: int, hi: int) -> tuple[int, int, int]:
    """Keyframes of the run on the window's frame axis, clamped into it (a start before it -> 0, an end after
    it -> count - 1); order is kept."""
    return tuple(int(min(max(k - lo, 0), hi - lo - 1)) for k in keyframes)


def _curves(passage: Transport, vessel_maps: np.ndarray, s: np.ndarray, cut: slice) -> dict[str, list[float]]:
    """Per-frame curves of the rendered frames (``cut`` of the run) for plots and checks (JSON lists)."""
    return {
        "iodine_mass_mg": [round(float(v), 6) for v in passage.iodine_mass_mg[cut]],
        "opacified_area_px": [round(float(v), 3) for v in vessel_maps.sum(axis=(1, 2))],
        "injection": [round(float(v), 5) for v in passage.injection[cut]],
        "blush": [round(float(v), 5) for v in passage.blush[cut]],
        "contraction": [round(float(v), 5) for v in s[cut]],
    }


def _blush_territory(tree: Tree, params: SimParams, passage: Transport, pad: int) -> tuple[np.ndarray, float]:
    """The myocardial territory map W (padded canvas, peak 1) and the blush amplitude (Delta-A at W = 1).

    W: the distal tree drawn in its reference pose, blurred by 6 mm; amplitude: ``blush_fraction`` of a
    proximal vessel's Delta-A = mu_I c_lumen D_proximal.
    """
    cam, cp = params.camera, params.contrast
    if cp.blush_fraction <= 0:
        return np.zeros((1, 1), dtype=np.float32), 0.0
    size = cam.size + 2 * pad
    col, row, scale = cam.project(tree.points)
    a_idx, b_idx, _ = _segments(tree)
    distal = passage.arrival_s >= BLUSH_FROM * passage.arrival_s.max()
    keep = distal[a_idx] & distal[b_idx]
    a, b = a_idx[keep], b_idx[keep]
    ones = np.ones(len(col))
    r = np.maximum(tree.radius * scale, 1.0)
    tubes = Tubes(col[a] + pad, row[a] + pad, col[b] + pad, row[b] + pad, r[a], r[b], ones[a], ones[b],
                  ones[a] * 0, ones[b] * 0, np.zeros(len(a), dtype=np.int64))
    drawn, _ = rasterize_tubes(tubes, (size, size), 1)
    territory = ndimage.gaussian_filter((drawn > 0).astype(np.float32), 6.0 * cam.magnification / cam.pixel_mm)
    territory /= max(float(territory.max()), 1e-12)
    d_proximal = 2.0 * float(tree.branches[0].radius[0])
    amplitude = cp.blush_fraction * params.imaging.mu_iodine_cm2_g * 1e-4 * cp.c_lumen_mg_ml * d_proximal
    return territory.astype(np.float32), float(amplitude)
