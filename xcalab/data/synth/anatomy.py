"""Stage 1 -- anatomy: coronary trees on an ellipsoidal epicardium, the catheter, and the cone-beam camera.

Source tags [S1], [S3], ...: ``docs/xca-synth-sources.md``.

The heart is an ellipsoid (~12 cm long, assumption). A point on its surface is addressed by two angles:

    chi  polar angle from the base pole (chi = 0) to the apex (chi = pi); the AV groove sits at chi_groove
    psi  azimuth around the long axis; psi = 0 is anterior, psi > 0 turns toward the patient's left

Every vessel is a path on that surface that starts at a point (chi, psi), leaves it with a *take-off*
heading and relaxes to a *course* heading (0 deg = toward the apex, +90 deg = around the base toward the
patient's left). So the LAD runs down the anterior interventricular groove (course 0), the LCx around
the left AV groove (course +90), the RCA around the right AV groove (course -90), diagonals and
marginals leave their parent at 30-70 deg [S6][S7] and then run roughly toward the apex. A smooth
random lateral warp gives the tortuosity index of [S8]; diameters follow Dodge [S1], side branches are
sized by Finet's law D_m = 0.678 (D_1 + D_2) [S3] (or Murray's r0^g = r1^g + r2^g [S4]) and taper
linearly [S10]; optional Gaussian stenoses follow [S10].

Coordinates are patient LPS in mm (x toward the patient's left, y posterior, z superior) with the
C-arm isocentre at the origin. ``Camera`` projects them with a pinhole (cone beam) whose focal length
is the source-image distance.

Nothing here draws random numbers: ``sample_anatomy`` draws every number from the generator it is given
and stores it in ``AnatomyParams``; ``build_tree`` turns those numbers into geometry deterministically.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

#: Spacing of centreline samples (mm). Fixed, so geometry and the iodine curve do not depend on image size.
SAMPLE_SPACING_MM = 0.5

#: Finet's constant D_m = 0.678 (D_1 + D_2) [S3].
FINET = 0.678


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BranchSpec:
    """One vessel of the tree, as numbers (every length in mm, every angle in degrees).

    name          "LM", "LAD", "LCx", "D1", "OM1", "RCA", "CB", "AM", "PDA", ...
    parent        the vessel it leaves ("" for the root: LM or RCA)
    origin        where it leaves the parent, as a fraction of the parent's length
    length_mm     centreline length
    diameter_mm   lumen diameter at the origin (roots and the LAD/LCx; side branches get theirs from ``ratio``)
    taper         distal / proximal diameter ratio of the continuous taper (steps at branch points come on top)
    takeoff_deg   heading when it leaves the parent (0 = toward the apex, +90 = toward the patient's left)
    course_deg    heading it relaxes to, over ``relax_mm``
    territory     the main vessel whose fill time sets its front speed ("LAD", "LCx" or "RCA")
    warp_seed     seed of its tortuosity warp (phases and relative amplitudes)
    ratio         side branches: its diameter / the parent's diameter just after the branch point [S3]
    """

    name: str
    parent: str
    origin: float
    length_mm: float
    diameter_mm: float
    taper: float
    takeoff_deg: float
    course_deg: float
    territory: str
    warp_seed: int
    relax_mm: float = 12.0
    ratio: float = 0.0


@dataclass(frozen=True)
class Stenosis:
    """A Gaussian narrowing [S10]: radius *= 1 - severity * exp(-(s - position)^2 / (2 width^2)), s in [0, 1]."""

    branch: str
    position: float
    severity: float
    width: float


@dataclass(frozen=True)
class AnatomyParams:
    """The numbers that fix one coronary tree and its heart (lengths mm, angles deg)."""

    tree: str  # "left" (LCA injection) or "right" (RCA injection)
    dominance: str  # "right" (~85 %) or "left"
    heart_long_mm: float  # semi-axis along the long axis (the heart is ~12 cm long)
    heart_short_mm: float  # semi-axis across it
    heart_axis: tuple[float, float, float]  # unit vector base -> apex (LPS)
    groove_chi_deg: float  # polar angle of the AV groove
    lad_psi_deg: float  # azimuth of the anterior interventricular groove
    rca_psi_deg: float  # azimuth where the RCA enters the right AV groove
    lm_length_mm: float  # left main length (also the length of the RCA's ostial segment)
    branching_law: str  # "finet" or "murray"
    murray_exponent: float  # gamma of Murray's law (used when branching_law == "murray")
    tortuosity_target: float  # tortuosity index (path / chord over 30 mm windows) the warp aims at
    branches: tuple[BranchSpec, ...]
    stenoses: tuple[Stenosis, ...]
    centre_jitter_mm: tuple[float, float, float]  # where the tree centroid sits relative to the isocentre
    catheter_french: float  # outer diameter in French (1 F = 1/3 mm [S24])


def _daughters(d_mother: float, ratio: float, law: str, gamma: float) -> tuple[float, float]:
    """(major, minor) daughter diameters of a bifurcation with minor/major = ratio <= 1.

    Finet [S3]: D_m = 0.678 (D_1 + D_2).  Murray [S4]: D_m^g = D_1^g + D_2^g.
    """
    if law == "finet":
        major = d_mother / FINET / (1.0 + ratio)
    else:
        major = d_mother / (1.0 + ratio**gamma) ** (1.0 / gamma)
    return major, ratio * major


def sample_anatomy(rng: np.random.Generator, tree: str, knobs_stenoses: bool) -> AnatomyParams:
    """Draw one tree's numbers. Ranges and sources: the comments below.

    Args:
        rng: the generator of this sequence's anatomy.
        tree: "left" (LM, LAD, LCx, 2 diagonals, 2 obtuse marginals) or "right" (RCA, conus branch,
            acute marginal, PDA).
        knobs_stenoses: draw 0-2 stenoses per main vessel [S10] when True.
    """
    if tree not in ("left", "right"):
        raise ValueError(f"tree must be 'left' or 'right', got {tree!r}")
    u = rng.uniform
    dominance = "right" if u() < 0.85 else "left"
    law = "finet" if u() < 0.5 else "murray"
    gamma = float(u(2.2, 3.0))  # [S4][S12]
    # Heart long axis: base -> apex points left, anterior and inferior; tilt it by up to ~10 deg.
    axis = np.array([0.55, -0.5, -0.65]) + rng.normal(0.0, 0.12, 3)
    axis /= np.linalg.norm(axis)

    def seed() -> int:
        return int(rng.integers(2**31 - 1))

    def ratio_side() -> float:
        return float(u(0.5, 0.8))  # minor/major at side branches (Finet's daughters [S3]: 2.23 / 2.70)

    branches: list[BranchSpec] = []
    if tree == "left":
        d_lm = float(np.clip(rng.normal(4.5, 0.5), 3.5, 5.5))  # Dodge [S1]
        # LCx/LAD diameter ratio: 0.83 +- 0.2 (derived from Finet's means [S3]); larger LCx when left-dominant [S1].
        ratio = float(np.clip(rng.normal(0.83, 0.2), 0.55, 1.0)) if dominance == "right" else float(u(1.0, 1.25))
        if ratio <= 1.0:
            d_lad, d_lcx = _daughters(d_lm, ratio, law, gamma)
        else:
            d_lcx, d_lad = _daughters(d_lm, 1.0 / ratio, law, gamma)
        bif = float(rng.normal(64.0, 4.0))  # take-off; the angle measured 5 mm out is ~4 deg wider: 63-74 [S6][S7]
        branches += [
            BranchSpec("LM", "", 0.0, 0.0, d_lm, 0.95, 0.0, 0.0, "LAD", seed()),
            BranchSpec("LAD", "LM", 1.0, float(u(100, 130)), d_lad, float(u(0.4, 0.6)), 0.0, 0.0, "LAD", seed()),
            BranchSpec("LCx", "LM", 1.0, float(u(80, 100)), d_lcx, float(u(0.3, 0.6)), bif, 90.0, "LCx", seed(), 30.0),
        ]
        for name, parent, lo, hi, course, length in (
            ("D1", "LAD", 0.18, 0.32, 0.0, (45, 70)),
            ("D2", "LAD", 0.42, 0.58, 0.0, (35, 60)),
            ("OM1", "LCx", 0.28, 0.42, 90.0, (40, 60)),
            ("OM2", "LCx", 0.55, 0.72, 90.0, (30, 50)),
        ):
            angle = float(u(30, 70))  # diagonal / marginal take-off (assumption guided by [S6][S7])
            turn = +1.0 if parent == "LAD" else -1.0  # diagonals turn left, marginals turn toward the apex
            branches.append(
                BranchSpec(name, parent, float(u(lo, hi)), float(u(*length)), 0.0, float(u(0.5, 0.7)),
                           course + turn * angle, course + turn * float(u(15, 30)), parent, seed(), ratio=ratio_side())
            )
    else:
        mean = 3.9 if dominance == "right" else 2.8  # proximal RCA by dominance [S1]
        d_rca = float(np.clip(rng.normal(mean, 0.5), 2.3, 5.0))
        branches.append(BranchSpec("RCA", "", 0.0, float(u(120, 140)), d_rca, float(u(0.3, 0.6)), -90.0, -90.0, "RCA", seed()))
        # Side branches after [S10]: conus/SA 0.03-0.12, AM 0.18-0.35, PDA 0.55-0.65 of the RCA.
        branches += [
            BranchSpec("CB", "RCA", float(u(0.08, 0.16)), float(u(30, 40)), 0.0, float(u(0.5, 0.7)),
                       -90.0 - float(u(60, 100)), -170.0, "RCA", seed(), ratio=ratio_side()),
            BranchSpec("AM", "RCA", float(u(0.25, 0.4)), float(u(45, 56)), 0.0, float(u(0.5, 0.7)),
                       -90.0 + float(u(50, 75)), -float(u(10, 30)), "RCA", seed(), ratio=ratio_side()),
            BranchSpec("PDA", "RCA", float(u(0.6, 0.7)), float(u(50, 60)), 0.0, float(u(0.5, 0.7)),
                       -float(u(20, 45)), 0.0, "RCA", seed(), ratio=ratio_side()),
        ]
    stenoses: list[Stenosis] = []
    if knobs_stenoses:
        for b in branches:
            if b.name == "LM":
                continue
            main = b.parent in ("", "LM")
            n = int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1])) if main else int(rng.random() < 0.15)
            for _ in range(n):
                width = float(u(0.04, 0.06))  # the Gaussian spans 16-24 % of the centreline (+-2 sigma) [S10]
                stenoses.append(Stenosis(b.name, float(u(0.1 + 2 * width, 0.9 - 2 * width)), float(u(0.3, 0.8)), width))
    return AnatomyParams(
        tree=tree,
        dominance=dominance,
        heart_long_mm=float(u(55, 65)),
        heart_short_mm=float(u(42, 50)),
        heart_axis=tuple(float(a) for a in axis),
        groove_chi_deg=float(u(48, 56)),
        lad_psi_deg=float(u(20, 35)),
        rca_psi_deg=-float(u(20, 35)),
        lm_length_mm=float(u(5, 15)),  # [S7b]
        branching_law=law,
        murray_exponent=gamma,
        tortuosity_target=float(u(1.03, 1.08)),  # TI 104 % (ED) - 108 % (ES) [S8]
        branches=tuple(branches),
        stenoses=tuple(stenoses),
        centre_jitter_mm=tuple(float(v) for v in rng.normal(0.0, 6.0, 3)),
        catheter_french=float(rng.choice([5.0, 6.0])),
    )


# --------------------------------------------------------------------------------------------------
# The heart surface
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heart:
    """The epicardial ellipsoid: centre (3,), orthonormal frame (long axis e_l, anterior e_1, left e_2), semi-axes."""

    centre: np.ndarray
    e_l: np.ndarray
    e_1: np.ndarray
    e_2: np.ndarray
    a_long: float
    a_short: float

    @classmethod
    def from_params(cls, p: AnatomyParams) -> Heart:
        e_l = np.asarray(p.heart_axis, dtype=float)
        anterior = np.array([0.0, -1.0, 0.0])
        e_1 = anterior - (anterior @ e_l) * e_l
        e_1 /= np.linalg.norm(e_1)
        e_2 = np.cross(e_l, e_1)
        if e_2[0] < 0:  # psi > 0 must turn toward the patient's left (+x)
            e_2 = -e_2
        return cls(np.zeros(3), e_l, e_1, e_2, p.heart_long_mm, p.heart_short_mm)

    def surface(self, chi: np.ndarray, psi: np.ndarray, lift_mm: float = 2.0) -> np.ndarray:
        """Points [..., 3] on the ellipsoid, lifted ``lift_mm`` outward (epicardial fat). chi, psi in radians."""
        chi, psi = np.asarray(chi, float), np.asarray(psi, float)
        rho = (self.a_short + lift_mm) * np.sin(chi)  # negative past the apex: continues on the far side
        axial = -(self.a_long + lift_mm) * np.cos(chi)
        radial = np.cos(psi)[..., None] * self.e_1 + np.sin(psi)[..., None] * self.e_2
        return self.centre + axial[..., None] * self.e_l + rho[..., None] * radial

    def metric(self, chi: float) -> tuple[float, float]:
        """Lengths (mm per radian) of d chi and d psi at polar angle chi."""
        a_chi = math.hypot(self.a_long * math.sin(chi), self.a_short * math.cos(chi))
        return a_chi, max(abs(self.a_short * math.sin(chi)), 1.0)

    def normal(self, points: np.ndarray) -> np.ndarray:
        """Outward unit normals [..., 3] of the ellipsoid at (or near) ``points``."""
        rel = points - self.centre
        axial = rel @ self.e_l
        radial = rel - axial[..., None] * self.e_l
        n = radial / self.a_short**2 + (axial / self.a_long**2)[..., None] * self.e_l
        return n / np.linalg.norm(n, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------------------


@dataclass
class Branch:
    """One vessel's centreline, sampled every ``SAMPLE_SPACING_MM``.

    points     [P, 3] mm (LPS, reference pose: end-diastole, no respiration)
    radius     [P] lumen radius, mm (taper, branch steps and stenoses included)
    arc        [P] arc length from the branch origin, mm
    path       [P] path length from the coronary ostium, mm (what the contrast front travels)
    chi, psi   [P] surface angles (radians; NaN on the off-surface ostial part)
    group      rendering layer: lumens in one layer merge (max), layers add (see imaging.py)
    """

    spec: BranchSpec
    points: np.ndarray
    radius: np.ndarray
    arc: np.ndarray
    path: np.ndarray
    chi: np.ndarray
    psi: np.ndarray
    index: int = 0
    parent_index: int = -1
    group: int = 0  # rendering layer: lumens in one layer merge (max), layers add


@dataclass
class Tree:
    """A coronary tree, its heart and its catheter, all in patient mm (LPS, isocentre at the origin)."""

    params: AnatomyParams
    heart: Heart
    branches: list[Branch]
    catheter: np.ndarray  # [Q, 3] centreline from the tip (at the ostium) back toward the aorta
    catheter_radius_mm: float
    aortic_root: np.ndarray  # (3,)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def points(self) -> np.ndarray:
        """All centreline samples [P, 3] (branch after branch)."""
        return np.concatenate([b.points for b in self.branches])

    @property
    def radius(self) -> np.ndarray:
        return np.concatenate([b.radius for b in self.branches])

    @property
    def path(self) -> np.ndarray:
        return np.concatenate([b.path for b in self.branches])

    def branch(self, name: str) -> Branch:
        for b in self.branches:
            if b.spec.name == name:
                return b
        raise KeyError(name)


def _resample(points: np.ndarray, length: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample a dense polyline [M, 3] every SAMPLE_SPACING_MM up to ``length``; returns (points, arc, t)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1] if length is None else min(length, cum[-1])
    arc = np.arange(0.0, total + 1e-9, SAMPLE_SPACING_MM)
    t = np.interp(arc, cum, np.arange(len(points)))
    out = np.stack([np.interp(arc, cum, points[:, k]) for k in range(3)], axis=1)
    return out, arc, t


def _surface_path(heart: Heart, chi0: float, psi0: float, spec: BranchSpec, n: int, step: float) -> tuple[np.ndarray, ...]:
    """Angles (chi, psi) [n] of a path walked in ``step`` mm steps with a heading relaxing takeoff -> course."""
    s = np.arange(n) * step
    heading = np.radians(spec.course_deg + (spec.takeoff_deg - spec.course_deg) * np.exp(-s / spec.relax_mm))
    chi, psi = np.empty(n), np.empty(n)
    chi[0], psi[0] = chi0, psi0
    for i in range(1, n):  # a short walk over the construction grid (geometry only, never per pixel)
        a_chi, a_psi = heart.metric(chi[i - 1])
        chi[i] = chi[i - 1] + step * math.cos(heading[i - 1]) / a_chi
        psi[i] = psi[i - 1] + step * math.sin(heading[i - 1]) / a_psi
    return chi, psi


def _warp(points: np.ndarray, heart: Heart, amplitude: float, seed: int) -> np.ndarray:
    """Lateral, in-surface smooth random warp [S10]: sum of 3 sinusoids (wavelengths 15-45 mm)."""
    if amplitude <= 0 or len(points) < 4:
        return points
    rng = np.random.default_rng(seed)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    waves = rng.uniform(15.0, 45.0, 3)
    weights = rng.uniform(0.5, 1.0, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    offset = (weights[:, None] * np.sin(2 * np.pi * arc[None] / waves[:, None] + phases[:, None])).sum(0)
    offset /= weights.sum()
    ramp = np.clip(arc / 20.0, 0.0, 1.0)
    offset *= ramp * ramp * (3 - 2 * ramp)  # no shift or turn at the origin: take-off angles stay as drawn
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-12
    lateral = np.cross(heart.normal(points), tangent)
    return points + amplitude * offset[:, None] * lateral


def tortuosity_index(points: np.ndarray, window_mm: float = 30.0) -> float:
    """Mean path / chord over consecutive windows of ``window_mm`` of path [S8] (1.0 = straight)."""
    step = max(1, int(round(window_mm / SAMPLE_SPACING_MM)))
    if len(points) <= step:
        return float("nan")
    starts = np.arange(0, len(points) - step, step)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    path = cum[starts + step] - cum[starts]
    chord = np.linalg.norm(points[starts + step] - points[starts], axis=1)
    return float(np.mean(path / np.maximum(chord, 1e-9)))


def _radius_profile(spec: BranchSpec, arc: np.ndarray, children: list[tuple[float, float]], stenoses) -> np.ndarray:
    """Lumen radius along a branch: linear taper [S10] x Finet/Murray steps at its side branches x stenoses.

    children: (origin fraction, diameter step factor) of the branches that leave it.
    """
    s = arc / max(arc[-1], 1e-9)
    steps = np.ones_like(s)
    total_step = 1.0
    for origin, factor in children:
        steps[s > origin] *= factor
        total_step *= factor
    continuous = float(np.clip(spec.taper / total_step, 0.3, 1.0))  # what the steps leave to the smooth taper
    d = spec.diameter_mm * steps * (1.0 - (1.0 - continuous) * s)
    for st in stenoses:
        d *= 1.0 - st.severity * np.exp(-0.5 * ((s - st.position) / st.width) ** 2)
    return 0.5 * d


def build_tree(p: AnatomyParams) -> Tree:
    """Geometry from numbers: centrelines, radii and path lengths of every branch, and the catheter.

    Deterministic: the same ``AnatomyParams`` always give the same tree.
    """
    heart = Heart.from_params(p)
    specs = {b.name: b for b in p.branches}
    chi_g = math.radians(p.groove_chi_deg)
    step = 0.25  # construction grid (mm); resampled to SAMPLE_SPACING_MM afterwards
    base_centre = heart.centre - (heart.a_long + 12.0) * heart.e_l  # aortic root above the base
    aortic_root = base_centre + 8.0 * heart.e_1

    # Side-branch diameters and the step each one leaves on its parent (Finet / Murray [S3][S4]).
    order = [b.name for b in p.branches]
    branch_steps: dict[str, list[tuple[float, float]]] = {n: [] for n in order}
    diameters: dict[str, float] = {}
    for b in p.branches:
        if b.parent in ("", "LM"):
            diameters[b.name] = b.diameter_mm
    for b in p.branches:
        if b.parent in ("", "LM"):
            continue
        parent = specs[b.parent]
        d_mother = diameters[b.parent] * (1.0 - (1.0 - parent.taper) * b.origin)
        major, minor = _daughters(d_mother, b.ratio, p.branching_law, p.murray_exponent)
        diameters[b.name] = minor
        branch_steps[b.parent].append((b.origin, min(major / d_mother, 0.99)))

    branches: list[Branch] = []
    done: dict[str, Branch] = {}

    def add(spec: BranchSpec, pts: np.ndarray, chi: np.ndarray, psi: np.ndarray, path0: float, length: float | None):
        pts_r, arc, t = _resample(pts, length)
        chi_r = np.interp(t, np.arange(len(chi)), chi)
        psi_r = np.interp(t, np.arange(len(psi)), psi)
        spec_d = dataclasses.replace(spec, diameter_mm=diameters[spec.name])
        stenoses = [s for s in p.stenoses if s.branch == spec.name]
        radius = _radius_profile(spec_d, arc, branch_steps[spec.name], stenoses)
        br = Branch(spec_d, pts_r, radius, arc, path0 + arc, chi_r, psi_r, index=len(branches))
        if spec.parent:
            br.parent_index = done[spec.parent].index
        branches.append(br)
        done[spec.name] = br
        return br

    def surface_branch(spec: BranchSpec, chi0: float, psi0: float, lead_in: np.ndarray | None, path0: float):
        n = int(spec.length_mm * 1.6 / step) + 2
        chi, psi = _surface_path(heart, chi0, psi0, spec, n, step)
        pts = heart.surface(chi, psi)
        pts = _fit_warp(pts, heart, spec, p.tortuosity_target)
        if lead_in is not None:
            pts = np.concatenate([lead_in, pts[1:]])
            chi = np.concatenate([np.full(len(lead_in) - 1, np.nan), chi])
            psi = np.concatenate([np.full(len(lead_in) - 1, np.nan), psi])
        return add(spec, pts, chi, psi, path0, spec.length_mm)

    def child_start(spec: BranchSpec) -> tuple[float, float, float]:
        parent = done[spec.parent]
        i = min(int(round(spec.origin * (len(parent.arc) - 1))), len(parent.arc) - 1)
        i = max(i, int(np.argmax(np.isfinite(parent.chi))))  # not on the off-surface ostial segment
        return float(parent.chi[i]), float(parent.psi[i]), float(parent.path[i])

    if p.tree == "left":
        bif = heart.surface(np.array(chi_g), np.array(math.radians(p.lad_psi_deg)))
        to_aorta = aortic_root - bif
        ostium = bif + p.lm_length_mm * to_aorta / np.linalg.norm(to_aorta)
        lm_pts = ostium + np.linspace(0, 1, 40)[:, None] * (bif - ostium)
        lm = add(specs["LM"], lm_pts, np.full(40, np.nan), np.full(40, np.nan), 0.0, None)
        for name in ("LAD", "LCx"):
            surface_branch(specs[name], chi_g, math.radians(p.lad_psi_deg), None, float(lm.path[-1]))
        root_dir = (bif - ostium) / np.linalg.norm(bif - ostium)
    else:
        entry = heart.surface(np.array(chi_g), np.array(math.radians(p.rca_psi_deg)))
        to_aorta = aortic_root - entry
        ostium = entry + p.lm_length_mm * to_aorta / np.linalg.norm(to_aorta)
        lead = ostium + np.linspace(0, 1, 40)[:, None] * (entry - ostium)
        surface_branch(specs["RCA"], chi_g, math.radians(p.rca_psi_deg), lead, 0.0)
        root_dir = (entry - ostium) / np.linalg.norm(entry - ostium)
    for spec in p.branches:
        if spec.name in done:
            continue
        chi0, psi0, path0 = child_start(spec)
        surface_branch(spec, chi0, psi0, None, path0)

    # Start every side branch at its parent's wall, so that the two lumens are not counted twice where
    # they join (branches are drawn in separate layers whose attenuations add, see imaging.py). The LAD
    # continues the LM and shares its layer instead.
    for br in branches:
        br.group = br.index
        if br.parent_index < 0:
            continue
        parent = branches[br.parent_index]
        if br.spec.name == "LAD":
            br.group = parent.group
            continue
        r_wall = float(np.interp(br.spec.origin * parent.arc[-1], parent.arc, parent.radius))
        first = min(int(np.argmax(np.linalg.norm(br.points - br.points[0], axis=1) >= r_wall)), len(br.arc) - 3)
        for name in ("points", "radius", "arc", "path", "chi", "psi"):
            setattr(br, name, getattr(br, name)[first:])

    catheter, r_cath = _catheter(ostium, root_dir, aortic_root, p.catheter_french)
    tree = Tree(p, heart, branches, catheter, r_cath, aortic_root)
    # Centre the tree in the field of view (plus a little jitter): move everything, heart included.
    shift = np.asarray(p.centre_jitter_mm) - tree.points.mean(axis=0)
    _translate(tree, shift)
    tree.stats = anatomy_statistics(tree)
    return tree


def _fit_warp(pts: np.ndarray, heart: Heart, spec: BranchSpec, target: float) -> np.ndarray:
    """Warp a centreline so that its tortuosity index reaches ``target`` (TI excess ~ amplitude^2)."""
    base, arc, _ = _resample(pts, spec.length_mm)
    ti0 = tortuosity_index(base)
    probe = _warp(pts, heart, 1.0, spec.warp_seed)
    ti1 = tortuosity_index(_resample(probe, spec.length_mm)[0])
    if not (np.isfinite(ti0) and np.isfinite(ti1)) or ti1 <= ti0 or target <= ti0:
        return probe if np.isfinite(ti1) and ti1 < target else pts
    amplitude = math.sqrt((target - ti0) / (ti1 - ti0))
    return _warp(pts, heart, min(amplitude, 4.0), spec.warp_seed)


def _catheter(ostium: np.ndarray, root_dir: np.ndarray, aortic_root: np.ndarray, french: float):
    """A Judkins-like catheter: tip engaged in the ostium, up the ascending aorta, over the arch, down
    the descending aorta beside the spine and out of the field. Returns (centreline [Q, 3], outer radius mm)."""
    up, left, back = np.array([0, 0, 1.0]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    ctrl = np.array(
        [
            ostium,
            ostium - 10.0 * root_dir,
            aortic_root + 35.0 * up - 5.0 * left,
            aortic_root + 70.0 * up + 20.0 * left + 25.0 * back,
            aortic_root + 40.0 * up + 35.0 * left + 55.0 * back,
            aortic_root - 60.0 * up + 30.0 * left + 60.0 * back,
            aortic_root - 260.0 * up + 30.0 * left + 60.0 * back,
        ]
    )
    knots = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
    spline = CubicSpline(knots, ctrl, axis=0, bc_type="natural")
    dense = spline(np.linspace(0, knots[-1], 2000))
    points, _, _ = _resample(dense)
    return points, french / 3.0 / 2.0  # 1 F = 1/3 mm [S24]


def _translate(tree: Tree, shift: np.ndarray) -> None:
    for b in tree.branches:
        b.points = b.points + shift
    tree.catheter = tree.catheter + shift
    tree.aortic_root = tree.aortic_root + shift
    tree.heart = Heart(tree.heart.centre + shift, tree.heart.e_l, tree.heart.e_1, tree.heart.e_2,
                       tree.heart.a_long, tree.heart.a_short)


def _direction_from(origin: np.ndarray, points: np.ndarray, at_mm: float = 5.0) -> np.ndarray:
    """Unit vector from ``origin`` to the first point of ``points`` at least ``at_mm`` away (QCA-style angle)."""
    far = np.linalg.norm(points - origin, axis=1) >= at_mm
    v = points[int(np.argmax(far)) if far.any() else -1] - origin
    return v / (np.linalg.norm(v) + 1e-12)


def anatomy_statistics(tree: Tree) -> dict[str, float]:
    """Literature checks of one tree: diameters (mm) [S1], bifurcation ratio [S3], TI [S8], LAD-LCx angle [S6][S7]."""
    stats: dict[str, float] = {}
    for b in tree.branches:
        stats[f"{b.spec.name}_proximal_diameter_mm"] = float(2 * b.radius[0])
        stats[f"{b.spec.name}_distal_diameter_mm"] = float(2 * b.radius[-1])
        stats[f"{b.spec.name}_length_mm"] = float(b.arc[-1] - b.arc[0])
        if b.spec.name not in ("LM",):
            stats[f"{b.spec.name}_tortuosity_index"] = tortuosity_index(b.points)
    names = {b.spec.name for b in tree.branches}
    if {"LAD", "LCx", "LM"} <= names:
        lad, lcx, lm = tree.branch("LAD"), tree.branch("LCx"), tree.branch("LM")
        bif = lm.points[-1]
        cos = float(_direction_from(bif, lad.points) @ _direction_from(bif, lcx.points))
        stats["lad_lcx_angle_deg"] = math.degrees(math.acos(np.clip(cos, -1, 1)))
        stats["lm_bifurcation_ratio"] = float(2 * lm.radius[-1] / (2 * lad.radius[0] + 2 * lcx.radius[0]))
    tis = [v for k, v in stats.items() if k.endswith("_tortuosity_index") and np.isfinite(v)]
    stats["mean_tortuosity_index"] = float(np.mean(tis)) if tis else float("nan")
    return stats


# --------------------------------------------------------------------------------------------------
# The camera: a C-arm cone beam
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """Pinhole (cone-beam) projection of a C-arm.

    primary_deg    LAO (+) / RAO (-) rotation; secondary_deg  CRA (+) / CAU (-) tilt
    sid_mm         source-image distance (the focal length); sod_mm source-isocentre distance
    pixel_mm       detector pixel at this image size; size  image side in pixels
    """

    primary_deg: float
    secondary_deg: float
    sid_mm: float
    sod_mm: float
    pixel_mm: float
    size: int

    @property
    def magnification(self) -> float:
        """SID / SOD at the isocentre (1.36-1.65 measured on real headers)."""
        return self.sid_mm / self.sod_mm

    @property
    def pixel_iso_mm(self) -> float:
        """Pixel size at the isocentre, mm."""
        return self.pixel_mm / self.magnification

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(d, e_u, e_v): isocentre -> detector direction, image right, image down (LPS unit vectors)."""
        a, b = math.radians(self.primary_deg), math.radians(self.secondary_deg)
        # AP view (0, 0): the detector is anterior; LAO swings it to the patient's left, CRA toward the head.
        d = np.array([math.sin(a) * math.cos(b), -math.cos(a) * math.cos(b), math.sin(b)])
        e_u = np.array([math.cos(a), math.sin(a), 0.0])
        e_v = np.cross(e_u, d)
        e_v /= np.linalg.norm(e_v)
        return d, e_u, e_v

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """points [..., 3] mm -> (col, row, px_per_mm), each [...]: image position (pixels, origin at the
        top-left pixel centre) and the local scale (pixels per mm at that depth) for radii."""
        d, e_u, e_v = self.basis()
        depth = points @ d + self.sod_mm  # distance from the source along the central ray
        scale = self.sid_mm / depth / self.pixel_mm
        centre = (self.size - 1) / 2.0
        return centre + (points @ e_u) * scale, centre + (points @ e_v) * scale, scale

    def image_axes_mm(self, vector: np.ndarray) -> np.ndarray:
        """A 3-D displacement (mm at the isocentre) -> image displacement (d_col, d_row) in pixels."""
        _, e_u, e_v = self.basis()
        m = self.magnification / self.pixel_mm
        return np.stack([vector @ e_u * m, vector @ e_v * m], axis=-1)


#: RCA views of the Iyer generator [S10] as (primary, secondary) degrees: LAO 40/CRA 10, RAO 75/CRA 10,
#: LAO 0/CRA 25, RAO 30/CAU 0.
RCA_VIEWS = ((40.0, 10.0), (-75.0, 10.0), (0.0, 25.0), (-30.0, 0.0))


def sample_camera(rng: np.random.Generator, tree: str, image_size: int) -> Camera:
    """Draw a C-arm geometry and view (the Iyer generator [S10], and real XA headers, measured).

    SID 1.0-1.2 m, SOD 0.65-0.8 m (magnification 1.36-1.65), detector pixel 0.28-0.4 mm at 512^2 (the
    field of view is kept, so smaller images have proportionally larger pixels). Views: LCA RAO/LAO +-40 deg,
    CRA/CAU +-30 deg (assumption); RCA one of ``RCA_VIEWS`` +-5 deg, plus 0-10 deg secondary [S10].
    """
    u = rng.uniform
    sid = float(u(1000, 1200))
    sod = float(np.clip(sid / u(1.36, 1.65), 650, 800))
    pixel_512 = float(u(0.28, 0.4))
    if tree == "left":
        primary, secondary = float(u(-40, 40)), float(u(-30, 30))
    else:
        p0, s0 = RCA_VIEWS[int(rng.integers(len(RCA_VIEWS)))]
        primary, secondary = p0 + float(u(-5, 5)), s0 + float(u(0, 10))
    return Camera(primary, secondary, sid, sod, pixel_512 * 512.0 / image_size, int(image_size))
