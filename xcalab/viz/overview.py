"""Figures for the overview notebook: the clinical question and the pipeline, drawn from data, not pixels."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from xcalab.data.annotations import check_keyframes
from xcalab.viz.palette import ACTION_COLORS, KEYFRAME_COLORS


def idealised_opacification(keyframes: Sequence[float], n_frames: int) -> np.ndarray:
    """A schematic opacification curve [n_frames] in [0, 1]: 0 before start, a smooth rise to 1 at apex,
    a smooth fall back to 0 at end (raised-cosine ramps). For drawing the idea only -- the simulator
    computes the real iodine curve from transport physics."""
    start, apex, end = check_keyframes(keyframes)
    f = np.arange(n_frames, dtype=float)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((f - start) / max(apex - start, 1e-9), 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((f - apex) / max(end - apex, 1e-9), 0, 1))
    return np.where(f <= apex, rise, fall)


def plot_keyframe_concept(keyframes: Sequence[float], n_frames: int, fps: float, ax: Axes | None = None) -> Figure:
    """The clinical question in one picture: opacification over time, the three keyframes, the two actions."""
    kf = check_keyframes(keyframes)
    curve = idealised_opacification(kf, n_frames)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.0))
    else:
        fig = ax.figure
    f = np.arange(n_frames)
    ax.plot(f, curve, color="k", lw=2, label="vessel opacification")
    ax.axvspan(kf.start, kf.apex, color=ACTION_COLORS["filling"], alpha=0.25, label="action 0: filling")
    ax.axvspan(kf.apex, kf.end, color=ACTION_COLORS["disappearing"], alpha=0.2, label="action 1: disappearing")
    for name, value in zip(("start", "apex", "end"), kf):
        ax.axvline(value, color=KEYFRAME_COLORS[name], ls="--", lw=1.5)
        ax.text(value, 1.06, name, color=KEYFRAME_COLORS[name], ha="center", fontsize=9, fontweight="bold")
    ax.set_ylim(-0.05, 1.15)
    ax.set_xlim(0, n_frames - 1)
    ax.set_xlabel(f"frame ({fps:g} fps)")
    ax.set_ylabel("contrast in the arteries")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig


#: The stages of xcalab's pipeline, what runs at inference: (title, what it holds, the module that does it).
PIPELINE = [
    ("cine", "DICOM XA · frames · XCA-Synth\n[N, H, W]", "xcalab.data"),
    ("vessel features", "one 64×64 map per\n4-frame window: (T, 4096)", "xcalab.features"),
    ("long-term attention", "ConvLSTM TA + conv SA\nX ⊙ (1 + A)", "xcalab.models.long_term"),
    ("patchwise projection", "PCon: filter with a\nbackground patch", "xcalab.models.contrastive"),
    ("short-term attention", "local-window transformer\npyramid, 6 levels", "xcalab.models.short_term"),
    ("detections", "class + boundaries per\npoint, Soft-NMS", "xcalab.postprocess"),
    ("keyframes", "start · apex · end\nmAP · AD · P/R/F", "xcalab.metrics"),
]
#: What only training computes, as the paper's Fig. 2 draws it beside the main path: (the stage it reads,
#: title, what it holds, the module). Neither changes a prediction: both are losses.
TRAINING_BRANCHES = [
    (2, "imagewise contrast", "ICon: foreground Y·A vs\nbackground Y·(1−A), eq. 10", "xcalab.models.contrastive"),
    (5, "detection losses", "focal (classes) +\nDIoU (boundaries)", "xcalab.train.losses"),
]


def plot_pipeline(stages: Sequence[tuple[str, str, str]] = PIPELINE,
                  branches: Sequence[tuple[int, str, str, str]] = TRAINING_BRANCHES) -> Figure:
    """The data flow as the paper's Fig. 2 draws it: the inference path as a row of boxes joined by arrows, and
    below it, dashed, the training-only branches (each hanging from the stage whose output it reads). Every box
    names the module that implements it."""
    n = len(stages)
    if any(not 0 <= i < n for i, *_ in branches):
        raise ValueError(f"every branch must hang from a stage 0..{n - 1}, got {[i for i, *_ in branches]}")
    fig, ax = plt.subplots(figsize=(2.0 * n, 2.1 + (1.7 if branches else 0.0)))
    width, gap = 1.7, 0.3

    def box(x, y, title, body, module, dashed=False):
        ax.add_patch(FancyBboxPatch((x, y), width, 1.2, boxstyle="round,pad=0.03", ls="--" if dashed else "-",
                                    fc="#fbf6ee" if dashed else "#eef3fb", ec="#8b6234" if dashed else "#34558b"))
        ax.text(x + width / 2, y + 1.0, title, ha="center", va="center", fontsize=9, fontweight="bold")
        ax.text(x + width / 2, y + 0.55, body, ha="center", va="center", fontsize=7.5)
        ax.text(x + width / 2, y - 0.18, module, ha="center", va="center", fontsize=7, family="monospace", color="#555")

    for i, (title, body, module) in enumerate(stages):
        x = i * (width + gap)
        box(x, 0, title, body, module)
        if i < n - 1:
            ax.add_patch(FancyArrowPatch((x + width, 0.6), (x + width + gap, 0.6), arrowstyle="-|>", mutation_scale=12))
    for i, title, body, module in branches:
        x = i * (width + gap)
        box(x, -1.9, title, body, module, dashed=True)
        ax.add_patch(FancyArrowPatch((x + width / 2, -0.32), (x + width / 2, -0.7), arrowstyle="-|>", ls="--",
                                     mutation_scale=12, color="#8b6234"))
        ax.text(x + width / 2 + 0.08, -0.5, "training only", ha="left", va="center", fontsize=7, style="italic",
                color="#8b6234")
    ax.set_xlim(-0.1, n * (width + gap))
    ax.set_ylim(-2.25 if branches else -0.35, 1.3)
    ax.set_axis_off()
    fig.tight_layout()
    return fig
