"""The XCA-Synth benchmark: build a preset's cines to disk (parallel, resumable, byte-identical) and read them back.

    xcalab simulate --preset {smoke,teach,paper} --seed N [--out DIR] [--workers K] [--dicom]
    xcalab simulate --config locate --seed N ...      (a named non-preset config, ``xcalab.config.CONFIGS``)

A build folder (default ``data/cache/xca-synth-<name>-seed<N>/``, git-ignored) holds:

    build.json               what was built: format, preset, seed, sizes, knobs, keyframe rule (written first;
                             a resumed build must match it)
    sequences/<id>.npz       one cine per file, a zip of .npy arrays (no pickle, fixed timestamps):
                                 frames          uint8 [N, H, W] (uint16 when bits > 8): grey = value / (2^bits - 1)
                                 vessel_maps     uint8 [N, H, W]: opacified-vessel map = value / 255
                                 phases          int8 [N]: 0 pre-contrast, 1 filling, 2 apex plateau, 3 washout, 4 after
                                 keyframes       int64 [3] (start, apex, end) -- the ground truth (with any jitter)
                                 keyframes_exact int64 [3] -- straight from the iodine curve
                                 fps             float64 [], bits int64 []
                                 meta_json       str []: the sequence's meta (every parameter, the seed, the curves)
    dicom/<id>.dcm           with --dicom: the same cine as DICOM XA (``xcalab.data.io.write_dicom``)
    annotations.json         ActivityNet-1.3 (train / validation / test from the preset's split), written last

Cine i is drawn from the seed tuple (seed, i) alone (its tree alternates and its frame rate cycles with
i + seed, so every subset mixes both trees and all frame rates), so a build is byte-identical for a seed whatever the number of workers, and any subset of it can be rebuilt.

A config with ``synth.scenarios`` builds archive-like cines instead (``scenarios.simulate_scenario``: natural time
scale, ``synth.durations_s`` long, some truncated or without contrast): cine i's scenario cycles with
i + i // (trees x rates) + seed, so every block of trees x rates x scenarios consecutive cines holds each
combination once. Its jobs, build.json and the cines' meta_json name the scenario; annotations.json gives each
cine its "status" and "keyframes_present" (a no_contrast cine: no actions, no keyframes). Configs without
scenarios write exactly the files they always did.
Every file is written atomically (``atomic_path``): a killed build leaves no half-written file, and running
the same command again continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xcalab.config import CONFIGS, PRESETS, Config, get_preset
from xcalab.data.io import Cine, Truth, atomic_path
from xcalab.errors import XcalabInputError

FORMAT = "xca-synth-benchmark/1"
SUBSETS = ("train", "validation", "test")


# --------------------------------------------------------------------------------------------------
# One sequence <-> one .npz
# --------------------------------------------------------------------------------------------------


def write_sequence_npz(seq: Cine, path: str | Path) -> Path:
    """Write a synthetic ``Cine`` as a deterministic, compressed .npz (see the module docstring). Atomic."""
    if seq.truth is None or seq.truth.vessel_maps is None or seq.truth.phases is None:
        raise XcalabInputError(path, f"{seq.video_id!r} has no full ground truth to store")
    bits = int(seq.meta.get("bits_stored", 8))
    top = 2**bits - 1
    arrays = {
        "frames": np.rint(seq.frames * top).astype(np.uint8 if bits <= 8 else np.uint16),
        "vessel_maps": np.rint(np.clip(seq.truth.vessel_maps, 0, 1) * 255).astype(np.uint8),
        "phases": np.asarray(seq.truth.phases, dtype=np.int8),
        "keyframes": np.asarray(seq.truth.keyframes, dtype=np.int64),
        "keyframes_exact": np.asarray(seq.meta.get("keyframes_exact", seq.truth.keyframes), dtype=np.int64),
        "fps": np.asarray(seq.fps, dtype=np.float64),
        "bits": np.asarray(bits, dtype=np.int64),
        "meta_json": np.asarray(json.dumps(seq.meta, sort_keys=True)),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name, array in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(array, order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same bytes every time
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue(), compresslevel=1 if name in ("frames", "vessel_maps") else 6)
    return path


def read_sequence_npz(path: str | Path) -> Cine:
    """Read a cine written by ``write_sequence_npz`` back into a ``Cine`` with its truth."""
    path = Path(path)
    if not path.is_file():
        raise XcalabInputError(path, "no such XCA-Synth sequence file")
    try:
        with np.load(path, allow_pickle=False) as z:
            bits = int(z["bits"])
            frames = z["frames"].astype(np.float32) / np.float32(2**bits - 1)
            maps = z["vessel_maps"].astype(np.float32) / np.float32(255)
            truth = Truth(tuple(int(k) for k in z["keyframes"]), maps, z["phases"].astype(np.int8))
            meta = json.loads(str(z["meta_json"]))
            fps = float(z["fps"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise XcalabInputError(path, f"not a readable XCA-Synth sequence file ({err})") from None
    meta["file"] = str(path)
    return Cine(frames, fps, video_id=path.stem, meta=meta, truth=truth)


def read_phases(path: str | Path) -> np.ndarray:
    """The phase of every frame of a built cine, int8 [N] (0 pre-contrast .. 4 after), without its frames."""
    with np.load(path, allow_pickle=False) as z:
        return z["phases"].astype(np.int8)


def read_summary(path: Path) -> dict[str, Any]:
    """What annotations.json needs from a built sequence, read without loading its frames (a scenario cine
    adds "status" and "keyframes_present" from its meta_json)."""
    with np.load(path, allow_pickle=False) as z:
        summary = {"keyframes": [int(k) for k in z["keyframes"]], "fps": float(z["fps"]),
                   "n_frames": int(z["phases"].shape[0])}
        meta = json.loads(str(z["meta_json"]))
    if "status" in meta:
        summary["status"] = str(meta["status"])
        summary["keyframes_present"] = [bool(v) for v in meta["keyframes_present"]]
    return summary


def annotation_from_summary(video_id: str, summary: dict[str, Any], subset: str, setting: int):
    """The ``VideoAnnotation`` of a built cine from its ``read_summary``: the two actions of its keyframes,
    with status and presence for a scenario cine; none for a cine without contrast."""
    from xcalab.data.annotations import VideoAnnotation

    status = summary.get("status")
    if status == "no_contrast":
        return VideoAnnotation.without_contrast(video_id, summary["fps"], summary["n_frames"], subset=subset,
                                                setting=setting)
    return VideoAnnotation.from_keyframes(video_id, summary["keyframes"], summary["fps"], summary["n_frames"],
                                          subset=subset, setting=setting, status=status,
                                          keyframes_present=summary.get("keyframes_present"))


# --------------------------------------------------------------------------------------------------
# The plan of a build: which cine is which
# --------------------------------------------------------------------------------------------------


def default_out_dir(cfg: Config) -> Path:
    """``<cfg.data_dir>/xca-synth-<cfg.name>-seed<seed>`` (the preset's or a named config's name, e.g. "locate")."""
    return Path(cfg.data_dir) / f"xca-synth-{cfg.name}-seed{cfg.seed}"


def video_id(index: int) -> str:
    return f"synth-{index:04d}"


def subset_of(index: int, split: tuple[int, int, int]) -> str:
    """train for the first split[0] indices, then validation, then test."""
    if index < split[0]:
        return "train"
    return "validation" if index < split[0] + split[1] else "test"


def plan(cfg: Config, knobs=None, rule=None) -> list[dict[str, Any]]:
    """One job per cine: everything a worker needs, as plain values (spawn-safe). A config with scenarios adds
    "scenario" and "durations_s" to each job (see the module docstring); others' jobs are today's."""
    from xcalab.data.synth.dynamics import KeyframeRule
    from xcalab.data.synth.params import Knobs

    knobs = knobs or Knobs()
    rule = rule or KeyframeRule()
    synth = cfg.synth
    jobs = []
    n_trees, n_fps = len(synth.trees), len(synth.fps_choices)
    for i in range(synth.n_sequences):
        # Balanced by construction (a small build still has both trees and every frame rate in each subset):
        # trees alternate, frame rates cycle; both depend on (seed, i) only.
        tree = str(synth.trees[(i + cfg.seed) % n_trees])
        fps = float(synth.fps_choices[(i // n_trees + cfg.seed) % n_fps])
        job = {
            "index": i,
            "video_id": video_id(i),
            "subset": subset_of(i, synth.split),
            "seed": [int(cfg.seed), i],
            "image_size": int(synth.image_size),
            "frames_range": [int(f) for f in synth.frames],
            "fps": fps,
            "tree": tree,
            "knobs": dataclasses.asdict(knobs),
            "rule": dataclasses.asdict(rule),
        }
        if synth.scenarios:
            # (tree, rate) repeats every n_trees * n_fps cines; shifting the scenario by one per repeat makes
            # every n_trees * n_fps * n_scenarios consecutive cines hold each combination once (and any
            # n_trees * n_fps of them a mix of scenarios), for any number of scenarios.
            block = n_trees * n_fps
            job["scenario"] = str(synth.scenarios[(i + i // block + cfg.seed) % len(synth.scenarios)])
            job["durations_s"] = [float(d) for d in synth.durations_s]
        jobs.append(job)
    return jobs


def _build_info(cfg: Config, jobs: list[dict[str, Any]], dicom: bool) -> dict[str, Any]:
    import xcalab

    first = jobs[0] if jobs else {}
    synth = json.loads(json.dumps(dataclasses.asdict(cfg.synth)))
    if not cfg.synth.scenarios:  # a build without scenarios records exactly what it always did
        for key in ("durations_s", "scenarios"):
            synth.pop(key)
    return {
        "format": FORMAT,
        "preset": cfg.name,
        "seed": int(cfg.seed),
        "synth": synth,
        "knobs": first.get("knobs"),
        "rule": first.get("rule"),
        "dicom": bool(dicom),
        "xcalab_version": xcalab.__version__,
    }


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def _paths(root: Path, job: dict[str, Any]) -> tuple[Path, Path]:
    return root / "sequences" / f"{job['video_id']}.npz", root / "dicom" / f"{job['video_id']}.dcm"


def build_one(root: str, job: dict[str, Any], dicom: bool) -> dict[str, Any]:
    """Simulate and write one cine (top-level, so a spawned worker process can run it). Returns its summary."""
    from xcalab.data.synth.dynamics import KeyframeRule
    from xcalab.data.synth.params import Knobs
    from xcalab.data.synth.scenarios import simulate_scenario
    from xcalab.data.synth.simulator import simulate_sequence

    npz, dcm = _paths(Path(root), job)
    if not npz.exists():
        if "scenario" in job:
            seq = simulate_scenario(
                tuple(job["seed"]), job["scenario"], fps=job["fps"], image_size=job["image_size"], tree=job["tree"],
                durations_s=tuple(job["durations_s"]), knobs=Knobs(**job["knobs"]), rule=KeyframeRule(**job["rule"]),
                video_id=job["video_id"],
            )
        else:
            seq = simulate_sequence(
                tuple(job["seed"]), image_size=job["image_size"], fps=job["fps"], tree=job["tree"],
                knobs=Knobs(**job["knobs"]), frames_range=tuple(job["frames_range"]),
                rule=KeyframeRule(**job["rule"]), video_id=job["video_id"],
            )
        if dicom and not dcm.exists():
            _write_dicom(seq, dcm)  # before the .npz: a present .npz means the cine is complete
        write_sequence_npz(seq, npz)
    elif dicom and not dcm.exists():
        _write_dicom(read_sequence_npz(npz), dcm)
    return {"index": job["index"], **read_summary(npz)}


def _write_dicom(seq: Cine, path: Path) -> None:
    from xcalab.data.io import write_dicom

    write_dicom(seq, path, bits_stored=int(seq.meta.get("bits_stored", 8)))


def _done(root: Path, job: dict[str, Any], dicom: bool) -> bool:
    npz, dcm = _paths(root, job)
    return npz.exists() and (dcm.exists() or not dicom)


def _remove_stale_temporaries(root: Path) -> None:
    """Temporary files of a killed build (atomic_path names them .<name>.<random>.tmp<suffix>)."""
    for folder in (root / "sequences", root / "dicom"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp*"):
                tmp.unlink(missing_ok=True)


def build_benchmark(
    cfg: Config,
    out_dir: str | Path | None = None,
    workers: int = 1,
    dicom: bool = False,
    progress: bool = True,
    knobs=None,
    rule=None,
    limit: int | None = None,
    subsets: tuple[str, ...] | None = None,
) -> Path:
    """Build (or finish building) the XCA-Synth benchmark of ``cfg``; returns the build folder.

    Args:
        cfg: the preset (``cfg.synth`` sizes, ``cfg.seed``, ``cfg.data_dir``).
        out_dir: the build folder; default ``default_out_dir(cfg)``.
        workers: processes (1 = in this process). The bytes do not depend on it.
        dicom: also write each cine as DICOM XA.
        progress: show a tqdm progress bar.
        knobs, rule: simulator knobs and keyframe rule (defaults: the validated ones).
        limit: build at most this many missing cines, then stop *without* writing annotations.json
            (what a killed build looks like; run again to finish).
        subsets: build only the cines of these subsets (e.g. ``("test",)``); annotations.json waits until
            every cine is there. The cines are the same as in a full build.
    """
    from tqdm.auto import tqdm

    root = Path(out_dir) if out_dir is not None else default_out_dir(cfg)
    jobs = plan(cfg, knobs, rule)
    info = _build_info(cfg, jobs, dicom)
    _check_or_write_info(root, info)
    _remove_stale_temporaries(root)
    (root / "sequences").mkdir(parents=True, exist_ok=True)
    if dicom:
        (root / "dicom").mkdir(parents=True, exist_ok=True)

    wanted = [j for j in jobs if subsets is None or j["subset"] in subsets]
    todo = [j for j in wanted if not _done(root, j, dicom)]
    done = len(wanted) - len(todo)
    if limit is not None:
        todo = todo[: max(int(limit), 0)]
    bar = tqdm(total=len(wanted), initial=done,
               desc=f"XCA-Synth {cfg.name}", unit="cine", disable=not progress)
    try:
        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                build_one(str(root), job, dicom)
                bar.update(1)
        else:
            with _single_threaded_children(), ProcessPoolExecutor(
                max_workers=int(workers), mp_context=multiprocessing.get_context("spawn")
            ) as pool:
                futures = [pool.submit(build_one, str(root), job, dicom) for job in todo]
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
    finally:
        bar.close()
    if any(not _done(root, j, dicom) for j in jobs):
        return root  # stopped early (limit): annotations.json only once every cine is there
    _write_annotations(root, jobs, cfg.setting)
    return root


class _single_threaded_children:
    """Spawned workers inherit the environment: one BLAS / OpenMP thread each (workers = cores)."""

    _names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

    def __enter__(self) -> None:
        self._old = {k: os.environ.get(k) for k in self._names}
        for k in self._names:
            os.environ.setdefault(k, "1")

    def __exit__(self, *exc) -> None:
        for k, v in self._old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_or_write_info(root: Path, info: dict[str, Any]) -> None:
    """Write build.json, or check that the folder's build.json describes the same build (for resuming)."""
    path = root / "build.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        keys = ("format", "preset", "seed", "synth", "knobs", "rule")
        if not isinstance(old, dict) or any(old.get(k) != info.get(k) for k in keys):
            raise XcalabInputError(path, "this folder holds a different XCA-Synth build (preset, seed, sizes or "
                                         "knobs differ); choose another --out or delete the folder")
        if old.get("dicom") or not info["dicom"]:
            return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))


def _write_annotations(root: Path, jobs: list[dict[str, Any]], setting: int) -> Path:
    from xcalab.data.annotations import write_annotations

    videos = [annotation_from_summary(job["video_id"], read_summary(_paths(root, job)[0]), job["subset"], setting)
              for job in jobs]
    return write_annotations(root / "annotations.json", videos)


# --------------------------------------------------------------------------------------------------
# Reading a build back
# --------------------------------------------------------------------------------------------------


@dataclass
class SynthBenchmark:
    """A finished build: its annotations and a loader of ``Cine`` (frames + truth) by video id.

        bench = load_benchmark(path)
        bench.annotations["synth-0000"].keyframes
        seq = bench.load("synth-0000")          # Cine with truth (keyframes, vessel maps, phases)
        for seq in bench.sequences("test"): ...
    """

    root: Path
    annotations: dict
    info: dict[str, Any]

    def video_ids(self, subset: str | None = None) -> list[str]:
        return sorted(v for v, a in self.annotations.items() if subset is None or a.subset == subset)

    def load(self, video_id: str) -> Cine:
        if video_id not in self.annotations:
            raise XcalabInputError(self.root, f"no video {video_id!r} in this build")
        return read_sequence_npz(self.root / "sequences" / f"{video_id}.npz")

    def sequences(self, subset: str | None = None) -> Iterator[Cine]:
        for vid in self.video_ids(subset):
            yield self.load(vid)

    def __len__(self) -> int:
        return len(self.annotations)


def load_benchmark(out_dir: str | Path) -> SynthBenchmark:
    """Open a finished build folder (raises ``XcalabInputError`` naming what is missing)."""
    from xcalab.data.annotations import read_annotations

    root = Path(out_dir)
    if not (root / "build.json").is_file():
        raise XcalabInputError(root, "not an XCA-Synth build (no build.json); build it with `xcalab simulate`")
    if not (root / "annotations.json").is_file():
        raise XcalabInputError(root, "the build is unfinished (no annotations.json); run the same "
                                     "`xcalab simulate` command again to finish it")
    return SynthBenchmark(root, read_annotations(root / "annotations.json"), json.loads((root / "build.json").read_text()))


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xcalab simulate",
        description="Build the XCA-Synth benchmark of a preset or a named config (resumable, parallel)."
    )
    parser.add_argument("--preset", choices=PRESETS, default="teach")
    parser.add_argument("--config", choices=sorted(CONFIGS), default=None,
                        help="build a named configuration instead of a preset: locate = archive-like cines "
                             "(360 of 256^2, 3.5-7 s at natural time scale, 7.5/15/30 fps; ok, partial_end, "
                             "partial_start and no_contrast scenarios with their status; xcalab.config.locate_config)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="build folder (default: data/cache/xca-synth-<preset or config>-seed<N>)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (the result does not depend on it)")
    parser.add_argument("--dicom", action="store_true", help="also write every cine as DICOM XA")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``xcalab simulate``: build a preset's benchmark and print where it is. Returns an exit code."""
    args = build_parser().parse_args(argv)
    if args.seed < 0 or args.workers < 1:
        print("error: --seed must be >= 0 and --workers >= 1", file=sys.stderr)
        return 2
    cfg = CONFIGS[args.config](args.seed) if args.config else get_preset(args.preset, seed=args.seed)
    start = time.perf_counter()
    try:
        root = build_benchmark(cfg, args.out, workers=args.workers, dicom=args.dicom, progress=not args.quiet)
    except XcalabInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bench = load_benchmark(root)
    counts = {s: len(bench.video_ids(s)) for s in SUBSETS}
    print(f"XCA-Synth {cfg.name} (seed {cfg.seed}): {len(bench)} cines "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}) in {root}  [{time.perf_counter() - start:.1f} s]")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
