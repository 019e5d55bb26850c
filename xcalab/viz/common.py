"""What every figure module shares: a Figure and Axes to draw into, and an image panel without ticks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """(the Figure, the Axes) to draw into: ``ax`` and its figure when given, else a new figure of ``figsize``."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def image_panel(ax: Axes, image: np.ndarray, title: str = "", cmap: str = "magma", vmin: float = 0.0,
                vmax: float | None = None) -> None:
    """``image`` on ``ax`` with fixed colour limits, a small title and no ticks."""
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
