"""Stage 4 -- X-ray imaging: log-domain image formation, detector physics, and the clinical post-processing.

Source tags [S1], [S3], ...: ``docs/xca-synth-sources.md``; "derived" numbers come from X-ray physics tables (Elam
attenuation, tube spectra), "measured" ones from real clinical XA exports.

Image formation in the log domain (Beer-Lambert [S16]), per frame:

    A(x)   = A_body(x) + A_cath(x) + A_vessel(x) + A_blush(x)                    (attenuation, no unit)
    A_vessel = mu_I * sum over vessels of c * L                                   (L: chord through the lumen)
    lambda = q G(x) [ h_f * (M(x) e^-(A-A_ref)) + SPR K_s * (M(x) e^-(A-A_ref)) ] (expected quanta per pixel;
                                                          A_ref: automatic exposure control on the field)
    N      = Poisson(lambda) + Normal(0, sigma_e^2)                               (Poisson-Gaussian [S20];
                                                          normal approximation where lambda >= 50)
    y      = LUT( post( -ln((h_d * N) / q) ) )  ->  8 (to 12) bits

    q = DQE * (photons / mm^2 / uGy) * dose * pixel^2 ; G: smooth gain/vignetting ; M: collimator shutter
    h_f: focal-spot blur ; h_d: detector PSF ; K_s: wide scatter kernel ; SPR: scatter-to-primary ratio

The post-processing copies what real exports show (measured): dynamic-range compression
(a fraction of the low-pass log image is removed), spatial noise reduction and an unsharp mask, a
recursive temporal filter y_t = alpha x_t + (1 - alpha) y_{t-1}, the window/level + gamma LUT, the shutter,
quantisation, and a JPEG round trip for 8-bit output.

Lengths of things in the patient are mm at the isocentre; detector-side lengths (PSF, scatter kernel,
post-processing kernels) are mm at the detector. Both are turned into pixels here, so a cine rendered at
256^2 looks like the same cine at 512^2, only with larger pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagingParams:
    """Physics, background anatomy and display of one run (see the module docstring for the symbols).

    Physics:
        kvp                         tube voltage, 80 (70-100) kVp (measured on real headers)
        mu_iodine_cm2_g             effective iodine mass attenuation: 11.6 / 8.9 / 7.1 at 70 / 80 / 90 kVp (derived)
        photons_per_mm2_ugy         29,300 / 31,500 / 32,300 at 70 / 80 / 90 kVp behind 20 cm water (derived)
        dose_ngy                    detector air kerma per frame: U(75, 150) (typical 150, 50-300; tuned to the measured export noise) nGy
        dqe                         0.6 (0.55-0.7) [S19]
        read_noise_quanta           sigma_e, 1-3 quanta (assumption)
        spr, scatter_sigma_mm       scatter-to-primary 0.3-0.7 (assumed 0.3-1 [S63]); kernel sigma 30-50 px of 0.3 mm
        psf_fwhm_mm                 detector PSF, ~1.5 px of 0.3 mm (assumption)
        focal_blur_mm               geometric unsharpness f_spot (M - 1) with a 0.5-1.0 mm spot
        gain_amplitude              +-5-15 % smooth gain / vignetting (assumption)
        shutter, shutter_size       "none" / "rect" / "round" collimator; fraction of the half-field kept
    Background (Delta-A of the anatomy, derived):
        heart_mu_per_mm             heart tissue minus lung: 0.0224 - 0.0055 mm^-1 (derived)
        diaphragm_delta             Delta-A of the liver dome vs lung, 1.5-2
        diaphragm_offset_mm, diaphragm_curvature   dome position below the heart centre and its curvature
        spine_delta, spine_offset_mm   Delta-A ~0.6; spine position to the patient's right of the heart centre
        rib_delta, n_ribs, rib_phase_mm   Delta-A 0.2-0.4 (attenuation tables: 0.4-0.6 for bone vs lung; real exports
                                    show them fainter, tuned on the real cine); 3-5 ribs; their vertical offset
        texture                     amplitude of static tissue / lung texture, log units
        ecg_leads                   number of thin static wires (0-2): ECG leads, high-contrast and static
        background_seed             seed of the textures, the gain field and the wires
    Post-processing and display (matched to measured exports):
        postprocess                 False gives "raw" exports (no noise reduction, recursion, unsharp mask, JPEG)
        drc_strength, drc_sigma_mm  share of the low-pass log image removed, and its scale
        denoise_sigma_mm, unsharp_amount, unsharp_sigma_mm, recursive_alpha, jpeg_quality
        window_log, median_grey, gamma   LUT: log units over the full grey range, target median grey, gamma
        bits                        8 (option up to 12)
        noise_seed                  seed of the quantum and read noise
    """

    kvp: float
    mu_iodine_cm2_g: float
    photons_per_mm2_ugy: float
    dose_ngy: float
    dqe: float
    read_noise_quanta: float
    spr: float
    scatter_sigma_mm: float
    psf_fwhm_mm: float
    focal_blur_mm: float
    gain_amplitude: float
    shutter: str
    shutter_size: float
    heart_mu_per_mm: float
    diaphragm_delta: float
    diaphragm_offset_mm: float
    diaphragm_curvature: float
    spine_delta: float
    spine_offset_mm: float
    rib_delta: float
    n_ribs: int
    rib_phase_mm: float
    texture: float
    ecg_leads: int
    background_seed: int
    postprocess: bool
    drc_strength: float
    drc_sigma_mm: float
    denoise_sigma_mm: float
    unsharp_amount: float
    unsharp_sigma_mm: float
    recursive_alpha: float
    jpeg_quality: int
    window_log: float
    median_grey: float
    gamma: float
    bits: int
    noise_seed: int


def _by_kvp(kvp: float, table: tuple[float, float, float]) -> float:
    """Interpolate a value given at 70 / 80 / 90 kVp (tables derived from Elam attenuation data and a tube spectrum)."""
    return float(np.interp(kvp, (70.0, 80.0, 90.0), table))


def sample_imaging(rng: np.random.Generator, dose: float = 1.0, postprocess: bool = True, bits: int = 8) -> ImagingParams:
    """Draw one run's physics, background and display. ``dose`` scales the detector dose (noise ~ 1/sqrt(dose))."""
    if not 8 <= int(bits) <= 16:
        raise ValueError(f"bits must lie in 8..16, got {bits!r}")
    u = rng.uniform
    kvp = float(np.clip(rng.normal(80.0, 5.0), 70.0, 100.0))
    shutter = str(rng.choice(["none", "rect", "round"], p=[0.4, 0.3, 0.3]))
    return ImagingParams(
        kvp=kvp,
        mu_iodine_cm2_g=_by_kvp(kvp, (11.6, 8.9, 7.1)),
        photons_per_mm2_ugy=_by_kvp(kvp, (29300.0, 31500.0, 32300.0)),
        dose_ngy=float(u(75, 150)) * dose,
        dqe=float(u(0.55, 0.7)),
        read_noise_quanta=float(u(1, 3)),
        spr=float(u(0.3, 0.7)),
        scatter_sigma_mm=float(u(9, 15)),
        psf_fwhm_mm=float(u(0.35, 0.6)),
        focal_blur_mm=float(u(0.25, 0.5)),
        gain_amplitude=float(u(0.05, 0.15)),
        shutter=shutter,
        shutter_size=float(u(0.8, 0.95)),
        heart_mu_per_mm=0.0224 - 0.0055,
        diaphragm_delta=float(u(1.5, 2.0)),
        diaphragm_offset_mm=float(u(25, 55)),
        diaphragm_curvature=float(u(0.002, 0.006)),
        spine_delta=float(u(0.5, 0.7)),
        spine_offset_mm=float(u(20, 50)),
        rib_delta=float(u(0.2, 0.4)),
        n_ribs=int(rng.integers(3, 6)),
        rib_phase_mm=float(u(0, 30)),
        texture=float(u(0.05, 0.09)),
        ecg_leads=int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1])),
        background_seed=int(rng.integers(2**31 - 1)),
        postprocess=bool(postprocess),
        drc_strength=float(u(0.55, 0.75)),
        drc_sigma_mm=float(u(10, 20)),
        denoise_sigma_mm=float(u(0.2, 0.35)),
        unsharp_amount=float(u(0.1, 0.3)),
        unsharp_sigma_mm=float(u(0.8, 1.5)),
        recursive_alpha=float(u(0.5, 0.8)),
        jpeg_quality=int(rng.integers(85, 96)) if int(bits) == 8 else 0,
        window_log=float(u(2.4, 3.0)),
        median_grey=float(u(100, 125)),
        gamma=float(u(0.9, 1.1)),
        bits=int(bits),
        noise_seed=int(rng.integers(2**31 - 1)),
    )


