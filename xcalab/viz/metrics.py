"""Figures that explain the paper's metrics, and readings of reproduced tables against the paper's numbers.

The metrics themselves live in ``xcalab.metrics``; here they are drawn on examples small enough to check by hand
(notebook 08), and the tables ``xcalab reproduce`` writes are compared with the seed paper's, row pair by row pair.

Figures (each returns a matplotlib Figure and never calls ``plt.show()``; bad inputs raise ValueError):

    plot_tiou_example(seg_a, seg_b)                      two segments, their intersection and union, the tIoU
    plot_ranked_detections_ap(hits, n_positives)         a ranked list of hits / false positives, its
                                                         precision-recall points, their envelope and the AP area
    plot_frame_labels(pred_kf, true_kf, n_frames)        per-frame label strips (background / filling /
                                                         disappearing) of truth and prediction, and where they agree
    plot_convention_effects(values)                      one metric under several conventions, one panel per metric
    plot_versus_paper(record, columns)                   a reproduced table's rows (mean +- std, seeds) next to the paper

Readings (no figures):

    paper_value(record, label, column)                   the paper's number for one cell of a reproduced table
    compare_rows(record, a, b, column)                   per-seed paired difference of two rows, with the paper's
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from xcalab.frame_metrics import BACKGROUND, DISAPPEARING, FILLING, frame_labels
from xcalab.metrics import temporal_iou
from xcalab.viz.common import figure_and_axes
from xcalab.viz.palette import ACTION_COLORS, KEYFRAME_COLORS

#: Colour of each frame label (index = label: background, filling, disappearing).
LABEL_COLORS = {BACKGROUND: "#dddddd", FILLING: ACTION_COLORS["filling"], DISAPPEARING: ACTION_COLORS["disappearing"]}
LABEL_NAMES = {BACKGROUND: "background", FILLING: "filling", DISAPPEARING: "disappearing"}
#: Colours of a hit (true positive / frames that agree) and a miss (false positive / frames that disagree).
HIT_COLOR, MISS_COLOR = "tab:green", "tab:red"
#: Columns where a lower value is better (everything else: higher is better).
LOWER_IS_BETTER = ("AD", "AD (reference)")


def _segment(seg: Any, name: str) -> tuple[float, float]:
    a = np.asarray(seg, dtype=float)
    if a.shape != (2,) or not np.all(np.isfinite(a)) or a[1] < a[0]:
        raise ValueError(f"{name} must be a finite segment (t0, t1) with t0 <= t1, got {seg!r}")
    return float(a[0]), float(a[1])


# --------------------------------------------------------------------------------------------------
# tIoU
# --------------------------------------------------------------------------------------------------


def plot_tiou_example(seg_a, seg_b, labels: Sequence[str] = ("prediction", "ground truth"), unit: str = "s",
                      ax: Axes | None = None) -> Figure:
    """Two segments as bars, their intersection shaded, their union bracketed, and tIoU = |A ∩ B| / |A ∪ B|.

    seg_a, seg_b: (t0, t1) each, t0 <= t1 (seconds, frames, anything: ``unit`` names it). The tIoU in the
    title is ``xcalab.metrics.temporal_iou``'s.
    """
    (a0, a1), (b0, b1) = _segment(seg_a, "seg_a"), _segment(seg_b, "seg_b")
    if len(labels) != 2:
        raise ValueError(f"labels must name the two segments, got {labels!r}")
    fig, ax = figure_and_axes(ax, (7, 2.4))
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    tiou = float(temporal_iou((a0, a1), np.array([[b0, b1]]))[0])
    ax.barh([1, 0], [a1 - a0, b1 - b0], left=[a0, b0], height=0.5, color=["tab:blue", "tab:gray"], alpha=0.8)
    if inter > 0:
        lo = max(a0, b0)
        ax.axvspan(lo, lo + inter, ymin=0.1, ymax=0.9, color=HIT_COLOR, alpha=0.25, label=f"intersection {inter:g} {unit}")
    lo, hi = min(a0, b0), max(a1, b1)
    ax.annotate("", (lo, 1.55), (hi, 1.55), arrowprops={"arrowstyle": "|-|", "color": "k"})
    # The union of two disjoint segments is not the span between them: say so rather than draw it wrong.
    gap = max(a0, b0) - min(a1, b1)
    ax.text((lo + hi) / 2, 1.62, f"union {union:g} {unit}" + (" (the gap between them is not counted)" if gap > 0
                                                               else ""), ha="center", va="bottom", fontsize=8)
    ax.set_yticks([1, 0], list(labels))
    ax.set_ylim(-0.5, 2.0)
    pad = 0.05 * max(hi - lo, 1e-9)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(unit)
    ax.set_title(f"tIoU = {inter:g} / {union:g} = {tiou:.3f}", fontsize=10)
    if inter > 0:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# AP of a ranked list
# --------------------------------------------------------------------------------------------------


def _hits(hits: Any, n_positives: int) -> np.ndarray:
    h = np.asarray(hits)
    if h.ndim != 1 or h.size == 0 or not np.all(np.isin(h, (0, 1))):
        raise ValueError(f"hits must be a non-empty [N] array of booleans (ranked, best first), got {hits!r}")
    h = h.astype(bool)
    if isinstance(n_positives, bool) or int(n_positives) != n_positives or n_positives < max(1, int(h.sum())):
        raise ValueError(f"n_positives must be an integer >= 1 and >= the number of hits ({int(h.sum())}), "
                         f"got {n_positives!r}")
    return h


def plot_ranked_detections_ap(hits, n_positives: int, labels: Sequence[str] | None = None, title: str = "") -> Figure:
    """A ranked list of detections and the AP it scores (eq. 16, the ActivityNet all-point interpolation).

    hits         [N] bool: hits[i] says whether the i-th detection (ranked by score, best first) is a true positive
    n_positives  the number of ground-truth segments of the class (recall = true positives / n_positives)
    labels       [N] text for each detection (e.g. "A [1, 10] 0.90"), drawn in the list

    Left: the list, one row per rank, with the running precision and recall. Right: precision against recall
    after each detection (dots: green hit, red false positive), the envelope (precision at recall r := the
    best precision at any recall >= r, dashed) and, shaded, the area under the envelope: one column of width
    1 / n_positives at every hit. The shaded area is the AP (title).
    """
    h = _hits(hits, n_positives)
    if labels is not None and len(labels) != h.size:
        raise ValueError(f"need one label per detection ({h.size}), got {len(labels)}")
    ranks = np.arange(1, h.size + 1)
    tp = np.cumsum(h)
    precision, recall = tp / ranks, tp / n_positives
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    ap = float(envelope[h].sum() / n_positives)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.35 * h.size + 2.6), gridspec_kw={"width_ratios": [1.1, 1]})
    for i, (hit, p, r) in enumerate(zip(h, precision, recall)):
        colour = HIT_COLOR if hit else MISS_COLOR
        name = "" if labels is None else str(labels[i])
        left.text(0.0, i, f"{i + 1}", va="center", fontsize=9)
        left.text(0.08, i, name, va="center", fontsize=9, family="monospace")
        left.text(0.62, i, "TP" if hit else "FP", va="center", fontsize=9, color=colour, weight="bold")
        left.text(0.74, i, f"P {tp[i]}/{i + 1}={p:.2f}  R {tp[i]}/{n_positives}={r:.2f}", va="center", fontsize=8)
    left.set_ylim(h.size - 0.5, -1.2)
    left.set_xlim(0, 1.25)
    left.text(0.0, -1, "rank", fontsize=8, weight="bold")
    left.text(0.08, -1, "detection (best score first)", fontsize=8, weight="bold")
    left.text(0.74, -1, "running precision, recall", fontsize=8, weight="bold")
    left.set_axis_off()

    # The area: at every hit recall steps up by 1 / n_positives, under the envelope's value there.
    right.bar(recall[h] - 1 / n_positives, envelope[h], width=1 / n_positives, align="edge", color="tab:blue",
              alpha=0.25, edgecolor="tab:blue", label=f"area = AP = {ap:.3f}")
    right.step(np.r_[0, recall], np.r_[envelope[0], envelope], where="pre", color="tab:blue", ls="--", lw=1.2,
               label="envelope")
    right.plot(recall, precision, color="0.5", lw=0.8)
    right.scatter(recall, precision, c=[HIT_COLOR if x else MISS_COLOR for x in h], zorder=3, s=30)
    for i, (p, r) in enumerate(zip(precision, recall)):
        right.annotate(str(i + 1), (r, p), textcoords="offset points", xytext=(4, 4), fontsize=7)
    right.set(xlim=(0, 1.05), ylim=(0, 1.08), xlabel="recall", ylabel="precision")
    right.legend(fontsize=8, loc="lower left")
    right.grid(alpha=0.3)
    fig.suptitle(title or f"AP = {ap:.3f} ({int(h.sum())} of {n_positives} positives found)", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Frame labels
# --------------------------------------------------------------------------------------------------


def plot_frame_labels(pred_keyframes, true_keyframes, n_frames: int, reference_keyframes=None,
                      ax: Axes | None = None) -> Figure:
    """Per-frame labels as colour strips: the truth, the prediction and (optionally) the reference's truth,
    then a strip that is green where prediction and truth agree and red where they do not.

    pred_keyframes, true_keyframes   (start, apex, end) non-negative frame indices
    n_frames                         frames of the cine
    reference_keyframes              e.g. ``paper_gt_keyframes(true)`` clipped at 0: drawn as a third strip

    Frames [start, apex) are filling, [apex, end) disappearing, the rest background (``frame_labels``); the
    strips' image holds one RGB pixel per frame, so ``ax.images[0]`` shows exactly those labels. Keyframes are
    marked at the left edge of their frame.
    """
    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    strips = [("truth", true_keyframes), ("prediction", pred_keyframes)]
    if reference_keyframes is not None:
        strips.append(("reference truth", reference_keyframes))
    # frame_labels checks the keyframes (XcalabInputError, a ValueError, on bad ones); a prediction may be out
    # of order (its reversed interval is empty), the truth may not.
    labelled = [(name, np.asarray(kf, dtype=float), frame_labels(kf, n_frames)) for name, kf in strips]
    for name, kf, _ in labelled:
        if name != "prediction" and not (kf[0] <= kf[1] <= kf[2]):
            raise ValueError(f"{name} keyframes must be in order (start <= apex <= end), got {kf.tolist()}")
    truth, pred = labelled[0][2], labelled[1][2]
    agree = np.where(pred == truth, 1, 0)
    colours = np.array([to_rgb(LABEL_COLORS[k]) for k in (BACKGROUND, FILLING, DISAPPEARING)])
    rows = [colours[lab] for _, _, lab in labelled]
    rows.append(np.array([to_rgb(MISS_COLOR), to_rgb(HIT_COLOR)])[agree])
    image = np.stack(rows)  # [rows, n_frames, 3]

    fig, ax = figure_and_axes(ax, (min(14.0, max(6.0, 0.3 * n_frames + 2)), 0.5 * len(rows) + 1.4))
    ax.imshow(image, aspect="auto", interpolation="nearest", extent=(-0.5, n_frames - 0.5, len(rows) - 0.5, -0.5))
    if n_frames <= 60:  # thin frame borders, so frames can be counted by eye
        for x in np.arange(n_frames - 1) + 0.5:
            ax.axvline(x, color="w", lw=0.5, alpha=0.7)
    for y in np.arange(len(rows) - 1) + 0.5:
        ax.axhline(y, color="w", lw=3)
    for y, (_, kf, _) in enumerate(labelled):
        for name, k in zip(("start", "apex", "end"), kf):
            if 0 <= k <= n_frames:
                ax.plot([k - 0.5, k - 0.5], [y - 0.45, y + 0.45], color=KEYFRAME_COLORS[name], lw=2.5)
    ax.set_yticks(range(len(rows)), [name for name, _, _ in labelled] + [f"agree ({int(agree.sum())}/{n_frames})"])
    step = max(1, int(math.ceil(n_frames / 25)))
    ax.set_xticks(range(0, n_frames, step))
    ax.set_xlabel("frame")
    handles = [Patch(color=LABEL_COLORS[k], label=LABEL_NAMES[k]) for k in (BACKGROUND, FILLING, DISAPPEARING)]
    handles += [Patch(color=HIT_COLOR, label="agree"), Patch(color=MISS_COLOR, label="disagree")]
    handles += [plt.Line2D([], [], color=c, lw=2.5, label=n) for n, c in KEYFRAME_COLORS.items()]
    ax.legend(handles=handles, fontsize=7, ncol=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Conventions
# --------------------------------------------------------------------------------------------------


def plot_convention_effects(values: Mapping[str, Mapping[str, float]], digits: int = 3) -> Figure:
    """One metric computed under several conventions, on the same predictions: one panel per metric.

    values   metric name -> {convention name -> value}, e.g. {"AD (frames)": {"xcalab": 3.1, "reference": 4.6},
             "frame F": {...}}; every value a finite number
    Bars are horizontal, in the given order, each labelled with its value; the first convention of each metric
    is the reference point and the others say how far they move it ("+1.52").
    """
    if not values or not all(isinstance(v, Mapping) and v for v in values.values()):
        raise ValueError("values must map each metric to a non-empty {convention: value} dict")
    for metric, conv in values.items():
        for name, v in conv.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValueError(f"{metric} / {name}: value must be a finite number, got {v!r}")
    n = len(values)
    height = max(len(c) for c in values.values())
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 0.5 * height + 1.6), squeeze=False)
    colours = plt.cm.tab10(np.arange(height))
    for ax, (metric, conv) in zip(axes[0], values.items()):
        names, vals = list(conv), np.array([float(v) for v in conv.values()])
        y = np.arange(len(names))
        ax.barh(y, vals, color=colours[: len(names)], alpha=0.75)
        top = float(np.max(np.abs(vals))) or 1.0
        for i, v in enumerate(vals):
            shift = "" if i == 0 else f"  ({v - vals[0]:+.{digits}g})"
            ax.text(v + 0.02 * top if v >= 0 else v - 0.02 * top, i, f"{v:.{digits}f}{shift}", va="center",
                    ha="left" if v >= 0 else "right", fontsize=8)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(0.0, float(vals.min()) * 1.6), max(0.0, float(vals.max())) * 1.6 or 1.0)  # room for labels
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Reproduced tables against the paper
# --------------------------------------------------------------------------------------------------


def _paper_columns(record: Mapping[str, Any], n: int) -> list[str]:
    """Names of the paper's numbers for a table row of ``n`` values (``xcalab.reproduce.PAPER`` layout)."""
    aps = [f"AP@{t:g}" for t in record["tious"]] + ["mAP"]
    if n == 4:
        return ["P", "R", "F", "AD"]  # Table VIII: keyframe metrics only
    if n == len(aps):
        return aps
    if n == len(aps) + 1:
        return aps + ["AD"]  # Table II: AP, mAP and the same models' AD
    return aps + ["P", "R", "F", "AD"]


