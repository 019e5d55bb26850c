"""Figures of evaluation results: tables as bars, precision-recall curves, keyframe deviations.

Pure functions: data in, a matplotlib Figure out (``xcalab reproduce`` and notebook 08 draw with them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

KEYFRAMES = ("start", "apex", "end")


def plot_table_bars(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """mAP (%) and AD (frames) per row, as horizontal bars with error bars (std over seeds); each seed's value
    as a dot. The first row is at the top; the row labels sit on the left panel (they may be long).

    rows   records of ``xcalab.reproduce.summarise``: "label", "mean", "std", "per_seed" (dicts with
           "mAP" and "AD")

    A row far off the scale of the others (mean above 3 x their median, e.g. a constant-phase baseline's AD)
    would flatten every other bar: the axis stops at 1.2 x the largest of the rest and that bar carries its
    value as text.
    """
    if not rows:
        raise ValueError("plot_table_bars: no rows")
    y = np.arange(len(rows))
    longest = max(len(r["label"]) for r in rows)
    fig, axes = plt.subplots(1, 2, sharey=True, constrained_layout=True,
                             figsize=(8.0 + 0.06 * max(longest - 20, 0), 1.4 + 0.42 * len(rows)))
    for ax, col, name, colour in ((axes[0], "mAP", "average mAP, tIoU 0.3:0.1:0.7 (%)", "tab:blue"),
                                  (axes[1], "AD", "average keyframe deviation (frames)", "tab:orange")):
        mean = np.array([np.nan if r["mean"][col] is None else r["mean"][col] for r in rows], float)
        std = np.array([0.0 if r["std"][col] is None else r["std"][col] for r in rows], float)
        ax.barh(y, mean, xerr=std, color=colour, alpha=0.6, capsize=3)
        for i, r in enumerate(rows):
            seeds = [s[col] for s in r["per_seed"] if s[col] is not None]
            ax.plot(seeds, [i] * len(seeds), "k.", ms=4)
        finite = np.isfinite(mean)
        off = finite & (mean > 3 * np.median(mean[finite])) if finite.sum() > 2 else np.zeros(len(rows), bool)
        if off.any() and not off.all():
            top = 1.2 * float(np.max((mean + std)[finite & ~off]))
            ax.set_xlim(0, top)
            for i in np.flatnonzero(off):
                ax.text(0.98 * top, i, f"{mean[i]:.1f} (off scale)", ha="right", va="center", fontsize=8)
        ax.set_xlabel(name)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [r["label"] for r in rows])
    axes[0].invert_yaxis()  # shared: the first row on top in both panels
    axes[0].set_title("higher is better", fontsize=9)
    axes[1].set_title("lower is better", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def _load(path_or_data: str | Path | Mapping) -> Mapping:
    if isinstance(path_or_data, Mapping):
        return path_or_data
    return json.loads(Path(path_or_data).read_text())


def plot_precision_recall(
    predictions: str | Path | Mapping,
    annotations: str | Path | Mapping,
    tious: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
    subset: str = "test",
    top1: bool = True,
    title: str = "",
) -> Figure:
    """Precision-recall curve per class and tIoU (one panel per class), from an ActivityNet results file.

    predictions  PRED.json path or dict ({"results": {video: [{"label"|"label_id", "score", "segment"}]}})
    annotations  GT.json path or dict (ActivityNet-1.3)
    top1         keep the top-1 segment per class and video first (the paper's protocol)
    """
    from xcalab.metrics import (
        parse_detections,
        parse_ground_truth,
        parse_label_ids,
        precision_recall_curve,
        top1_per_class,
    )

    gt_data, pred_data = _load(annotations), _load(predictions)
    label_ids = parse_label_ids(gt_data)
    truth = parse_ground_truth(gt_data, subset)
    detections = parse_detections(pred_data, label_ids)
    if top1:
        detections = top1_per_class(detections)
    names = {v: k for k, v in label_ids.items()}
    classes = sorted({g.label_id for g in truth})
    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 3.6), squeeze=False, constrained_layout=True)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(tious)))
    for ax, c in zip(axes[0], classes):
        gt_c = [g for g in truth if g.label_id == c]
        det_c = [d for d in detections if d.label_id == c]
        for tiou, colour in zip(tious, colours):
            precision, recall = precision_recall_curve(det_c, gt_c, tiou)
            ax.step(np.r_[0, recall], np.r_[1 if precision.size else 0, precision], where="post", color=colour,
                    label=f"tIoU {tiou:g}")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="recall", ylabel="precision", title=names.get(c, str(c)))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    return fig


def plot_deviation_histograms(deviations: Mapping[str, Sequence[Sequence[float]]], max_abs: float = 20) -> Figure:
    """Histograms of predicted - true keyframe (frames), one panel per keyframe, one outline per variant.

    deviations  label -> list of (start, apex, end) deviations, one per video (signed frames)
    max_abs     the x range is +-max_abs; larger deviations are clipped into the outer bins
    """
    if not deviations:
        raise ValueError("plot_deviation_histograms: nothing to draw")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True, constrained_layout=True)
    bins = np.arange(-max_abs - 0.5, max_abs + 1.5, 1.0)
    for label, devs in deviations.items():
        d = np.asarray(devs, float)
        if d.size == 0:
            d = d.reshape(0, 3)
        if d.ndim != 2 or d.shape[1] != 3:
            raise ValueError(f"{label}: need (start, apex, end) per video, got shape {d.shape}")
        for k, ax in enumerate(axes):
            ax.hist(np.clip(d[:, k], -max_abs, max_abs), bins=bins, histtype="step", lw=1.5,
                    label=f"{label} (mean |d| {np.abs(d[:, k]).mean():.1f})" if d.size else label)
    for k, ax in enumerate(axes):
        ax.axvline(0, color="k", lw=0.8)
        ax.set(title=KEYFRAMES[k], xlabel="predicted - true (frames)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("videos")
    return fig