# --------------------------------------------------------------------------------------------------
# Tubes: vessels, catheter and wires drawn as chords through circular lumens
# --------------------------------------------------------------------------------------------------


@dataclass
class Tubes:
    """Straight tube segments in image pixels, one row per segment (all arrays [S]).

    x0, y0, x1, y1   end points (col, row), pixels
    r0, r1           lumen radius at each end, pixels
    k0, k1           attenuation per pixel of chord at each end (mu * c, converted to 1/px)
    o0, o1           opacification at each end (0..1) for the ground-truth vessel map (0: not a vessel)
    group            layer: chords within a layer merge by max, layers add
    """

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    k0: np.ndarray
    k1: np.ndarray
    o0: np.ndarray
    o1: np.ndarray
    group: np.ndarray

    @staticmethod
    def concat(parts: list[Tubes]) -> Tubes:
        return Tubes(*(np.concatenate([getattr(p, f) for p in parts]) for f in Tubes.__dataclass_fields__))

    def select(self, keep: np.ndarray) -> Tubes:
        return Tubes(*(getattr(self, f)[keep] for f in Tubes.__dataclass_fields__))


def polyline_tubes(col: np.ndarray, row: np.ndarray, radius_px: np.ndarray, k: np.ndarray, o: np.ndarray,
                   group: int, breaks: np.ndarray | None = None) -> Tubes:
    """Segments between consecutive samples of a polyline; ``breaks`` [P] True where a new polyline starts."""
    link = np.ones(len(col) - 1, dtype=bool) if breaks is None else ~breaks[1:]
    a, b = np.nonzero(link)[0], np.nonzero(link)[0] + 1
    return Tubes(col[a], row[a], col[b], row[b], radius_px[a], radius_px[b], k[a], k[b], o[a], o[b],
                 np.full(len(a), group, dtype=np.int64))