def paper_value(record: Mapping[str, Any], label: str, column: str) -> float | None:
    """The paper's number for row ``label``, column ``column`` of a reproduced table, or None if it has none.

    record   the JSON ``xcalab reproduce`` writes (``"paper"``: label -> numbers, ``"tious"``)
    column   "AP@0.5", "mAP", "P", "R", "F", "AD" or "AD (reference)": the paper's AD was measured with the
             reference's convention, so both AD columns map to it (compare it with "AD (reference)").
    """
    row = record.get("paper", {}).get(label)
    if row is None:
        return None
    names = _paper_columns(record, len(row))
    key = "AD" if column in LOWER_IS_BETTER else column
    return float(row[names.index(key)]) if key in names else None


def _row(record: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    for r in record["rows"]:
        if r["label"] == label:
            return r
    raise ValueError(f"table {record.get('table')} has no row {label!r}; rows: {[r['label'] for r in record['rows']]}")


class RowComparison(NamedTuple):
    """Row ``a`` minus row ``b`` in one column, seed by seed (the same training seeds, the same data).

    per_seed   [S] differences a - b (NaN where a seed has no value)
    mean, std  over seeds (std ddof 1; 0 with one seed)
    paper      the paper's a - b, or None
    """

    a: str
    b: str
    column: str
    per_seed: np.ndarray
    mean: float
    std: float
    paper: float | None

    @property
    def lower_is_better(self) -> bool:
        return self.column in LOWER_IS_BETTER

    @property
    def n_better(self) -> int:
        """Seeds in which ``a`` is better than ``b`` (higher, or lower for AD)."""
        d = self.per_seed[np.isfinite(self.per_seed)]
        return int(np.sum(d < 0 if self.lower_is_better else d > 0))

    @property
    def n_worse(self) -> int:
        """Seeds in which ``a`` is worse than ``b``."""
        d = self.per_seed[np.isfinite(self.per_seed)]
        return int(np.sum(d > 0 if self.lower_is_better else d < 0))

    @property
    def verdict(self) -> str:
        """"better" or "worse" when every seed says so and there are >= 2 seeds; "unclear" otherwise."""
        d = self.per_seed[np.isfinite(self.per_seed)]
        if d.size < 2:
            return "unclear"
        if self.n_better == d.size:
            return "better"
        if self.n_worse == d.size:
            return "worse"
        return "unclear"

    @property
    def agreement(self) -> str:
        """"agrees" / "disagrees" with the direction of the paper's difference, or "unresolved"."""
        if self.paper is None or self.paper == 0 or self.verdict == "unclear":
            return "unresolved"
        paper_better = self.paper < 0 if self.lower_is_better else self.paper > 0
        return "agrees" if paper_better == (self.verdict == "better") else "disagrees"

    def sentence(self, digits: int = 2) -> str:
        """The comparison in words, computed from the numbers (so it stays true whatever they are)."""
        d = self.per_seed[np.isfinite(self.per_seed)]
        unit = {"AD": " frames", "AD (reference)": " frames"}.get(self.column, " points" if "AP" in self.column else "")
        size = f"{self.mean:+.{digits}f} ± {self.std:.{digits}f}{unit} (mean ± std over {d.size} seed(s))"
        if self.verdict == "better":
            verb = f"beats {self.b}: {self.column} {size}, better in all {d.size} seeds"
        elif self.verdict == "worse":
            verb = f"does not beat {self.b}: {self.column} {size}, worse in all {d.size} seeds"
        elif d.size < 2:
            verb = f"vs {self.b}: {self.column} {size}; one seed cannot separate this from training noise"
        else:
            equal = d.size - self.n_better - self.n_worse
            verb = (f"does not clearly beat {self.b}: {self.column} {size}; better in {self.n_better}, worse in "
                    f"{self.n_worse}" + (f", equal in {equal}" if equal else "") + f" of {d.size} seeds")
        paper = "" if self.paper is None else f". Paper: {self.paper:+.{digits}f}{unit} → {self.agreement}"
        return f"{self.a} {verb}{paper}."


def compare_rows(record: Mapping[str, Any], a: str, b: str, column: str = "mAP") -> RowComparison:
    """Row ``a`` minus row ``b`` of a reproduced table in ``column``, per seed, next to the paper's difference.

    record   the JSON ``xcalab reproduce`` writes ("rows" with "label" and "per_seed" dicts; "paper")
    column   a key of the rows' per-seed dicts: "mAP", "AP@0.5", "F", "AD", "AD (reference)", ...
    """
    ra, rb = _row(record, a), _row(record, b)
    if len(ra["per_seed"]) != len(rb["per_seed"]):
        raise ValueError(f"rows {a!r} and {b!r} have {len(ra['per_seed'])} and {len(rb['per_seed'])} seeds")

    def value(seed: Mapping[str, Any]) -> float:
        v = seed.get(column)
        return np.nan if v is None else float(v)

    d = np.array([value(x) - value(y) for x, y in zip(ra["per_seed"], rb["per_seed"])], dtype=float)
    finite = d[np.isfinite(d)]
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    pa, pb = paper_value(record, a, column), paper_value(record, b, column)
    paper = None if pa is None or pb is None else pa - pb
    return RowComparison(a, b, column, d, mean, std, paper)


def plot_versus_paper(record: Mapping[str, Any], columns: Sequence[str] = ("mAP", "AD (reference)"),
                      title: str = "") -> Figure:
    """A reproduced table's rows next to the paper's numbers: one panel per column.

    record   the JSON ``xcalab reproduce`` writes
    columns  per-seed keys to draw; for "AD (reference)" (and "AD") the paper's AD is drawn beside it
    Per row: xcalab's mean over seeds with a std error bar and each seed as a dot (blue), the paper's value
    (grey bar, hatched) where it has one.
    """
    rows = list(record.get("rows", []))
    if not rows or not columns:
        raise ValueError("plot_versus_paper: the record has no rows, or no columns were asked for")
    for col in columns:
        if col not in rows[0]["mean"]:
            raise ValueError(f"column {col!r} not in the table; it has {list(rows[0]['mean'])}")
    labels = [r["label"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, len(columns), figsize=(max(5.0, 0.9 * len(rows) + 2.5) * len(columns) / 1.4, 3.8),
                             squeeze=False)
    for ax, col in zip(axes[0], columns):
        mean = np.array([np.nan if r["mean"][col] is None else r["mean"][col] for r in rows], float)
        std = np.array([0.0 if r["std"][col] is None else r["std"][col] for r in rows], float)
        paper = np.array([np.nan if (p := paper_value(record, r["label"], col)) is None else p for r in rows], float)
        ax.bar(x - 0.2, mean, 0.4, yerr=std, capsize=3, color="tab:blue", alpha=0.6,
               label=f"xcalab, {record.get('preset', '?')} (mean ± std)")
        for i, r in enumerate(rows):
            seeds = [s[col] for s in r["per_seed"] if s.get(col) is not None]
            ax.plot([i - 0.2] * len(seeds), seeds, "k.", ms=4)
        known = np.isfinite(paper)
        if known.any():
            ax.bar(x[known] + 0.2, paper[known], 0.4, color="0.75", hatch="//", edgecolor="0.4",
                   label="paper (clinical data)")
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        better = "lower is better" if col in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{col} ({better})", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, ncol=2, loc="upper right", frameon=False)
    fig.suptitle(title or f"Table {record.get('table', '?')}: xcalab vs the paper", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig
