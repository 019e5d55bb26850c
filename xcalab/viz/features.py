"""Figures of the vessel features: what SVS-Net sees and predicts, its recorded scores, and the (T, 4096) array.

Every function takes arrays (numpy or anything ``np.asarray`` reads) and, where one axes suffices, ``ax=None``;
each returns the matplotlib Figure and never calls ``plt.show()``. Bad shapes raise ValueError.

    plot_window(frames4, prediction, truth)          the 4 frames of one window, the predicted map, the true map
    plot_extractor_scores(meta)                      validation and check-set scores recorded beside the weights
    plot_training_curves(history)                    the recorded training loss and validation scores over steps
    plot_prediction_vs_truth(frames, pred, truth)    centre frames over predicted (and true) maps, one column each
    plot_feature_curves(curves, centres, fps, kf)    per-window vessel area of several sources, keyframes marked
    plot_feature_strip(features, n)                  rows of a (T, D) feature array drawn back as sqrt(D)^2 maps
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xcalab.data.annotations import check_keyframes
from xcalab.runtime import as_array
from xcalab.viz.common import colour_bar
from xcalab.viz.palette import KEYFRAME_COLORS

#: One colour per feature source, used by every curve.
SOURCE_COLORS = {"learned": "k", "frangi": "tab:purple", "oracle": "tab:orange", "raw": "tab:brown"}
#: The scores drawn from an extractor's metadata, in this order.
SCORE_NAMES = ("dice", "soft_dice", "auc")


def _image(ax: Axes, image: np.ndarray, title: str, cmap: str = "gray", vmax: float = 1.0):
    shown = ax.imshow(image, cmap=cmap, vmin=0.0, vmax=vmax)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return shown


def plot_window(frames4, prediction, truth=None, target_index: int = 2) -> Figure:
    """One feature step: its 4 input frames, the network's vessel probability, and (if given) the true map.

    frames4 [4, H, W] in [0, 1]; prediction [h, w] in [0, 1]; truth [H', W'] or None. The frame the maps
    describe (``target_index``, the third) is framed in red.
    """
    frames4 = as_array(frames4, 3, "frames4", "[4, H, W]")
    prediction = as_array(prediction, 2, "prediction", "[h, w]")
    if len(frames4) != 4 or not 0 <= target_index < 4:
        raise ValueError(f"frames4 must hold 4 frames and target_index be 0..3, got {len(frames4)}, {target_index}")
    maps = [("predicted vessel map", prediction)]
    if truth is not None:
        maps.append(("true vessel map", as_array(truth, 2, "truth", "[H, W]")))
    fig, axes = plt.subplots(1, 4 + len(maps), figsize=(1.9 * (4 + len(maps)) + 0.6, 2.3), squeeze=False,
                             layout="constrained")
    for k, ax in enumerate(axes[0, :4]):
        _image(ax, frames4[k], f"frame {k + 1}" + (" (target)" if k == target_index else ""))
        if k == target_index:
            h, w = frames4[k].shape
            ax.add_patch(Rectangle((0, 0), w - 1, h - 1, fill=False, lw=3, ec="tab:red"))
    for ax, (title, image) in zip(axes[0, 4:], maps):
        shown = _image(ax, image, title, cmap="magma")
    colour_bar(fig, shown, list(axes[0, 4:]), "vessel probability")
    fig.suptitle("input: 4 consecutive frames  →  output: vessel map of the third", fontsize=10)
    return fig


def plot_extractor_scores(meta: Mapping, ax: Axes | None = None) -> Figure:
    """Bar chart of the scores an extractor's metadata records: ``validation`` and ``check`` (Dice, soft Dice, AUC).

    meta: ``Extractor.meta`` (the JSON beside the weights). Raises ValueError when it records neither.
    """
    sets = {name: meta[name] for name in ("validation", "check") if isinstance(meta.get(name), Mapping)}
    if not sets:
        raise ValueError("meta records no 'validation' or 'check' scores")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.0))
    else:
        fig = ax.figure
    x = np.arange(len(SCORE_NAMES))
    width = 0.8 / len(sets)
    for k, (name, scores) in enumerate(sets.items()):
        values = [float(scores.get(s, np.nan)) for s in SCORE_NAMES]
        bars = ax.bar(x + (k - (len(sets) - 1) / 2) * width, values, width, label=f"{name} set")
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, [s.replace("_", " ") for s in SCORE_NAMES])
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("score (1 = perfect)")
    training, n_params = meta.get("training", {}), meta.get("parameters", "?")
    n_params = f"{n_params:,}" if isinstance(n_params, int) else n_params
    ax.set_title(f"SVS-Net ({training.get('size', '?')}): {n_params} parameters, "
                 f"{training.get('steps', '?')} steps", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", ncol=len(sets))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_training_curves(history: Mapping) -> Figure:
    """The training loss (left) and the validation scores (right) over steps, from ``meta["history"]``.

    history: {"loss_steps": [S], "loss": [S] (block means of the Dice + BCE loss), "validation": [{"step",
    "dice", "soft_dice", "auc", "loss"}, ...]} as ``xcalab.features.train.training_history`` records it.
    """
    steps, loss = np.asarray(history.get("loss_steps", [])), np.asarray(history.get("loss", []), dtype=float)
    validation = list(history.get("validation", []))
    if len(steps) == 0 or len(steps) != len(loss):
        raise ValueError(f"history needs loss_steps and loss of one length, got {len(steps)} and {len(loss)}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.0))
    left.plot(steps, loss, color="k", lw=1.2, label="training (mean of 10 steps)")
    if validation:
        left.plot([v["step"] for v in validation], [v["loss"] for v in validation], "o-", color="tab:red",
                  label="validation")
        for name in SCORE_NAMES:
            right.plot([v["step"] for v in validation], [v[name] for v in validation], "o-", label=name.replace("_", " "))
    left.set_xlabel("step")
    left.set_ylabel("Dice + BCE loss")
    left.legend(fontsize=8)
    right.set_xlabel("step")
    right.set_ylabel("validation score")
    right.set_ylim(0, 1.05)
    if validation:
        right.legend(fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_prediction_vs_truth(
    frames, predicted, truth=None, indices: Sequence[int] | None = None, titles: Sequence[str] | None = None
) -> Figure:
    """Columns of (frame, predicted map, true map): frames [K, H, W], predicted [K, h, w], truth [K, H', W'] or None.

    All three are aligned on their first axis (e.g. one row per window: its centre frame and maps);
    ``indices`` picks the columns (default: all), ``titles`` labels them (default: "#k").
    """
    frames = as_array(frames, 3, "frames", "[K, H, W]")
    predicted = as_array(predicted, 3, "predicted", "[K, h, w]")
    rows = [("frame", frames, "gray"), ("predicted", predicted, "magma")]
    if truth is not None:
        rows.append(("true", as_array(truth, 3, "truth", "[K, H, W]"), "magma"))
    if len({len(a) for _, a, _ in rows}) != 1:
        raise ValueError(f"frames, predicted and truth must have the same length, got {[len(a) for _, a, _ in rows]}")
    idx = list(range(len(frames))) if indices is None else [int(i) for i in indices]
    if not idx or min(idx) < 0 or max(idx) >= len(frames):
        raise ValueError(f"indices must be in 0..{len(frames) - 1}, got {idx}")
    titles = [f"#{i}" for i in idx] if titles is None else list(titles)
    if len(titles) != len(idx):
        raise ValueError(f"need one title per column ({len(idx)}), got {len(titles)}")
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.7 * len(idx) + 1.2, 1.75 * len(rows)), squeeze=False,
                             layout="constrained")
    for c, (i, title) in enumerate(zip(idx, titles)):
        for r, (_, data, cmap) in enumerate(rows):
            shown = _image(axes[r, c], data[i], title if r == 0 else "", cmap=cmap)
            if r == 1:
                maps_image = shown
    for r, (name, _, _) in enumerate(rows):
        axes[r, 0].text(-0.08, 0.5, name, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=9)
    colour_bar(fig, maps_image, list(axes[1:].ravel()), "vessel probability")  # the map rows: (0, 1)
    return fig


def plot_feature_curves(
    curves: Mapping[str, np.ndarray],
    centres,
    fps: float | None = None,
    keyframes: Sequence[float] | None = None,
    normalise: bool = True,
    ax: Axes | None = None,
    title: str | None = None,
    keyframes_label: str = "true",
) -> Figure:
    """Per-window vessel area of several sources (name -> [T]) over the windows' centre frames ([T]).

    With ``normalise`` each curve is scaled to [0, 1] (min to max), so sources on different scales compare
    by shape. Keyframes inside the plotted range are dashed lines in their colours, labelled
    "<keyframes_label> start" etc.; seconds on top with fps.
    """
    centres = as_array(centres, 1, "centres", "[T]")
    if not curves:
        raise ValueError("curves is empty: give at least one name -> [T] array")
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.2))
    else:
        fig = ax.figure
    for name, values in curves.items():
        y = as_array(values, 1, f"curve {name!r}", "[T]")
        if len(y) != len(centres):
            raise ValueError(f"curve {name!r} has {len(y)} values for {len(centres)} windows")
        if normalise:
            y = (y - y.min()) / max(float(y.max() - y.min()), 1e-12)
        ax.plot(centres, y, marker=".", lw=1.5, color=SOURCE_COLORS.get(name), label=name)
    if keyframes is not None:
        for name, value in zip(("start", "apex", "end"), check_keyframes(keyframes)):
            if centres[0] - 2 <= value <= centres[-1] + 2:
                ax.axvline(value, color=KEYFRAME_COLORS[name], ls="--", lw=1.2, label=f"{keyframes_label} {name}")
    ax.set_xlabel("frame (window centre)")
    ax.set_ylabel("vessel area" + (" (min-max scaled)" if normalise else ""))
    if fps:
        top = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
        top.set_xlabel("seconds")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_feature_strip(features, n: int = 8, centres=None, fps: float | None = None, vmax: float | None = None) -> Figure:
    """``n`` rows of a feature array (T, D), spread evenly, drawn back as sqrt(D) x sqrt(D) maps (64 x 64 for 4096).

    ``centres`` [T] (frames each row describes) and ``fps`` label the maps; all share one colour scale
    (0 to ``vmax``, default the array's maximum), so a brighter map means more vessel.
    """
    features = as_array(features, 2, "features", "(T, D)")
    side = int(round(np.sqrt(features.shape[1])))
    if side * side != features.shape[1] or len(features) == 0 or n < 1:
        raise ValueError(f"features must be (T >= 1, side**2) and n >= 1, got {features.shape}, n={n}")
    idx = np.unique(np.linspace(0, len(features) - 1, min(n, len(features))).round().astype(int))
    vmax = (float(features.max()) or 1.0) if vmax is None else vmax
    fig, axes = plt.subplots(1, len(idx), figsize=(1.5 * len(idx) + 1.0, 2.1), squeeze=False, layout="constrained")
    for ax, k in zip(axes[0], idx):
        label = f"row {k}"
        if centres is not None:
            label += f"\nframe {int(centres[k])}" + (f" · {centres[k] / fps:.1f}s" if fps else "")
        shown = _image(ax, features[k].reshape(side, side), label, cmap="magma", vmax=vmax)
    colour_bar(fig, shown, list(axes[0]), "feature value")
    fig.suptitle(f"features {features.shape[0]} × {features.shape[1]}: each row is a {side} × {side} map", fontsize=10)
    return fig
