"""Feature export: a cine -> one (T, 4096) array, the keyframe detector's input (the reference's feature files).

The detector never sees frames. It sees one 64 x 64 vessel map per **feature step**: step k reads the 4
frames [s*k, s*k + 4) (stride s = 4 in the paper; 1 and 2 give the overlapping windows of its Table VI) and
sits at their centre, frame s*k + 2 -- exactly the frame SVS-Net segments (the window's third frame). So

    frames (N, H, W) --FeatureGrid(stride s, window 4)--> T = (N - 4) // s + 1 windows (T, 4, H, W)
                     --source-------------------------> one vessel map per window       (T, h, w)
                     --area average to 64 x 64--------> features, row-major             (T, 4096)

Sources, all with this contract (``xcalab.features.classical`` has the baselines):

    learned   SVS-Net's vessel probability of the window's centre frame (the shipped extractor by default)
    frangi    Frangi vesselness of that frame (scale-normalised, one structureness scale per cine)
    raw       1 - intensity of that frame (no vessel model at all)
    oracle    the simulator's true opacified-vessel map of that frame (XCA-Synth only)

Frames are first resized so that their longer side is the extractor's working size (the size it was
trained at; 256 for the shipped one), so vessels have the width in pixels the network and the Frangi scales
expect. Results are cached on disk under a key made of the cine's pixels, the source, the stride, the
working size and the extractor's version (a hash of its weights): nothing is computed twice.

``xcalab features extract INPUT... --out DIR`` writes ``DIR/<video_id>.npy`` per cine, a manifest
``DIR/features.json`` (grid, source, extractor, one record per video) and, for the cines of XCA-Synth
builds, the ActivityNet-1.3 ``DIR/annotations.json`` whose seconds these features are aligned with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xcalab.config import REPO_ROOT, FeatureConfig
from xcalab.data.annotations import FeatureGrid, VideoAnnotation, read_annotations, write_annotations
from xcalab.data.io import Cine, atomic_path, read_sequence
from xcalab.errors import XcalabInputError
from xcalab.features.classical import frangi_maps, frangi_structureness_scale, oracle_maps, raw_maps
from xcalab.features.svsnet import TARGET_INDEX, WINDOW
from xcalab.features.weights import load_extractor
from xcalab.runtime import resolve_device

SOURCES = ("learned", "frangi", "raw", "oracle")
STRIDES = (1, 2, 4)
#: Working size of the sources that look at pixels when no extractor says otherwise (learned uses its own).
DEFAULT_WORK_SIZE = 256
#: Where extracted features are cached by default (git-ignored).
DEFAULT_CACHE = REPO_ROOT / "data" / "cache" / "features"
#: Bump when the meaning of a feature changes, so old cache entries stop matching.
FEATURE_FORMAT = 1

# --------------------------------------------------------------------------------------------------
# The grid: which frames each step reads, and which frame its map describes
# --------------------------------------------------------------------------------------------------


def feature_grid(stride: int = 4) -> FeatureGrid:
    """The feature grid of a stride (window 4); refuses strides other than 1, 2 and 4."""
    if stride not in STRIDES:
        raise ValueError(f"stride must be one of {STRIDES} (4 is the paper's), got {stride!r}")
    return FeatureGrid(stride=stride, window=WINDOW)


def window_starts(n_frames: int, stride: int = 4) -> np.ndarray:
    """First frame of every window, int64 [T] (T = FeatureGrid.n_steps(n_frames))."""
    grid = feature_grid(stride)
    return np.array([grid.step_frames(k)[0] for k in range(grid.n_steps(n_frames))], dtype=np.int64)


def window_centres(n_frames: int, stride: int = 4) -> np.ndarray:
    """Frame each window's map describes, int64 [T]: its third frame, s*k + 2 = FeatureGrid.step_centre(k)."""
    grid = feature_grid(stride)
    centres = [grid.step_centre(k) for k in range(grid.n_steps(n_frames))]
    assert all(c == grid.step_frames(k)[TARGET_INDEX] for k, c in enumerate(centres))  # one convention
    return np.array(centres, dtype=np.int64)


