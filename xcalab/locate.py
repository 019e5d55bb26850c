"""``xcalab locate``: a researcher's own cines in; start, apex and end with a confidence and a one-page figure out.

    xcalab locate CINE [CINE ...] --out DIR [--fps F] [--weights W.pt] [--device auto|cpu|cuda]

    from xcalab.locate import locate
    results = locate(["run1.dcm", "archive/"], out="keyframes/")
    results[0].record["apex"]            # {"frame": 31, "seconds": 1.03, "score": 0.87}

A CINE is a DICOM XA file (any name), a folder of single-frame DICOM files of one run, a folder of frames
(give ``--fps``), an ``.npy`` array, or a folder of such cines (every cine in it, with a progress bar). Each
cine goes through ``xcalab.inference``: resampled to the weights' rate, vessel features, the detector, the
ordered decode and the calibrated decision. Per cine, ``DIR/<video_id>/`` receives

    keyframes.json    start / apex / end (frame, seconds, score, or null when the cine does not contain it),
                      the two segments, status ok | partial | no_contrast, a calibrated confidence, the
                      end-diastolic frames of the opacified plateau (DICOM R-wave pointers), the settings,
                      the weights and the xcalab version. Nothing from the file's header is copied but the
                      frame rate and the R-wave frame numbers.
    predictions.json  the ActivityNet results format, for ``xcalab evaluate --predictions``
    summary.png       previous / key / next frames per keyframe, the timeline, the score curves

and, for several cines, ``DIR/keyframes.csv`` (one row per cine). A cine that cannot be read ends with one
line naming the file; nothing is written for it, the others go on, and the failures are listed at the end
(exit code 2).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xcalab.data.io import (
    IMAGE_SUFFIXES,
    Cine,
    _has_dicom_marker,
    _holds_dicom_files,
    atomic_path,
    read_sequence,
)
from xcalab.decision import KEYFRAME_NAMES
from xcalab.errors import XcalabInputError
from xcalab.locator import LocateResult, Locator, load_locator, locate_sequence
from xcalab.viz.locate import plot_locate_summary
from xcalab.viz.save import save_figure

CSV_FIELDS = ("video_id", "status", "confidence", "start_frame", "apex_frame", "end_frame",
              "start_s", "apex_s", "end_s", "n_frames", "fps", "end_diastolic_frames")


# --------------------------------------------------------------------------------------------------
# Many cines, files
# --------------------------------------------------------------------------------------------------


def _is_cine_folder(folder: Path) -> bool:
    """A folder that is one cine: image frames, or single-frame DICOM files (no sub-cines)."""
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
    if any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
        return True  # a folder of frames
    # A DICOM series (what ``read_sequence`` reads as one cine), not a folder of multi-frame cines.
    return (not any(f.is_dir() for f in folder.iterdir()) and not any(f.suffix.lower() == ".npy" for f in files)
            and _holds_dicom_files(folder) and _single_frame_dicoms(files))


def _single_frame_dicoms(files: list[Path]) -> bool:
    """Do the DICOM files of a folder hold one frame each (a series), rather than several cines?"""
    import pydicom

    for f in files:
        if _has_dicom_marker(f):
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - an unreadable file is reported when it is read
                return False
            return int(ds.get("NumberOfFrames") or 1) == 1
    return False


def discover_cines(path: str | Path) -> list[Path]:
    """The cines a path names: itself, or every cine inside a folder of cines (sorted by name).

    A folder of cines holds DICOM files, ``.npy`` arrays and folders of frames; it holds none, or
    unrelated files only: ``XcalabInputError``.
    """
    path = Path(path)
    if not path.exists():
        raise XcalabInputError(path, "no such file or folder")
    if not path.is_dir() or _is_cine_folder(path):
        return [path]
    found = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and _is_cine_folder(entry):
            found.append(entry)
        elif entry.is_file() and (entry.suffix.lower() == ".npy" or _has_dicom_marker(entry)):
            found.append(entry)
    if not found:
        raise XcalabInputError(path, "holds no cine (no DICOM file, .npy array or folder of frames)")
    return found


def write_outputs(result: LocateResult, out_dir: str | Path) -> Path:
    """``out_dir/<video_id>/``: keyframes.json, predictions.json and summary.png (each written atomically)."""
    folder = Path(out_dir) / result.record["video_id"]
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "keyframes.json") as tmp:
        tmp.write_text(json.dumps(result.record, indent=1) + "\n")
    results = {"version": "ActivityNet-1.3 results (xcalab locate)",
               "results": {result.record["video_id"]: result.activitynet}, "external_data": {"used": False}}
    with atomic_path(folder / "predictions.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n")
    fig = plot_locate_summary(result)
    import matplotlib.pyplot as plt

    save_figure(fig, "summary", folder, dpi=80)
    plt.close(fig)
    return folder


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """One ``keyframes.csv`` row of a record (empty cells for keyframes the cine does not contain)."""
    row = {"video_id": record["video_id"], "status": record["status"], "confidence": record["confidence"],
           "n_frames": record["n_frames"], "fps": record["fps"],
           "end_diastolic_frames": " ".join(map(str, record["end_diastolic_frames"]))}
    for name in KEYFRAME_NAMES:
        kf = record[name]
        row[f"{name}_frame"] = "" if kf is None else kf["frame"]
        row[f"{name}_s"] = "" if kf is None else kf["seconds"]
    return row


def write_csv(records: list[dict[str, Any]], path: str | Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(csv_row(record))
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(path)


@dataclass
class LocateBatch:
    """``locate``'s answer for several inputs: the results in input order, and the failures (path, message)."""

    results: list[LocateResult]
    failures: list[tuple[str, str]]

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> LocateResult:
        return self.results[i]


