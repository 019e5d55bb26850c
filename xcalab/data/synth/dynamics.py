"""Stage 2 -- contrast dynamics: injection, a dispersed front moving along the tree, washout, blush, keyframes.

Sources (``docs/xca-synth-sources.md``): injection [S25], TIMI frame count [S27], phasic flow [S30], gamma-variate
dispersion [S31][S32], washout [S28], blush [S29]; keyframes from the iodine-mass curve (thresholds assumed).

The model, per centreline sample at path length l from the ostium and time t (seconds):

    c(l, t) = c_lumen * R(t_fill(l, t) - t_inj; mu(l)) * (1 - F(t_wash(l, t) - t_inj - T_inj; mu(l)))

    R, F      the injection's rising and falling edges: logistic steps (time constants tau_r, tau_f)
              convolved with a unit-area gamma-variate dispersion kernel of mean mu(l) [S31]
    mu(l)     dispersion grows with distance: mu_proximal at the ostium .. mu_distal at the far end [S32]
    t_fill    the time at which the blood now at l entered the ostium, on a *flow clock* that runs faster in
              diastole: tau(t) = int (1 + a cos 2 pi (phi(t) - phi_d)) dt [S30], and the front reaches
              the distal landmark of each main vessel after its TIMI fill time [S27]
    t_wash    the same for the falling edge, which travels slower (native flow only, no injection jet):
              the distal tree clears ``washout_s`` after the injection stops (derived)

The projected iodine mass m(t) is the sum of c * pi r^2 * ds over the samples inside the field of
view. (It is often written as the sum of A_vessel over pixels; that equals mu_I times this mass up to
foreshortening, and this form does not change with the image size, so a seed's keyframes are the same at
64, 256 or 512 pixels.) The keyframes follow from m(t) by ``KeyframeRule``, never by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContrastParams:
    """The numbers of one injection and its passage through the tree (times in seconds).

    c_agent_mg_ml        iodine concentration of the agent (300-370 mgI/mL; 350 [S65])
    c_lumen_mg_ml        in the lumen: c_agent * min(1, Q_inj / Q_cor), 150-350 (derived from [S25][S30]);
                         0: nothing reaches the artery (a run without contrast, scenarios.py)
    injection_start_s    pre-contrast time (catheter only): U(0.3, 2.5) (derived from real cines)
    injection_s          T_inj: 2-4 s (Dodge: 3.6 LCA, 3.0 RCA [S25])
    rise_s, fall_s       logistic time constants of the injection edges, 0.1-0.3 s (derived)
    fill_times_s         (territory, seconds to its distal landmark): LAD 1.2, LCx 0.75, RCA 0.7 +- 0.2 [S27]
    washout_s            distal clearance after the injection stops, 1-2.5 s (measured apex -> end: 1.5-3.5 s)
    dispersion_proximal_s, dispersion_distal_s   mean of the gamma kernel at the ostium / the far end (0.1-0.5) [S31]
    dispersion_shape     gamma shape alpha of the kernel
    phasic_amplitude     a of v(t) = v (1 + a cos 2 pi (phi - phi_d)), 0.3-0.6 (assumption; diastolic flow [S30])
    diastole_phase       phi_d, the cardiac phase of fastest flow (mid-diastole)
    blush_fraction       peak blush Delta-A / a proximal vessel's Delta-A: 5-15 % [S29] (assumption)
    blush_peak_s, blush_mean_s   myocardial gamma variate: peak 2-4 s, mean transit 3-6 s [S29]
    tail_s               run time after the expected end (blush / tail, 0-3 cardiac cycles)
    time_scale           factor applied to every duration above to fit the run in its frame budget (1 = none)
    """

    c_agent_mg_ml: float
    c_lumen_mg_ml: float
    injection_start_s: float
    injection_s: float
    rise_s: float
    fall_s: float
    fill_times_s: tuple[tuple[str, float], ...]
    washout_s: float
    dispersion_proximal_s: float
    dispersion_distal_s: float
    dispersion_shape: float
    phasic_amplitude: float
    diastole_phase: float
    blush_fraction: float
    blush_peak_s: float
    blush_mean_s: float
    tail_s: float
    time_scale: float = 1.0

    def fill_time(self, territory: str) -> float:
        return dict(self.fill_times_s)[territory]

    def natural_duration(self) -> float:
        """Seconds a run needs to show pre-contrast, filling, plateau, washout and the tail."""
        spread = 3.0 * self.dispersion_distal_s + 4.0 * self.fall_s
        return self.injection_start_s + self.injection_s + self.washout_s + spread + self.tail_s

    def scaled(self, factor: float) -> ContrastParams:
        """Every duration multiplied by ``factor`` (to fit a run into fewer frames); concentrations kept."""
        f = float(factor)
        return dataclasses.replace(
            self,
            injection_start_s=self.injection_start_s * f,
            injection_s=self.injection_s * f,
            rise_s=self.rise_s * f,
            fall_s=self.fall_s * f,
            fill_times_s=tuple((k, v * f) for k, v in self.fill_times_s),
            washout_s=self.washout_s * f,
            dispersion_proximal_s=self.dispersion_proximal_s * f,
            dispersion_distal_s=self.dispersion_distal_s * f,
            blush_peak_s=self.blush_peak_s * f,
            blush_mean_s=self.blush_mean_s * f,
            tail_s=self.tail_s * f,
            time_scale=self.time_scale * f,
        )


def sample_contrast(rng: np.random.Generator, tree: str, vessel_contrast: float = 1.0, onset_sharpness: float = 1.0,
                    blush: float = 1.0) -> ContrastParams:
    """Draw one injection. Knobs: ``vessel_contrast`` scales c_lumen, ``onset_sharpness`` divides the rise
    time and the dispersion, ``blush`` scales the blush amplitude."""
    u = rng.uniform
    c_agent = float(u(300, 370))
    # LCA: injected 2.1 mL/s into ~2/3-3/4 of 3.8-4.2 mL/s -> 0.7-0.85 c_agent; RCA: injection exceeds flow -> c_agent.
    share = float(u(0.7, 0.85)) if tree == "left" else float(u(0.9, 1.0))
    c_lumen = float(np.clip(c_agent * share, 150, 350)) * vessel_contrast
    t_inj = float(np.clip(rng.normal(3.6 if tree == "left" else 3.0, 0.4), 2.0, 4.0))  # [S25]
    fills = (("LAD", float(np.clip(rng.normal(1.2, 0.2), 0.8, 1.6))),
             ("LCx", float(np.clip(rng.normal(0.75, 0.25), 0.4, 1.2))),
             ("RCA", float(np.clip(rng.normal(0.7, 0.2), 0.4, 1.1))))  # [S27]
    sharp = max(onset_sharpness, 1e-3)
    peak = float(u(2.0, 4.0))
    return ContrastParams(
        c_agent_mg_ml=c_agent,
        c_lumen_mg_ml=c_lumen,
        injection_start_s=float(u(0.3, 2.5)),
        injection_s=t_inj,
        rise_s=float(u(0.1, 0.3)) / sharp,
        fall_s=float(u(0.1, 0.3)),
        fill_times_s=fills,
        washout_s=float(u(1.0, 2.5)),
        dispersion_proximal_s=float(u(0.05, 0.1)) / sharp,
        dispersion_distal_s=float(u(0.2, 0.5)) / sharp,
        dispersion_shape=float(u(2.0, 4.0)),
        phasic_amplitude=float(u(0.3, 0.6)),
        diastole_phase=float(u(0.6, 0.8)),
        blush_fraction=float(u(0.05, 0.15)) * blush,
        blush_peak_s=peak,
        blush_mean_s=peak + float(u(1.0, 2.0)),
        tail_s=float(u(0.3, 2.0)),
    )


# --------------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------------

_DT = 0.005  # s, grid of the flow clock and the edge tables


def _gamma_pdf(t: np.ndarray, mean: float, shape: float) -> np.ndarray:
    """Unit-area gamma-variate density [S31] of the given mean and shape alpha (shape * scale = mean)."""
    scale = mean / shape
    x = np.clip(t / scale, 0.0, None)
    log_pdf = (shape - 1.0) * np.log(np.where(x > 0, x, 1.0)) - x
    pdf = np.where(t > 0, np.exp(log_pdf - log_pdf.max()), 0.0)
    total = pdf.sum() * (t[1] - t[0])
    return pdf / total if total > 0 else pdf


def edge_table(tau: float, means: np.ndarray, shape: float) -> tuple[np.ndarray, np.ndarray]:
    """CDFs of (logistic edge + gamma dispersion), one row per dispersion mean.

    Returns (u [M] seconds relative to the edge's centre, table [K, M] in [0, 1]).
    """
    tau = max(tau, 1e-3)
    span = float(8 * tau + 8 * means.max() + 0.5)
    u = np.arange(-8 * tau - 0.5, span, _DT)
    step = 1.0 / (1.0 + np.exp(-np.clip(u / tau, -60, 60)))
    kernel_t = np.arange(0.0, float(8 * means.max()) + 10 * _DT, _DT)
    rows = []
    for m in means:
        if m <= 1e-6:
            rows.append(step)
            continue
        kernel = _gamma_pdf(kernel_t, float(m), shape) * _DT
        rows.append(np.convolve(step, kernel)[: len(u)] + (1.0 - kernel.sum()) * step)
    return u, np.clip(np.array(rows), 0.0, 1.0)


def _lookup(u_grid: np.ndarray, table: np.ndarray, level: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Bilinear lookup of table[level, u]: level [P] fractional row per sample, u [N, P] seconds."""
    k = table.shape[0]
    fu = np.clip((u - u_grid[0]) / _DT, 0.0, len(u_grid) - 1.001)
    i0 = fu.astype(np.int64)
    wu = fu - i0
    fl = np.clip(level, 0.0, k - 1.001)
    j0 = fl.astype(np.int64)
    wl = fl - j0
    a = table[j0[None, :], i0] * (1 - wu) + table[j0[None, :], i0 + 1] * wu
    b = table[j0[None, :] + 1, i0] * (1 - wu) + table[j0[None, :] + 1, i0 + 1] * wu
    return a * (1 - wl) + b * wl


@dataclass
class Transport:
    """The contrast passage sampled at the frame times.

    times           [N] s
    concentration   [N, P] mgI/mL at each centreline sample
    iodine_mass_mg  [N] in-view epicardial iodine mass (the keyframe curve)
    injection       [N] c_in(t) / c_lumen at the ostium (0..1)
    blush           [N] myocardial blush time course, peak 1
    arrival_s       [P] fill-front delay from the ostium (flow-clock seconds)
    """

    times: np.ndarray
    concentration: np.ndarray
    iodine_mass_mg: np.ndarray
    injection: np.ndarray
    blush: np.ndarray
    arrival_s: np.ndarray


def arrival_times(tree, contrast: ContrastParams) -> np.ndarray:
    """Fill-front delay [P] (flow-clock seconds) of every centreline sample, branch after branch.

    Each main vessel's front reaches 90 % of its path length after that territory's TIMI fill time [S27];
    side branches inherit the speed of their territory and the delay at their origin.
    """
    speed = {}
    for b in tree.branches:
        if b.spec.name in ("LAD", "LCx", "RCA"):
            speed[b.spec.name] = 0.9 * float(b.path[-1]) / contrast.fill_time(b.spec.name)
    out, per_branch = [], {}
    for b in tree.branches:
        v = speed[b.spec.territory]
        if b.parent_index < 0:
            t = (b.path - b.path[0]) / v
        else:
            parent = tree.branches[b.parent_index]
            origin_path = float(b.path[0] - b.arc[0])
            t0 = float(np.interp(origin_path, parent.path, per_branch[parent.index]))
            t = t0 + (b.path - origin_path) / v
        per_branch[b.index] = t
        out.append(t)
    return np.concatenate(out)


def flow_clock(phase_fn, contrast: ContrastParams, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """(t grid, tau(t)): the flow clock that runs faster in diastole [S30]. phase_fn(t) -> phi in [0, 1)."""
    t = np.arange(-2.0, t_end + 2.0, _DT)
    rate = 1.0 + contrast.phasic_amplitude * np.cos(2 * np.pi * (phase_fn(t) - contrast.diastole_phase))
    tau = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * _DT)]) + t[0]
    return t, tau