#: Anti-aliasing: the lumen profile is widened by this many pixels (in quadrature) at constant area,
#: so thin vessels neither vanish between pixel centres nor flicker as they move.
_AA_PX = 0.5


def rasterize_tubes(tubes: Tubes, shape: tuple[int, int], n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw tube segments: returns (attenuation [H, W] = sum over layers of the max chord * k, opacity [H, W]).

    Vectorised by stamp size: every segment gets a square of pixels around it, all squares of one size are
    evaluated as one [S, K] array (distance to the segment, interpolated radius, k and opacity), and the
    results are merged with ``np.maximum.at``. The chord through a circular lumen of radius r at distance d
    is 2 sqrt(r^2 - d^2); it is widened by _AA_PX at constant cross-section area.
    """
    h, w = shape
    hw = h * w
    att = np.zeros(n_groups * hw, dtype=np.float32)
    opacity = np.zeros(hw, dtype=np.float32)
    if len(tubes.x0) == 0:
        return att.reshape(n_groups, h, w).sum(0), opacity.reshape(h, w)
    dx, dy = tubes.x1 - tubes.x0, tubes.y1 - tubes.y0
    length = np.hypot(dx, dy)
    reach = np.maximum(tubes.r0, tubes.r1) + _AA_PX + 1.0
    half = np.ceil(reach + 0.5 * length).astype(np.int64)
    cx, cy = np.rint(0.5 * (tubes.x0 + tubes.x1)).astype(np.int64), np.rint(0.5 * (tubes.y0 + tubes.y1)).astype(np.int64)
    visible = (cx + half >= 0) & (cx - half < w) & (cy + half >= 0) & (cy - half < h)
    for size in np.unique(half[visible]):
        sel = np.nonzero(visible & (half == size))[0]
        off = np.arange(-size, size + 1)
        oy, ox = np.meshgrid(off, off, indexing="ij")
        px = cx[sel, None] + ox.ravel()[None, :]  # [S, K]
        py = cy[sel, None] + oy.ravel()[None, :]
        rx, ry = px - tubes.x0[sel, None], py - tubes.y0[sel, None]
        seg2 = np.maximum(length[sel] ** 2, 1e-12)[:, None]
        t = np.clip((rx * dx[sel, None] + ry * dy[sel, None]) / seg2, 0.0, 1.0)
        d2 = (rx - t * dx[sel, None]) ** 2 + (ry - t * dy[sel, None]) ** 2
        r = tubes.r0[sel, None] + t * (tubes.r1 - tubes.r0)[sel, None]
        re2 = r * r + _AA_PX**2
        inside = (d2 < re2) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
        chord = (r * r / re2) * 2.0 * np.sqrt(np.maximum(re2 - d2, 0.0))
        k = tubes.k0[sel, None] + t * (tubes.k1 - tubes.k0)[sel, None]
        o = (tubes.o0[sel, None] + t * (tubes.o1 - tubes.o0)[sel, None]) * np.clip(r + 0.5 - np.sqrt(d2), 0.0, 1.0)
        flat = (py * w + px)[inside]
        group = np.broadcast_to(tubes.group[sel, None], inside.shape)[inside]
        np.maximum.at(att, group * hw + flat, (k * chord)[inside].astype(np.float32))
        has_o = o[inside] > 0
        if has_o.any():
            np.maximum.at(opacity, flat[has_o], o[inside][has_o].astype(np.float32))
    return att.reshape(n_groups, h, w).sum(0), opacity.reshape(h, w)


# --------------------------------------------------------------------------------------------------
# Background anatomy
# --------------------------------------------------------------------------------------------------


def crop_shifted(canvas: np.ndarray, pad: int, shift_rc: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
    """The [H, W] window of a padded canvas with its content moved by (d_row, d_col) pixels (bilinear)."""
    oy, ox = pad - float(shift_rc[0]), pad - float(shift_rc[1])
    oy = min(max(oy, 0.0), canvas.shape[0] - shape[0] - 1.0)
    ox = min(max(ox, 0.0), canvas.shape[1] - shape[1] - 1.0)
    iy, ix = int(math.floor(oy)), int(math.floor(ox))
    fy, fx = oy - iy, ox - ix
    h, w = shape
    out = (1 - fy) * (1 - fx) * canvas[iy : iy + h, ix : ix + w]
    if fx > 0:
        out = out + (1 - fy) * fx * canvas[iy : iy + h, ix + 1 : ix + 1 + w]
    if fy > 0:
        out = out + fy * (1 - fx) * canvas[iy + 1 : iy + 1 + h, ix : ix + w]
        if fx > 0:
            out = out + fy * fx * canvas[iy + 1 : iy + 1 + h, ix + 1 : ix + 1 + w]
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (block-averaged first when sigma is large)."""
    factor = max(1, int(sigma_px // 4))
    small = (shape[0] // factor + 2, shape[1] // factor + 2)
    field = ndimage.gaussian_filter(rng.standard_normal(small), sigma_px / factor, mode="wrap")
    if factor > 1:
        field = ndimage.zoom(field, factor, order=1)
    field = field[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-12)


def _upsample_linear(a: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Separable linear interpolation of a block-averaged image back to ``shape`` (block centres as nodes)."""

    def axis_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        s = np.clip((np.arange(n_out) + 0.5) / factor - 0.5, 0.0, n_in - 1.0)
        i0 = np.minimum(s.astype(np.int64), max(n_in - 2, 0))
        return i0, s - i0

    if a.shape[0] < 2 or a.shape[1] < 2:
        return np.broadcast_to(a.mean(), shape).copy()
    iy, wy = axis_weights(shape[0], a.shape[0])
    ix, wx = axis_weights(shape[1], a.shape[1])
    rows = a[iy] * (1 - wy)[:, None] + a[iy + 1] * wy[:, None]  # [H, w]
    return rows[:, ix] * (1 - wx)[None, :] + rows[:, ix + 1] * wx[None, :]


def lowpass(image: np.ndarray, sigma_px: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Wide Gaussian blur by block-averaging, blurring and upsampling (cost independent of sigma).

    With ``mask`` it is a normalised convolution: only pixels inside the mask contribute.
    """
    h, w = image.shape
    factor = int(max(1, min(sigma_px // 3, h // 8, w // 8)))
    hh, ww = h // factor * factor, w // factor * factor

    def down(a: np.ndarray) -> np.ndarray:
        return a[:hh, :ww].reshape(hh // factor, factor, ww // factor, factor).mean(axis=(1, 3))

    def up(a: np.ndarray) -> np.ndarray:
        return _upsample_linear(a, factor, (h, w))

    s = sigma_px / factor
    if mask is None:
        return up(ndimage.gaussian_filter(down(image), s, mode="nearest"))
    num = ndimage.gaussian_filter(down(image * mask), s, mode="nearest")
    den = ndimage.gaussian_filter(down(mask.astype(np.float64)), s, mode="nearest")
    return up(num / np.maximum(den, 1e-6))


@dataclass
class Background:
    """Everything of the frame that is not a vessel or the catheter, precomputed once per run.

    static      [Hc, Wc] spine, body thickness and wires: moves with the table only
    breathing   [Hc, Wc] ribs and lung texture: moves with the table and the chest wall
    pad         canvas margin, pixels
    gain        [H, W] detector gain / vignetting (fixed to the detector)
    shutter     [H, W] 1 inside the collimated field of view, 0 outside (soft edge)
    diaphragm   (row of the dome top, col of the dome top, curvature per px, Delta-A, edge width px)
    (The heart shadow is not stored: ``heart_layer`` evaluates it exactly for every frame.)
    """

    static: np.ndarray
    breathing: np.ndarray
    pad: int
    gain: np.ndarray
    shutter: np.ndarray
    diaphragm: tuple[float, float, float, float, float]


def shutter_mask(kind: str, size: float, shape: tuple[int, int]) -> np.ndarray:
    """Collimator field [H, W] in [0, 1]: "none", "rect" (blades at ``size`` of the half-field) or "round"
    (an octagon-like rounded square, as in the real RCA cine)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    u, v = (x - (w - 1) / 2) / (w / 2), (y - (h - 1) / 2) / (h / 2)
    edge = 1.5 / (w / 2)
    if kind == "none":
        return np.ones(shape, dtype=np.float32)
    if kind == "rect":
        d = np.maximum(np.abs(u), np.abs(v)) - size
    else:
        d = np.maximum(np.maximum(np.abs(u), np.abs(v)) - size, (np.abs(u) + np.abs(v)) / 1.35 - size)
    return np.clip(0.5 - d / edge, 0.0, 1.0).astype(np.float32)


def build_background(p: ImagingParams, camera, heart, pad: int) -> Background:
    """Precompute the background layers on a canvas padded by ``pad`` pixels (for pans and breathing)."""
    rng = np.random.default_rng(p.background_seed)
    n = camera.size
    shape_c = (n + 2 * pad, n + 2 * pad)
    mm_px = camera.magnification / camera.pixel_mm  # pixels per mm at the isocentre
    y, x = np.mgrid[0 : shape_c[0], 0 : shape_c[1]].astype(np.float64)
    y -= pad
    x -= pad

    # Spine: a vertical cylinder behind the heart, to the patient's right; vertebral bodies and discs.
    spine_top = heart.centre + np.array([-p.spine_offset_mm, 80.0, 100.0])
    spine_bottom = spine_top - np.array([0.0, 0.0, 250.0])
    c0, r0, _ = camera.project(spine_top)
    c1, r1, _ = camera.project(spine_bottom)
    axis = np.array([c1 - c0, r1 - r0])
    length = np.hypot(*axis)
    axis /= length
    along = (x - c0) * axis[0] + (y - r0) * axis[1]
    across = np.abs((x - c0) * axis[1] - (y - r0) * axis[0]) / mm_px  # mm
    body = np.sqrt(np.clip(1.0 - (across / 21.0) ** 2, 0.0, None))
    disc = (0.5 + 0.5 * np.cos(2 * np.pi * (along / mm_px) / 28.0)) ** 8  # a thin low band every 28 mm
    static = p.spine_delta * body * (1.0 - 0.35 * disc)
    # Body thickness: a slow gradient plus a smooth random field.
    static += 0.15 * smooth_noise(rng, shape_c, 40.0 * mm_px)
    static += 0.1 * (x / n - 0.5) * rng.normal()
    # Thin static wires (ECG leads), drawn as tubes of 0.5 mm radius.
    for _ in range(p.ecg_leads):
        t = np.linspace(0, 1, 200)
        a, b = rng.uniform(-pad, n + pad, 2), rng.uniform(-pad, n + pad, 2)
        bend = rng.normal(0, n / 4, 2)
        pts = a[None] + t[:, None] * (b - a)[None] + np.sin(np.pi * t)[:, None] * bend[None]
        rad = np.full(len(t), 0.5 * mm_px)
        tube = polyline_tubes(pts[:, 0] + pad, pts[:, 1] + pad, rad, np.full(len(t), 0.6 / mm_px), np.zeros(len(t)), 0)
        wire, _ = rasterize_tubes(tube, shape_c, 1)
        static += wire

    # Ribs: curved bone bands, Delta-A 0.4-0.6, spaced ~30 mm, with brighter cortical edges.
    breathing = np.zeros(shape_c)
    spacing = 30.0 * mm_px
    for k in range(p.n_ribs):
        row0 = -0.2 * n + (k + p.rib_phase_mm / 30.0) * spacing
        slope, curve = rng.uniform(-0.35, 0.35), rng.uniform(0.3, 1.2) / n
        centre_col = rng.uniform(0.2, 0.8) * n
        half = rng.uniform(4.5, 6.0) * mm_px
        d = np.abs(y - (row0 + slope * (x - centre_col) + curve * (x - centre_col) ** 2)) / half
        profile = np.sqrt(np.clip(1.0 - d**2, 0.0, None)) * (0.6 + 0.4 * d**2)
        breathing += p.rib_delta * profile
    # Lung / tissue texture at three scales (static structure noise: the low-rank background of RPCA).
    for sigma_mm, weight in ((1.5, 0.3), (4.0, 0.3), (12.0, 0.4)):
        breathing += p.texture * weight * smooth_noise(rng, shape_c, sigma_mm * mm_px)

    # Detector gain / vignetting: exp of a smooth field plus a radial fall-off (fixed to the detector).
    yy, xx = np.mgrid[0:n, 0:n] / max(n - 1, 1) - 0.5
    gain = np.exp(p.gain_amplitude * (0.5 * smooth_noise(rng, (n, n), n / 4) - 2.0 * (xx**2 + yy**2)))
    gain /= gain.mean()

    # Diaphragm dome below the heart (evaluated per frame, since it moves most with breathing).
    hc, hr, _ = camera.project(heart.centre)
    dome_row = float(hr + p.diaphragm_offset_mm * mm_px)
    dome_col = float(hc + rng.uniform(-20, 20) * mm_px)
    diaphragm = (dome_row, dome_col, p.diaphragm_curvature / mm_px, p.diaphragm_delta, 6.0 * mm_px)
    return Background(static.astype(np.float32), breathing.astype(np.float32), pad, gain.astype(np.float32),
                      shutter_mask(p.shutter, p.shutter_size, (n, n)), diaphragm)


def diaphragm_layer(bg: Background, shape: tuple[int, int], shift_rc: tuple[float, float]) -> np.ndarray:
    """Delta-A of the liver dome [H, W] shifted by (d_row, d_col) pixels: a smooth step below a parabola."""
    row0, col0, curve, delta, width = bg.diaphragm
    h, w = shape
    x = np.arange(w) - (col0 + shift_rc[1])
    top = row0 + shift_rc[0] + curve * x**2  # [W]
    z = (np.arange(h)[:, None] - top[None, :]) / width
    step = np.clip(0.5 + 0.5 * z, 0.0, 1.0)
    return delta * step * step * (3 - 2 * step)


def heart_layer(heart, scale_radial: float, scale_long: float, centre_shift_mm: np.ndarray, camera, mu: float,
                shape: tuple[int, int], pan_px: tuple[float, float]) -> np.ndarray:
    """Delta-A [H, W] of the heart shadow: the exact line integral through a uniform ellipsoid.

    For a parallel projection an ellipsoid X^T Q^-1 X <= 1 casts the ellipse y^T (P Q P^T)^-1 y <= 1, and the
    chord at y is L0 sqrt(1 - y^T (P Q P^T)^-1 y) with L0 = 2 / sqrt(d^T Q^-1 d) (P: image axes, d: ray). The
    square root's hard edge is softened over ~4 mm.
    """
    d, e_u, e_v = camera.basis()
    rot = np.stack([heart.e_l, heart.e_1, heart.e_2], axis=1)  # columns
    a = np.array([heart.a_long * scale_long, heart.a_short * scale_radial, heart.a_short * scale_radial])
    q = rot @ np.diag(a**2) @ rot.T
    q_inv = rot @ np.diag(1.0 / a**2) @ rot.T
    mm_px = camera.magnification / camera.pixel_mm
    proj = np.stack([e_u, e_v]) * mm_px
    q2_inv = np.linalg.inv(proj @ q @ proj.T)
    l0 = 2.0 / math.sqrt(d @ q_inv @ d)
    c, r, _ = camera.project(heart.centre + centre_shift_mm)
    h, w = shape
    dx = np.arange(w) - (c + pan_px[1])
    dy = np.arange(h) - (r + pan_px[0])
    quad = q2_inv[0, 0] * dx[None, :] ** 2 + 2 * q2_inv[0, 1] * dx[None, :] * dy[:, None] + q2_inv[1, 1] * dy[:, None] ** 2
    # A soft border (~4 mm): pericardial fat and the lung overlapping the heart blur its silhouette.
    soft = 2.0 * 4.0 / (heart.a_short * scale_radial)
    inside = 1.0 - quad
    inside = soft * np.logaddexp(0.0, inside / soft) if soft > 0 else np.clip(inside, 0.0, None)
    return mu * l0 * np.sqrt(inside)


# --------------------------------------------------------------------------------------------------
# Detector physics and display
# --------------------------------------------------------------------------------------------------


def quanta_per_pixel(p: ImagingParams, camera) -> float:
    """q: detected quanta per pixel for an unattenuated (A = 0) ray = DQE * photons/mm^2/uGy * dose * pixel^2."""
    return p.dqe * p.photons_per_mm2_ugy * p.dose_ngy * 1e-3 * camera.pixel_mm**2


def exposure_reference(a0: np.ndarray, fov: np.ndarray) -> float:
    """Automatic exposure control [S23]: the attenuation at which the detector receives ``dose_ngy``.

    The C-arm regulates its output on the region of interest, so the nominal dose is delivered at the
    median attenuation of the field in the first frame (not at the lung, which would starve the heart).
    """
    return float(np.median(a0[fov > 0.5]))


def expected_signal(a: np.ndarray, p: ImagingParams, camera, bg: Background, a_ref: float = 0.0) -> np.ndarray:
    """Expected detector signal [H, W] in units of q: G [h_f * (M e^-(A - A_ref)) + SPR K_s * (same)].

    a_ref: the exposure reference (``exposure_reference``); the field at A = a_ref gets q quanta per pixel.
    """
    primary = np.exp(a_ref - a) * bg.shutter
    sigma_f = p.focal_blur_mm / 2.355 / camera.pixel_mm
    if sigma_f > 0.3:
        primary = ndimage.gaussian_filter(primary, sigma_f, mode="nearest")
    scatter = p.spr * lowpass(primary, p.scatter_sigma_mm / camera.pixel_mm)
    return bg.gain * (primary + scatter)


def detect(signal: np.ndarray, p: ImagingParams, camera, rng: np.random.Generator | None) -> np.ndarray:
    """Counts -> log image: Poisson(q signal) + Normal(0, sigma_e), detector PSF, -ln(. / q). None rng: noiseless."""
    q = quanta_per_pixel(p, camera)
    lam = q * signal
    if rng is not None:
        # Poisson(lam) + Normal(0, sigma_e^2). Where lam >= 50 the Poisson law is sampled by its normal
        # approximation (same mean and variance; indistinguishable at 10^2-10^4 quanta, and 6x cheaper);
        # below that (shutter, very dark pixels) it is sampled exactly.
        counts = lam + np.sqrt(lam + p.read_noise_quanta**2) * rng.standard_normal(lam.shape)
        dim = lam < 50.0
        if dim.any():
            counts[dim] = rng.poisson(lam[dim]) + rng.normal(0.0, p.read_noise_quanta, int(dim.sum()))
    else:
        counts = lam
    sigma_d = p.psf_fwhm_mm / 2.355 / camera.pixel_mm
    if sigma_d > 0.3:
        counts = ndimage.gaussian_filter(counts, sigma_d, mode="nearest")
    return -np.log(np.maximum(counts, 0.5) / q)


def spatial_postprocess(log_image: np.ndarray, p: ImagingParams, camera, fov: np.ndarray) -> np.ndarray:
    """Dynamic-range compression, then (when post-processing is on) noise reduction and an unsharp mask."""
    px = camera.pixel_mm
    out = log_image - p.drc_strength * lowpass(log_image, p.drc_sigma_mm / px, fov > 0.5)
    if p.postprocess:
        out = ndimage.gaussian_filter(out, p.denoise_sigma_mm / px, mode="nearest")
        out = out + p.unsharp_amount * (out - ndimage.gaussian_filter(out, p.unsharp_sigma_mm / px, mode="nearest"))
    return out


@dataclass(frozen=True)
class Display:
    """The window/level + gamma LUT: grey = clip(g0 + (level - y) / window, 0, 1) ** gamma."""

    level: float
    window: float
    g0: float
    gamma: float

    @classmethod
    def fit(cls, clean_log: np.ndarray, fov: np.ndarray, p: ImagingParams) -> Display:
        """Auto-level on a noiseless frame: its median inside the field maps to ``median_grey``."""
        level = float(np.median(clean_log[fov > 0.5]))
        return cls(level, p.window_log, (p.median_grey / 255.0) ** (1.0 / p.gamma), p.gamma)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return np.clip(self.g0 + (self.level - y) / self.window, 0.0, 1.0) ** self.gamma


def quantise(grey: np.ndarray, bits: int, jpeg_quality: int) -> np.ndarray:
    """[H, W] in [0, 1] -> float32 on the 2^bits - 1 grid, through a JPEG round trip when 8-bit and quality > 0."""
    top = 2**bits - 1
    q = np.rint(np.clip(grey, 0.0, 1.0) * top)
    if bits == 8 and jpeg_quality > 0:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(q.astype(np.uint8), mode="L").save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        q = np.asarray(Image.open(buf), dtype=np.float64)
    return (q / top).astype(np.float32)
