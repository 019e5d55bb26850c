"""The seed paper's Fig. 1: the previous, key and next frame at each keyframe, and how little tells them apart.

    rows start / apex / end, columns previous / key / next   ``xcalab.viz.locate.plot_keyframe_triplets``;
                                                              an absent keyframe's row says why it is absent
    on each neighbour: its difference from the key frame      mean |neighbour - key| / mean |apex - first frame|
    below: the same difference for every consecutive pair     so the keyframes' steps are seen beside all others

The numbers come from ``xcalab.data.keyframe_neighbours.neighbour_differences``; this module only draws them.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from xcalab.data.keyframe_neighbours import NeighbourDifferences
from xcalab.viz.locate import KEYFRAMES, plot_keyframe_triplets
from xcalab.viz.palette import KEYFRAME_COLORS

#: What the number on a neighbour panel is.
DELTA_MEANING = "Δ = mean |frame − key frame| ÷ mean |apex − first frame|"


def _label_neighbours(fig: Figure, keyframes: Sequence[int | None], n_frames: int,
                      differences: NeighbourDifferences) -> None:
    """Write each neighbour's relative difference on its panel (the axes in the order the triplets drew them)."""
    relative = differences.relative_neighbours()  # [3, 2] (previous, next)
    axes = iter(fig.axes)
    for row, k in enumerate(keyframes):
        if k is None:
            next(axes)  # the one text panel that says why the keyframe is absent
            continue
        for offset in (-1, 0, 1):
            ax = next(axes)
            if offset == 0 or not 0 <= k + offset < n_frames:
                continue
            value = relative[row, 0 if offset < 0 else 1]
            ax.text(0.03, 0.04, f"Δ {value:.2f}", transform=ax.transAxes, fontsize=8, color="w", va="bottom",
                    bbox={"facecolor": "k", "alpha": 0.65, "pad": 1.5, "linewidth": 0})


def _plot_steps(ax, keyframes: Sequence[int | None], differences: NeighbourDifferences) -> None:
    """The relative difference of every consecutive pair, drawn between its two frames, with the keyframes."""
    steps = differences.relative(differences.steps)
    n_frames = len(steps) + 1
    ax.plot(np.arange(n_frames - 1) + 0.5, steps, color="0.3", lw=1.2, marker=".", ms=3,
            label="frame i → i+1")
    ax.axhline(1.0, color="0.5", lw=1, ls="--", label="first → apex (= 1)")
    ax.axhline(float(differences.relative(differences.typical_step)), color="0.3", lw=1, ls=":",
               label=f"median step {float(differences.relative(differences.typical_step)):.2f}")
    for name, k in zip(KEYFRAMES, keyframes):
        if k is not None:
            ax.axvline(k, color=KEYFRAME_COLORS[name], lw=1.8, alpha=0.8, label=f"{name} {k}")
    top = np.nanmax(steps) if np.isfinite(steps).any() else 1.0
    ax.set_xlim(-0.5, n_frames - 0.5)
    ax.set_ylim(0.0, max(1.1, 1.1 * top))
    ax.set_xlabel("frame")
    ax.set_ylabel("Δ (÷ first → apex)", fontsize=8)
    ax.set_title("difference between consecutive frames, over the whole cine", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3, frameon=False)


def plot_keyframe_neighbours(frames: np.ndarray, keyframes: Sequence[int | None],
                             differences: NeighbourDifferences | None = None, title: str = "") -> Figure:
    """Previous / key / next frame at start, apex and end (the paper's Fig. 1), with their differences.

    Args:
        frames: [N, H, W] grey levels in [0, 1] (drawn on those fixed limits).
        keyframes: (start, apex, end) frame indices; None for a keyframe the cine does not contain (its row
            says why).
        differences: ``neighbour_differences(frames, keyframes)``; when given, each neighbour panel carries its
            Δ and a panel below draws Δ of every consecutive pair with the keyframes marked.
        title: the figure's title (e.g. what the cine is and where its keyframes come from).

    Returns:
        the Figure.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be [N, H, W], got shape {frames.shape}")
    keyframes = tuple(None if k is None else int(k) for k in keyframes)
    if len(keyframes) != 3:
        raise ValueError(f"keyframes must be (start, apex, end), got {keyframes}")
    if differences is not None:
        if tuple(differences.keyframes) != keyframes:
            raise ValueError(f"the differences were computed for keyframes {differences.keyframes}, not {keyframes}")
        if len(differences.steps) != len(frames) - 1:
            raise ValueError(f"the differences were computed on {len(differences.steps) + 1} frames, "
                             f"not on these {len(frames)}")
    if differences is None:
        fig = plt.figure(figsize=(6.0, 6.4))
        plot_keyframe_triplets(frames, keyframes, fig)
    else:
        fig = plt.figure(figsize=(6.4, 9.4))
        outer = fig.add_gridspec(2, 1, height_ratios=[3.4, 1.0], hspace=0.22, bottom=0.12, top=0.9)
        plot_keyframe_triplets(frames, keyframes, fig, outer[0])
        _label_neighbours(fig, keyframes, len(frames), differences)
        _plot_steps(fig.add_subplot(outer[1]), keyframes, differences)
    heading = title + ("\n" if title else "") + (DELTA_MEANING if differences is not None else "")
    if heading:
        fig.suptitle(heading, fontsize=9)
    return fig


__all__ = ["DELTA_MEANING", "plot_keyframe_neighbours"]
