"""Cines in and out: the ``Sequence`` type, atomic writes, and (below) readers and writers.

A ``Sequence`` is what every later stage consumes, whatever the source (a DICOM XA cine, a folder
of frames, a ``.npy`` array, or the XCA-Synth simulator):

    frames  float32 [N, H, W], display sense of MONOCHROME2 (0 = black), scaled to [0, 1]
    fps     frames per second (float > 0)
    meta    free-form metadata (source path, bits stored, photometric interpretation, R-wave frames, ...)
    truth   optional ground truth (keyframes, opacified-vessel maps, phases) -- simulator only
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xcalab.errors import XcalabInputError

# --------------------------------------------------------------------------------------------------
# The Sequence type
# --------------------------------------------------------------------------------------------------


@dataclass
class Truth:
    """Exact ground truth for a cine (XCA-Synth provides it; real cines usually do not).

    keyframes     (start, apex, end) frame indices, start <= apex <= end
    vessel_maps   float32 [N, H, W] opacified-vessel map per frame (0..1), or None
    phases        int8 [N] phase per frame (0 pre-contrast, 1 filling, 2 apex plateau, 3 washout, 4 after),
                  or None
    """

    keyframes: tuple[int, int, int]
    vessel_maps: np.ndarray | None = None
    phases: np.ndarray | None = None


@dataclass
class Sequence:
    """One angiography cine.

    Attributes:
        frames: float32 array [N, H, W] in [0, 1], MONOCHROME2 sense (vessels with contrast are dark).
        fps: frame rate in frames per second.
        video_id: a short name (file stem, folder name or XCA-Synth id).
        meta: metadata (always holds ``"source"``; DICOM adds ``bits_stored``, ``photometric``,
            ``rwave_frames``, ``transfer_syntax``, ...).
        truth: optional ``Truth``.
    """

    frames: np.ndarray
    fps: float
    video_id: str = "sequence"
    meta: dict[str, Any] = field(default_factory=dict)
    truth: Truth | None = None

    def __post_init__(self) -> None:
        where = self.meta.get("source", self.video_id)
        frames = np.asarray(self.frames)
        if frames.ndim != 3:
            raise XcalabInputError(where, f"frames must have shape [N, H, W], got shape {frames.shape}")
        if frames.shape[0] < 2:
            raise XcalabInputError(where, f"a cine needs at least 2 frames, got {frames.shape[0]}")
        if not np.all(np.isfinite(frames)):
            bad = np.unique(np.nonzero(~np.isfinite(frames))[0])
            raise XcalabInputError(where, f"frames contain NaN or infinite values (frames {bad[:5].tolist()})")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise XcalabInputError(where, f"frame rate must be a positive number, got {self.fps!r}")
        self.frames = frames.astype(np.float32, copy=False)
        self.fps = float(self.fps)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds (N / fps), the ActivityNet ``duration`` of this cine."""
        return self.n_frames / self.fps

    def __repr__(self) -> str:
        n, h, w = self.frames.shape
        truth = f", keyframes={self.truth.keyframes}" if self.truth else ""
        return f"Sequence({self.video_id!r}, {n} frames of {h}x{w} at {self.fps:g} fps{truth})"


# --------------------------------------------------------------------------------------------------
# Atomic writes: a temporary file in the same folder, renamed into place only on success
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    If the block raises, the temporary file is removed and ``path`` is left as it was, so a
    killed or failed write never leaves a half-written file behind::

        with atomic_path("out.npy") as tmp:
            np.save(tmp, array)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
