"""Write figures reproducibly: same figure, same bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from xcalab.data.io import atomic_path
from xcalab.viz.audit import audit_figure

#: A folder: when set, ``save_figure`` also writes each figure's map-convention audit there (tests set it).
AUDIT_ENV = "XCALAB_FIGURE_AUDIT"


def save_figure(fig: Figure, name: str, fig_dir: str | Path, fmt: str = "png", dpi: int = 100) -> Path:
    """Save ``fig`` as ``fig_dir/name.fmt`` (atomically) and return the path.

    PNGs carry no "Software" tag and SVGs no date, so re-running a notebook gives identical bytes.
    With ``$XCALAB_FIGURE_AUDIT`` set to a folder, ``<folder>/<name>.json`` receives ``audit_figure(fig)``.
    """
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"fmt must be 'png', 'svg' or 'pdf', got {fmt!r}")
    path = Path(fig_dir) / f"{name}.{fmt}"
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    with mpl.rc_context({"svg.hashsalt": "xcalab"}), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight")
    audit_dir = os.environ.get(AUDIT_ENV)
    if audit_dir:
        with atomic_path(Path(audit_dir) / f"{name}.json") as tmp:
            Path(tmp).write_text(json.dumps(audit_figure(fig), indent=1) + "\n")
    return path