def simulate_transport(tree, contrast: ContrastParams, times: np.ndarray, phase_fn, weights: np.ndarray) -> Transport:
    """Concentration of every centreline sample at every frame time, and the curves derived from it.

    Args:
        tree: the ``anatomy.Tree``.
        contrast: the injection.
        times: [N] frame times, s.
        phase_fn: cardiac phase phi(t) (motion.cardiac_phase bound to the run's motion parameters).
        weights: [P] pi r^2 ds (mm^3) of each sample inside the field of view, 0 outside.
    """
    arrival = arrival_times(tree, contrast)
    t_max = float(arrival.max())
    wash_factor = max(contrast.washout_s / max(t_max, 1e-6), 1.0)  # the falling edge travels slower
    t_grid, tau_grid = flow_clock(phase_fn, contrast, float(times[-1]) + 2.0)
    tau_now = np.interp(times, t_grid, tau_grid)[:, None]  # [N, 1]

    def entered(delay: np.ndarray) -> np.ndarray:  # real time the blood now at l passed the ostium
        return np.interp(tau_now - delay[None, :], tau_grid, t_grid)

    # Dispersion mean per sample, as a fractional row of the edge tables.
    levels = np.linspace(contrast.dispersion_proximal_s, contrast.dispersion_distal_s, 12)
    frac = arrival / max(t_max, 1e-6) * (len(levels) - 1)
    u_r, rise = edge_table(contrast.rise_s, levels, contrast.dispersion_shape)
    u_f, fall = edge_table(contrast.fall_s, levels, contrast.dispersion_shape)
    t0, t1 = contrast.injection_start_s, contrast.injection_start_s + contrast.injection_s
    r = _lookup(u_r, rise, frac, entered(arrival) - t0)
    f = _lookup(u_f, fall, frac, entered(arrival * wash_factor) - t1)
    conc = contrast.c_lumen_mg_ml * r * (1.0 - f)
    mass = conc @ weights * 1e-3  # mgI/mL = 1e-3 mg/mm^3

    # Injection at the ostium and the myocardial blush [S29]: gamma variate of peak p and mean m, after the
    # front has crossed the tree.
    def c_in(t: np.ndarray) -> np.ndarray:
        a = 1.0 / (1.0 + np.exp(-np.clip((t - t0) / max(contrast.rise_s, 1e-3), -60, 60)))
        b = 1.0 / (1.0 + np.exp(-np.clip((t - t1) / max(contrast.fall_s, 1e-3), -60, 60)))
        return a * (1.0 - b)

    theta = max(contrast.blush_mean_s - contrast.blush_peak_s, 1e-3)  # mode = (k-1) theta, mean = k theta
    kernel = _gamma_pdf(np.arange(0.0, 6 * contrast.blush_mean_s, _DT), contrast.blush_mean_s, contrast.blush_mean_s / theta)
    grid = np.arange(-2.0, float(times[-1]) + 2.0, _DT)
    blush = np.convolve(c_in(grid - t_max), kernel * _DT)[: len(grid)]
    blush = np.interp(times, grid, blush / max(blush.max(), 1e-12))
    injection = c_in(times)
    if contrast.c_lumen_mg_ml <= 0:  # nothing was injected into the artery: no ostium curve, no blush either
        injection, blush = np.zeros_like(injection), np.zeros_like(blush)
    return Transport(times, conc.astype(np.float32), mass, injection, blush, arrival)


