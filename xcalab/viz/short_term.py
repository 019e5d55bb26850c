"""Figures of the short-term attention: the local window, its attention matrices, dense vs local, the heads.

The transformer pyramid (``xcalab.models.short_term``) stores local attention as *band* weights (heads, T_l,
2w + 1); ``xcalab.probes.short_term.band_to_dense`` puts them back into (T_l, T_l) matrices, and the same
module computes dense attention, one block's inputs, the cost of both and the parameter counts drawn here.

Figures (each returns a matplotlib Figure and never calls ``plt.show()``; bad inputs raise ValueError):

    plot_window_diagram(T, w)                 which keys each query sees (the band |t - s| <= w)
    plot_attention_matrices(attention, w)     a grid of (T_l, T_l) attention matrices, blocks x heads
    plot_dense_vs_local(dense, local, w)      one head's dense and local matrices, the mass outside the band
    plot_attention_cost(results)              time and memory against T, log-log
    plot_level_scores(scores, strides, ...)   class probabilities and regressed boundaries per level, with truth
    plot_parameter_breakdown(counts)          parameters per part for several detectors
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, StrMethodFormatter
from torch import Tensor

from xcalab.data.annotations import LABELS
from xcalab.probes.short_term import band_to_dense, block_level
from xcalab.viz.common import colour_bar, figure_and_axes, step_ticks
from xcalab.viz.palette import ACTION_COLORS, KEYFRAME_COLORS

#: The colour of each method in the cost plot.
METHOD_COLORS = {"local": "tab:blue", "dense": "tab:red"}

# --------------------------------------------------------------------------------------------------
# Band weights <-> dense matrices, and dense attention for comparison
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Cost: time and memory of local vs dense attention
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def plot_window_diagram(steps: int, half_window: int, queries: Sequence[int] | None = None,
                        ax: Axes | None = None) -> Figure:
    """Which keys each query sees under local attention: the T x T band |t - s| <= w.

    Rows are queries t, columns keys s; shaded cells are the keys query t attends to. ``queries``
    (default: the first, the middle and the last step) are framed and labelled with their key range,
    which is cut at the ends of the sequence (the first query sees only w + 1 keys).
    """
    if steps < 1 or half_window < 0:
        raise ValueError(f"need steps >= 1 and half_window >= 0, got {steps}, {half_window}")
    queries = [0, steps // 2, steps - 1] if queries is None else [int(t) for t in queries]
    if any(not 0 <= t < steps for t in queries):
        raise ValueError(f"queries must be in 0..{steps - 1}, got {queries}")
    fig, ax = figure_and_axes(ax, (6.6, 4.6))
    t = np.arange(steps)
    band = np.abs(t[:, None] - t[None, :]) <= half_window
    # a diagram, not a map of values: two categories painted as RGB (a key in the window, or not)
    inside, outside = np.array([0.42, 0.62, 0.84]), np.array([0.97, 0.97, 0.99])
    ax.imshow(np.where(band[..., None], inside, outside), origin="upper")
    for query in dict.fromkeys(queries):  # unique, in order
        first, last = max(0, query - half_window), min(steps - 1, query + half_window)
        ax.add_patch(Rectangle((first - 0.5, query - 0.5), last - first + 1, 1, fill=False, lw=2, ec="tab:red"))
        # labels to the right of the matrix, level with their query row
        ax.text(steps - 0.5 + 0.4, query, f"query {query}: keys {first}..{last} ({last - first + 1})",
                va="center", ha="left", fontsize=8, color="tab:red", clip_on=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("key step s")
    ax.set_ylabel("query step t")
    ax.set_title(f"local window ±{half_window}: each query sees at most {2 * half_window + 1} of {steps} keys",
                 fontsize=9)
    fig.tight_layout()
    return fig


def _as_band(weights, name: str) -> np.ndarray:
    a = weights.detach().float().cpu().numpy() if isinstance(weights, Tensor) else np.asarray(weights, float)
    if a.ndim != 3:
        raise ValueError(f"attention {name!r} must be (heads, T, 2w + 1), got shape {a.shape}")
    return a


def plot_attention_matrices(
    attention: Mapping[str, object],
    half_window: int,
    keyframe_steps: Sequence[float] | None = None,
    heads: Sequence[int] | None = None,
) -> Figure:
    """A grid of attention matrices: one row per transformer block, one column per head.

    attention       block name ("level0.block1" or "transformer/level0.block1") -> (heads, T_l, 2w + 1) band
                    weights of one video (``DetectorOutput.attention_of(b)``); other names are ignored
    half_window     w of the blocks
    keyframe_steps  (start, apex, end) in level-0 feature steps (frame f is step (f - 2) / 4); drawn on
                    every matrix at step / 2^l as dashed lines (query rows and key columns)
    heads           which heads to draw (default all)

    Each panel is ``band_to_dense`` of the block's weights for one head: row t holds query t's weights,
    which sum to 1 over its window. All panels share one colour scale, 0 to 1.
    """
    blocks = sorted((block_level(n), n) for n in attention if re.search(r"level\d+\.block\d+$", n))
    if not blocks:
        raise ValueError("attention holds no 'level<l>.block<j>' entries")
    bands = {name: _as_band(attention[name], name) for _, name in blocks}
    n_heads = {b.shape[0] for b in bands.values()}
    if len(n_heads) != 1:
        raise ValueError(f"every block must have the same number of heads, got {sorted(n_heads)}")
    heads = list(range(n_heads.pop())) if heads is None else [int(h) for h in heads]
    if not heads or any(not 0 <= h < next(iter(bands.values())).shape[0] for h in heads):
        raise ValueError(f"heads must be in 0..{next(iter(bands.values())).shape[0] - 1}, got {heads}")
    fig, axes = plt.subplots(len(blocks), len(heads), figsize=(1.8 * len(heads) + 1.2, 1.7 * len(blocks) + 0.5),
                             squeeze=False, layout="constrained")
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.93")  # keys outside the band: light grey
    image = None
    for r, ((level, j), name) in enumerate(blocks):
        dense = band_to_dense(bands[name], half_window)  # (H, T_l, T_l)
        steps = dense.shape[-1]
        t = np.arange(steps)
        outside = np.abs(t[:, None] - t[None, :]) > half_window
        for c, h in enumerate(heads):
            ax = axes[r, c]
            shown = np.ma.masked_array(dense[h], mask=outside)
            image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            if keyframe_steps is not None:
                for kf, value in zip(("start", "apex", "end"), keyframe_steps):
                    position = value / 2**level
                    if -0.5 <= position <= steps - 0.5:
                        ax.axvline(position, color=KEYFRAME_COLORS[kf], ls="--", lw=0.9)
                        ax.axhline(position, color=KEYFRAME_COLORS[kf], ls="--", lw=0.9)
            step_ticks(ax, steps)
            if r == 0:
                ax.set_title(f"head {h}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"level {level} · block {j}\n{steps} step{'s' * (steps != 1)} (×{2**level})", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.5, label="attention weight (grey: outside the window)")
    if keyframe_steps is not None:
        handles = [plt.Line2D([], [], color=KEYFRAME_COLORS[k], ls="--", label=f"true {k}")
                   for k in ("start", "apex", "end")]
        fig.legend(handles=handles, loc="outside upper center", ncol=3, fontsize=8, frameon=False)
    fig.supxlabel("key step →   (rows: query steps, top to bottom)", fontsize=8)
    return fig


def plot_dense_vs_local(dense, local, half_window: int, output_gaps: Mapping[int, float] | None = None) -> Figure:
    """One head, one video: dense attention next to local attention, and what the band leaves out.

    dense        (T, T) weights of dense attention (every key)
    local        (T, T) weights of local attention (``band_to_dense`` of its band)
    half_window  w of the band (outlined on the dense matrix)
    output_gaps  optional {w: max |dense output - local output|}: a last panel shows how the outputs
                 become equal once the band covers the whole sequence (w >= T - 1)

    The third panel is the share of each query's dense attention that falls outside the band: the
    weight local attention redistributes over the keys it keeps.
    """
    dense, local = np.asarray(dense, dtype=float), np.asarray(local, dtype=float)
    if dense.ndim != 2 or dense.shape[0] != dense.shape[1] or dense.shape != local.shape:
        raise ValueError(f"dense and local must both be (T, T), got {dense.shape} and {local.shape}")
    steps = dense.shape[0]
    t = np.arange(steps)
    band = np.abs(t[:, None] - t[None, :]) <= half_window
    outside = np.where(band, 0.0, dense).sum(axis=1)
    n_panels = 4 if output_gaps else 3
    fig, axes = plt.subplots(1, n_panels, figsize=(3.3 * n_panels + 0.6, 3.3), layout="constrained")
    for ax, matrix, title in ((axes[0], dense, "dense: every key"), (axes[1], local, f"local: keys t±{half_window}")):
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")  # weights: (0, 1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key step s")
        ax.set_ylabel("query step t")
        step_ticks(ax, steps)
    colour_bar(fig, image, list(axes[:2]), "attention weight")
    # the band's edges, drawn on the dense matrix
    axes[0].plot(t + half_window + 0.5, t, color="w", lw=0.8, ls=":")
    axes[0].plot(t - half_window - 0.5, t, color="w", lw=0.8, ls=":")
    axes[0].set_xlim(-0.5, steps - 0.5)
    axes[0].set_ylim(steps - 0.5, -0.5)
    axes[2].bar(t, outside, color="tab:gray")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("query step t")
    axes[2].set_ylabel("dense weight outside the band")
    axes[2].set_title("what the band leaves out", fontsize=9)
    if output_gaps:
        ws = sorted(output_gaps)
        axes[3].plot(ws, [output_gaps[w] for w in ws], "o-", color="k", ms=3)
        axes[3].axvline(steps - 1, color="tab:red", ls="--", lw=1, label=f"w = T - 1 = {steps - 1}")
        axes[3].set_xlabel("half window w")
        axes[3].set_ylabel("max |dense - local| output")
        axes[3].set_title("outputs agree once the band covers all", fontsize=9)
        axes[3].legend(fontsize=8)
        axes[3].grid(alpha=0.3)
    return fig


def plot_attention_cost(results: Sequence[Mapping]) -> Figure:
    """Time (left) and memory (right) of each attention method against T, on log-log axes.

    results: records {"steps", "method", "seconds", "megabytes"} (``time_attention``). Dotted guides of
    slope 1 (O(T)) and 2 (O(T^2)) start at the first point of each method, so the slopes can be read off.
    """
    methods: dict[str, list[Mapping]] = {}
    for r in results:
        methods.setdefault(str(r["method"]), []).append(r)
    if not methods:
        raise ValueError("results is empty: give records from time_attention")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, unit in ((axes[0], "seconds", "seconds per call"), (axes[1], "megabytes", "MB allocated per call")):
        for method, rows in methods.items():
            rows = sorted(rows, key=lambda r: r["steps"])
            x = np.array([r["steps"] for r in rows], dtype=float)
            y = np.array([r[key] for r in rows], dtype=float)
            color = METHOD_COLORS.get(method)
            ax.plot(x, y, "o-", color=color, label=method)
            slope = 2 if method == "dense" else 1
            ax.plot(x, y[0] * (x / x[0]) ** slope, ":", color=color, lw=1,
                    label=f"∝ T{'²' if slope == 2 else ''}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (steps)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_title("time", fontsize=9)
    axes[1].set_title("memory", fontsize=9)
    fig.tight_layout()
    return fig


def _segments(segments, name: str) -> list[tuple[int, float, float]]:
    rows = [] if segments is None else [(int(c), float(a), float(b)) for c, a, b in segments]
    if any(b < a for _, a, b in rows):
        raise ValueError(f"{name}: every segment must be (label_id, start, end) with start <= end")
    return rows


def plot_level_scores(
    scores: Sequence,
    strides: Sequence[int],
    offsets: Sequence | None = None,
    true_segments: Sequence[tuple[int, float, float]] | None = None,
    predicted_segments: Sequence[tuple[int, float, float]] | None = None,
    class_names: Sequence[str] = LABELS[0],
    min_score: float = 0.05,
) -> Figure:
    """What the heads say on every level, on the cine's timeline (level-0 feature steps).

    scores              per level l, (C, T_l) class probabilities (sigmoid of ``cls_logits``), one video
    strides             s_l of each level; point i of level l sits at step i * s_l
    offsets             optional, per level (2, T_l) distances to start and end in strides (``offsets``):
                        the best point of each class on each level draws its regressed segment
                        [t - o_l s_l, t + o_r s_l] as a bar at the height of its probability, if that
                        probability is at least ``min_score`` (levels that found nothing stay uncluttered)
    true_segments       (label_id, start, end) in steps: shaded on every level
    predicted_segments  (label_id, start, end) in steps, e.g. the decoded top-1 per class: a last panel
                        draws them under the true ones (one lane per class, so overlapping segments show)
    class_names         name of each class (colours from ``ACTION_COLORS``)
    """
    levels = [np.asarray(s.detach().cpu() if isinstance(s, Tensor) else s, dtype=float) for s in scores]
    if not levels or len(levels) != len(strides):
        raise ValueError(f"need one (C, T_l) score array per stride, got {len(levels)} for {len(strides)} strides")
    n_classes = levels[0].shape[0] if levels[0].ndim == 2 else -1
    if any(s.ndim != 2 or s.shape[0] != n_classes for s in levels) or n_classes != len(class_names):
        raise ValueError(f"scores must be (C, T_l) with C = {len(class_names)} classes, got "
                         f"{[s.shape for s in levels]}")
    offs = None
    if offsets is not None:
        offs = [np.asarray(o.detach().cpu() if isinstance(o, Tensor) else o, dtype=float) for o in offsets]
        if len(offs) != len(levels) or any(o.shape != (2, s.shape[1]) for o, s in zip(offs, levels)):
            raise ValueError(f"offsets must be (2, T_l) per level, got {[o.shape for o in offs]}")
    truth = _segments(true_segments, "true_segments")
    predicted = _segments(predicted_segments, "predicted_segments")
    timeline = bool(truth or predicted)
    n_steps = levels[0].shape[1]
    colors = [ACTION_COLORS.get(n, f"C{k}") for k, n in enumerate(class_names)]
    fig, axes = plt.subplots(len(levels) + timeline, 1, sharex=True,
                             figsize=(8, 1.15 * len(levels) + 0.9 * timeline + 0.8), squeeze=False)
    axes = axes[:, 0]
    for level, (ax, s, stride) in enumerate(zip(axes, levels, strides)):
        x = np.arange(s.shape[1]) * stride
        for c, a, b in truth:
            ax.axvspan(a, b, color=colors[c], alpha=0.15, lw=0)
        for c in range(n_classes):
            ax.plot(x, s[c], ".-", color=colors[c], lw=1.2, ms=4, label=class_names[c] if level == 0 else None)
            if offs is not None and s.shape[1] and s[c].max() >= min_score:
                i = int(s[c].argmax())
                start, end = x[i] - offs[level][0, i] * stride, x[i] + offs[level][1, i] * stride
                ax.plot([start, end], [s[c, i]] * 2, "|-", color=colors[c], lw=2.2, ms=9, alpha=0.8)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(f"level {level}\n×{stride}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right", ncol=n_classes)
    if timeline:
        ax = axes[-1]
        lane = 0.8 / n_classes  # each class gets its own lane within a row
        for row, segs in enumerate((predicted, truth)):
            for c, a, b in segs:
                y = row + 0.4 - lane * (c + 0.5)
                ax.barh(y, b - a, left=a, height=0.9 * lane, color=colors[c], alpha=0.9 if row else 0.6)
        ax.set_yticks([0, 1], ["predicted", "true"], fontsize=8)
        ax.set_ylim(-0.5, 1.5)
    axes[-1].set_xlabel("feature step (level 0)")
    axes[-1].set_xlim(-0.5, n_steps - 0.5)
    fig.suptitle("class probability per pyramid level; bars: the best point's regressed segment", fontsize=9)
    fig.tight_layout()
    return fig


def plot_parameter_breakdown(counts: Mapping[str, Mapping[str, int]], ax: Axes | None = None) -> Figure:
    """Trainable parameters per part, one group of horizontal bars per part and one bar per model.

    counts: model name -> {part: parameters} (``parameter_groups``); parts missing from a model count 0.
    The legend gives each model's total.
    """
    if not counts:
        raise ValueError("counts is empty: give model name -> {part: parameters}")
    parts = list(dict.fromkeys(p for c in counts.values() for p in c))
    fig, ax = figure_and_axes(ax, (8, 0.25 * len(parts) * len(counts) + 1.2))
    height = 0.8 / len(counts)
    y = np.arange(len(parts))
    for k, (model, c) in enumerate(counts.items()):
        values = [int(c.get(p, 0)) for p in parts]
        bars = ax.barh(y + (k - (len(counts) - 1) / 2) * height, values, height,
                       label=f"{model}: {sum(values):,} in total")
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=7, padding=2)
    ax.set_yticks(y, parts, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("trainable parameters")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xlim(0, 1.25 * max(max(c.values(), default=0) for c in counts.values()) + 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = [
    "METHOD_COLORS", "plot_attention_cost", "plot_attention_matrices", "plot_dense_vs_local", "plot_level_scores",
    "plot_parameter_breakdown", "plot_window_diagram",
]
