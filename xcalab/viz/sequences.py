"""Figures of a cine: a strip of frames, time curves, and the actions of the three problem settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xcalab.data.annotations import LABELS, check_keyframes, keyframes_to_actions
from xcalab.viz.palette import ACTION_COLORS, KEYFRAME_COLORS


def strip_indices(n_frames: int, n: int, keyframes: Sequence[float] | None = None) -> list[int]:
    """``n`` frame indices spread evenly over the cine, the keyframes (if any) among them, sorted."""
    if n_frames < 1 or n < 1:
        raise ValueError(f"need n_frames >= 1 and n >= 1, got {n_frames}, {n}")
    must = sorted({int(round(k)) for k in keyframes}) if keyframes is not None else []
    must = [min(max(k, 0), n_frames - 1) for k in must]
    rest = max(n - len(must), 0)
    spread = np.linspace(0, n_frames - 1, rest + 2)[1:-1] if rest else []
    chosen = sorted(set(must) | {int(round(i)) for i in spread})
    return chosen[: max(n, len(must))]


def plot_frame_strip(
    frames: np.ndarray,
    fps: float | None = None,
    n: int = 8,
    keyframes: Sequence[float] | None = None,
    indices: Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """A row of frames, each titled with its index (and time); keyframes framed in their colour.

    frames [N, H, W] in [0, 1]. ``indices`` overrides the evenly spread choice of ``n`` frames.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be [N, H, W], got shape {frames.shape}")
    idx = list(indices) if indices is not None else strip_indices(len(frames), n, keyframes)
    names = {}
    if keyframes is not None:
        kf = check_keyframes(keyframes)
        for name, value in zip(("start", "apex", "end"), kf):
            names.setdefault(int(round(value)), []).append(name)
    fig, axes = plt.subplots(1, len(idx), figsize=(1.6 * len(idx), 2.0), squeeze=False)
    for ax, i in zip(axes[0], idx):
        ax.imshow(frames[i], cmap="gray", vmin=0.0, vmax=1.0)
        label = f"#{i}" + (f"  {i / fps:.2f}s" if fps else "")
        if i in names:
            label += "\n" + "+".join(names[i])
            h, w = frames[i].shape
            ax.add_patch(Rectangle((0, 0), w - 1, h - 1, fill=False, lw=4, ec=KEYFRAME_COLORS[names[i][0]]))
        ax.set_title(label, fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _mark_keyframes(ax: Axes, keyframes: Sequence[float] | None, to_x=lambda f: f, label: bool = True) -> None:
    if keyframes is None:
        return
    for name, value in zip(("start", "apex", "end"), check_keyframes(keyframes)):
        ax.axvline(to_x(value), color=KEYFRAME_COLORS[name], ls="--", lw=1.2, label=name if label else None)


def plot_time_curves(
    curves: Mapping[str, np.ndarray],
    fps: float | None = None,
    keyframes: Sequence[float] | None = None,
    marks: Sequence[int] = (),
    marks_label: str = "R wave",
) -> Figure:
    """One panel per curve (name -> [N] values) over frames (and seconds on top when fps is given).

    Keyframes are dashed vertical lines in their colours; ``marks`` (e.g. the DICOM R-wave frames)
    are small ticks on the frame axis.
    """
    if not curves:
        raise ValueError("curves is empty: give at least one name -> [N] array")
    fig, axes = plt.subplots(len(curves), 1, figsize=(8, 1.9 * len(curves) + 0.4), sharex=True, squeeze=False)
    for k, (ax, (name, values)) in enumerate(zip(axes[:, 0], curves.items())):
        values = np.asarray(values, dtype=float)
        ax.plot(np.arange(len(values)), values, color="k", lw=1.4)
        ax.set_ylabel(name, fontsize=9)
        _mark_keyframes(ax, keyframes, label=k == 0)
        for m in marks:
            ax.plot([m], [values.min()], marker="^", color="tab:pink", ms=6, label=marks_label if m == marks[0] and k == 0 else None)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best", ncol=4)
    axes[-1, 0].set_xlabel("frame")
    if fps:
        top = axes[0, 0].secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
        top.set_xlabel("seconds")
    fig.tight_layout()
    return fig


def plot_action_timelines(
    keyframes: Sequence[float], fps: float, n_frames: int, settings: Sequence[int] = (0, 1, 2), ax: Axes | None = None
) -> Figure:
    """The two actions of each problem setting (seed paper Table VIII) drawn as bars over the frames.

    One row per (setting, label), labelled "setting s · label_id: name"; keyframes as dashed lines.
    """
    kf = check_keyframes(keyframes)
    rows = [(s, a) for s in settings for a in keyframes_to_actions(kf, fps, s)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.0))
    else:
        fig = ax.figure
    for y, (_, action) in enumerate(reversed(rows)):
        f0, f1 = action.segment[0] * fps, action.segment[1] * fps
        ax.barh(y, f1 - f0, left=f0, height=0.6, color=ACTION_COLORS.get(action.label, "tab:olive"))
        ax.text(f0 + 0.5, y, f"{action.segment[0]:.2f}-{action.segment[1]:.2f} s", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"setting {s} · {a.label_id}: {a.label}" for s, a in reversed(rows)], fontsize=8)
    _mark_keyframes(ax, kf)
    ax.set_xlim(0, n_frames)
    ax.set_xlabel(f"frame ({fps:g} fps)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


__all__ = ["KEYFRAME_COLORS", "ACTION_COLORS", "LABELS", "strip_indices", "plot_frame_strip", "plot_time_curves",
           "plot_action_timelines"]
