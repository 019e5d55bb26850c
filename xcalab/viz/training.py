"""Figures of detector training (notebook 07): the learning-rate schedule, loss and validation curves,
predicted versus true segments and keyframes on a cine's timeline, the positive points of label assignment
per pyramid level, and one cine's candidates before and after Soft-NMS.

Pure functions: data in, a matplotlib Figure out. Actions and keyframes take the colours of
``xcalab.viz.palette``; nothing else here uses those colours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from xcalab.viz.palette import ACTION_COLORS, KEYFRAME_COLORS

#: The two actions of problem setting 0 in label order, coloured by the one palette.
ACTION_COLOURS_BY_LABEL = (ACTION_COLORS["filling"], ACTION_COLORS["disappearing"])
KEYFRAME_NAMES = ("start", "apex", "end")


def _epochs(history: Sequence[Mapping[str, Any]]) -> np.ndarray:
    if not history:
        raise ValueError("the training history is empty")
    return np.array([int(h["epoch"]) for h in history])


def _shade_contrast(ax: Axes, contrast_epochs: Sequence[int], label: bool) -> None:
    for i, e in enumerate(sorted(contrast_epochs)):
        ax.axvspan(e - 0.5, e + 0.5, color="tab:olive", alpha=0.15, lw=0,
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
                             ("reg", "C1-", "regression (DIoU)"), ("con", "C8o", "contrastive (SNN, eq. 10)")):
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
            for name, f in zip(KEYFRAME_NAMES, pred):
                ax.axvline(f, color=KEYFRAME_COLORS[name], lw=1.4, ls="--")
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
    for name in KEYFRAME_NAMES:
        keep[f"predicted {name}"] = plt.Line2D([], [], color=KEYFRAME_COLORS[name], ls="--")
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


# --------------------------------------------------------------------------------------------------
# Label assignment per pyramid level, and Soft-NMS before / after
# --------------------------------------------------------------------------------------------------


def plot_point_assignment(
    levels: Sequence[Any],
    segments: Any,
    labels: Sequence[int],
    label_names: Sequence[str] = ("filling", "disappearing"),
    title: str | None = None,
) -> Figure:
    """Which pyramid points learn which action: one row per level, one line per class inside it.

    levels       per level, ``xcalab.train.assign.LevelAssignment`` (``assignment_by_level``): level, stride,
                 reg_range, position [T_l], positive [T_l, C], in_centre [T_l, K], centre [K, 2]
    segments     [K, 2] the ground-truth actions [start, end] in grid units; labels [K] their classes
    Each class line shows the action (light band), its centre region at this level (dark band), every point of
    the level (grey dots), the points inside the centre region whose farthest boundary lies outside the level's
    regression range (hollow circles), and the positive points (filled circles), in the action's colour.
    """
    if not levels:
        raise ValueError("plot_point_assignment: no pyramid levels")
    segments = np.asarray(segments, float).reshape(-1, 2)
    labels = np.asarray(labels, int).reshape(-1)
    if len(labels) != len(segments):
        raise ValueError(f"need one label per segment, got {len(labels)} labels for {len(segments)} segments")
    n_classes = len(label_names)
    if labels.size and not (0 <= labels.min() and labels.max() < n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got {sorted(set(labels.tolist()))}")
    colours = [ACTION_COLORS.get(name, "tab:gray") for name in label_names]
    row_of = {c: n_classes - 1 - c for c in range(n_classes)}  # the first class on top
    x_max = max(max(float(np.max(np.asarray(lv.position), initial=0.0)) for lv in levels),
                float(segments.max(initial=0.0)))
    fig, axes = plt.subplots(len(levels), 1, figsize=(10, 0.55 + 0.95 * len(levels)), sharex=True, squeeze=False,
                             constrained_layout=True)
    for ax, lv in zip(axes[:, 0], levels):
        position = np.asarray(lv.position, float)
        positive = np.asarray(lv.positive, bool).reshape(len(position), -1)
        in_centre = np.asarray(lv.in_centre, bool).reshape(len(position), -1)
        centre = np.asarray(lv.centre, float).reshape(-1, 2)
        if positive.shape[1] != n_classes or in_centre.shape[1] != len(segments) or len(centre) != len(segments):
            raise ValueError(f"level {lv.level}: positive {positive.shape}, in_centre {in_centre.shape} and centre "
                             f"{centre.shape} do not match {n_classes} classes and {len(segments)} segments")
        counts = []
        for c in range(n_classes):
            y = row_of[c]
            ax.plot(position, np.full(len(position), y), ".", color="0.6", ms=3, zorder=1)
            mine = labels == c
            for (a, b), (r0, r1) in zip(segments[mine], centre[mine]):
                ax.broken_barh([(a, b - a)], (y - 0.32, 0.64), color=colours[c], alpha=0.15, lw=0, zorder=0)
                ax.broken_barh([(r0, r1 - r0)], (y - 0.32, 0.64), color=colours[c], alpha=0.35, lw=0, zorder=0)
            near = in_centre[:, mine].any(axis=1) & ~positive[:, c]
            rejected = ax.scatter(position[near], np.full(int(near.sum()), y), s=36, facecolors="white",
                                  edgecolors=colours[c], linewidths=1.6, zorder=2)
            rejected.set_gid(f"in-centre-out-of-range:{c}")
            chosen = ax.scatter(position[positive[:, c]], np.full(int(positive[:, c].sum()), y), s=40,
                                color=colours[c], edgecolors="k", linewidths=0.6, zorder=3)
            chosen.set_gid(f"positive:{c}")
            counts.append(f"{label_names[c]} {int(positive[:, c].sum())}")
        lo, hi = lv.reg_range
        ax.set_ylabel(f"level {lv.level}\nstride {lv.stride}\nrange [{lo:g}, {hi:g}]", rotation=0, ha="right",
                      va="center", fontsize=8)
        ax.set_yticks([row_of[c] for c in range(n_classes)], [label_names[c] for c in range(n_classes)], fontsize=7)
        ax.set_ylim(-0.6, n_classes - 0.4)
        ax.set_title("positive points: " + ", ".join(counts), fontsize=8, loc="right", pad=2)
        ax.grid(axis="x", alpha=0.25)
    axes[-1, 0].set_xlim(-0.8, x_max + 0.8)
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("position t on the feature grid (level-0 steps)")
    handles = [
        plt.Line2D([], [], ls="", marker=".", color="0.6", label="a point of the level"),
        plt.Line2D([], [], ls="", marker="o", mfc="white", mec="k", label="in the centre region, outside the range"),
        plt.Line2D([], [], ls="", marker="o", color="0.3", mec="k", label="positive (learns the action)"),
        plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.2, label="the action"),
        plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.5, label="its centre region at this level"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_soft_nms(
    stages: Any,
    truth: Sequence[tuple[int, float, float]] | None = None,
    threshold: float = 0.1,
    label_names: Sequence[str] = ("filling", "disappearing"),
    unit: str = "frame",
    extent: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """One cine's candidates before Soft-NMS, what survives it, and the top-1 segment per class that is kept.

    stages     ``xcalab.postprocess.PostprocessStages`` (e.g. ``postprocess_stages(...).in_frames(grid)``):
               candidates (segments [N, 2], scores [N], labels [N]), kept [M] (indices), kept_scores [M],
               voted [M, 2], top1 ((label, start, end, score), ...)
    truth      optional true actions (label, start, end), drawn under the top-1 segments
    threshold  a score line in the second panel (survivors above it are counted in its title)
    unit       the unit of the segments ("frame" or "grid step"), for the axis label
    extent     optional (first, last) position of the cine: the axis shows it with a margin of a tenth of its
               length, shaded (candidates are not clamped to the cine before Soft-NMS, so some run off the
               edges; the kept segments are clamped when they become seconds)
    Scores are probabilities and are drawn on fixed limits (0, 1): each segment is a horizontal line at the
    height of its score. In the second panel the grey line under each survivor is its score before the decay.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if extent is not None and not float(extent[0]) < float(extent[1]):
        raise ValueError(f"extent must be (first, last) with first < last, got {extent}")
    segments = np.asarray(stages.candidates.segments, float).reshape(-1, 2)
    scores = np.asarray(stages.candidates.scores, float).reshape(-1)
    labels = np.asarray(stages.candidates.labels, int).reshape(-1)
    kept = np.asarray(stages.kept, int).reshape(-1)
    kept_scores = np.asarray(stages.kept_scores, float).reshape(-1)
    if not (len(scores) == len(labels) == len(segments)) or len(kept) != len(kept_scores):
        raise ValueError(f"inconsistent stages: {len(segments)} candidate segments, {len(scores)} scores, "
                         f"{len(labels)} labels; {len(kept)} kept indices, {len(kept_scores)} kept scores")
    if kept.size and (kept.min() < 0 or kept.max() >= len(segments)):
        raise ValueError(f"kept indices must point into the {len(segments)} candidates")
    classes = set(labels.tolist()) | {int(t[0]) for t in stages.top1} | {int(t[0]) for t in truth or ()}
    if classes - set(range(len(label_names))):
        raise ValueError(f"labels must lie in [0, {len(label_names)}), got {sorted(classes)}")
    colours = [ACTION_COLORS.get(name, "tab:gray") for name in label_names]
    fig, (ax_before, ax_after, ax_top) = plt.subplots(3, 1, figsize=(10, 7.6), sharex=True, constrained_layout=True,
                                                      height_ratios=(1, 1, 0.85))
    for c, name in enumerate(label_names):
        mine = labels == c
        ax_before.hlines(scores[mine], segments[mine, 0], segments[mine, 1], color=colours[c], lw=1.2, alpha=0.55,
                         label=f"{name} ({int(mine.sum())})")
    ax_before.set_title(f"before Soft-NMS: {len(segments)} candidate segments (every point and class above the "
                        "pre-NMS threshold)", fontsize=9, loc="left")

    ax_after.hlines(scores[kept], segments[kept, 0], segments[kept, 1], color="0.75", lw=1.0,
                    label="score before the decay")
    for c, name in enumerate(label_names):
        mine = labels[kept] == c
        ax_after.hlines(kept_scores[mine], segments[kept[mine], 0], segments[kept[mine], 1], color=colours[c], lw=2.0,
                        label=f"{name} ({int(mine.sum())})")
    above = int((kept_scores >= threshold).sum())
    ax_after.axhline(threshold, color="k", ls="--", lw=0.8, label=f"score {threshold:g}")
    ax_after.set_title(f"after Soft-NMS: {len(kept)} kept, their scores decayed by their overlap with the better "
                       f"ones; {above} at or above {threshold:g}", fontsize=9, loc="left")
    for ax in (ax_before, ax_after):
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("score")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, loc="upper right")

    # One row per class for the kept segments (the two may overlap), then one for the true actions (they touch).
    rows = len(label_names) + (1 if truth else 0)
    for label_id, t0, t1, score in stages.top1:
        y = rows - 1 - int(label_id)
        ax_top.broken_barh([(t0, t1 - t0)], (y + 0.15, 0.7), color=colours[int(label_id)], alpha=0.85)
        ax_top.text((t0 + t1) / 2, y + 0.5, f"{label_names[int(label_id)]} {score:.2f}", ha="center", va="center",
                    fontsize=8)
    for label_id, t0, t1 in truth or ():
        ax_top.broken_barh([(t0, t1 - t0)], (0.15, 0.7), facecolor="none", edgecolor=colours[int(label_id)],
                           hatch="//", lw=1.2)
    ax_top.set(ylim=(0, rows), yticks=[rows - 1 - c + 0.5 for c in range(len(label_names))] + ([0.5] if truth else []),
               yticklabels=[f"top-1 {name}" for name in label_names] + (["true"] if truth else []))
    ax_top.set_title("the top-1 segment of each class (after voting): the paper's prediction"
                     + (", over the true actions" if truth else ""), fontsize=9, loc="left")
    ax_top.set_xlabel(unit)
    if extent is not None:
        first, last = map(float, extent)
        margin = max(1.0, 0.1 * (last - first))  # candidates reaching farther run off the edges
        low, high = first - margin, last + margin
        for ax in (ax_before, ax_after, ax_top):
            ax.axvspan(low, first, color="0.9", lw=0, zorder=0)
            ax.axvspan(last, high, color="0.9", lw=0, zorder=0)
        ax_top.set_xlim(low, high)
        ax_top.set_title(ax_top.get_title(loc="left") + "; shaded: outside the cine", fontsize=9, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
