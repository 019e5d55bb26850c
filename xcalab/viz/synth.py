"""Figures of the XCA-Synth simulator: the tree, the contrast curves, frames with their truth, motion, realism.

Every function takes data (a ``Cine`` made by XCA-Synth, its ``SimParams``, or realism rows) and, where
one axes suffices, ``ax=None``; each returns the matplotlib Figure and never calls ``plt.show()``.

    plot_tree(params)                   3-D centrelines on the heart + their cone-beam projection
    plot_projection(params, ax)         the projected tree (line width = lumen diameter) and the catheter
    plot_contrast_curves(seq, ax)       iodine mass, opacified area, injection, blush; keyframes and phases
    plot_synth_strip(seq)               frames with keyframes marked, over their opacified-vessel maps
    plot_motion(seq)                    heartbeat / breathing / pan curves and two cardiac phases overlaid
    plot_realism_table(rows, ax)        the realism table (synth vs target vs real), out-of-range cells marked
    plot_real_vs_synth(real, synth)     a real and a synthetic frame side by side at the same grey scale and size
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xcalab.data.io import Cine
from xcalab.data.phases import PHASE_NAMES
from xcalab.viz.common import colour_bar, figure_and_axes, shade_phases
from xcalab.viz.palette import KEYFRAME_COLORS


def _params(source):
    """SimParams from a SimParams or an XCA-Synth Cine (its meta["params"])."""
    from xcalab.data.synth.params import SimParams

    if isinstance(source, SimParams):
        return source
    if isinstance(source, Cine) and isinstance(source.meta.get("params"), dict):
        return SimParams.from_dict(source.meta["params"])
    raise ValueError("expected an XCA-Synth Cine (with meta['params']) or a SimParams")


def _synthetic(seq: Cine) -> Cine:
    if seq.truth is None or "curves" not in seq.meta:
        raise ValueError(f"{seq.video_id!r} is not an XCA-Synth sequence with truth and curves")
    return seq


# --------------------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------------------


def plot_projection(params, ax: Axes | None = None, catheter: bool = True, labels: bool = True) -> Figure:
    """The tree projected by the run's C-arm: line width = lumen diameter on the detector, image axes in pixels.

    params: ``SimParams`` or an XCA-Synth ``Cine``.
    """
    from xcalab.data.synth.anatomy import build_tree

    p = _params(params)
    tree, cam = build_tree(p.anatomy), p.camera
    fig, ax = figure_and_axes(ax, (5, 5))
    pt_per_px = 72.0 / fig.dpi * (ax.get_window_extent().width / cam.size if ax.get_window_extent().width else 1.0)
    for b in tree.branches:
        col, row, scale = cam.project(b.points)
        width = float(np.median(2 * b.radius * scale)) * pt_per_px
        ax.plot(col, row, lw=max(width, 0.6), solid_capstyle="round", color="0.15")
        if labels:
            k = len(col) // 2
            ax.annotate(b.spec.name, (col[k], row[k]), fontsize=7, color="tab:red", xytext=(3, 3), textcoords="offset points")
    if catheter:
        col, row, _ = cam.project(tree.catheter)
        ax.plot(col, row, lw=1.0, color="tab:blue", alpha=0.7, label="catheter")
    ax.set_xlim(0, cam.size - 1)
    ax.set_ylim(cam.size - 1, 0)
    ax.set_aspect("equal")
    ax.set_title(f"{p.anatomy.tree} tree, {'LAO' if cam.primary_deg >= 0 else 'RAO'} {abs(cam.primary_deg):.0f} / "
                 f"{'CRA' if cam.secondary_deg >= 0 else 'CAU'} {abs(cam.secondary_deg):.0f}", fontsize=9)
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    return fig


def plot_tree(params) -> Figure:
    """Two panels: the 3-D centrelines on the epicardial ellipsoid (LPS mm), and their cone-beam projection."""
    from xcalab.data.synth.anatomy import build_tree

    p = _params(params)
    tree = build_tree(p.anatomy)
    fig = plt.figure(figsize=(10, 4.8))
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    h = tree.heart
    chi, psi = np.meshgrid(np.linspace(0, np.pi, 18), np.linspace(0, 2 * np.pi, 24))
    surf = h.surface(chi, psi, lift_mm=0.0)
    ax3.plot_wireframe(surf[..., 0], surf[..., 1], surf[..., 2], color="0.8", linewidth=0.4)
    for b in tree.branches:
        ax3.plot(*b.points.T, lw=max(float(b.radius.mean()) * 1.5, 0.6), label=b.spec.name)
    ax3.plot(*tree.catheter[:200].T, color="tab:blue", lw=0.8, alpha=0.6)
    ax3.set_xlabel("x left (mm)")
    ax3.set_ylabel("y posterior (mm)")
    ax3.set_zlabel("z head (mm)")
    ax3.legend(fontsize=6, loc="upper left")
    ax3.set_title("3-D centrelines on the epicardium", fontsize=9)
    plot_projection(p, fig.add_subplot(1, 2, 2))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Contrast and truth
# --------------------------------------------------------------------------------------------------


def plot_contrast_curves(seq: Cine, ax: Axes | None = None, seconds: bool = True) -> Figure:
    """Iodine mass (the keyframe curve), opacified area, injection and blush over time, each scaled to peak 1;
    the phases shaded, the keyframes drawn, and the rule's thresholds dotted."""
    seq = _synthetic(seq)
    curves, rule = seq.meta["curves"], seq.meta.get("keyframe_rule", {})
    n = seq.n_frames
    t = np.arange(n) / seq.fps if seconds else np.arange(n)
    fig, ax = figure_and_axes(ax, (8, 3.2))
    shade_phases(ax, seq.truth.phases, t)
    for key, style, label in (("iodine_mass_mg", "-", "iodine mass (keyframe curve)"),
                              ("opacified_area_px", "--", "opacified area"),
                              ("injection", ":", "injection at the ostium"),
                              ("blush", "-.", "myocardial blush")):
        y = np.asarray(curves.get(key, []), dtype=float)
        if len(y) == n and y.max() > 0:
            ax.plot(t, y / y.max(), style, lw=1.6 if key == "iodine_mass_mg" else 1.0, label=label, color="k" if key == "iodine_mass_mg" else None)
    for frac in (rule.get("start_fraction"), rule.get("end_fraction")):
        if frac:
            ax.axhline(frac, color="0.5", lw=0.6, ls=":")
    for name, k in zip(("start", "apex", "end"), seq.truth.keyframes):
        ax.axvline(t[k], color=KEYFRAME_COLORS[name], lw=1.5)
        ax.annotate(f"{name} {k}", (t[k], 1.04), color=KEYFRAME_COLORS[name], fontsize=8, ha="center",
                    xycoords=("data", "data"))
    ax.set_ylim(0, 1.12)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("time (s)" if seconds else "frame")
    ax.set_ylabel("relative to peak")
    ax.legend(fontsize=7, loc="center right", ncol=1)
    ax.set_title(f"{seq.video_id}: contrast passage ({n} frames at {seq.fps:g} fps)", fontsize=9)
    return fig


