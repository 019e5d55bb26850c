"""Stage 3 -- motion: the beating heart, breathing, and table pans.

Sources (``docs/xca-synth-sources.md``): cardiac [S38][S39][S40][S7][S8], respiratory [S41][S42][S44][S45];
the pans are an assumption.

    phi(t)   cardiac phase, frac((t - t_R) / RR) with beat-to-beat RR jitter of 2-5 %      (assumption)
    s(phi)   contraction profile: rises over systole [0, 0.35], falls fast over [0.35, 0.55], flat in
             diastasis [0.55, 0.85], a small atrial bump over [0.85, 1]; smooth steps, so the heart rests
             around end-systole and in diastasis (the 66-333 ms rest windows of [S39][S40])
    u(X, t)  = -k_r s(phi) P_perp (X - c_h) - k_l s(phi - lag_l) ((X - c_h) . e_l - a_l) e_l
               + theta s(phi - lag_t) e_l x (X - c_h)
             radial squeeze, base-to-apex shortening about the apex (which barely moves, while the AV
             plane descends) and a twist about the long axis, applied to the 3-D centrelines; shortening
             and twist lag the squeeze a little, so the three do not move as one (a 3-4-harmonic
             Fourier series in phi would do as well)
    r(t)     respiration: a breath-hold drift of 0-3 mm over the run (80 %), or free breathing
             z(t) = -A cos^4(pi t / T - phi_0) with A = 2-8 mm, T = 3-5 s (20 %) [S41][S44][S45];
             the diaphragm travels 1/0.6 as far [S42]
    p(t)     optional rigid table pan: a smooth step of 10-60 mm after the apex in ~10 % of runs (assumption)

Amplitudes are scaled by the ``motion`` knob (0 = a still heart and no breathing).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotionParams:
    """The numbers of one run's motion (mm, s, degrees).

    heart_rate_bpm     60-100 bpm [S39]
    rr_s               beat-by-beat RR intervals from ``first_r_s`` on (covering the run)
    beat_strength      beat-by-beat contraction amplitude, ~N(1, 0.1) (no two beats alike; assumption)
    first_r_s          time of the first R wave (<= 0)
    radial, longitudinal, twist_deg   k_r 0.08-0.15, k_l 0.05-0.10, theta 3-8 deg (assumptions)
    longitudinal_lag, twist_lag       phase lags of shortening and twist behind the squeeze (assumption)
    breathing          "hold" or "free"
    respiration_mm     heart shift: total drift (hold) or peak-to-peak amplitude (free)
    respiration_period_s, respiration_phase   free breathing only
    respiration_direction  unit 3-vector (mostly caudal, a little anterior [S41])
    diaphragm_ratio    diaphragm travel / heart travel (1 / 0.6 [S42])
    pan_mm             (d_col, d_row) table pan at the isocentre, mm (0, 0 = none)
    pan_start_s, pan_duration_s       the smooth-step pan's timing
    """

    heart_rate_bpm: float
    rr_s: tuple[float, ...]
    beat_strength: tuple[float, ...]
    first_r_s: float
    radial: float
    longitudinal: float
    twist_deg: float
    longitudinal_lag: float
    twist_lag: float
    breathing: str
    respiration_mm: float
    respiration_period_s: float
    respiration_phase: float
    respiration_direction: tuple[float, float, float]
    diaphragm_ratio: float
    pan_mm: tuple[float, float]
    pan_start_s: float
    pan_duration_s: float


def sample_motion(rng: np.random.Generator, duration_s: float, motion: float = 1.0, pan_probability: float = 0.1,
                  apex_guess_s: float = 3.0) -> MotionParams:
    """Draw one run's motion. ``motion`` scales every amplitude; ``pan_probability`` is the share of panned runs.

    The cardiac amplitudes drawn here are assumptions; ``calibrate_speed`` then rescales them so
    that the vessels' peak speed matches a draw from the sourced 22-109 mm/s [S38].
    """
    u = rng.uniform
    hr = float(u(60, 100))
    rr0 = 60.0 / hr
    n_beats = int(math.ceil((duration_s + 2 * rr0) / rr0)) + 2
    rr = tuple(float(rr0 * (1.0 + rng.normal(0.0, u(0.02, 0.05)))) for _ in range(n_beats))
    free = u() < 0.2
    direction = np.array([0.0, -0.25, -1.0]) + rng.normal(0.0, 0.1, 3)  # caudal, a little anterior on inspiration
    direction /= np.linalg.norm(direction)
    panned = u() < pan_probability
    angle = u(0, 2 * np.pi)
    size = float(u(10, 60)) * motion if panned else 0.0
    return MotionParams(
        heart_rate_bpm=hr,
        rr_s=rr,
        beat_strength=tuple(float(v) for v in np.clip(rng.normal(1.0, 0.1, n_beats), 0.7, 1.3)),
        first_r_s=-float(u(0, rr0)),
        radial=float(u(0.08, 0.15)) * motion,
        longitudinal=float(u(0.05, 0.10)) * motion,
        twist_deg=float(u(3, 8)) * motion,
        longitudinal_lag=float(u(0.02, 0.08)),
        twist_lag=float(u(0.04, 0.12)),
        breathing="free" if free else "hold",
        respiration_mm=(float(u(2, 8)) if free else float(u(0, 3))) * motion,
        respiration_period_s=float(u(3, 5)),
        respiration_phase=float(u(0, 1)),
        respiration_direction=tuple(float(v) for v in direction),
        diaphragm_ratio=1.0 / 0.6,
        pan_mm=(float(size * math.cos(angle)), float(size * math.sin(angle))),
        pan_start_s=float(apex_guess_s + u(0.0, 1.0)),
        pan_duration_s=float(u(0.5, 1.0)),
    )


# --------------------------------------------------------------------------------------------------
# Cardiac
# --------------------------------------------------------------------------------------------------


def r_wave_times(m: MotionParams) -> np.ndarray:
    """Times of the R waves, s [B + 1]."""
    return m.first_r_s + np.concatenate([[0.0], np.cumsum(m.rr_s)])


def beat_index(m: MotionParams, t: np.ndarray) -> np.ndarray:
    """Index of the heartbeat (RR interval) each time t [...] falls in (clipped to the listed beats)."""
    r = r_wave_times(m)
    return np.clip(np.searchsorted(r, np.asarray(t, dtype=float), side="right") - 1, 0, len(r) - 2)


def cardiac_phase(m: MotionParams, t: np.ndarray) -> np.ndarray:
    """phi(t) in [0, 1): fraction of the current RR interval elapsed. t [...] s -> [...]."""
    t = np.asarray(t, dtype=float)
    r = r_wave_times(m)
    k = beat_index(m, t)
    phase = (t - r[k]) / (r[k + 1] - r[k])
    # Before the first R wave or after the last one, continue with the nearest beat's length.
    return np.mod(phase, 1.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def contraction(phi: np.ndarray) -> np.ndarray:
    """s(phi) in [0, 1], the contraction profile (module docstring). phi [...] -> [...]."""
    phi = np.asarray(phi, dtype=float)
    systole = _smoothstep(phi / 0.35)
    relax = 1.0 - _smoothstep((phi - 0.35) / 0.20)
    atrial = 0.15 * np.sin(np.pi * np.clip((phi - 0.85) / 0.15, 0.0, 1.0)) ** 2
    return np.where(phi < 0.35, systole, np.where(phi < 0.55, relax, np.where(phi < 0.85, 0.0, atrial)))


def contraction_profiles(m: MotionParams, t: np.ndarray) -> np.ndarray:
    """[N, 3] contraction of the squeeze, the shortening and the twist at times t [N] (s), each beat scaled
    by its ``beat_strength``."""
    t = np.asarray(t, dtype=float)
    phi = cardiac_phase(m, t)
    strength = np.asarray(m.beat_strength)[beat_index(m, t)]
    return strength[:, None] * np.stack([contraction(phi), contraction(np.mod(phi - m.longitudinal_lag, 1.0)),
                                         contraction(np.mod(phi - m.twist_lag, 1.0))], axis=-1)


def cardiac_displacement(points: np.ndarray, profiles: np.ndarray, m: MotionParams, heart) -> np.ndarray:
    """u(X, t) of the module docstring. points [P, 3] mm (reference pose), profiles [N, 3] (``contraction_profiles``)
    -> displacements [N, P, 3] mm."""
    rel = points - heart.centre
    axial = rel @ heart.e_l
    perp = rel - axial[:, None] * heart.e_l
    fields = np.stack([
        -m.radial * perp,
        -m.longitudinal * (axial - heart.a_long)[:, None] * heart.e_l,
        math.radians(m.twist_deg) * np.cross(heart.e_l, rel),
    ])  # [3, P, 3]
    return np.einsum("nk,kpd->npd", np.asarray(profiles, dtype=np.float64), fields)


# --------------------------------------------------------------------------------------------------
# Respiration and table pan
# --------------------------------------------------------------------------------------------------


def respiration(m: MotionParams, t: np.ndarray) -> np.ndarray:
    """Heart translation [N, 3] mm at times t [N]: breath-hold drift or free breathing (cos^4 [S45])."""
    t = np.asarray(t, dtype=float)
    direction = np.asarray(m.respiration_direction)
    if m.breathing == "free":
        shift = m.respiration_mm * np.cos(np.pi * t / m.respiration_period_s - np.pi * m.respiration_phase) ** 4
        shift = shift - shift[0] if len(shift) else shift
    else:
        span = max(float(t[-1] - t[0]), 1e-6) if len(t) else 1.0
        shift = m.respiration_mm * (t - (t[0] if len(t) else 0.0)) / span
    return shift[:, None] * direction[None, :]


def table_pan(m: MotionParams, t: np.ndarray) -> np.ndarray:
    """Rigid pan [N, 2] (d_col, d_row) in mm at the isocentre: a smooth step (zero velocity at both ends)."""
    t = np.asarray(t, dtype=float)
    x = (t - m.pan_start_s) / max(m.pan_duration_s, 1e-6)
    return _smoothstep(x)[:, None] * np.asarray(m.pan_mm)[None, :]


def rwave_frames(m: MotionParams, n_frames: int, fps: float) -> list[int]:
    """Frame indices nearest to each R wave inside the run (what DICOM's RWavePointer lists)."""
    frames = np.rint(r_wave_times(m) * fps).astype(int)
    return sorted({int(f) for f in frames if 0 <= f < n_frames})


def peak_speed(points: np.ndarray, m: MotionParams, heart, duration_s: float, dt: float = 0.002) -> float:
    """Largest 3-D speed (mm/s) of any of ``points`` [P, 3] from the heartbeat and breathing over a run."""
    t = np.arange(0.0, max(duration_s, 2 * dt), dt)
    pos = cardiac_displacement(points, contraction_profiles(m, t), m, heart)
    pos = pos + respiration(m, t)[:, None, :]
    return float((np.linalg.norm(np.diff(pos, axis=0), axis=2) / dt).max())


def calibrate_speed(m: MotionParams, points: np.ndarray, heart, duration_s: float, target_mm_s: float) -> MotionParams:
    """Rescale the cardiac amplitudes (squeeze, shortening, twist) so that the peak speed is ``target_mm_s``.

    Real coronary arteries peak at 22-109 mm/s [S38]; the caller draws ``target_mm_s`` from that range.
    """
    cardiac_only = dataclasses.replace(m, respiration_mm=0.0)
    speed = peak_speed(points, cardiac_only, heart, duration_s)
    if speed <= 0 or target_mm_s <= 0:
        return m
    f = target_mm_s / speed
    return dataclasses.replace(m, radial=m.radial * f, longitudinal=m.longitudinal * f, twist_deg=m.twist_deg * f)