def feature_times(n_frames: int, fps: float, stride: int = 4) -> np.ndarray:
    """Seconds at the centre of every feature step, float64 [T] (FeatureGrid.grid_to_seconds)."""
    grid = feature_grid(stride)
    return np.asarray(grid.grid_to_seconds(np.arange(grid.n_steps(n_frames), dtype=np.float64), fps))


# --------------------------------------------------------------------------------------------------
# Resizing and pooling
# --------------------------------------------------------------------------------------------------


def work_shape(height: int, width: int, work_size: int | None) -> tuple[int, int]:
    """(h, w) with the longer side equal to ``work_size`` and the aspect ratio kept (None: unchanged)."""
    if not work_size:
        return height, width
    scale = work_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(images: Tensor, shape: tuple[int, int]) -> Tensor:
    """(N, H, W) -> (N, h, w): area averaging when shrinking (no aliasing), bilinear when growing."""
    if tuple(images.shape[-2:]) == tuple(shape):
        return images
    shrink = shape[0] <= images.shape[-2] and shape[1] <= images.shape[-1]
    x = images.unsqueeze(1)
    x = F.interpolate(x, size=shape, mode="area") if shrink else F.interpolate(x, size=shape, mode="bilinear", align_corners=False)
    return x.squeeze(1)


def pool_to_grid(maps: Tensor, map_size: int = 64) -> Tensor:
    """(T, h, w) vessel maps -> (T, map_size**2) features: area average to map_size x map_size, row-major."""
    pooled = F.adaptive_avg_pool2d(maps.unsqueeze(1).float(), map_size)
    return pooled.reshape(maps.shape[0], map_size * map_size)


# --------------------------------------------------------------------------------------------------
# Vessel maps of every window, per source
# --------------------------------------------------------------------------------------------------


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="win", disable=not enabled, leave=False)


def _frames(seq: Cine, index: np.ndarray, shape: tuple[int, int], device: torch.device) -> Tensor:
    """Frames ``index`` of a cine, resized: (len(index), h, w) float32 on ``device``."""
    return resize(torch.from_numpy(seq.frames[index]).to(device), shape)


def learned_maps(
    seq: Cine,
    extractor,
    stride: int = 4,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    work_size: int | None = -1,
    progress: bool = False,
) -> Tensor:
    """SVS-Net vessel probabilities of every window: (T, h, w) float32 on the CPU.

    ``extractor`` is an ``xcalab.features.weights.Extractor``. Windows run in batches of ``batch_size``, in
    bf16 autocast on CUDA. ``work_size=-1`` uses the extractor's own working size; None keeps the frames'.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    model = extractor.model.to(device).eval()
    size = extractor.work_size if work_size == -1 else work_size
    shape = work_shape(*seq.frames.shape[1:], size)
    starts = window_starts(seq.n_frames, stride)
    out = torch.empty((len(starts), *shape), dtype=torch.float32)
    offsets = np.arange(WINDOW)
    with _progress(len(starts), f"{seq.video_id} (learned)", progress) as bar, torch.no_grad():
        for first in range(0, len(starts), batch_size):
            batch = starts[first : first + batch_size]
            index = (batch[:, None] + offsets).reshape(-1)  # frames of every window, window by window
            windows = _frames(seq, index, shape, device).view(len(batch), WINDOW, *shape)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(windows)
            out[first : first + len(batch)] = torch.sigmoid(logits.float()).cpu()
            bar.update(len(batch))
    return out


def frangi_window_maps(
    seq: Cine,
    stride: int = 4,
    batch_size: int = 16,
    device: str | torch.device = "auto",
    work_size: int | None = DEFAULT_WORK_SIZE,
    progress: bool = False,
) -> Tensor:
    """Frangi vesselness of every window's centre frame: (T, h, w) float32 on the CPU.

    One structureness scale c for the whole cine (from the centre frames), so vesselness is comparable over time.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    shape = work_shape(*seq.frames.shape[1:], work_size)
    centres = window_centres(seq.n_frames, stride)
    c = max(
        frangi_structureness_scale(_frames(seq, centres[i : i + batch_size], shape, device))
        for i in range(0, len(centres), batch_size)
    )
    out = torch.empty((len(centres), *shape), dtype=torch.float32)
    with _progress(len(centres), f"{seq.video_id} (frangi)", progress) as bar:
        for first in range(0, len(centres), batch_size):
            frames = _frames(seq, centres[first : first + batch_size], shape, device)
            out[first : first + len(frames)] = frangi_maps(frames, c=c).cpu()
            bar.update(len(frames))
    return out


def window_maps(
    seq: Cine,
    source: str = "learned",
    stride: int = 4,
    extractor=None,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    work_size: int | None = -1,
    progress: bool = False,
) -> Tensor:
    """The vessel map of every window of a cine from one source: (T, h, w) float32, larger = more vessel.

    ``work_size=-1`` means the default of the source (the extractor's for learned, 256 for frangi);
    raw and oracle keep the frames' size (they are only averaged).
    """
    check_source(source)
    _check_long_enough(seq)
    if source == "learned":
        if extractor is None:
            extractor = load_extractor()
        return learned_maps(seq, extractor, stride, batch_size, device, work_size, progress)
    if source == "frangi":
        size = DEFAULT_WORK_SIZE if work_size == -1 else work_size
        return frangi_window_maps(seq, stride, max(batch_size, 1), device, size, progress)
    centres = window_centres(seq.n_frames, stride)
    if source == "raw":
        return raw_maps(torch.from_numpy(seq.frames[centres]))
    if seq.truth is None or seq.truth.vessel_maps is None:
        raise XcalabInputError(
            seq.meta.get("source", seq.video_id), "oracle features need true vessel maps (XCA-Synth cines only)"
        )
    return oracle_maps(seq.truth.vessel_maps, centres)


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


def _check_long_enough(seq: Cine) -> None:
    if seq.n_frames < WINDOW:
        raise XcalabInputError(
            seq.meta.get("source", seq.video_id),
            f"{seq.n_frames} frames is too short: a feature step reads {WINDOW} consecutive frames",
        )


# --------------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------------


class FeatureCache:
    """Features on disk, one ``<key>.npy`` per (cine, source, grid, extractor): content-addressed.

    A key is a SHA-256 of everything the features depend on, so a changed cine, stride or set of weights
    misses, and an identical request anywhere hits. Writes are atomic. ``hits`` and ``misses`` count lookups.
    """

    def __init__(self, root: str | Path = DEFAULT_CACHE):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        if path.is_file():
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError):  # a damaged entry is recomputed, not trusted
                array = None
            if array is not None:
                self.hits += 1
                return array
        self.misses += 1
        return None

    def put(self, key: str, features: np.ndarray) -> None:
        with atomic_path(self.path(key)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, features)


def feature_key(seq: Cine, source: str, stride: int, map_size: int, work_size: int | None, version: str) -> str:
    """The cache key of a request: SHA-256 over the pixels (and true maps for oracle) and every setting."""
    h = hashlib.sha256()
    h.update(json.dumps([FEATURE_FORMAT, source, stride, map_size, work_size, version, seq.frames.shape]).encode())
    h.update(np.ascontiguousarray(seq.frames).view(np.uint8).data)
    if source == "oracle" and seq.truth is not None and seq.truth.vessel_maps is not None:
        h.update(np.ascontiguousarray(seq.truth.vessel_maps, dtype=np.float32).view(np.uint8).data)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# The Python API
# --------------------------------------------------------------------------------------------------


