"""Figures of the image-to-patch contrast (seed paper Sec. III-E and III-F; notebooks 04 and 05).

Imagewise contrast (ICon): the long-term attention A splits Y = X + TA(X) into a foreground Y * A and a
background Y * (1 - A) (eq. 9); a projection g and a soft-nearest-neighbour loss (eq. 10) pull the foreground
vectors together and push them away from the background ones, at steps sampled next to the apex.
Patchwise projection (PCon): a 5 x 5 patch of the step-0 map, used as a correlation kernel on every step.

Every function takes arrays (numpy, torch, anything ``np.asarray`` reads) and returns the matplotlib Figure;
none calls ``plt.show()``. Bad shapes raise ValueError.

    plot_foreground_background(frames, foreground, background, steps)   frames over Y * A and Y * (1 - A)
    plot_attention_comparison(frames, attentions, steps)                 A of several models on one colour scale
    plot_snn_loss_vs_temperature(temperatures, losses)                  eq. 10's loss against tau, one line per case
    plot_embeddings_2d(points, labels, losses)                           foreground/background embeddings in 2-D
    plot_sampled_steps(segments, labels, length, fg_steps, bg_steps)     where ICon samples, on the true segments
    plot_patch_and_responses(maps, responses, centre, steps)            the step-0 patch, its kernel, the responses
    plot_response_histograms(responses, vessel)                          responses of vessel vs background pixels
    plot_patch_choices(scores)                                           Table VII: scores of several patch choices

What some of them draw is computed by ``xcalab.probes.contrast``: ``pca_2d`` (embeddings -> 2-D),
``cosine_summary`` (mean cosine similarities within and between the two groups: what eq. 10 reads) and
``patch_of`` (PCon's patch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from xcalab.probes.contrast import Projection2D, patch_of
from xcalab.runtime import as_array
from xcalab.viz.common import UNIT_RANGE, colour_bar, flat_warning, image_panel
from xcalab.viz.palette import ACTION_COLORS

#: One colour per side of the contrast, used by every figure here (vessel pixels count as foreground).
CLASS_COLORS = {"foreground": "crimson", "background": "steelblue"}
#: Action names by class id (problem setting 0).
ACTION_NAMES = ("filling", "disappearing")


def _row_label(ax: Axes, text: str) -> None:
    ax.set_ylabel(text, fontsize=8)


def _steps(steps: Sequence[int], length: int) -> list[int]:
    idx = [int(s) for s in steps]
    if not idx or min(idx) < 0 or max(idx) >= length:
        raise ValueError(f"steps must be in 0..{length - 1}, got {idx}")
    return idx


# --------------------------------------------------------------------------------------------------
# Imagewise contrast (notebook 04)
# --------------------------------------------------------------------------------------------------


def plot_foreground_background(
    frames,
    foreground,
    background,
    steps: Sequence[int],
    attention=None,
    centres: Sequence[int] | None = None,
) -> Figure:
    """One column per chosen step: the frame, (A,) the foreground Y * A and the background Y * (1 - A) (eq. 9).

    frames       [T, H, W] in [0, 1], one frame per feature step (e.g. the frame each step is centred on)
    foreground   [T, S, S] Y * A maps; background [T, S, S] Y * (1 - A) maps
    steps        the steps to show (columns)
    attention    [T, S, S] A, drawn as an extra row when given
    centres      [T] frame index of each step, for the column titles

    Foreground and background share one colour scale (0 to the larger maximum of the shown maps) and one
    colour bar, so their brightness compares directly. A is a sigmoid gate: it is drawn on its declared range
    (0, 1) with its own colour bar (``viz.common`` map convention), its shown range is in the row label, and a
    nearly constant A (range < ``FLAT_GATE``) gets a red warning as the row's title: on the fixed scale it looks uniform because it is.
    """
    frames = as_array(frames, 3, "frames", "[T, H, W]")
    rows = {"foreground  Y·A": as_array(foreground, 3, "foreground", "[T, S, S]"),
            "background  Y·(1−A)": as_array(background, 3, "background", "[T, S, S]")}
    if attention is not None:
        rows = {"attention A": as_array(attention, 3, "attention", "[T, S, S]"), **rows}
    lengths = {len(frames), *(len(v) for v in rows.values())}
    if len(lengths) != 1:
        raise ValueError(f"frames, foreground, background (and attention) need one length, got {sorted(lengths)}")
    idx = _steps(steps, len(frames))
    if centres is not None and len(centres) != len(frames):
        raise ValueError(f"centres must hold one frame per step ({len(frames)}), got {len(centres)}")
    vmax = max(float(rows[k][idx].max()) for k in rows if k != "attention A") or 1.0
    fig, axes = plt.subplots(1 + len(rows), len(idx), figsize=(1.55 * len(idx) + 1.4, 1.6 * (1 + len(rows))),
                             squeeze=False, layout="constrained")
    for c, k in enumerate(idx):
        title = f"step {k}" + (f"\nframe {int(centres[k])}" if centres is not None else "")
        image_panel(axes[0, c], frames[k], title, cmap="gray", vmax=1.0)
        for r, (name, maps) in enumerate(rows.items(), start=1):
            if name == "attention A":
                image_panel(axes[r, c], maps[k], cmap="viridis", vmin=UNIT_RANGE[0], vmax=UNIT_RANGE[1])
            else:
                image_panel(axes[r, c], maps[k], vmax=vmax)
    _row_label(axes[0, 0], "frame")
    for r, (name, maps) in enumerate(rows.items(), start=1):
        if name == "attention A":
            name += f"\n{float(maps[idx].min()):.3f}–{float(maps[idx].max()):.3f}"
            warning = flat_warning(maps[idx])
            if warning:  # above the row, where it is seen first
                axes[r, 0].set_title(warning, color="tab:red", fontsize=7, loc="left")
            colour_bar(fig, axes[r, 0].images[0], list(axes[r]), "A")
        _row_label(axes[r, 0], name)
    first_map_row = 2 if attention is not None else 1
    colour_bar(fig, axes[first_map_row, 0].images[0], list(axes[first_map_row:].ravel()), "Y·A, Y·(1−A)")
    return fig


def plot_attention_comparison(
    frames,
    attentions: Mapping[str, np.ndarray],
    steps: Sequence[int],
    centres: Sequence[int] | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Figure:
    """The attention map A of several models (or modes) at the same steps, all on one fixed colour scale.

    frames      [T, H, W] in [0, 1], one frame per feature step
    attentions  row name -> [T, S, S] A maps (e.g. the model at inference, with batch statistics, ...)
    steps       the steps to show (columns); centres [T] the frame of each step, for the column titles
    vmin, vmax  the colour scale shared by every row (A is a sigmoid output: 0 to 1 by default)

    Unlike ``plot_foreground_background``, A is not stretched to its own range: a nearly uniform A then
    looks uniform, so the rows compare at a glance. Each row label gives A's range over the shown steps.
    One colour bar on the right.
    """
    frames = as_array(frames, 3, "frames", "[T, H, W]")
    if not attentions:
        raise ValueError("attentions is empty: give at least one row name -> [T, S, S] maps")
    rows = {name: as_array(maps, 3, f"attentions[{name!r}]", "[T, S, S]") for name, maps in attentions.items()}
    lengths = {len(frames), *(len(v) for v in rows.values())}
    if len(lengths) != 1:
        raise ValueError(f"frames and every attention need one length, got {sorted(lengths)}")
    if not vmax > vmin:
        raise ValueError(f"vmax must exceed vmin, got {vmin} and {vmax}")
    idx = _steps(steps, len(frames))
    if centres is not None and len(centres) != len(frames):
        raise ValueError(f"centres must hold one frame per step ({len(frames)}), got {len(centres)}")
    fig, axes = plt.subplots(1 + len(rows), len(idx), figsize=(1.55 * len(idx) + 1.6, 1.6 * (1 + len(rows))),
                             squeeze=False, layout="constrained")
    for c, k in enumerate(idx):
        title = f"step {k}" + (f"\nframe {int(centres[k])}" if centres is not None else "")
        image_panel(axes[0, c], frames[k], title, cmap="gray", vmax=1.0)
        for r, maps in enumerate(rows.values(), start=1):
            image_panel(axes[r, c], maps[k], cmap="viridis", vmin=vmin, vmax=vmax)
    _row_label(axes[0, 0], "frame")
    for r, (name, maps) in enumerate(rows.items(), start=1):
        _row_label(axes[r, 0], f"{name}\nA {float(maps[idx].min()):.2f}–{float(maps[idx].max()):.2f}")
    fig.colorbar(axes[1, 0].images[0], ax=axes[1:, :].ravel().tolist(), shrink=0.8, label="A")
    return fig


def plot_snn_loss_vs_temperature(
    temperatures, losses: Mapping[str, Sequence[float]], reference: float | None = 1.0, ax: Axes | None = None
) -> Figure:
    """The soft-nearest-neighbour loss (eq. 10) against the temperature tau, one line per case.

    temperatures  [K] positive values of tau (drawn on a log axis)
    losses        case name -> [K] losses at those temperatures
    reference     tau of the reference implementation, marked by a dotted line (None: no mark)
    """
    tau = as_array(temperatures, 1, "temperatures", "[K]", np.float64)
    if len(tau) == 0 or (tau <= 0).any():
        raise ValueError(f"temperatures must be a non-empty list of positive numbers, got {tau.tolist()}")
    if not losses:
        raise ValueError("losses is empty: give at least one case name -> [K] losses")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.2))
    else:
        fig = ax.figure
    for name, values in losses.items():
        y = as_array(values, 1, f"losses[{name!r}]", "[K]", np.float64)
        if len(y) != len(tau):
            raise ValueError(f"losses[{name!r}] has {len(y)} values for {len(tau)} temperatures")
        ax.plot(tau, y, marker="o", ms=3, lw=1.5, label=name)
    if reference is not None:
        ax.axvline(reference, color="k", ls=":", lw=1.2, label=f"reference τ = {reference:g}")
    ax.set_xscale("log")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel("SNN loss (eq. 10)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_embeddings_2d(
    points: Mapping[str, np.ndarray | Projection2D],
    labels,
    losses: Mapping[str, float] | None = None,
    show_origin: bool = False,
) -> Figure:
    """One scatter panel per entry of ``points``: foreground and background embeddings in 2-D.

    points       panel title -> (N, 2) points, or a ``Projection2D`` (its axes are then labelled PC1/PC2 with
                 the variance they explain)
    labels       (N,) 1/True = foreground, 0/False = background, shared by every panel; or panel -> (N,)
    losses       panel title -> SNN loss, written under the title
    show_origin  draw the origin and the unit circle (for raw 2-D toy vectors, where a cosine is an angle)
    """
    if not points:
        raise ValueError("points is empty: give at least one panel title -> (N, 2) points")
    fig, axes = plt.subplots(1, len(points), figsize=(3.4 * len(points), 3.4), squeeze=False)
    for ax, (name, value) in zip(axes[0], points.items()):
        explained = value.explained if isinstance(value, Projection2D) else None
        xy = as_array(value.points if explained is not None else value, 2, f"points[{name!r}]", "(N, 2)")
        if xy.shape[1] != 2:
            raise ValueError(f"points[{name!r}] must be (N, 2), got {xy.shape}")
        lab = labels[name] if isinstance(labels, Mapping) else labels
        lab = np.asarray(lab.detach().cpu() if hasattr(lab, "detach") else lab).astype(bool)
        if lab.shape != (len(xy),):
            raise ValueError(f"labels of {name!r} must be ({len(xy)},), got {lab.shape}")
        if show_origin:
            t = np.linspace(0, 2 * np.pi, 200)
            ax.plot(np.cos(t), np.sin(t), color="0.8", lw=1, zorder=0)
            ax.plot([0], [0], marker="+", color="k", ms=10, zorder=0)
        for side, mask in (("background", ~lab), ("foreground", lab)):
            ax.scatter(xy[mask, 0], xy[mask, 1], s=18, color=CLASS_COLORS[side], alpha=0.75,
                       marker="o" if side == "foreground" else "s", label=f"{side} ({int(mask.sum())})")
        title = name + (f"\nSNN loss {losses[name]:.3f}" if losses and name in losses else "")
        ax.set_title(title, fontsize=9)
        if explained is not None:
            ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f} % of variance)", fontsize=8)
            ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f} %)", fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_sampled_steps(
    segments,
    labels,
    length: int,
    fg_steps,
    bg_steps=None,
    stride: int | None = None,
    offset: float = 2.0,
    title: str | None = None,
) -> Figure:
    """Where the imagewise contrast samples: the true segments (top) and R repeated draws (bottom).

    segments   (N, 2) ground-truth [start, end] in feature steps; labels (N,) class ids (0 filling, 1 disappearing)
    length     valid steps of the cine (the x axis runs over 0..length-1)
    fg_steps   (R, N) foreground step drawn for each segment, in R repetitions (e.g. R forward passes)
    bg_steps   (R, N) background steps (an independent draw), or None
    stride, offset   with a stride, a top axis gives the frame a step describes: stride * step + offset

    Filled circles are foreground draws, open squares background draws, coloured by their segment's action.
    """
    seg = as_array(segments, 2, "segments", "(N, 2)", np.float64)
    lab = as_array(labels, 1, "labels", "(N,)", np.int64)
    fg = as_array(fg_steps, 2, "fg_steps", "(R, N)", np.int64)
    bg = None if bg_steps is None else as_array(bg_steps, 2, "bg_steps", "(R, N)", np.int64)
    if seg.shape[1] != 2 or len(lab) != len(seg) or fg.shape[1] != len(seg) or (bg is not None and bg.shape != fg.shape):
        raise ValueError(f"segments (N, 2), labels (N,), fg_steps/bg_steps (R, N) disagree: {seg.shape}, {lab.shape}, "
                         f"{fg.shape}, {None if bg is None else bg.shape}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 1.2 + 0.16 * len(fg) + 0.6), sharex=True,
                                      gridspec_kw={"height_ratios": [1, max(2.0, 0.16 * len(fg) + 0.4)]})
    colors = [ACTION_COLORS[ACTION_NAMES[int(k)] if int(k) < len(ACTION_NAMES) else "whole"] for k in lab]
    for (s, e), k, color in zip(seg, lab, colors):
        name = ACTION_NAMES[int(k)] if int(k) < len(ACTION_NAMES) else f"class {int(k)}"
        top.barh(0, e - s, left=s, height=0.6, color=color, alpha=0.6, edgecolor="k", lw=0.8)
        top.text((s + e) / 2, 0, f"{name}\n[{s:.2f}, {e:.2f}]", ha="center", va="center", fontsize=7)
    top.set_yticks([])
    top.set_ylim(-0.5, 0.5)
    top.set_title(title or "ground-truth segments (feature steps)", fontsize=9)
    for r in range(len(fg)):
        for j, color in enumerate(colors):
            bottom.plot(fg[r, j] - 0.12, r, marker="o", ms=5, color=color, ls="none")
            if bg is not None:
                bottom.plot(bg[r, j] + 0.12, r, marker="s", ms=5, mfc="none", mec=color, ls="none")
    handles = [Line2D([], [], marker="o", color="0.3", ls="none", label="foreground draw")]
    if bg is not None:
        handles.append(Line2D([], [], marker="s", mfc="none", mec="0.3", ls="none", label="background draw"))
    bottom.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    bottom.set_ylabel("draw", fontsize=9)
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_ylim(-0.8, len(fg) + 0.8)
    bottom.invert_yaxis()
    bottom.set_xlabel("feature step")
    bottom.set_xlim(-0.6, length - 0.4)
    bottom.set_xticks(range(length) if length <= 40 else np.arange(0, length, max(1, length // 20)))
    for ax in (top, bottom):
        ax.grid(axis="x", alpha=0.3)
    if stride:
        axis = top.secondary_xaxis("top", functions=(lambda k: stride * k + offset, lambda f: (f - offset) / stride))
        axis.set_xlabel("frame", fontsize=8)
        axis.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Patchwise projection (notebook 05)
# --------------------------------------------------------------------------------------------------


def plot_patch_and_responses(
    maps,
    responses,
    centre: Sequence[int],
    steps: Sequence[int],
    patch_size: int = 5,
    frames=None,
    centres: Sequence[int] | None = None,
) -> Figure:
    """The random patch of PCon and what it answers: first column step 0, then one column per chosen step.

    maps        [T, S, S] PCon's input (the gated features X * (1 + A))
    responses   [T, S, S] its output ReLU(X_t (*) P)
    centre      (row, col) of the patch in step 0; patch_size its odd side
    steps       steps to show
    frames      [T, H, W] one frame per step, drawn as a top row when given; centres [T] their frame numbers

    Column 0: (the frame,) the step-0 map with the patch boxed, and the kernel itself, enlarged (on its own
    range, written under it). Other columns: (the frame,) the input map and the response; inputs share one
    colour scale, responses another, each with its colour bar.
    """
    maps = as_array(maps, 3, "maps", "[T, S, S]")
    responses = as_array(responses, 3, "responses", "[T, S, S]")
    if maps.shape != responses.shape:
        raise ValueError(f"maps and responses need one shape, got {maps.shape} and {responses.shape}")
    if frames is not None:
        frames = as_array(frames, 3, "frames", "[T, H, W]")
        if len(frames) != len(maps):
            raise ValueError(f"frames must hold one frame per step ({len(maps)}), got {len(frames)}")
    idx = _steps(steps, len(maps))
    kernel = patch_of(maps[0], centre, patch_size)
    n_rows = 2 + (frames is not None)
    fig, axes = plt.subplots(n_rows, 1 + len(idx), figsize=(1.6 * (1 + len(idx)) + 1.6, 1.7 * n_rows), squeeze=False,
                             layout="constrained")
    in_max = float(maps[[0, *idx]].max()) or 1.0
    out_max = float(responses[idx].max()) or 1.0
    r0 = 0
    if frames is not None:
        for c, k in enumerate([0, *idx]):
            title = f"step {k}" + (f" · frame {int(centres[k])}" if centres is not None else "")
            image_panel(axes[0, c], frames[k], title, cmap="gray", vmax=1.0)
        _row_label(axes[0, 0], "frame")
        r0 = 1
    half = patch_size // 2
    image_panel(axes[r0, 0], maps[0], "" if frames is not None else "step 0", vmax=in_max)
    axes[r0, 0].add_patch(Rectangle((centre[1] - half - 0.5, centre[0] - half - 0.5), patch_size, patch_size,
                                    fill=False, ec="cyan", lw=1.5))
    image_panel(axes[r0 + 1, 0], kernel, f"kernel {patch_size}×{patch_size} at {tuple(int(v) for v in centre)}",
           cmap="magma", vmin=float(kernel.min()), vmax=max(float(kernel.max()), float(kernel.min()) + 1e-12))
    # the kernel is a tiny patch of background: its own min..max scale, with its own bar to say so
    bar = fig.colorbar(axes[r0 + 1, 0].images[0], ax=axes[r0 + 1, 0], orientation="horizontal", fraction=0.08,
                       pad=0.04)  # below the kernel, clear of the response row's label
    bar.set_label("kernel value", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    bar.ax.xaxis.set_major_locator(MaxNLocator(3))
    for c, k in enumerate(idx, start=1):
        image_panel(axes[r0, c], maps[k], "" if frames is not None else f"step {k}", vmax=in_max)
        image_panel(axes[r0 + 1, c], responses[k], vmax=out_max)
    _row_label(axes[r0, 0], "input X·(1+A)")
    _row_label(axes[r0 + 1, 1], "response ReLU(X ⋆ P)")
    # Neither has a declared range: one scale per row (0 to its largest shown value), each with its colour bar.
    colour_bar(fig, axes[r0, 1].images[0], list(axes[r0]), "input")
    colour_bar(fig, axes[r0 + 1, 1].images[0], list(axes[r0 + 1, 1:]), "response")
    return fig


def plot_response_histograms(
    responses: Mapping[str, np.ndarray],
    vessel,
    bins: int = 50,
    notes: Mapping[str, str] | None = None,
    log_x: bool = True,
) -> Figure:
    """Histograms of values at vessel pixels vs background pixels, one panel per entry of ``responses``.

    responses  name -> array of any shape (e.g. [T, S, S] PCon responses, or its input for comparison)
    vessel     bool array of the same shape: True = vessel pixel, False = background pixel
    notes      name -> a short text added to the panel's title (e.g. an AUC)
    log_x      logarithmic bins (values spanning several decades, as correlation responses do); each group's
               bars then show its share of pixels per bin (they sum to 1). Values <= 0 (what a ReLU cuts)
               are drawn in the lowest bin. False: linear bins, densities on a log axis.

    The dashed lines are the two medians.
    """
    if not responses:
        raise ValueError("responses is empty: give at least one name -> array")
    mask = np.asarray(vessel.detach().cpu() if hasattr(vessel, "detach") else vessel).astype(bool)
    if mask.all() or not mask.any():
        raise ValueError("vessel must mark some pixels True (vessel) and some False (background)")
    fig, axes = plt.subplots(1, len(responses), figsize=(4.2 * len(responses), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], responses.items()):
        v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
        if v.shape != mask.shape:
            raise ValueError(f"responses[{name!r}] has shape {v.shape}, vessel has {mask.shape}")
        if log_x:
            positive = v[v > 0]
            low = float(positive.min()) if positive.size else 1e-12
            v = np.maximum(v, low)
            edges = np.geomspace(low, max(float(v.max()), low * 10), bins + 1)
        else:
            edges = np.linspace(v.min(), max(v.max(), v.min() + 1e-12), bins + 1)
        for side, part in (("background", v[~mask]), ("vessel", v[mask])):
            color = CLASS_COLORS["foreground" if side == "vessel" else "background"]
            weights = np.full(part.shape, 1.0 / part.size) if log_x else None
            ax.hist(part, bins=edges, weights=weights, density=not log_x, color=color, alpha=0.5,
                    label=f"{side} ({part.size:,} px)")
            ax.axvline(np.median(part), color=color, ls="--", lw=1.3)
        ax.set_xscale("log" if log_x else "linear")
        ax.set_yscale("linear" if log_x else "log")
        ax.set_xlabel("value" + (" (log scale)" if log_x else ""), fontsize=9)
        ax.set_title(name + (f"\n{notes[name]}" if notes and name in notes else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("share of pixels per bin" if log_x else "density")
    fig.tight_layout()
    return fig


def plot_patch_choices(scores: Mapping[str, Mapping[str, float]], highlight: str | None = None) -> Figure:
    """Table VII as bars: one panel per metric, one bar per patch choice.

    scores     choice label -> {metric name -> value}; every choice needs the same metrics (NaN: no bar)
    highlight  the label drawn in a darker colour (default: the first)
    """
    if not scores:
        raise ValueError("scores is empty: give at least one patch choice -> {metric: value}")
    names = list(scores)
    metrics = list(next(iter(scores.values())))
    if not metrics or any(list(s) != metrics for s in scores.values()):
        raise ValueError(f"every patch choice needs the same metrics, got {[list(s) for s in scores.values()]}")
    highlight = names[0] if highlight is None else highlight
    fig, axes = plt.subplots(1, len(metrics), figsize=(0.55 * len(names) * len(metrics) + 2.5 * len(metrics), 3.2),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        values = np.array([float(scores[n][metric]) for n in names])
        colors = ["tab:blue" if n == highlight else "lightsteelblue" for n in names]
        bars = ax.bar(np.arange(len(names)), np.nan_to_num(values), color=colors, edgecolor="k", lw=0.6)
        ax.bar_label(bars, labels=["–" if np.isnan(v) else f"{v:.3g}" for v in values], fontsize=7)
        ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        finite = values[np.isfinite(values)]
        if finite.size:
            ax.set_ylim(0, float(finite.max()) * 1.18 or 1.0)
    fig.tight_layout()
    return fig