def plot_synth_strip(seq: Cine, n: int = 6, indices: list[int] | None = None) -> Figure:
    """Frames (top) over their opacified-vessel maps (bottom); keyframes framed in their colour, phase in the title."""
    seq = _synthetic(seq)
    kf = seq.truth.keyframes
    if indices is None:
        rest = max(n - 3, 0)
        spread = np.linspace(0, seq.n_frames - 1, rest + 2)[1:-1] if rest else []
        indices = sorted({*kf, *(int(round(i)) for i in spread)})
    names = {k: name for name, k in zip(("start", "apex", "end"), kf)}
    fig, axes = plt.subplots(2, len(indices), figsize=(1.7 * len(indices) + 0.8, 3.7), squeeze=False,
                             layout="constrained")
    for j, i in enumerate(indices):
        top, bottom = axes[0, j], axes[1, j]
        top.imshow(seq.frames[i], cmap="gray", vmin=0, vmax=1)
        vessels = bottom.imshow(seq.truth.vessel_maps[i], cmap="magma", vmin=0, vmax=1)
        title = f"#{i}  {PHASE_NAMES[int(seq.truth.phases[i])]}"
        if i in names:
            title = f"{names[i]} #{i}"
            for spine in top.spines.values():
                spine.set_edgecolor(KEYFRAME_COLORS[names[i]])
                spine.set_linewidth(3)
        top.set_title(title, fontsize=7, color=KEYFRAME_COLORS.get(names.get(i, ""), "black"))
        for a in (top, bottom):
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("frame", fontsize=8)
    axes[1, 0].set_ylabel("vessel map", fontsize=8)
    colour_bar(fig, vessels, list(axes[1]), "vessel opacity")
    return fig


# --------------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------------


def plot_motion_curves(seq: Cine, ax: Axes | None = None) -> Figure:
    """Squeeze / shortening / twist contraction, breathing (mm) and table pan (mm) over time; R waves dotted."""
    from xcalab.data.synth.motion import contraction_profiles, r_wave_times, respiration, table_pan

    p = _params(seq)
    m = p.motion
    t = np.linspace(0, p.n_frames / p.fps, 600)
    prof = contraction_profiles(m, t)
    fig, ax = figure_and_axes(ax, (8, 3))
    for k, label in enumerate(("squeeze", "shortening", "twist")):
        ax.plot(t, prof[:, k], lw=1.2, label=label)
    ax.set_ylabel("contraction (0-1)")
    for r in r_wave_times(m):
        if 0 <= r <= t[-1]:
            ax.axvline(r, color="0.6", ls=":", lw=0.8)
    twin = ax.twinx()
    twin.plot(t, np.linalg.norm(respiration(m, t), axis=1), color="tab:purple", lw=1.2, label=f"breathing ({m.breathing}), mm")
    twin.plot(t, np.linalg.norm(table_pan(m, t), axis=1), color="tab:brown", lw=1.2, ls="--", label="table pan, mm")
    twin.set_ylabel("shift (mm)")
    lines = ax.get_lines()[:3] + twin.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
    ax.set_xlabel("time (s)")
    ax.set_title(f"motion: {m.heart_rate_bpm:.0f} bpm, R waves dotted", fontsize=9)
    return fig