def extract_features(
    seq: Cine,
    source: str = "learned",
    stride: int = 4,
    extractor=None,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    map_size: int = FeatureConfig.map_size,
    work_size: int | None = -1,
    cache: FeatureCache | str | Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """A cine's feature array: (T, map_size**2) float32, one row-major map per window (T = FeatureGrid.n_steps(N)).

    Args:
        seq: the cine (frames [N, H, W] in [0, 1]); ``oracle`` also needs ``seq.truth.vessel_maps``.
        source: "learned", "frangi", "raw" or "oracle".
        stride: frames between windows, 1, 2 or 4 (window 4; row k describes frame stride*k + 2).
        extractor: an ``Extractor`` for "learned" (default: the shipped weights, ``load_extractor()``).
        batch_size: windows per forward pass.
        device: "auto", "cpu" or "cuda".
        map_size: side of each map (64 -> 4096 features).
        work_size: longer side the frames are resized to first (-1: the source's default; None: keep).
        cache: a ``FeatureCache`` or its folder, to reuse earlier results; None computes every time.
        progress: show a progress bar over windows.
    """
    check_source(source)
    feature_grid(stride)
    if source == "learned" and extractor is None:
        extractor = load_extractor()
    size = _resolved_work_size(source, extractor, work_size)
    cache = FeatureCache(cache) if isinstance(cache, (str, Path)) else cache
    key = None
    if cache is not None:
        version = extractor.version if source == "learned" else source
        key = feature_key(seq, source, stride, map_size, size, version)
        if (hit := cache.get(key)) is not None:
            return hit
    maps = window_maps(seq, source, stride, extractor, batch_size, device, size, progress)
    features = pool_to_grid(maps, map_size).numpy().astype(np.float32, copy=False)
    if cache is not None:
        cache.put(key, features)
    return features


def _resolved_work_size(source: str, extractor, work_size: int | None) -> int | None:
    """The working size actually used, so that the cache key names it."""
    if work_size != -1:
        return work_size
    if source == "learned":
        return extractor.work_size
    return DEFAULT_WORK_SIZE if source == "frangi" else None


# --------------------------------------------------------------------------------------------------
# Inputs: XCA-Synth builds, DICOM files, frame folders, .npy cines
# --------------------------------------------------------------------------------------------------


def iter_sequences(inputs: list[str | Path], fps: float | None = None) -> Iterator[tuple[Cine, VideoAnnotation | None]]:
    """(cine, its annotation or None) for every cine named by ``inputs``.

    An XCA-Synth build folder (it holds ``build.json``) yields all its cines with their ActivityNet records;
    a DICOM file, folder of frames or .npy yields one cine without. video_id is the XCA-Synth id, or the
    file stem / folder name. ``fps`` overrides the frame rate of files (not of a build, whose annotations'
    seconds depend on it).
    """
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise XcalabInputError(path, "no such file or folder")
        if path.is_dir() and (path / "build.json").is_file():
            from xcalab.data.synth.benchmark import load_benchmark

            bench = load_benchmark(path)
            for video_id in bench.video_ids():
                yield bench.load(video_id), bench.annotations[video_id]
        else:
            yield read_sequence(path, fps=fps), None


# --------------------------------------------------------------------------------------------------
# Export: DIR/<video_id>.npy + features.json (+ annotations.json)
# --------------------------------------------------------------------------------------------------


def export_features(
    inputs: list[str | Path],
    out_dir: str | Path,
    source: str = "learned",
    stride: int = 4,
    fps: float | None = None,
    extractor=None,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    work_size: int | None = -1,
    cache: FeatureCache | str | Path | None = DEFAULT_CACHE,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out_dir/<video_id>.npy`` ((T, 4096) float32) for every cine of ``inputs``; returns the manifest.

    Also writes ``out_dir/features.json`` (the grid, the source, the extractor and, per video, fps, frame
    count, T and the seconds of the first step and of one step) and, for the cines of XCA-Synth builds,
    merges their ActivityNet-1.3 records into ``out_dir/annotations.json``: the seconds there and the rows
    here meet through ``FeatureGrid(stride, 4)``. Every file is written atomically.
    """
    from tqdm.auto import tqdm

    check_source(source)
    grid = feature_grid(stride)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise XcalabInputError(out_dir, "the output path exists and is not a folder")
    if source == "learned" and extractor is None:
        extractor = load_extractor()
    cache = FeatureCache(cache) if isinstance(cache, (str, Path)) else cache
    size = _resolved_work_size(source, extractor, work_size)
    manifest = _read_manifest(out_dir / "features.json", source, stride, extractor)
    annotations: list[VideoAnnotation] = []
    written: set[str] = set()
    bar = tqdm(iter_sequences(inputs, fps), desc=f"features ({source}, stride {stride})", unit="cine", disable=not progress)
    for seq, annotation in bar:
        if seq.video_id in written:
            raise XcalabInputError(seq.meta.get("source", seq.video_id), f"video id {seq.video_id!r} appears twice")
        written.add(seq.video_id)
        features = extract_features(seq, source, stride, extractor, batch_size, device, FeatureConfig.map_size, size,
                                    cache, progress=progress)
        with atomic_path(out_dir / f"{seq.video_id}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, features)
        manifest["videos"][seq.video_id] = {
            "source_file": str(seq.meta.get("source", "")),
            "fps": seq.fps,
            "n_frames": seq.n_frames,
            "frame_size": list(seq.frames.shape[1:]),
            "T": int(features.shape[0]),
            "first_step_seconds": float(grid.grid_to_seconds(0.0, seq.fps)),
            "step_seconds": stride / seq.fps,
        }
        if annotation is not None:
            annotations.append(annotation)
    if not written:
        raise XcalabInputError(", ".join(map(str, inputs)), "no cines found")
    with atomic_path(out_dir / "features.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    if annotations:
        _merge_annotations(out_dir / "annotations.json", annotations)
    return manifest


def _read_manifest(path: Path, source: str, stride: int, extractor) -> dict[str, Any]:
    """The manifest of ``out_dir``: the existing one when it describes the same features, else a new one."""
    header = {
        "format": "xcalab features (T, 4096) float32, row-major 64x64 maps",
        "window": WINDOW,
        "stride": stride,
        "map_size": FeatureConfig.map_size,
        "centre_frame": f"{stride}*k + {WINDOW // 2}",
        "source": source,
        "extractor": None if source != "learned" else {"version": extractor.version, "weights": str(extractor.path or "")},
    }
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if {k: old.get(k) for k in header} == header:
            return {**header, "videos": dict(old.get("videos", {}))}
        raise XcalabInputError(
            path.parent, f"holds features of another kind ({old.get('source')}, stride {old.get('stride')}); use a new --out"
        )
    return {**header, "videos": {}}


def _merge_annotations(path: Path, videos: list[VideoAnnotation]) -> None:
    """Add (or replace) these videos' records in the ActivityNet JSON at ``path``."""
    existing = read_annotations(path) if path.is_file() else {}
    merged = {**existing, **{v.video_id: v for v in videos}}
    write_annotations(path, merged.values())


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xcalab features extract",
        description="Turn cines into (T, 4096) vessel-feature arrays, one DIR/<video_id>.npy per cine.",
    )
    p.add_argument("inputs", nargs="+", help="XCA-Synth build folders, DICOM XA files, frame folders or .npy cines")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fps", type=float, default=None, help="frame rate (required for frame folders)")
    p.add_argument("--stride", type=int, choices=STRIDES, default=4, help="frames between windows (4: the paper's)")
    p.add_argument("--source", choices=SOURCES, default="learned")
    p.add_argument("--weights", default=None, help="extractor weights (.pt); default: the shipped ones")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--work-size", type=int, default=-1, help="resize frames to this longer side (-1: default, 0: keep)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="feature cache folder")
    p.add_argument("--no-cache", action="store_true", help="compute everything, read and write no cache")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """``xcalab features extract``: returns 0, or 2 after printing an input error."""
    args = build_parser().parse_args(argv)
    try:
        extractor = None
        if args.source == "learned":
            extractor = load_extractor(args.weights)
        manifest = export_features(
            args.inputs,
            args.out,
            source=args.source,
            stride=args.stride,
            fps=args.fps,
            extractor=extractor,
            batch_size=args.batch_size,
            device=args.device,
            work_size=None if args.work_size == 0 else args.work_size,
            cache=None if args.no_cache else args.cache,
            progress=not args.no_progress,
        )
    except XcalabInputError as err:
        print(f"xcalab: {err}", file=sys.stderr)
        return 2
    videos = manifest["videos"]
    print(f"{len(videos)} feature files ({args.source}, stride {args.stride}) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