def locate(
    inputs: str | Path | list[str | Path],
    out: str | Path | None = None,
    weights: str | Path | None = None,
    fps: float | None = None,
    device: str = "auto",
    progress: bool = True,
    locator: Locator | None = None,
    keep_frames: bool = True,
) -> LocateBatch:
    """Keyframes of every cine ``inputs`` name; with ``out``, their files (see the module docstring).

    inputs   one path or a list: DICOM XA files, folders of single-frame DICOM files, folders of frames,
             .npy cines, or folders of such cines
    out      output folder (None: nothing is written)
    weights  detector weights (default: the shipped locate weights); loaded with weights_only=True
    fps      frame rate of the inputs that carry none (folders of frames, .npy without a sidecar); a DICOM
             file's own rate always wins
    device   "auto" (CUDA when present), "cpu" or "cuda"
    locator  an already loaded ``Locator`` (then weights and device are ignored)
    keep_frames  keep each cine's frames in its result (for drawing); False frees them once the cine's files
             are written, so a folder of long 512 x 512 cines needs the memory of one

    A cine that fails is reported in ``failures`` and skipped; nothing is written for it.
    """
    from tqdm.auto import tqdm

    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    locator = locator or load_locator(weights, device)
    cines: list[Path] = []
    failures: list[tuple[str, str]] = []
    for item in items:
        try:
            cines += discover_cines(item)
        except XcalabInputError as err:
            failures.append((str(item), str(err)))
    results = []
    seen: set[str] = set()
    for path in tqdm(cines, desc="locate", unit="cine", disable=not progress or len(cines) < 2):
        try:
            seq = _read(path, fps)
            if seq.video_id in seen:
                raise XcalabInputError(path, f"a second cine named {seq.video_id!r}; rename one")
            result = locate_sequence(seq, locator)
        except XcalabInputError as err:
            failures.append((str(path), str(err)))
            continue
        seen.add(seq.video_id)
        if out is not None:
            write_outputs(result, out)
            if not keep_frames:
                result.sequence = None
        results.append(result)
    if out is not None and len(results) > 1:
        write_csv([r.record for r in results], Path(out) / "keyframes.csv")
    return LocateBatch(results, failures)


def _read(path: Path, fps: float | None) -> Cine:
    """Read a cine; ``fps`` serves the inputs that carry no frame rate (folders of frames, bare .npy)."""
    try:
        return read_sequence(path)
    except XcalabInputError as err:
        if fps is None or "frame rate" not in str(err):
            raise
    return read_sequence(path, fps=fps)


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xcalab locate", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="DICOM XA files, DICOM series folders, frame folders, .npy, or folders of cines")
    p.add_argument("--out", default="locate-out", help="output folder (one subfolder per cine; default locate-out)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of inputs that carry none (folders of frames); DICOM files keep their own")
    p.add_argument("--weights", default=None, help="detector weights (.pt); default: the shipped locate weights")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true")
    return p


def _describe(record: dict[str, Any]) -> str:
    parts = []
    for name in KEYFRAME_NAMES:
        kf = record[name]
        parts.append(f"{name} —" if kf is None else f"{name} {kf['frame']} ({kf['seconds']:.2f} s, {kf['score']:.2f})")
    return f"{record['video_id']}: {record['status']} (confidence {record['confidence']:.2f})  " + "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """``xcalab locate``: 0 when every cine was located, 2 when any input failed (each named on stderr)."""
    args = build_parser().parse_args(argv)
    if args.fps is not None and not args.fps > 0:
        print(f"xcalab: --fps must be a positive number, got {args.fps}", file=sys.stderr)
        return 2
    try:
        locator = load_locator(args.weights, args.device)
    except XcalabInputError as err:
        print(f"xcalab: {err}", file=sys.stderr)
        return 2
    batch = locate(args.inputs, out=args.out, fps=args.fps, progress=not args.no_progress, locator=locator,
                   keep_frames=False)
    for result in batch.results:
        print(_describe(result.record))
        if result.record["end_diastolic_frames"]:
            print(f"  end-diastolic frames in the plateau: {result.record['end_diastolic_frames']}")
    if batch.results:
        print(f"wrote {len(batch.results)} result folder(s) to {args.out}")
    for _, message in batch.failures:
        print(f"xcalab: {message}", file=sys.stderr)
    if batch.failures:
        print(f"{len(batch.failures)} input(s) failed: {', '.join(p for p, _ in batch.failures)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
