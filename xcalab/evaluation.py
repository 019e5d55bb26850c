"""``xcalab evaluate``: score detections against annotations; write metrics.json and a results table.

Usage::

    xcalab evaluate --predictions PRED.json --annotations GT.json --out DIR
                    [--subset test] [--protocol all|paper] [--tiou 0.3 0.4 0.5 0.6 0.7] [--setting 0|1|2] [--window 4]
    xcalab evaluate --checkpoint best.pt --features DIR [--annotations GT.json] --out DIR
                    [--subset test] [--protocol all|paper] [--tiou ...] [--device auto]

**Inputs.** PRED.json is in the ActivityNet results format,
``{"results": {video_id: [{"label": "filling", "score": 0.93, "segment": [t0, t1]}, ...]}}``, times in
seconds; an entry may give ``"label_id"`` instead of ``"label"``. GT.json is ActivityNet-1.3 as xcalab writes
it (``xcalab.data.annotations``). As in the official evaluator, a video of the subset without an entry is a
video without detections (its ground truth is missed) and an entry for a video of another subset is a
false positive. A video id that GT.json does not know at all is an error: most likely the wrong file.
With ``--checkpoint`` the model predicts the subset's videos first (annotations default to
``FEATURES/annotations.json``).

**Protocols.** ``all`` (the default) scores every detection with the ActivityNet rules; ``paper`` keeps
only the top-1 segment per class and video, as the seed paper does (``xcalab.metrics`` calls it "top1").

**Keyframes.** When GT.json carries frame rates (xcalab's files do), each video's keyframes are decoded
from its top-scoring segment of each class (eqs. 14/19/20 of the problem setting), rounded to the nearest
frame and compared with the true ones: AD, AD as the reference computes it (truncated frames against
int(true - window/2): 2 frames worse), frame-level P/R/F (the paper's convention and foreground only),
the mean deviation of each keyframe, one-sided t-tests at the paper's population means and 95 %
confidence intervals. These are the conventions of ``xcalab.scoring.score_predictions``, so scoring a
checkpoint here gives its numbers. A video where a class has no detection has no keyframes: it is counted
(``n_missing``) and listed, not dropped silently.

**Outputs** in DIR, each written atomically:

    metrics.json      every number (APs as fractions in [0, 1], deviations in frames), protocol named
    results.md        the results table in percent, as the paper's tables, with the protocol and tIoUs
    results.csv       the same table, one row per line, with a protocol column
    predictions.json  (``--checkpoint`` only) the model's detections, to re-score with ``--predictions``

From Python: ``evaluate_files`` and ``evaluate_checkpoint``; the scoring itself, in memory and without files, is
``xcalab.scoring.score_detections``, and the tables are ``xcalab.results_table``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xcalab.data.annotations import (
    LABELS,
    SUBSET_ALIASES,
    SUBSETS,
    VideoAnnotation,
    canonical_subset,
    check_setting,
    check_setting_of,
    read_annotations,
)
from xcalab.data.io import atomic_path
from xcalab.errors import XcalabInputError
from xcalab.metrics import (
    PAPER_TIOUS,
    Detection,
    GroundTruth,
    parse_detections,
    parse_ground_truth,
    parse_label_ids,
)
from xcalab.results_table import results_table_csv, results_table_markdown
from xcalab.scoring import PROTOCOLS, check_scoring, score_detections

if TYPE_CHECKING:  # torch is only imported when a checkpoint is scored
    from xcalab.postprocess import VideoPrediction

METRICS, TABLE_MD, TABLE_CSV, PREDICTIONS = "metrics.json", "results.md", "results.csv", "predictions.json"


# --------------------------------------------------------------------------------------------------
# Reading the inputs (every problem names the file)
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    """The parsed JSON of ``path``."""
    if not path.is_file():
        raise XcalabInputError(path, f"no such {what} file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise XcalabInputError(path, f"not valid JSON ({err})") from None


def _check_options(subset: str, protocol: str, tious: Sequence[float]) -> tuple[float, ...]:
    """Check every scoring option before a file is read (or a model loaded); returns the tIoUs."""
    if subset not in SUBSETS:
        raise XcalabInputError("--subset", f"must be one of {', '.join(SUBSETS)}, got {subset!r}")
    return check_scoring(protocol, tious)


def load_ground_truth(path: str | Path, subset: str) -> tuple[dict[str, Any], list[GroundTruth], list[str]]:
    """Read an ActivityNet-1.3 annotation file.

    Returns:
        (the parsed JSON, the ground-truth segments of ``subset``, the ids of the subset's videos in file
        order -- videos without annotations included).
    """
    path = Path(path)
    data = _read_json(path, "annotation")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise XcalabInputError(path, 'expected an object with a "database" object (ActivityNet-1.3 format)')
    if not all(isinstance(rec, dict) for rec in data["database"].values()):
        raise XcalabInputError(path, 'every record of "database" must be an object')
    try:
        parse_ground_truth(data)  # the whole file, so that a broken record elsewhere is not ignored
        truth = parse_ground_truth(data, subset)
    except XcalabInputError as err:
        raise XcalabInputError(path, str(err)) from None
    video_ids = [str(vid) for vid, rec in data["database"].items() if str(rec.get("subset", "")).lower() == subset]
    if not video_ids:
        raise XcalabInputError(path, f"no videos of subset {subset!r}")
    if not truth:
        raise XcalabInputError(path, f"the {len(video_ids)} videos of subset {subset!r} have no annotated segments")
    return data, truth, video_ids


def label_table(data: Mapping[str, Any]) -> dict[int, str]:
    """label_id -> label name over a whole annotation file (the id as text when an annotation has no name)."""
    table = {g.label_id: str(g.label_id) for g in parse_ground_truth(data)}
    table.update({i: name for name, i in parse_label_ids(data).items()})
    return dict(sorted(table.items()))


def load_predictions(path: str | Path, annotations: Mapping[str, Any]) -> list[Detection]:
    """Read an ActivityNet results file, checking its labels and video ids against the parsed annotations.

    Returns:
        one ``Detection`` per entry, every video (of any subset) included.
    """
    path = Path(path)
    data = _read_json(path, "predictions")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise XcalabInputError(path, 'expected an object with a "results" object (ActivityNet results format)')
    database = annotations["database"]
    unknown = [vid for vid in data["results"] if vid not in database]
    if unknown:
        raise XcalabInputError(
            path, f"{len(unknown)} video id(s) not in the annotations, e.g. {unknown[:3]} (predictions of another data set?)"
        )
    table = label_table(annotations)
    names = parse_label_ids(annotations)
    known = ", ".join(f"{name!r} (label_id {i})" for i, name in table.items())
    for vid, entries in data["results"].items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise XcalabInputError(path, f"results[{vid!r}] must be a list of {{label, score, segment}} objects")
        for e in entries:
            where = f"results[{vid!r}]"
            if "label_id" in e:
                label_id = e["label_id"]
                if isinstance(label_id, bool) or not isinstance(label_id, int) or label_id not in table:
                    raise XcalabInputError(path, f"{where}: unknown label_id {label_id!r}; the annotations know {known}")
                if "label" in e and names.get(e["label"], label_id) != label_id:
                    raise XcalabInputError(path, f"{where}: label {e['label']!r} disagrees with label_id {label_id}")
            elif "label" in e:
                if e["label"] not in names:
                    raise XcalabInputError(path, f"{where}: unknown label {e['label']!r}; the annotations know {known}")
            else:
                raise XcalabInputError(path, f'{where}: an entry needs a "label" or a "label_id", got {e}')
            segment = e.get("segment")
            if not (isinstance(segment, list) and len(segment) == 2):
                raise XcalabInputError(path, f'{where}: "segment" must be [t0, t1] in seconds, got {segment!r}')
    try:
        return parse_detections(data, names)
    except XcalabInputError as err:
        raise XcalabInputError(path, str(err)) from None


def _keyframe_videos(path: Path, data: Mapping[str, Any]) -> dict[str, VideoAnnotation] | None:
    """The validated xcalab records (keyframes, fps, duration) when every video has a frame rate, else None
    (a plain ActivityNet file: mAP only)."""
    if all("fps" in rec for rec in data["database"].values()):
        return read_annotations(path)
    return None


def _resolve_setting(path: Path, videos: Mapping[str, VideoAnnotation] | None, video_ids: Sequence[str],
                     setting: int | None) -> int:
    """The problem setting to decode keyframes with: ``setting``, which must agree with the file's records;
    by default the one the records hold (0 when they hold none)."""
    recorded = sorted({videos[v].setting for v in video_ids}) if videos is not None else []
    if setting is None:
        if len(recorded) > 1:
            raise XcalabInputError(path, f"mixes problem settings {recorded} in one subset; cannot decode keyframes")
        return recorded[0] if recorded else 0
    try:
        check_setting(setting)
    except ValueError as err:
        raise XcalabInputError("--setting", str(err)) from None
    if videos is not None:
        check_setting_of([videos[v] for v in video_ids], setting, path)
    return setting


# --------------------------------------------------------------------------------------------------
# Files in, files out
# --------------------------------------------------------------------------------------------------


def write_results(metrics: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, results.md and results.csv into ``out_dir`` (created if needed), each atomically.

    Returns:
        {"metrics": path, "markdown": path, "csv": path}.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise XcalabInputError(out_dir, "is a file; --out must be a folder")
    texts = {
        "metrics": (METRICS, json.dumps(metrics, indent=1, allow_nan=False) + "\n"),
        "markdown": (TABLE_MD, results_table_markdown(metrics)),
        "csv": (TABLE_CSV, results_table_csv(metrics)),
    }
    paths = {}
    for key, (name, text) in texts.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text)
        paths[key] = out_dir / name
    return paths


def _evaluate(predictions_path: Path, annotations_path: Path, out_dir: Path, subset: str, protocol: str,
              tious: Sequence[float], setting: int | None, window: int, source: dict[str, Any]) -> dict[str, Any]:
    subset = canonical_subset(subset)
    tious = _check_options(subset, protocol, tious)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise XcalabInputError("--window", f"must be a positive number of frames, got {window!r}")
    data, truth, video_ids = load_ground_truth(annotations_path, subset)
    detections = load_predictions(predictions_path, data)
    videos = _keyframe_videos(annotations_path, data)
    setting = _resolve_setting(annotations_path, videos, video_ids, setting)
    metrics = score_detections(detections, truth, video_ids, label_table(data), videos, protocol, tious, setting, window)
    metrics["subset"] = subset
    metrics["source"] = {"predictions": str(predictions_path), "annotations": str(annotations_path), **source}
    metrics["files"] = {k: str(p) for k, p in write_results(metrics, out_dir).items()}
    return metrics


def evaluate_files(
    predictions_path: str | Path,
    annotations_path: str | Path,
    out_dir: str | Path,
    subset: str = "test",
    protocol: str = "all",
    tious: Sequence[float] = PAPER_TIOUS,
    setting: int | None = None,
    window: int = 4,
) -> dict[str, Any]:
    """Score an ActivityNet results file against an annotation file; write metrics.json, results.md/.csv.

    Args:
        predictions_path: PRED.json, ``{"results": {video_id: [{"label" or "label_id", "score", "segment"}]}}``.
        annotations_path: GT.json (ActivityNet-1.3; with frame rates for the keyframe metrics).
        out_dir: output folder (created if needed).
        subset: the videos to score ("train", "validation", "test").
        protocol: "all" (ActivityNet) or "paper" (top-1 segment per class and video).
        tious: tIoU thresholds in (0, 1]; default the paper's 0.3:0.1:0.7.
        setting: problem setting of the keyframe formula; None: the one GT.json records (0 if none).
        window: frames per feature step, for the reference's AD (4 in the paper).

    Returns:
        the metrics dict, as written to metrics.json, plus "files": where the three files went.
    """
    return _evaluate(Path(predictions_path), Path(annotations_path), Path(out_dir), subset, protocol, tious,
                     setting, window, source={})


def write_predictions(path: str | Path, predictions: Sequence[VideoPrediction]) -> Path:
    """Write a model's predictions in the ActivityNet results format (every kept segment, ranked), atomically.

    Returns:
        the path.
    """
    path = Path(path)
    results = {p.video_id: p.to_activitynet() for p in predictions}
    payload = {"version": "xcalab", "results": results, "external_data": {"used": False}}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, allow_nan=False))
    return path


def evaluate_checkpoint(
    checkpoint_path: str | Path,
    features_dir: str | Path,
    out_dir: str | Path,
    annotations_path: str | Path | None = None,
    subset: str = "test",
    protocol: str = "all",
    tious: Sequence[float] = PAPER_TIOUS,
    device: str = "auto",
) -> dict[str, Any]:
    """Predict a subset with a trained detector, write ``out_dir/predictions.json``, and score it as
    ``evaluate_files`` does (the same numbers as ``xcalab.inference.evaluate``).

    Args:
        checkpoint_path: ``best.pt`` or ``checkpoint.pt`` of ``xcalab train`` (its EMA weights are used).
        features_dir: folder of ``<video_id>.npy`` feature files, (T, 4096) each.
        out_dir: output folder (created if needed).
        annotations_path: GT.json; default ``features_dir/annotations.json``.
        subset, protocol, tious: as ``evaluate_files``. The problem setting and the feature window are the
            checkpoint's.
        device: "auto" (CUDA when present), "cpu" or "cuda".

    Returns:
        the metrics dict, as written to metrics.json, plus "files" (predictions.json included).
    """
    # Imported here: torch and the model are only needed when a checkpoint is scored.
    from xcalab.data.dataset import dataset_for
    from xcalab.inference import predict
    from xcalab.models.detector import load_detector
    from xcalab.runtime import resolve_device

    checkpoint_path, features_dir, out_dir = Path(checkpoint_path), Path(features_dir), Path(out_dir)
    subset = canonical_subset(subset)
    tious = _check_options(subset, protocol, tious)
    if not features_dir.is_dir():
        raise XcalabInputError(features_dir, "no such feature folder")
    annotations_path = features_dir / "annotations.json" if annotations_path is None else Path(annotations_path)
    model, cfg = load_detector(checkpoint_path, device=resolve_device(device))
    videos = read_annotations(annotations_path)
    check_setting_of([v for v in videos.values() if v.subset == subset], cfg.setting, annotations_path)
    dataset = dataset_for(cfg, features_dir, videos, subset)
    if not len(dataset):
        raise XcalabInputError(annotations_path, f"no videos of subset {subset!r}")
    predictions_path = write_predictions(out_dir / PREDICTIONS, predict(model, dataset, cfg))
    metrics = _evaluate(predictions_path, annotations_path, out_dir, subset, protocol, tious, cfg.setting,
                        cfg.features.window, source={"checkpoint": str(checkpoint_path), "features": str(features_dir)})
    metrics["files"]["predictions"] = str(predictions_path)
    return metrics


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The options of ``xcalab evaluate``."""
    parser = argparse.ArgumentParser(
        prog="xcalab evaluate",
        description="Score detections against annotations: AP per class and tIoU, mAP, and (when the "
        "annotations carry frame rates) keyframe AD, frame P/R/F, t-tests and confidence intervals. "
        "Give --predictions (an ActivityNet results file) or --checkpoint with --features (predict first).",
        epilog="Writes OUT/metrics.json, OUT/results.md and OUT/results.csv (and OUT/predictions.json with "
        "--checkpoint). Example: xcalab evaluate --predictions pred.json --annotations gt.json --out eval",
    )
    what = parser.add_argument_group("what to score (one of)")
    what.add_argument("--predictions", metavar="PRED.json",
                      help='ActivityNet results: {"results": {video_id: [{"label", "score", "segment": [t0, t1]}]}}')
    what.add_argument("--checkpoint", metavar="CKPT", help="best.pt or checkpoint.pt of `xcalab train` (needs --features)")
    parser.add_argument("--features", metavar="DIR", help="with --checkpoint: folder of <video_id>.npy features (T, 4096)")
    parser.add_argument("--annotations", metavar="GT.json",
                        help="ActivityNet-1.3 ground truth (with --checkpoint default: FEATURES/annotations.json)")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for metrics.json, results.md, results.csv")
    parser.add_argument("--subset", choices=SUBSETS + tuple(SUBSET_ALIASES), default="test",
                        help="the videos to score (default: test; ActivityNet's training / testing also work)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="all",
                        help="all: ActivityNet rules over every detection (default); "
                        "paper: top-1 segment per class and video, as the seed paper")
    parser.add_argument("--tiou", type=float, nargs="+", default=list(PAPER_TIOUS), metavar="T",
                        help="tIoU thresholds in (0, 1] (default: 0.3 0.4 0.5 0.6 0.7)")
    parser.add_argument("--setting", type=int, choices=tuple(LABELS), default=None,
                        help="problem setting of the keyframe formula (eq. 14/19/20); default: the annotations' (0)")
    parser.add_argument("--window", type=int, default=None,
                        help="frames per feature step, for the reference's AD (default 4; a checkpoint's own)")
    parser.add_argument("--device", default="auto", help='with --checkpoint: "auto" (CUDA if present), "cpu" or "cuda"')
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``xcalab evaluate`` from parsed arguments; returns the metrics dict."""
    if (args.predictions is None) == (args.checkpoint is None):
        raise XcalabInputError(
            "--predictions / --checkpoint",
            "give exactly one: --predictions PRED.json (with --annotations) or --checkpoint CKPT (with --features)",
        )
    if args.predictions is not None:
        if args.annotations is None:
            raise XcalabInputError("--predictions", "needs --annotations GT.json to score against")
        if args.features is not None:
            raise XcalabInputError("--features", "is only used with --checkpoint (to predict); drop it or --predictions")
        return evaluate_files(args.predictions, args.annotations, args.out, args.subset, args.protocol, args.tiou,
                              args.setting, 4 if args.window is None else args.window)
    if args.features is None:
        raise XcalabInputError("--checkpoint", "needs --features DIR (the feature files to predict on)")
    if args.setting is not None or args.window is not None:
        raise XcalabInputError("--checkpoint", "the checkpoint's configuration fixes --setting and --window; drop them")
    return evaluate_checkpoint(args.checkpoint, args.features, args.out, args.annotations, args.subset, args.protocol,
                               args.tiou, args.device)


def main(argv: list[str] | None = None) -> int:
    """``xcalab evaluate ...`` (see the module docstring); prints the table and where the files went.

    Returns:
        0 on success, 2 on bad input (one line on stderr naming the file or option and the problem).
    """
    args = build_parser().parse_args(argv)
    try:
        metrics = run(args)
    except XcalabInputError as err:
        print(f"xcalab: {err}", file=sys.stderr)
        return 2
    print(results_table_markdown(metrics))
    print("wrote " + ", ".join(metrics["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
