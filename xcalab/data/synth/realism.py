"""Realism: proxy statistics that compare a cine with real XCA, one function for any cine, real or synthetic.

    realism_statistics(seq)   grey levels, vessel index, local contrast, temporal noise and its correlation,
                              low-rank share of the background, keyframe durations -> dict
    realism_table(...)        XCA-Synth's statistics beside the target ranges of real XCA and beside a real cine

Every statistic uses 8-bit grey levels (frames * 255) inside the field of view (pixels that are not black
shutter), so synthetic and real cines go through exactly the same code: render synthetic cines, measure them
and real ones alike, and check that the ranges overlap.
Pixel sizes in the definitions (15 x 15 top-hat, 2-8 px ring) are those of a 512^2 frame and scale with
the frame size, so a 256^2 cine is measured like the same cine at 512^2.

Definitions (the target ranges were measured with these same proxies on real clinical exports: six left-coronary
cines at 7.5 fps, lossy JPEG, "AngioData", and one right-coronary cine at 30 fps, "Rubo"):

    vessel index       share of field pixels whose black top-hat (closing - image, 15 x 15) exceeds 12 grey
    local contrast     at the apex frame: mean grey of a 2-8 px ring around those pixels minus their mean grey
    temporal noise     sigma = std(g_{t+1} - g_t) / sqrt(2) over differences within 4 MAD-sigmas (robust to motion
                       and contrast changes, and not quantised on 8-bit data as the MAD itself would be)
    noise FWHM         width at half maximum of the autocorrelation of those differences (static structure cancels;
                       a high-pass at 8 px removes slow motion residue)
    low-rank share     share of the variance (after removing the temporal mean) in the top 1 / 3 / 5 singular values
    durations          start -> apex and apex -> end from the truth; rise (10 % -> peak, from the last crossing of
                       the 10 % level before the peak) and fall (peak -> 10 %) of the vessel-index curve, any cine

Each target's source says where its range comes from: "measured" on those real exports, "derived" from two
measured rows, or a publication [S..] (``docs/xca-synth-sources.md``). Default cines may miss a few rows (the
table's "NO"), for known reasons:

    rise_s, fall_s     a proxy: the 10 % level of a noisy vessel-index curve moves a few frames either way, and a
                       blush tail keeps the index above 10 % a little longer
    cnr_ring           its denominator, the ring std, includes rib and texture edges, which vary between views
    lowrank_top3/5     the simulated heart has fewer independent motions than a real one (3 periodic modes), so
                       the top singular values hold ~0.05-0.1 more of the variance, most in RCA views
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from xcalab.data.curves import black_tophat
from xcalab.data.io import Cine
from xcalab.data.samples import real_cine_path

#: Target ranges measured on real clinical exports (module docstring): name -> (low, high, source).
TARGETS: dict[str, tuple[float, float, str]] = {
    "grey_p5": (50.0, 90.0, "measured (AngioData)"),
    "grey_median": (108.0, 118.0, "measured (AngioData)"),
    "grey_p95": (135.0, 175.0, "measured (AngioData)"),
    "vessel_index_pre": (0.003, 0.03, "measured"),
    "vessel_index_peak": (0.045, 0.066, "measured"),
    "local_contrast": (21.0, 36.0, "measured"),
    "temporal_noise_sigma": (1.3, 1.8, "measured (processed exports)"),
    "noise_fwhm_px": (2.0, 3.0, "measured"),
    "cnr_temporal": (13.0, 43.0, "derived (AngioData 13-21, Rubo 43)"),
    "cnr_ring": (0.67, 1.66, "measured"),
    "lowrank_top1": (0.27, 0.46, "measured"),
    "lowrank_top3": (0.51, 0.71, "measured"),
    "lowrank_top5": (0.61, 0.82, "measured"),
    "rise_s": (1.7, 2.8, "measured (proxy, 10 % -> peak)"),
    "fall_s": (1.5, 3.5, "measured (proxy, peak -> 10 %)"),
    "start_to_apex_s": (1.7, 2.8, "measured (proxy); synth: truth"),
    "apex_to_end_s": (1.5, 3.5, "measured (proxy); synth: truth"),
}

#: Anatomy and motion targets (from a sequence's meta["derived"], synthetic only).
DERIVED_TARGETS: dict[str, tuple[float, float, str]] = {
    "lad_lcx_angle_deg": (63.0, 74.0, "[S6][S7]"),
    "lm_bifurcation_ratio": (0.6, 0.75, "Finet 0.68 [S3]"),
    "mean_tortuosity_index": (1.02, 1.12, "[S8]"),
    "peak_vessel_speed_mm_s": (22.0, 109.0, "[S38]"),
}


def _scale(n: int, px_at_512: float) -> float:
    return px_at_512 * n / 512.0


def field_of_view(grey: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels that are not black shutter (temporal median > 8 grey), shrunk by 2 % of the width."""
    fov = np.median(grey[:: max(1, len(grey) // 16)], axis=0) > 8.0
    fov = ndimage.binary_opening(fov, iterations=2)
    return ndimage.binary_erosion(fov, iterations=max(1, int(round(0.02 * grey.shape[2]))))


def vessel_index_curve(grey: np.ndarray, fov: np.ndarray, threshold: float = 12.0) -> np.ndarray:
    """[N] share of field pixels with black top-hat > ``threshold`` grey (15 x 15 at 512^2)."""
    size = max(3, int(round(_scale(grey.shape[2], 15))) | 1)
    return (black_tophat(grey, size)[:, fov] > threshold).mean(axis=1)


def _ring_contrast(frame: np.ndarray, fov: np.ndarray, threshold: float = 12.0) -> tuple[float, float]:
    """(mean ring - mean vessel, ring std) at one frame; vessels = top-hat > threshold."""
    n = frame.shape[1]
    size = max(3, int(round(_scale(n, 15))) | 1)
    vessel = (black_tophat(frame[None], size)[0] > threshold) & fov
    if vessel.sum() < 10:
        return float("nan"), float("nan")
    inner = ndimage.binary_dilation(vessel, iterations=max(1, int(round(_scale(n, 2)))))
    outer = ndimage.binary_dilation(vessel, iterations=max(2, int(round(_scale(n, 8)))))
    ring = outer & ~inner & fov
    if ring.sum() < 10:
        return float("nan"), float("nan")
    return float(frame[ring].mean() - frame[vessel].mean()), float(frame[ring].std())


def temporal_noise(grey: np.ndarray, fov: np.ndarray) -> tuple[float, float]:
    """(sigma in grey levels, correlation FWHM in pixels) from consecutive-frame differences."""
    diffs = np.diff(grey[:: 1], axis=0)[: min(len(grey) - 1, 48)]
    d = diffs[:, fov].astype(np.float64)
    # A clipped standard deviation: MAD alone is quantised on 8-bit data; the MAD only sets the clip at 4 sigma,
    # which drops motion and contrast changes.
    spread = max(1.4826 * float(np.median(np.abs(d - np.median(d)))), 0.5)
    inliers = d[np.abs(d - np.median(d)) < 4.0 * spread]
    sigma = float(inliers.std() / math.sqrt(2))
    # Autocorrelation of the differences on the field, ignoring motion / contrast outliers (> 3 sigma).
    h, w = grey.shape[1:]
    acf = np.zeros((h, w))
    norm = np.zeros((h, w))
    smooth = _scale(w, 8.0)
    for diff in diffs[:: max(1, len(diffs) // 12)]:
        diff = diff - ndimage.gaussian_filter(diff, smooth)  # drop slow motion residue; noise is 2-3 px wide
        keep = fov & (np.abs(diff) < 3 * math.sqrt(2) * max(sigma, 1e-3))
        x = np.where(keep, diff - diff[keep].mean(), 0.0)
        fx, fk = np.fft.rfft2(x), np.fft.rfft2(keep.astype(float))
        acf += np.fft.irfft2(fx * np.conj(fx), s=(h, w))
        norm += np.fft.irfft2(fk * np.conj(fk), s=(h, w))
    acf = acf / np.maximum(norm, 1.0)
    if acf[0, 0] <= 0:
        return sigma, float("nan")
    acf /= acf[0, 0]
    widths = []
    for profile in (acf[0, :16], acf[:16, 0]):
        below = np.nonzero(profile < 0.5)[0]
        if len(below) == 0:
            continue
        k = int(below[0])
        frac = (profile[k - 1] - 0.5) / max(profile[k - 1] - profile[k], 1e-12)  # linear crossing
        widths.append(2.0 * (k - 1 + frac))
    return sigma, float(np.mean(widths)) if widths else float("nan")


def lowrank_shares(grey: np.ndarray, fov: np.ndarray, ks: Iterable[int] = (1, 3, 5)) -> dict[int, float]:
    """Share of the variance (temporal mean removed) in the top-k singular values, for each k."""
    x = grey[:, fov].astype(np.float64)
    x -= x.mean(axis=0, keepdims=True)
    eig = np.clip(np.linalg.eigvalsh(x @ x.T)[::-1], 0.0, None)  # squared singular values, via the N x N Gram
    total = max(float(eig.sum()), 1e-12)
    return {k: float(eig[:k].sum() / total) for k in ks}


def _rise_fall(curve: np.ndarray, pre: float, fps: float) -> tuple[float, float, int]:
    """(10 % -> peak seconds, peak -> 10 % seconds, peak frame) of a vessel-index curve (3-frame smoothed)."""
    smooth = ndimage.uniform_filter1d(curve, 3, mode="nearest")
    peak = int(np.argmax(smooth))
    level = pre + 0.1 * (smooth[peak] - pre)
    below_before = np.nonzero(smooth[: peak + 1] < level)[0]  # the last crossing: robust to pre-contrast wobble
    rise = (peak - below_before[-1] - 1) / fps if len(below_before) else float("nan")
    below = np.nonzero(smooth[peak:] <= level)[0]
    fall = below[0] / fps if len(below) else float("nan")
    return float(rise), float(fall), peak


def realism_statistics(seq: Cine) -> dict[str, float]:
    """The proxy statistics of one cine (real or synthetic). NaN where a statistic is undefined.

    Uses the truth (keyframes) when present for the pre-contrast window, the apex frame and the durations;
    otherwise the first 10 % of the frames are taken as pre-contrast and the vessel-index peak as the apex.
    """
    grey = np.asarray(seq.frames, dtype=np.float32) * np.float32(255.0)
    fov = field_of_view(grey)
    n = len(grey)
    truth = seq.truth
    stats: dict[str, float] = {}
    sample = grey[:: max(1, n // 32)][:, fov]
    stats["grey_p5"], stats["grey_median"], stats["grey_p95"] = (float(v) for v in np.percentile(sample, [5, 50, 95]))
    vi = vessel_index_curve(grey, fov)
    if truth is not None:
        pre_frames = slice(0, max(1, truth.keyframes[0]))
    else:
        pre_frames = slice(0, max(3, n // 10))
    stats["vessel_index_pre"] = float(np.median(vi[pre_frames]))
    stats["vessel_index_peak"] = float(ndimage.uniform_filter1d(vi, 3, mode="nearest").max())
    rise, fall, peak = _rise_fall(vi, stats["vessel_index_pre"], seq.fps)
    stats["rise_s"], stats["fall_s"] = rise, fall
    apex = truth.keyframes[1] if truth is not None else peak
    contrast, ring_std = _ring_contrast(grey[apex], fov)
    stats["local_contrast"] = contrast
    sigma, fwhm = temporal_noise(grey, fov)
    stats["temporal_noise_sigma"], stats["noise_fwhm_px"] = sigma, fwhm
    stats["cnr_temporal"] = contrast / sigma if sigma > 0 else float("nan")
    stats["cnr_ring"] = contrast / ring_std if ring_std and ring_std > 0 else float("nan")
    shares = lowrank_shares(grey, fov)
    for k, v in shares.items():
        stats[f"lowrank_top{k}"] = v
    if truth is not None:
        s, a, e = truth.keyframes
        stats["start_to_apex_s"] = (a - s) / seq.fps
        stats["apex_to_end_s"] = (e - a) / seq.fps
    else:
        stats["start_to_apex_s"] = stats["apex_to_end_s"] = float("nan")
    derived = seq.meta.get("derived", {}) if isinstance(seq.meta, dict) else {}
    for key in DERIVED_TARGETS:
        if key in derived:
            stats[key] = float(derived[key])
    return stats


# --------------------------------------------------------------------------------------------------
# The table: XCA-Synth vs the targets vs a real cine
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealismRow:
    """One statistic: target range, XCA-Synth (median and range over its cines), the real cine, and a verdict."""

    name: str
    target: tuple[float, float]
    source: str
    synth_median: float
    synth_min: float
    synth_max: float
    real: float

    @property
    def inside(self) -> bool:
        """True when XCA-Synth's median lies inside the target range."""
        lo, hi = self.target
        return bool(np.isfinite(self.synth_median) and lo <= self.synth_median <= hi)


def load_real_cine(name: str = "xa_rca_cine_96f_30fps") -> Cine | None:
    """The shared real RCA cine, read in place through ``read_dicom``; None when it is not there."""
    path = real_cine_path(name)
    if path is None:
        return None
    from xcalab.data.io import read_dicom

    return read_dicom(path)


def realism_table(
    synth: Iterable[Cine] | None = None,
    real: Cine | None = None,
    n_synth: int = 4,
    image_size: int = 512,
    seed: int = 0,
    knobs=None,
) -> list[RealismRow]:
    """XCA-Synth's statistics beside the targets and beside a real cine.

    Args:
        synth: synthetic cines to measure; None renders ``n_synth`` cines (alternating left / right trees,
            15 fps) at ``image_size`` from seeds (seed, 0), (seed, 1), ... with ``knobs``.
        real: the real cine; None reads the shared RCA cine when it is present (else the column is NaN).
    """
    from xcalab.data.synth.params import Knobs
    from xcalab.data.synth.simulator import simulate_sequence

    if synth is None:
        knobs = knobs or Knobs()
        synth = [
            simulate_sequence((seed, i), image_size=image_size, fps=15.0, tree=("left", "right")[i % 2], knobs=knobs)
            for i in range(n_synth)
        ]
    rows_s = [realism_statistics(s) for s in synth]
    if real is None:
        real = load_real_cine()
    stats_r = realism_statistics(real) if real is not None else {}
    rows = []
    for name, (lo, hi, source) in {**TARGETS, **DERIVED_TARGETS}.items():
        values = np.array([r.get(name, np.nan) for r in rows_s], dtype=float)
        finite = values[np.isfinite(values)]
        med, vmin, vmax = (float(np.median(finite)), float(finite.min()), float(finite.max())) if len(finite) else (np.nan,) * 3
        rows.append(RealismRow(name, (lo, hi), source, med, vmin, vmax, float(stats_r.get(name, np.nan))))
    return rows


def format_realism_table(rows: list[RealismRow]) -> str:
    """The table as Markdown: statistic | target | XCA-Synth median [min, max] | real | inside."""
    lines = ["| statistic | target | XCA-Synth median [min, max] | real cine | synth inside |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.target[0]:g}-{r.target[1]:g} | {r.synth_median:.3g} [{r.synth_min:.3g}, {r.synth_max:.3g}] "
            f"| {r.real:.3g} | {'yes' if r.inside else 'NO'} |"
        )
    return "\n".join(lines)