def plot_motion(seq: Cine) -> Figure:
    """Left: the motion curves. Right: opacified vessels at the most and least contracted plateau frames
    (red / cyan; white where they overlap) -- how far a heartbeat moves the arteries."""
    seq = _synthetic(seq)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.8, 1]})
    plot_motion_curves(seq, a0)
    contraction = np.asarray(seq.meta["curves"]["contraction"])
    lit = np.nonzero(seq.truth.phases == 2)[0]  # the plateau: same contrast, only motion differs
    if len(lit) < 2:
        lit = np.nonzero((seq.truth.phases >= 1) & (seq.truth.phases <= 3))[0]
    if len(lit) < 2:
        lit = np.arange(seq.n_frames)
    hi, lo = int(lit[np.argmax(contraction[lit])]), int(lit[np.argmin(contraction[lit])])
    a, b = seq.truth.vessel_maps[hi], seq.truth.vessel_maps[lo]
    a1.imshow(np.stack([a, b, b], axis=-1).clip(0, 1))
    a1.set_title(f"systole #{hi} (red) vs diastole #{lo} (cyan)", fontsize=9)
    a1.set_xticks([])
    a1.set_yticks([])
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Realism
# --------------------------------------------------------------------------------------------------


def plot_realism_table(rows, ax: Axes | None = None) -> Figure:
    """The realism table as a figure: statistic, target, XCA-Synth median [min, max], real cine.

    rows: ``realism.realism_table(...)`` output. Synth cells outside the target are red, inside green.
    """
    rows = list(rows)
    fig, ax = figure_and_axes(ax, (10, 0.3 * len(rows) + 0.9))
    ax.axis("off")
    cells, colours = [], []
    for r in rows:
        real = "-" if not np.isfinite(r.real) else f"{r.real:.3g}"
        cells.append([r.name, f"{r.target[0]:g} - {r.target[1]:g}",
                      f"{r.synth_median:.3g}  [{r.synth_min:.3g}, {r.synth_max:.3g}]", real])
        ok_real = np.isfinite(r.real) and r.target[0] <= r.real <= r.target[1]
        colours.append(["white", "white", "#d8f0d8" if r.inside else "#f6d0d0",
                        "white" if not np.isfinite(r.real) else ("#d8f0d8" if ok_real else "#f6d0d0")])
    table = ax.table(cellText=cells, cellColours=colours, colLabels=["statistic", "target (real XCA)",
                     "XCA-Synth median [min, max]", "real cine"], loc="center", cellLoc="left",
                     colWidths=[0.3, 0.2, 0.34, 0.16])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.3)
    ax.set_title("XCA-Synth realism: same statistics, same code, on synthetic and real cines", fontsize=9)
    return fig


def _match_size(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from scipy import ndimage

    if frame.shape == size:
        return frame
    return ndimage.zoom(frame, (size[0] / frame.shape[0], size[1] / frame.shape[1]), order=1)


def plot_real_vs_synth(real: Cine, synth: Cine, real_frame: int | None = None,
                       synth_frame: int | None = None) -> Figure:
    """A real and a synthetic frame side by side on the same grey scale (0-1) and pixel grid (the synthetic
    frame is resampled to the real frame's size), each with its grey-level histogram inside the field.

    Frames default to maximal opacification: the truth apex, or the real cine's darkest-vessel frame (its
    vessel-index peak).
    """
    from xcalab.data.synth.realism import field_of_view, vessel_index_curve

    def pick(seq: Cine, frame: int | None) -> int:
        if frame is not None:
            return int(frame)
        if seq.truth is not None:
            return int(seq.truth.keyframes[1])
        grey = seq.frames * 255
        return int(np.argmax(vessel_index_curve(grey, field_of_view(grey))))

    ri, si = pick(real, real_frame), pick(synth, synth_frame)
    a = real.frames[ri]
    b = _match_size(synth.frames[si], a.shape)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for ax, img, label in ((axes[0], a, f"real: {real.video_id} #{ri}"), (axes[1], b, f"XCA-Synth: {synth.video_id} #{si}")):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for img, label in ((a, "real"), (b, "XCA-Synth")):
        inside = img[img > 8 / 255]
        axes[2].hist(inside * 255, bins=64, range=(0, 255), histtype="step", density=True, label=label)
    axes[2].set_xlabel("grey level (8-bit)")
    axes[2].set_title("grey levels inside the field", fontsize=9)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig
