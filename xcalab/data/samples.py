"""Example cines for notebooks and tests: the real XA fixtures when ``../shared`` is there, else XCA-Synth.

A fresh clone of xcalab has no real angiography (clinical data cannot ship); the project's shared folder
holds two real DICOM XA cines for tests. ``example_cine()`` returns the real RCA cine when it is present
and otherwise writes a synthetic cine as DICOM XA, so every notebook runs either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from xcalab.config import REPO_ROOT

#: Where the shared real fixtures live when the repository sits beside ``shared/``.
SHARED_REAL = REPO_ROOT.parent / "shared" / "data" / "real"

#: What is known about the real fixtures (from shared/data/real/README.md). The keyframes of the RCA cine
#: are read by eye from that README (contrast fills frames ~18-40, stays to the last frame): illustrative,
#: not a clinical annotation.
REAL_CINES = {
    "xa_rca_cine_96f_30fps": {
        "file": "xa_rca_cine_96f_30fps.dcm",
        "what": "real right-coronary cine, 96 frames at 30 fps, JPEG baseline (Rubo demo sample)",
        "keyframes_by_eye": (18, 40, 95),
    },
    "xa_static_phantom_8f_jpegls": {
        "file": "xa_static_phantom_8f_jpegls.dcm",
        "what": "static coronary phantom, 8 frames, JPEG lossless (Vukicevic et al. 2018)",
        "keyframes_by_eye": None,
    },
}


def real_cine_path(name: str = "xa_rca_cine_96f_30fps") -> Path | None:
    """Path of a shared real cine, or None when ``../shared`` is absent (a user's fresh clone)."""
    path = SHARED_REAL / REAL_CINES[name]["file"]
    return path if path.is_file() else None


class ExampleCine(NamedTuple):
    """A cine to open in a notebook: where it is, its keyframes when known, and what it is."""

    path: Path
    keyframes: tuple[int, int, int] | None
    description: str


def example_cine(path: str | Path = "", workdir: str | Path | None = None, seed: int = 0,
                 image_size: int = 256) -> ExampleCine:
    """The cine a notebook opens: ``path`` if given, else the shared real RCA cine, else a synthetic DICOM.

    The synthetic fallback is an XCA-Synth right-coronary cine of 96 frames at 30 fps (like the real one),
    written as DICOM XA into ``workdir`` so that it is read back exactly like a real file; its keyframes
    are the simulator's exact ones.
    """
    if path:
        path = Path(path)
        return ExampleCine(path, None, f"your cine: {path}")
    real = real_cine_path()
    if real is not None:
        info = REAL_CINES["xa_rca_cine_96f_30fps"]
        return ExampleCine(real, info["keyframes_by_eye"], f"{info['what']}; keyframes read by eye (illustrative)")
    from xcalab.data.io import write_dicom  # imported here: only the fallback needs the simulator
    from xcalab.data.synth.simulator import simulate_sequence

    workdir = Path(workdir) if workdir is not None else REPO_ROOT / "data" / "cache" / "examples"
    video_id = f"xcasynth-rca-seed{seed}"
    target = workdir / f"{video_id}.dcm"
    seq = simulate_sequence(seed, image_size=image_size, n_frames=96, fps=30.0, tree="right", video_id=video_id)
    write_dicom(seq, target)
    keyframes = tuple(int(k) for k in seq.truth.keyframes)
    return ExampleCine(target, keyframes, "XCA-Synth right-coronary cine written as DICOM XA "
                       "(../shared is absent); exact keyframes from the simulator")


def example_archive(workdir: str | Path | None = None, seed: int = 0, image_size: int = 256,
                    scenarios: tuple[str, ...] = ("ok", "partial_end", "no_contrast")) -> list[ExampleCine]:
    """Archive-like XCA-Synth cines, one per scenario, written as DICOM XA into ``workdir``.

    Each is a natural-duration cine at 15 fps (``xcalab.data.synth.scenarios``); ``keyframes`` are its true
    (start, apex, end) with None for a keyframe the cine does not contain, or None without contrast. Files
    that exist already are reused (the same seed and size give the same bytes; the size is in the name).
    """
    from xcalab.data.io import write_dicom
    from xcalab.data.synth.scenarios import STATUS, simulate_scenario

    workdir = Path(workdir) if workdir is not None else REPO_ROOT / "data" / "cache" / "examples"
    out = []
    for i, scenario in enumerate(scenarios):
        video_id = f"xcasynth-{scenario.replace('_', '-')}-seed{seed}-{image_size}px"  # the size names the file
        seq = simulate_scenario((seed, 9000 + i), scenario, fps=15.0, image_size=image_size,
                                tree=("left", "right")[i % 2], video_id=video_id)
        target = workdir / f"{video_id}.dcm"
        if not target.is_file():
            write_dicom(seq, target)
        truth = None if scenario == "no_contrast" else tuple(seq.meta["keyframes_true"])
        out.append(ExampleCine(target, truth, f"XCA-Synth {scenario} cine ({STATUS[scenario]}), "
                               f"{seq.n_frames} frames at 15 fps, written as DICOM XA"))
    return out