# --------------------------------------------------------------------------------------------------
# Keyframes and phases from the iodine-mass curve
# --------------------------------------------------------------------------------------------------

PHASES = ("pre-contrast", "filling", "apex plateau", "washout", "after")


@dataclass(frozen=True)
class KeyframeRule:
    """How start / apex / end are read off the iodine-mass curve m (thresholds are assumptions).

    start    first frame with m >= start_fraction * max m                    (0.03)
    apex     apex == "first": first frame with m >= (1 - apex_tolerance) max m (0.01)
             apex == "centre": the centre of the run of such frames around the maximum
    end      first frame after the apex with m <= end_fraction * max m        (0.10)
    plateau  the phase label "apex plateau" covers the frames from the apex on while m >= plateau_fraction max m
    """

    start_fraction: float = 0.03
    apex: str = "first"
    apex_tolerance: float = 0.01
    end_fraction: float = 0.10
    plateau_fraction: float = 0.95

    def __post_init__(self) -> None:
        if self.apex not in ("first", "centre"):
            raise ValueError(f"KeyframeRule.apex must be 'first' or 'centre', got {self.apex!r}")
        if not 0 < self.start_fraction < 1 or not 0 < self.end_fraction < 1:
            raise ValueError("KeyframeRule fractions must lie in (0, 1)")


