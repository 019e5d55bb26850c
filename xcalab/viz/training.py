"""Figures of detector training: the learning-rate schedule, loss and validation curves, and predicted
versus true segments and keyframes on a cine's timeline (notebook 07).

Pure functions: data in, a matplotlib Figure out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xcalab.viz.palette import ACTION_COLORS

#: The two actions of problem setting 0 in label order, coloured by the one palette.
ACTION_COLOURS_BY_LABEL = (ACTION_COLORS["filling"], ACTION_COLORS["disappearing"])
KEYFRAME_NAMES = ("start", "apex", "end")


def _epochs(history: Sequence[Mapping[str, Any]]) -> np.ndarray:
    if not history:
        raise ValueError("the training history is empty")
    return np.array([int(h["epoch"]) for h in history])


def _shade_contrast(ax: Axes, contrast_epochs: Sequence[int], label: bool) -> None:
    for i, e in enumerate(sorted(contrast_epochs)):
        ax.axvspan(e - 0.5, e + 0.5, color="tab:purple", alpha=0.12, lw=0,
                   label="contrastive epoch (L_con on)" if label and i == 0 else None)


def plot_training_history(
    history: Sequence[Mapping[str, Any]],
    contrast_epochs: Sequence[int] = (),
    best_epoch: int | None = None,
) -> Figure:
    """Mean loss terms per epoch (left) and the validation scores of model selection (right).

    history          one record per epoch, as ``xcalab train`` logs them: "epoch", "loss", "cls", "reg", "con"
                     (None outside contrastive epochs), "lr", "val_average_map" and "val_ad" (None before
                     selection starts)
    contrast_epochs  epochs with the imagewise contrastive loss on (shaded)
    best_epoch       the selected epoch (a vertical line), e.g. ``history[-1]["best_epoch"]``
    """
    epochs = _epochs(history)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    _shade_contrast(ax_loss, [e for e in contrast_epochs if e <= epochs.max()], label=True)
    for key, style, name in (("loss", "k-", "total"), ("cls", "C0-", "classification (focal)"),
                             ("reg", "C1-", "regression (DIoU)"), ("con", "C4o", "contrastive (SNN, eq. 10)")):
        values = np.array([np.nan if h.get(key) is None else h[key] for h in history], float)
        if np.isfinite(values).any():
            ax_loss.plot(epochs, values, style, label=name, ms=5)
    ax_loss.set(xlabel="epoch", ylabel="mean loss per step", title="training losses")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)

    val_map = np.array([np.nan if h.get("val_average_map") is None else 100 * h["val_average_map"] for h in history])
    val_ad = np.array([np.nan if h.get("val_ad") is None else h["val_ad"] for h in history], float)
    ax_val.plot(epochs, val_map, "C2o-", label="validation average mAP (%)")
    ax_val.set(xlabel="epoch", ylabel="average mAP, tIoU 0.3:0.1:0.7 (%)", title="model selection (EMA weights)")
    ax_ad = ax_val.twinx()
    ax_ad.plot(epochs, val_ad, "C3s--", label="validation AD (frames)", ms=4)
    ax_ad.set_ylabel("average keyframe deviation (frames)")
    if best_epoch is not None:
        ax_val.axvline(best_epoch, color="k", ls=":", label=f"selected epoch {best_epoch}")
    lines = ax_val.get_legend_handles_labels()
    more = ax_ad.get_legend_handles_labels()
    ax_val.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    ax_val.set_xlim(ax_loss.get_xlim())
    ax_val.grid(alpha=0.3)
    return fig


def plot_learning_rate(history: Sequence[Mapping[str, Any]], ax: Axes | None = None) -> Figure:
    """The learning rate at the end of each epoch (linear warm-up, then cosine decay)."""
    epochs = _epochs(history)
    fig, ax = (plt.subplots(figsize=(5, 3), constrained_layout=True) if ax is None else (ax.figure, ax))
    ax.plot(epochs, [h["lr"] for h in history], "k.-")
    ax.set(xlabel="epoch", ylabel="learning rate", title="warm-up + cosine schedule")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
    return fig


def plot_predicted_segments(
    cines: Sequence[Mapping[str, Any]],
    labels: Sequence[str] = ("filling", "disappearing"),
) -> Figure:
    """Predicted vs true actions and keyframes on each cine's timeline (frames), one row per cine.

    cines  one dict per cine:
             "video_id"        its name
             "n_frames"        frames of the cine
             "true_keyframes"  (start, apex, end) frames
             "pred_keyframes"  (start, apex, end) frames, or None when a class was not detected
             "pred_segments"   [(label_id, first frame, last frame, score)] the top-1 segment per class
             "curve"           optional (x frames, y): a signal drawn behind (e.g. mean vessel feature per step)
             "missing"         optional {label: why} for undetected classes
    Each row: the true segments (upper bar), the predicted ones (lower bar, with scores), the keyframes as
    vertical lines (solid true, dashed predicted) and their deviations in frames in the title.
    """
    if not cines:
        raise ValueError("plot_predicted_segments: no cines")
    fig, axes = plt.subplots(len(cines), 1, figsize=(10, 1.9 * len(cines)), squeeze=False, constrained_layout=True)
    for ax, cine in zip(axes[:, 0], cines):
        n, true = int(cine["n_frames"]), np.asarray(cine["true_keyframes"], float)
        if cine.get("curve") is not None:
            x, y = map(np.asarray, cine["curve"])
            scaled = (y - y.min()) / (np.ptp(y) or 1.0)
            ax.fill_between(x, 0, scaled, color="0.85", step="mid", label="mean vessel feature (scaled)")
        for k in range(2):  # true actions: [start, apex], [apex, end]
            ax.broken_barh([(true[k], true[k + 1] - true[k])], (1.15, 0.3), color=ACTION_COLOURS_BY_LABEL[k], alpha=0.8,
                           label=f"true {labels[k]}")
        for label_id, f0, f1, score in cine.get("pred_segments", ()):
            ax.broken_barh([(f0, f1 - f0)], (1.6, 0.3), color=ACTION_COLOURS_BY_LABEL[int(label_id)], alpha=0.45, hatch="//",
                           label=f"predicted {labels[int(label_id)]}")
            ax.text((f0 + f1) / 2, 1.75, f"{score:.2f}", ha="center", va="center", fontsize=7)
        for f in true:
            ax.axvline(f, color="k", lw=1.2)
        pred = cine.get("pred_keyframes")
        if pred is not None:
            for f in pred:
                ax.axvline(f, color="tab:green", lw=1.2, ls="--")
            dev = np.asarray(pred, float) - true
            detail = ", ".join(f"{name} {d:+.0f}" for name, d in zip(KEYFRAME_NAMES, dev))
            title = f"{cine['video_id']}: predicted - true = {detail} frames"
        else:
            why = "; ".join(f"{k}: {v}" for k, v in (cine.get("missing") or {}).items())
            title = f"{cine['video_id']}: no keyframes ({why or 'a class was not detected'})"
        ax.set_title(title, fontsize=9, loc="left")
        ax.set(xlim=(0, n), ylim=(0, 2.0), yticks=[1.3, 1.75], yticklabels=["true", "predicted"])
    axes[-1, 0].set_xlabel("frame")
    handles, names = axes[0, 0].get_legend_handles_labels()
    keep = dict(zip(names, handles))
    keep["true keyframe"] = plt.Line2D([], [], color="k")
    keep["predicted keyframe"] = plt.Line2D([], [], color="tab:green", ls="--")
    fig.legend(keep.values(), keep.keys(), loc="outside lower center", ncol=4, fontsize=8)
    return fig


def timeline_records(predictions, annotations: Mapping[str, Any], features: Mapping[str, np.ndarray] | None = None,
                     stride: int = 4) -> list[dict[str, Any]]:
    """The input of ``plot_predicted_segments`` from detector output.

    predictions  ``xcalab.postprocess.VideoPrediction`` per cine
    annotations  video_id -> ``VideoAnnotation`` (true keyframes, fps, duration)
    features     optional video_id -> (T, 4096) features: their per-step mean becomes the background curve
    stride       frames between feature steps (step k is centred on frame stride * k + 2)
    """
    records = []
    for p in predictions:
        truth = annotations[p.video_id]
        n_frames = max(1, round(truth.duration * truth.fps))
        segments = [(d.label_id, d.t0 * p.fps, d.t1 * p.fps, d.score) for d in p.top1]
        record = {"video_id": p.video_id, "n_frames": n_frames, "true_keyframes": tuple(truth.keyframes),
                  "pred_keyframes": None if p.keyframes is None else tuple(p.frame_indices("nearest")),
                  "pred_segments": segments, "missing": dict(p.missing)}
        if features is not None and p.video_id in features:
            f = np.asarray(features[p.video_id])
            record["curve"] = (stride * np.arange(len(f)) + 2, f.mean(axis=1))
        records.append(record)
    return records
