"""Figures of the other seed papers' modules: GAF's lambda, TSA's matrices, the phase recogniser's sparse attention.

What they draw comes out of the detector's attention capture (``KeyframeDetector(..., return_attention=True)``,
``xcalab.attention_maps.sequence_maps``); every map in (0, 1) is drawn with fixed (0, 1) colour limits:

    plot_curves_over_phases(curves, phases, kf)     per-step curves (mean lambda, actionness, P(phase)) over the
                                                    true contrast phases, keyframes marked
    plot_step_matrices(matrices, kf)                TSA's (T, T) matrices side by side: dot product, class
                                                    agreement, interval overlap, fused
    plot_module_maps(frames, maps, steps, ...)      maps at a few steps, unit-range rows fixed to (0, 1)
                                                    (GAF: X, lambda, foreground, reconstruction; the phase
                                                    recogniser: response, peaks, the two sparse attentions,
                                                    the resampled maps)

Plotting functions take arrays (numpy or torch), return a Figure and never call ``plt.show()``; bad shapes
raise ValueError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from xcalab.data.phases import PHASE_NAMES
from xcalab.runtime import as_array
from xcalab.viz.common import map_grid, shade_phases
from xcalab.viz.palette import KEYFRAME_COLORS, PHASE_LINE_COLORS


def _mark_keyframes(ax, keyframe_steps: Mapping[str, float] | None) -> None:
    for name, step in (keyframe_steps or {}).items():
        ax.axvline(step, color=KEYFRAME_COLORS.get(name, "k"), ls="--", lw=1.2, label=f"true {name}")


def plot_curves_over_phases(curves: Mapping[str, np.ndarray], phases=None,
                            keyframe_steps: Mapping[str, float] | None = None, ylabel: str = "value",
                            ylim: tuple[float, float] | None = (0.0, 1.0), title: str | None = None) -> Figure:
    """Per-step curves over the true contrast phases.

    curves          name -> (T,) values; a name "P(<phase>)" is drawn in that phase's line colour
    phases          (T,) true phase per step (``xcalab.data.phases``), shaded behind the curves; or None
    keyframe_steps  name ("start", "apex", "end") -> grid position: dashed lines
    ylim            fixed limits (default (0, 1): attention and probabilities); None autoscales
    """
    if not curves:
        raise ValueError("give at least one curve")
    curves = {name: as_array(c, 1, f"curve {name!r}", "(T,) values") for name, c in curves.items()}
    lengths = {len(c) for c in curves.values()}
    if phases is not None:
        phases = as_array(phases, 1, "phases", "(T,) phase labels").astype(int)
        lengths.add(len(phases))
    if len(lengths) != 1:
        raise ValueError(f"curves and phases must have one length T (steps), got {sorted(lengths)}")
    fig, ax = plt.subplots(figsize=(8, 2.6))
    if phases is not None:
        shade_phases(ax, phases, prefix="true: ")
    colours = {f"P({name})": PHASE_LINE_COLORS[i] for i, name in enumerate(PHASE_NAMES)}
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, marker=".", ms=3, lw=1.4, label=name, color=colours.get(name))
    _mark_keyframes(ax, keyframe_steps)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlim(-0.5, lengths.pop() - 0.5)
    ax.set_xlabel("feature step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=4, loc="lower left", bbox_to_anchor=(0.0, 1.02), borderaxespad=0.0)
    if title:
        fig.suptitle(title, fontsize=10, y=1.12)
    fig.tight_layout()
    return fig


def plot_step_matrices(matrices: Mapping[str, np.ndarray], keyframe_steps: Mapping[str, float] | None = None,
                       title: str | None = None) -> Figure:
    """Step-to-step matrices side by side, each (T, T) in (0, 1): row t = how much step t attends to each step.

    Fixed (0, 1) colour limits and one colour bar; keyframes drawn as dashed lines on both axes.
    """
    if not matrices:
        raise ValueError("give at least one matrix")
    matrices = {name: as_array(m, 2, f"matrix {name!r}", "(T, T)") for name, m in matrices.items()}
    shapes = {m.shape for m in matrices.values()}
    if len(shapes) != 1 or next(iter(shapes))[0] != next(iter(shapes))[1]:
        raise ValueError(f"matrices must be square and share one shape, got {sorted(shapes)}")
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.0 * len(matrices) + 0.8, 3.3), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        image = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        for kf, step in (keyframe_steps or {}).items():
            ax.axvline(step, color=KEYFRAME_COLORS.get(kf, "w"), ls="--", lw=0.9)
            ax.axhline(step, color=KEYFRAME_COLORS.get(kf, "w"), ls="--", lw=0.9)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("key step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("query step", fontsize=8)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.02, pad=0.02).ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_module_maps(frames, maps: Mapping[str, np.ndarray], steps: Sequence[int], unit_range: Sequence[str] = (),
                     labels: Sequence[str] | None = None, keyframe_steps: Mapping[str, int] | None = None,
                     title: str | None = None) -> Figure:
    """A module's maps at a few steps (rows: maps, columns: steps); the rows named in ``unit_range`` (attention,
    peaks, probabilities) have fixed (0, 1) colour limits, the others one scale over their drawn steps."""
    missing = sorted(set(unit_range) - set(maps))
    if missing:
        raise ValueError(f"unit_range names maps that are not given: {missing}")
    return map_grid(maps, steps, labels, frames, keyframe_steps, title, ranges={n: (0.0, 1.0) for n in unit_range})