def keyframes_from_curve(mass: np.ndarray, rule: KeyframeRule | None = None) -> tuple[tuple[int, int, int], bool]:
    """(start, apex, end) frame indices from the iodine-mass curve m [N], and whether ``end`` was censored
    (m never fell to the end threshold inside the run, so end = N - 1)."""
    rule = rule or KeyframeRule()
    m = np.asarray(mass, dtype=np.float64)
    if m.ndim != 1 or len(m) < 3 or not np.isfinite(m).all() or m.max() <= 0:
        raise ValueError("the iodine-mass curve must be a finite 1-D array of >= 3 frames with a positive maximum")
    peak = m.max()
    start = int(np.argmax(m >= rule.start_fraction * peak))
    near = m >= (1.0 - rule.apex_tolerance) * peak
    apex = int(np.argmax(near))
    if rule.apex == "centre":
        run_end = apex
        while run_end + 1 < len(m) and near[run_end + 1]:
            run_end += 1
        apex = (apex + run_end) // 2
    after = np.nonzero(m[apex + 1 :] <= rule.end_fraction * peak)[0]
    censored = len(after) == 0
    end = len(m) - 1 if censored else int(apex + 1 + after[0])
    return (start, max(apex, start), end), censored


def phases_from_curve(mass: np.ndarray, keyframes: tuple[int, int, int], rule: KeyframeRule | None = None) -> np.ndarray:
    """Phase per frame, int8 [N]: 0 pre-contrast (< start), 1 filling [start, apex), 2 apex plateau (apex
    while m >= plateau_fraction max), 3 washout (up to and including end), 4 after (> end)."""
    rule = rule or KeyframeRule()
    m = np.asarray(mass, dtype=np.float64)
    start, apex, end = keyframes
    phases = np.full(len(m), 3, dtype=np.int8)
    phases[:start] = 0
    phases[start:apex] = 1
    i = apex
    while i <= end and m[i] >= rule.plateau_fraction * m.max():
        phases[i] = 2
        i += 1
    phases[apex] = 2
    phases[end + 1 :] = 4
    return phases


def jitter_keyframes(keyframes: tuple[int, int, int], sd_frames: float, n_frames: int,
                     rng: np.random.Generator) -> tuple[int, int, int]:
    """Annotator jitter (repeated TIMI counts differ by ~5 frames at 30 fps [S27]): add round(N(0, sd)) frames
    to each keyframe, keeping 0 <= s <= a <= e < N."""
    if sd_frames <= 0:
        return keyframes
    moved = [int(k + round(float(rng.normal(0.0, sd_frames)))) for k in keyframes]
    s = min(max(moved[0], 0), n_frames - 1)
    a = min(max(moved[1], s), n_frames - 1)
    e = min(max(moved[2], a), n_frames - 1)
    return s, a, e
