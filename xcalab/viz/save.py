"""Write figures reproducibly: same figure, same bytes."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from xcalab.data.io import atomic_path


def save_figure(fig: Figure, name: str, fig_dir: str | Path, fmt: str = "png", dpi: int = 100) -> Path:
    """Save ``fig`` as ``fig_dir/name.fmt`` (atomically) and return the path.

    PNGs carry no "Software" tag and SVGs no date, so re-running a notebook gives identical bytes.
    """
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"fmt must be 'png', 'svg' or 'pdf', got {fmt!r}")
    path = Path(fig_dir) / f"{name}.{fmt}"
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    with mpl.rc_context({"svg.hashsalt": "xcalab"}), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight")
    return path
