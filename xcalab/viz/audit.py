"""Check a drawn figure against the map convention of ``xcalab.viz.common``.

The convention, as this module checks it on a finished Figure:

1. every **scalar map** (an image drawn through a colour map) has a colour bar in the same figure that uses
   the same colour map and the same limits, so the reader can tell what a colour means;
2. a **grey picture** (a frame of the cine, colour map ``gray``) is drawn on its fixed range (0, 1), so a
   dark frame looks dark;
3. a map whose range is **declared** (``declare_range``: gates, probabilities and attention in (0, 1), TA in
   (−1, 1)) is drawn on exactly that range;
4. a map whose colour bar names a quantity that lives in (0, 1) — attention, a gate, a probability, an
   attention weight, λ — is drawn on (0, 1). (TA's tanh is signed: its maps declare (−1, 1) instead.)

RGB(A) images (composites of several channels) have no colour map and are not checked.

With the environment variable ``XCALAB_FIGURE_AUDIT`` set to a folder, ``save_figure`` also writes
``audit_figure(fig)`` to ``<folder>/<name>.json``; the notebook tests set it and check every figure a notebook
saves (``tests/notebooks/test_figures.py``).
"""

from __future__ import annotations

import re
from typing import Any

from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

#: Colour maps of grey pictures (frames); they need no colour bar but must sit on (0, 1).
GREY_MAPS = frozenset({"gray", "grey", "Greys", "Greys_r", "gray_r", "bone"})
#: Words in a colour bar's label that name a quantity in (0, 1).
UNIT_WORDS = re.compile(r"attention|gate|probabilit|\bweight|λ|lambda", re.IGNORECASE)
_GID = "xcalab-range:"
_TOL = 1e-9


def declare_range(image, low: float, high: float) -> None:
    """Record that ``image`` (an AxesImage or QuadMesh) shows a quantity whose declared range is (low, high).

    ``convention_problems`` then requires the image's colour limits to be exactly that range.
    """
    if not high > low:
        raise ValueError(f"a declared range needs low < high, got ({low}, {high})")
    image.set_gid(f"{_GID}{float(low)!r}:{float(high)!r}")


def declared_range(image) -> tuple[float, float] | None:
    """The range ``declare_range`` recorded on ``image``, or None."""
    gid = image.get_gid() or ""
    if not gid.startswith(_GID):
        return None
    low, high = gid[len(_GID):].split(":")
    return float(low), float(high)


def _is_colour_bar_axes(ax: Axes) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def colour_bars(fig: Figure) -> list[dict[str, Any]]:
    """One record per colour bar of ``fig``: its colour map's name, its limits and its label."""
    bars = []
    for ax in fig.axes:
        bar = getattr(ax, "_colorbar", None)
        if bar is None:
            continue
        label = bar.ax.get_ylabel() or bar.ax.get_xlabel()
        bars.append({"cmap": bar.cmap.name, "limits": [float(bar.norm.vmin), float(bar.norm.vmax)], "label": label})
    return bars


def _images(ax: Axes):
    yield from ax.images
    yield from (c for c in ax.collections if isinstance(c, QuadMesh))


def describe_images(fig: Figure) -> list[dict[str, Any]]:
    """One record per image of ``fig`` (colour-bar axes left out): where it is, how it is coloured.

    Keys: ``axes`` (index in ``fig.axes``), ``title`` (its axes' title), ``rgb`` (an RGB(A) array, no colour
    map), ``cmap``, ``limits`` (vmin, vmax) and ``declared`` (the ``declare_range``, or None).
    """
    records = []
    for i, ax in enumerate(fig.axes):
        if _is_colour_bar_axes(ax):
            continue
        for image in _images(ax):
            array = image.get_array()
            rgb = isinstance(image, AxesImage) and array is not None and array.ndim == 3
            low, high = image.get_clim()
            records.append({
                "axes": i, "title": ax.get_title(), "rgb": bool(rgb), "cmap": None if rgb else image.get_cmap().name,
                "limits": None if rgb else [float(low), float(high)], "declared": declared_range(image),
            })
    return records


def _same(a, b) -> bool:
    return abs(a[0] - b[0]) <= _TOL and abs(a[1] - b[1]) <= _TOL


def convention_problems(fig: Figure) -> list[str]:
    """What in ``fig`` breaks the map convention (rules 1-4 of this module), one sentence each; [] when nothing."""
    return problems_of(audit_figure(fig))


def audit_figure(fig: Figure) -> dict[str, Any]:
    """The images and colour bars of ``fig`` as plain data (JSON-ready): ``{"images": [...], "bars": [...]}``."""
    return {"images": describe_images(fig), "bars": colour_bars(fig)}


def problems_of(audit: dict[str, Any]) -> list[str]:
    """``convention_problems`` on an ``audit_figure`` record (e.g. one read back from JSON)."""
    problems = []
    bars = audit["bars"]
    for image in audit["images"]:
        if image["rgb"]:
            continue
        where = f"axes {image['axes']}" + (f" ({image['title']!r})" if image["title"] else "")
        limits, cmap = image["limits"], image["cmap"]
        if image["declared"] is not None and not _same(limits, image["declared"]):
            problems.append(f"{where}: drawn on {tuple(limits)}, its declared range is {tuple(image['declared'])}")
        if cmap in GREY_MAPS:
            if not _same(limits, (0.0, 1.0)):
                problems.append(f"{where}: a grey picture drawn on {tuple(limits)}, not on (0, 1)")
            continue
        matching = [b for b in bars if b["cmap"] == cmap and _same(b["limits"], limits)]
        if not matching:
            problems.append(f"{where}: a {cmap} map on {tuple(round(v, 4) for v in limits)} without a colour bar "
                            "of the same colour map and limits")
            continue
        named = [b["label"] for b in matching if UNIT_WORDS.search(b["label"])]
        if named and image["declared"] is None and not _same(limits, (0.0, 1.0)):
            problems.append(f"{where}: its colour bar says {named[0]!r}, a quantity in (0, 1), "
                            f"but it is drawn on {tuple(limits)}")
    return problems


__all__ = ["GREY_MAPS", "audit_figure", "colour_bars", "convention_problems", "declare_range", "declared_range",
           "describe_images", "problems_of"]
