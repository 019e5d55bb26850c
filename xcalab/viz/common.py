"""What every figure module shares: a Figure and Axes to draw into, an image panel without ticks, a grid of maps.

**The map convention** (every figure of maps follows it):

- a map with a declared range is drawn on exactly that range — attention gates and probabilities on (0, 1)
  (``UNIT_RANGE``), TA on (−1, 1) — never stretched to its own minimum and maximum, so a flat map looks flat;
- every map figure carries a colour bar (``colour_bar``) that says what the colours mean;
- a sigmoid gate whose values span less than ``FLAT_GATE`` gets a visible warning in its title
  (``flat_warning``): on a fixed scale it looks uniform because it is;
- every temporal matrix (query step × key step) has integer step ticks (``step_ticks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xcalab.data.phases import PHASE_NAMES
from xcalab.models.maps import UNIT_RANGE  # noqa: F401  (the declared range of gates and probabilities)
from xcalab.runtime import as_array
from xcalab.viz.palette import KEYFRAME_COLORS, PHASE_COLORS

#: A gate whose values span less than this is flagged as nearly constant.
FLAT_GATE = 0.05


def colour_bar(fig: Figure, image, axes, label: str = "", fontsize: int = 7):
    """One colour bar for ``image`` (an AxesImage or ScalarMappable) beside ``axes`` (an Axes or a list)."""
    axes = list(np.ravel(axes)) if not isinstance(axes, Axes) else axes
    bar = fig.colorbar(image, ax=axes, fraction=0.03, pad=0.02)
    if label:
        bar.set_label(label, fontsize=fontsize + 1)
    bar.ax.tick_params(labelsize=fontsize)
    return bar


def flat_warning(values, threshold: float = FLAT_GATE) -> str:
    """"" when ``values`` span at least ``threshold``; else a short warning for a title: the span and "flat"."""
    values = np.asarray(values, dtype=float)
    span = float(np.nanmax(values) - np.nanmin(values)) if values.size else 0.0
    return "" if span >= threshold else f"⚠ nearly flat: range {span:.3f} < {threshold:g}"


def step_ticks(ax: Axes, n_rows: int, n_cols: int | None = None, max_ticks: int = 8) -> None:
    """Integer step ticks on both axes of a temporal matrix of ``n_rows`` x ``n_cols`` steps (at most
    ``max_ticks`` per axis, always including step 0)."""
    for axis, n in ((ax.yaxis, n_rows), (ax.xaxis, n_rows if n_cols is None else n_cols)):
        every = max(1, int(np.ceil(n / max_ticks)))
        axis.set_ticks(np.arange(0, n, every))
    ax.tick_params(labelsize=6)


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """(the Figure, the Axes) to draw into: ``ax`` and its figure when given, else a new figure of ``figsize``."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def image_panel(ax: Axes, image: np.ndarray, title: str = "", cmap: str = "magma", vmin: float = 0.0,
                vmax: float | None = None) -> None:
    """``image`` on ``ax`` with fixed colour limits, a small title and no ticks."""
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _row_scale(data: np.ndarray) -> tuple[str, float, float]:
    """(colour map, vmin, vmax) shared by one row: signed data centred on 0, else min..max of the row."""
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    if lo < 0 < hi:
        m = max(-lo, hi)
        return "RdBu_r", -m, m
    if hi - lo < 1e-12:
        hi = lo + 1e-6
    return "magma", lo, hi


def shade_phases(ax: Axes, phases: np.ndarray, t: np.ndarray | None = None, prefix: str = "") -> None:
    """Shade each run of equal contrast phases in the phase's palette colour, behind everything else.

    phases  (N,) phase labels (``xcalab.data.phases``); t (N,) their positions on the x axis (default 0 .. N - 1).
    Each phase is labelled once (``prefix`` + its name), so a legend lists the phases that occur.
    """
    phases = np.asarray(phases).astype(int)
    t = np.arange(len(phases), dtype=float) if t is None else np.asarray(t, dtype=float)
    edges = np.concatenate([[0], np.nonzero(np.diff(phases))[0] + 1, [len(phases)]])
    dt = (t[1] - t[0]) if len(t) > 1 else 1.0
    seen = set()
    for a, b in zip(edges[:-1], edges[1:]):
        ph = int(phases[a])
        if not 0 <= ph < len(PHASE_COLORS):  # an unlabelled step
            continue
        ax.axvspan(t[a] - dt / 2, t[b - 1] + dt / 2, color=PHASE_COLORS[ph], lw=0,
                   label=prefix + PHASE_NAMES[ph] if ph not in seen else None, zorder=0)
        seen.add(ph)


def map_grid(rows: Mapping[str, np.ndarray], steps: Sequence[int], labels: Sequence[str] | None = None,
             frames=None, keyframe_steps: Mapping[str, int] | None = None, title: str | None = None,
             ranges: Mapping[str, tuple[float, float]] | None = None) -> Figure:
    """Maps at a few steps: an optional frame row, then one row per map; one column per step.

    rows            name -> (T, S, S) maps, drawn top to bottom
    steps           the columns; ``labels`` names them (e.g. phases)
    frames          (T, H, W) in [0, 1], one frame per step, drawn in grey on top; or None
    keyframe_steps  name ("start", "apex", "end") -> step: those columns are framed in the keyframe colour
    ranges          name -> (low, high): the fixed colour limits of that row (attention and probabilities in
                    (0, 1)); any other row gets one scale over its drawn steps (signed rows centred on 0)
    Every row has its colour bar on the right.
    """
    if not rows:
        raise ValueError("give at least one map")
    rows = {name: as_array(data, 3, f"map {name!r}", "(T, S, S) maps") for name, data in rows.items()}
    lengths = {len(a) for a in rows.values()}
    if frames is not None:
        frames = as_array(frames, 3, "frames", "(T, S, S) maps")
        lengths.add(len(frames))
    if len(lengths) != 1:
        raise ValueError(f"frames and maps must have one length T (steps), got {sorted(lengths)}")
    n = lengths.pop()
    steps = [int(s) for s in steps]
    if not steps or min(steps) < 0 or max(steps) >= n:
        raise ValueError(f"steps must be in 0..{n - 1}, got {steps}")
    labels = [""] * len(steps) if labels is None else list(labels)
    if len(labels) != len(steps):
        raise ValueError(f"need one label per step ({len(steps)}), got {len(labels)}")
    keyed = {int(s): name for name, s in (keyframe_steps or {}).items()}

    drawn = ([("frame", frames)] if frames is not None else []) + list(rows.items())
    fig, axes = plt.subplots(len(drawn), len(steps), figsize=(1.75 * len(steps) + 1.6, 1.75 * len(drawn) + 0.4),
                             squeeze=False)
    for r, (name, data) in enumerate(drawn):
        shown = data[steps]
        if name == "frame":
            cmap, lo, hi = "gray", 0.0, 1.0
        elif ranges and name in ranges:
            (lo, hi), cmap = ranges[name], "viridis"
        else:
            cmap, lo, hi = _row_scale(shown)
        for c, (step, label) in enumerate(zip(steps, labels)):
            ax = axes[r, c]
            image = ax.imshow(shown[c], cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"step {step}" + (f"\n{label}" if label else ""), fontsize=8)
                if step in keyed:
                    h, w = shown[c].shape
                    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, lw=4, ec=KEYFRAME_COLORS[keyed[step]]))
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
        # every row gets its bar (the frames' grey scale too), so all rows keep the same width
        fig.colorbar(image, ax=list(axes[r]), fraction=0.02, pad=0.01).ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
