"""The one-page summary of ``xcalab locate``: what was found in a cine, and why one can believe it (or not).

    previous / key / next frame of each keyframe     (the paper's Fig. 1 and Fig. 4: a keyframe is a choice
                                                      between near-identical neighbours)
    the timeline                                      filling and disappearing, the keyframes, the truth when
                                                      known, R waves and the end-diastolic frames
    the score curves                                  per-step class probabilities (0-1) and the vessel curve
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from xcalab.viz.palette import ACTION_COLORS, KEYFRAME_COLORS

KEYFRAMES = ("start", "apex", "end")
WHY_ABSENT = {
    "start": "not in this cine: contrast is already present at the first frame",
    "end": "not in this cine: still opacified at the last frame",
    "apex": "no contrast arrives in this cine",
}


def true_keyframes(seq) -> tuple[int | None, int | None, int | None] | None:
    """The true (start, apex, end) frames of a cine that carries truth (None where absent), else None."""
    if seq.truth is None:
        return None
    present = seq.meta.get("keyframes_present")
    if seq.meta.get("status") == "no_contrast":
        return (None, None, None)
    kf = tuple(int(k) for k in seq.truth.keyframes)
    if present is None:
        return kf
    return tuple(k if p else None for k, p in zip(kf, present))


def plot_keyframe_triplets(frames: np.ndarray, keyframes: Sequence[int | None], fig: Figure | None = None,
                           subplot_spec=None) -> Figure:
    """Rows start / apex / end, columns previous / key / next frame; an absent keyframe says why.

    frames [N, H, W] in [0, 1]; keyframes three frame indices or None.
    """
    fig = fig or plt.figure(figsize=(6, 6))
    spec = subplot_spec.subgridspec(3, 3, wspace=0.04, hspace=0.25) if subplot_spec is not None else fig.add_gridspec(3, 3)
    n = len(frames)
    for row, (name, k) in enumerate(zip(KEYFRAMES, keyframes)):
        if k is None:
            ax = fig.add_subplot(spec[row, :])
            ax.text(0.5, 0.5, f"{name}: {WHY_ABSENT[name]}", ha="center", va="center", color=KEYFRAME_COLORS[name],
                    fontsize=10, transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for col, offset in enumerate((-1, 0, 1)):
            ax = fig.add_subplot(spec[row, col])
            i = k + offset
            if 0 <= i < n:
                ax.imshow(frames[i], cmap="gray", vmin=0.0, vmax=1.0)
                label = {-1: "previous", 0: name, 1: "next"}[offset]
                ax.set_title(f"{label} #{i}", fontsize=8, color=KEYFRAME_COLORS[name] if offset == 0 else "k")
                if offset == 0:
                    for spine in ax.spines.values():
                        spine.set_edgecolor(KEYFRAME_COLORS[name])
                        spine.set_linewidth(3)
            else:
                ax.text(0.5, 0.5, "(outside the cine)", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def plot_locate_summary(result, truth: Sequence[int | None] | None = None) -> Figure:
    """One page for a ``xcalab.locator.LocateResult``: triplets, timeline, score curves. Returns the Figure.

    truth: true (start, apex, end) frames to draw beside the prediction (default: the cine's own truth,
    for XCA-Synth cines; nothing for real ones).
    """
    record, seq = result.record, result.sequence
    truth = true_keyframes(seq) if truth is None else truth
    predicted = [None if record[k] is None else record[k]["frame"] for k in KEYFRAMES]
    fig = plt.figure(figsize=(9.5, 11.5))
    outer = fig.add_gridspec(3, 1, height_ratios=[3.2, 0.9, 1.5], hspace=0.35)
    plot_keyframe_triplets(seq.frames, predicted, fig, outer[0])

    # The timeline, in the cine's own frames.
    ax = fig.add_subplot(outer[1])
    fps, n = seq.fps, seq.n_frames
    if record["segments"]:
        for row, name in ((1.0, "filling"), (1.0, "disappearing")):
            seg = record["segments"][name]
            ax.barh(row, (seg["end_s"] - seg["start_s"]) * fps, left=seg["start_s"] * fps, height=0.5,
                    color=ACTION_COLORS[name], alpha=0.8, label=f"{name} ({seg['score']:.2f})")
    for name, k in zip(KEYFRAMES, predicted):
        if k is not None:
            ax.plot([k, k], [0.6, 1.4], color=KEYFRAME_COLORS[name], lw=2.5, label=f"{name} {k}")
    if truth is not None:
        for name, k in zip(KEYFRAMES, truth):
            if k is not None:
                ax.plot([k, k], [-0.2, 0.4], color=KEYFRAME_COLORS[name], lw=2.5, ls=":")
        ax.text(0, 0.1, "truth ", ha="right", va="center", fontsize=8)
    rwaves = seq.meta.get("rwave_frames") or []
    for f in rwaves:
        ax.plot([f], [1.65], marker="v", color="k", ms=5)
    for f in record["end_diastolic_frames"]:
        ax.plot([f], [1.65], marker="v", color="tab:cyan", ms=8, mec="k")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(-0.4, 1.9)
    ax.set_yticks([])
    ax.set_xlabel("frame")
    status = f"{record['video_id']}: {record['status']}, confidence {record['confidence']:.2f}"
    if rwaves:
        status += "  (▼ R waves, cyan: end-diastolic frames in the plateau)"
    ax.set_title(status, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=5, fontsize=7, frameon=False)

    # The score curves, on the same frame axis.
    ax2 = fig.add_subplot(outer[2], sharex=ax)
    frames_of_steps = result.step_times * fps
    for c, name in enumerate(("filling", "disappearing")):
        ax2.plot(frames_of_steps, result.scores[:, c], color=ACTION_COLORS[name], lw=1.8, label=f"P({name})")
    curve = result.vessel_curve
    scale = curve.max() if curve.max() > 0 else 1.0
    ax2.plot(frames_of_steps, curve / scale, color="0.4", lw=1.2, ls="--",
             label=f"vessel curve (÷ {scale:.3f})")
    for name, k in zip(KEYFRAMES, predicted):
        if k is not None:
            ax2.axvline(k, color=KEYFRAME_COLORS[name], lw=1, alpha=0.7)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("probability")
    ax2.set_xlabel("frame")
    ax2.legend(fontsize=7, loc="upper right")
    return fig


__all__ = ["plot_keyframe_triplets", "plot_locate_summary", "true_keyframes"]
