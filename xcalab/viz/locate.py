"""The one-page summary of ``xcalab locate``: what was found in a cine, and why one can believe it (or not).

    previous / key / next frame of each keyframe     (the paper's Fig. 1 and Fig. 4: a keyframe is a choice
                                                      between near-identical neighbours)
    the timeline                                      filling and disappearing, the keyframes, the truth when
                                                      known, R waves and the end-diastolic frames
    the score curves                                  per-step class probabilities (0-1) and the vessel curve

and, for scoring a detector on cines with truth, the paper's Fig. 4: the true beside the predicted frame of each
keyframe (``plot_true_vs_predicted_keyframes``; it draws its panels with the triplets' code).
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


def _frame_panel(ax, frame: np.ndarray, title: str, colour: str | None = None, spine_style: str | None = None) -> None:
    """One frame [H, W] in [0, 1] on fixed grey limits, titled; a coloured frame around it when ``spine_style``."""
    ax.imshow(frame, cmap="gray", vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=8, color=colour or "k")
    if spine_style is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)
            spine.set_linestyle(spine_style)
    ax.set_xticks([])
    ax.set_yticks([])


def _note_panel(ax, text: str, colour: str = "k", fontsize: float = 7, axis_off: bool = False) -> None:
    """A panel that holds only a sentence (a keyframe that is absent, a neighbour outside the cine)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", color=colour, fontsize=fontsize, transform=ax.transAxes)
    if axis_off:
        ax.set_axis_off()
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [N, H, W] with N >= 1, got shape {frames.shape}")
    return frames


def _check_keyframes(keyframes: Sequence[int | None] | None, n_frames: int, what: str) -> tuple[int | None, ...]:
    if keyframes is None:
        return (None, None, None)
    if len(keyframes) != 3:
        raise ValueError(f"{what} keyframes must be three frames (start, apex, end), got {list(keyframes)}")
    out = tuple(None if k is None else int(k) for k in keyframes)
    bad = [k for k in out if k is not None and not 0 <= k < n_frames]
    if bad:
        raise ValueError(f"{what} keyframes {bad} lie outside the cine's {n_frames} frames")
    return out


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
            _note_panel(fig.add_subplot(spec[row, :]), f"{name}: {WHY_ABSENT[name]}", KEYFRAME_COLORS[name], 10,
                        axis_off=True)
            continue
        for col, offset in enumerate((-1, 0, 1)):
            ax = fig.add_subplot(spec[row, col])
            i = k + offset
            if 0 <= i < n:
                label = {-1: "previous", 0: name, 1: "next"}[offset]
                key = offset == 0
                _frame_panel(ax, frames[i], f"{label} #{i}", KEYFRAME_COLORS[name] if key else None,
                             "solid" if key else None)
            else:
                _note_panel(ax, "(outside the cine)")
    return fig


def plot_true_vs_predicted_keyframes(frames: np.ndarray, truth: Sequence[int | None] | None,
                                     predicted: Sequence[int | None] | None, title: str | None = None,
                                     fig: Figure | None = None, subplot_spec=None) -> Figure:
    """The paper's Fig. 4 for one cine: rows start / apex / end, columns the true and the predicted keyframe.

    frames     [N, H, W] in [0, 1], the cine
    truth      the true (start, apex, end) frame indices (None where a keyframe is absent, or None)
    predicted  the predicted ones (None where the detector found none, or None)
    title      a line above the panels (e.g. the cine's id)
    Each predicted panel's title gives its deviation, predicted - true, in frames. The true frame is framed
    dotted and the predicted one solid, in the keyframe's colour (as ``plot_locate_summary``'s timeline).
    """
    frames = _check_frames(frames)
    truth = _check_keyframes(truth, len(frames), "true")
    predicted = _check_keyframes(predicted, len(frames), "predicted")
    fig = fig or plt.figure(figsize=(4.2, 6.6))
    spec = subplot_spec.subgridspec(3, 2, wspace=0.05, hspace=0.3) if subplot_spec is not None else fig.add_gridspec(3, 2)
    for row, (name, t, p) in enumerate(zip(KEYFRAMES, truth, predicted)):
        colour = KEYFRAME_COLORS[name]
        ax = fig.add_subplot(spec[row, 0])
        if t is None:
            _note_panel(ax, f"true {name}:\nnot in this cine", colour)
        else:
            _frame_panel(ax, frames[t], f"true {name} #{t}", colour, "dotted")
        ax = fig.add_subplot(spec[row, 1])
        if p is None:
            _note_panel(ax, f"predicted {name}:\nnot detected", colour)
        else:
            deviation = "" if t is None else f" ({p - t:+d} frames)"
            _frame_panel(ax, frames[p], f"predicted {name} #{p}{deviation}", colour, "solid")
    if title:
        if subplot_spec is None:
            fig.suptitle(title, fontsize=9)
        else:
            fig.add_subplot(subplot_spec, frameon=False, xticks=[], yticks=[]).set_title(title, fontsize=9, pad=14)
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


__all__ = ["plot_keyframe_triplets", "plot_locate_summary", "plot_true_vs_predicted_keyframes", "true_keyframes"]
