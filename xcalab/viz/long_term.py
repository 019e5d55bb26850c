"""Figures of the long-term attention (seed paper Sec. III-C, eqs. 1, 5, 6, Fig. 5).

A toy ConvLSTM a student can follow by hand, then the trained module's maps on a cine. What they draw is
computed by ``xcalab.probes.long_term`` (the toy cell, its gate trace, the attention of each mode, region
means) and ``xcalab.data.annotations.phase_steps`` / ``keyframe_grid`` (where the keyframes fall on the grid):

    plot_convlstm_gates(trace)                    a gate trace's maps over the steps, and their values at one pixel
    plot_long_term_maps(frames, maps, steps)      frame, X, TA(X), A, X * (1 + A) at a few steps (like Fig. 5)
    plot_attention_modes(maps_by_mode, steps)     the attention A of several modes at a few steps
    plot_attention_over_time(maps, region, kf)    per-step means inside / outside the vessels, keyframes marked

Plotting functions take arrays (numpy or torch), return a Figure and never call ``plt.show()``; bad shapes
raise ValueError. Maps are (T, S, S): one S x S map per feature step (S = 64 for the detector).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xcalab.probes.long_term import region_means
from xcalab.runtime import as_array
from xcalab.viz.common import map_grid
from xcalab.viz.palette import KEYFRAME_COLORS

#: What the rows of a gate trace are, in drawing order, and how each is drawn (label, colour map, scale).
#: "unit": fixed [0, 1] (sigmoid gates); "signed": symmetric around 0; "data": 0 to the data's maximum.
TRACE_ROWS = {
    "x": ("input x_t", "magma", "data"),
    "i": ("input gate i_t", "viridis", "unit"),
    "f": ("forget gate f_t", "viridis", "unit"),
    "o": ("output gate o_t", "viridis", "unit"),
    "g": ("candidate g_t", "RdBu_r", "signed"),
    "c": ("cell c_t", "RdBu_r", "signed"),
    "h": ("hidden h_t", "RdBu_r", "signed"),
}
#: Line colours of the per-pixel curves under the gate maps.
TRACE_COLORS = {"x": "k", "i": "tab:green", "f": "tab:orange", "o": "tab:purple", "g": "tab:gray",
                "c": "tab:blue", "h": "tab:red"}
#: How each mode computes A (the reference's, see xcalab.models.long_term), for row labels.
MODE_FORMULAS = {"TA": "A = σ(TA(X))", "SA": "A = SA(X)", "STA": "A = SA(X + TA(X))"}


def _maps(x, name: str) -> np.ndarray:
    """Anything array-like (torch tensors included) as float32 (T, S, S); ValueError otherwise."""
    return as_array(x, 3, name, "(T, S, S) maps")


# --------------------------------------------------------------------------------------------------
# A ConvLSTM cell by hand (eq. 1)
# --------------------------------------------------------------------------------------------------


def plot_convlstm_gates(trace: Mapping[str, np.ndarray], pixel: tuple[int, int] | None = None,
                        title: str | None = None) -> Figure:
    """The maps of a gate trace (rows x, i, f, o, g, c, h; one column per step) and their values at one pixel.

    trace  ``convlstm_gate_trace``'s output: every key of ``TRACE_ROWS``, each (T, H, W)
    pixel  (row, col) whose values are drawn as curves in the bottom panel (default: where x is largest)
    Gates share the fixed scale [0, 1]; g, c and h a scale symmetric around 0; the pixel is ringed in cyan.
    """
    missing = [name for name in TRACE_ROWS if name not in trace]
    if missing:
        raise ValueError(f"trace lacks {missing}: give convlstm_gate_trace's output")
    rows = {name: as_array(trace[name], 3, f"trace[{name!r}]", "(T, S, S) maps") for name in TRACE_ROWS}
    shapes = {a.shape for a in rows.values()}
    if len(shapes) != 1:
        raise ValueError(f"every trace entry must have one shape, got {sorted(shapes)}")
    steps, height, width = shapes.pop()
    if pixel is None:
        pixel = np.unravel_index(int(rows["x"].sum(axis=0).argmax()), (height, width))
    r, c = (int(p) for p in pixel)
    if not (0 <= r < height and 0 <= c < width):
        raise ValueError(f"pixel {pixel} is outside the {height} x {width} maps")

    fig = plt.figure(figsize=(1.15 * steps + 1.6, 1.05 * len(rows) + 2.4))
    grid = fig.add_gridspec(len(rows) + 1, steps, height_ratios=[1] * len(rows) + [2.2], hspace=0.25, wspace=0.08,
                            top=0.93)
    for k, (name, data) in enumerate(rows.items()):
        label, cmap, scale = TRACE_ROWS[name]
        if scale == "unit":
            lo, hi = 0.0, 1.0
        elif scale == "signed":
            hi = max(float(np.abs(data).max()), 1e-6)
            lo = -hi
        else:
            lo, hi = 0.0, max(float(data.max()), 1e-6)
        for t in range(steps):
            ax = fig.add_subplot(grid[k, t])
            image = ax.imshow(data[t], cmap=cmap, vmin=lo, vmax=hi)
            ax.plot(c, r, "o", ms=5, mfc="none", mec="tab:cyan", mew=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_title(f"step {t}", fontsize=8)
            if t == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        fig.colorbar(image, ax=ax, fraction=0.08, pad=0.04).ax.tick_params(labelsize=6)
    curves = fig.add_subplot(grid[len(rows), :])
    for name, data in rows.items():
        curves.plot(np.arange(steps), data[:, r, c], marker="o", ms=3, lw=1.5, color=TRACE_COLORS[name],
                    label=TRACE_ROWS[name][0])
    curves.axhline(0, color="k", lw=0.5)
    curves.set_xticks(np.arange(steps))
    curves.set_xlabel("step t")
    curves.set_ylabel(f"value at pixel ({r}, {c})", fontsize=8)
    curves.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    curves.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------------
# The three modes from one trained module (eqs. 5-6)
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Where in the cine: keyframes on the feature grid
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Maps at a few steps (Fig. 5)
# --------------------------------------------------------------------------------------------------


def plot_long_term_maps(frames, maps: Mapping[str, np.ndarray], steps: Sequence[int],
                        labels: Sequence[str] | None = None, keyframe_steps: Mapping[str, int] | None = None,
                        title: str | None = None) -> Figure:
    """The long-term module at a few steps, like the paper's Fig. 5: a frame of each step over its maps.

    frames          (T, H, W) in [0, 1], one frame per feature step (e.g. its centre frame), or None
    maps            name -> (T, S, S), drawn in order, e.g. {"X": ..., "TA(X)": ..., "A": ..., "X ⊙ (1 + A)": ...}
    steps           the columns; ``labels`` names them (e.g. phases)
    keyframe_steps  name ("start", "apex", "end") -> step: those columns' frames are framed in the keyframe colour
    Each row has one colour scale over the drawn steps (its colour bar on the right), so rows compare over
    time; a row with negative and positive values is drawn blue-white-red around 0.
    """
    return map_grid(maps, steps, labels, frames, keyframe_steps, title)


def plot_attention_modes(maps_by_mode: Mapping[str, np.ndarray], steps: Sequence[int],
                         labels: Sequence[str] | None = None, frames=None, title: str | None = None) -> Figure:
    """The attention A of several modes (mode -> (T, S, S)) at a few steps: one row per mode.

    Known modes ("TA", "SA", "STA") are labelled with the formula the module uses; other names as given.
    ``frames`` (T, H, W) adds a frame row on top. Each row has its own colour scale (its colour bar).
    """
    rows = {(f"{mode}: {MODE_FORMULAS[mode]}" if mode in MODE_FORMULAS else mode): a
            for mode, a in maps_by_mode.items()}
    return map_grid(rows, steps, labels, frames, None, title)


# --------------------------------------------------------------------------------------------------
# Attention over time
# --------------------------------------------------------------------------------------------------


def plot_attention_over_time(maps, region=None, keyframe_steps: Mapping[str, float] | None = None,
                             title: str | None = None) -> Figure:
    """Per-step means of maps inside the vessel region and in the background, one panel per map.

    maps            (T, S, S), or name -> (T, S, S) (e.g. X, A and X ⊙ (1 + A)), drawn top to bottom
    region          bool (T, S, S) or (S, S): the true vessel region; None draws the mean of the whole map
    keyframe_steps  name ("start", "apex", "end") -> grid position (``keyframe_grid``): dashed lines
    """
    if not isinstance(maps, Mapping):
        maps = {"A": maps}
    if not maps:
        raise ValueError("give at least one map")
    maps = {name: as_array(a, 3, f"map {name!r}", "(T, S, S) maps") for name, a in maps.items()}
    if len({a.shape for a in maps.values()}) != 1:
        raise ValueError(f"maps must share one shape, got {[a.shape for a in maps.values()]}")
    fig, axes = plt.subplots(len(maps), 1, figsize=(8, 1.9 * len(maps) + 0.6), sharex=True, squeeze=False)
    for ax, (name, data) in zip(axes[:, 0], maps.items()):
        steps = np.arange(len(data))
        if region is None:
            ax.plot(steps, data.mean(axis=(1, 2)), marker=".", color="k", label="whole map")
        else:
            inside, outside = region_means(data, region)
            ax.plot(steps, inside, marker=".", color="tab:red", label="vessel region")
            ax.plot(steps, outside, marker=".", color="tab:gray", label="background")
        _mark_grid_keyframes(ax, keyframe_steps)
        ax.set_ylabel(f"mean {name}", fontsize=9)
        ax.grid(alpha=0.3)
    # one legend for all panels (they draw the same lines), above the top one
    axes[0, 0].legend(fontsize=7, ncol=5, loc="lower left", bbox_to_anchor=(0.0, 1.02), borderaxespad=0.0)
    axes[-1, 0].set_xlabel("feature step (4 frames each)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _mark_grid_keyframes(ax: Axes, keyframe_steps: Mapping[str, float] | None) -> None:
    for name, step in (keyframe_steps or {}).items():
        ax.axvline(step, color=KEYFRAME_COLORS.get(name, "k"), ls="--", lw=1.2, label=f"true {name}")


__all__ = [
    "MODE_FORMULAS", "TRACE_ROWS", "plot_attention_modes", "plot_attention_over_time", "plot_convlstm_gates",
    "plot_long_term_maps",
]
