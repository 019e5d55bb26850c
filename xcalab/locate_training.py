"""The detector behind ``xcalab locate``: trained on XCA-Synth's archive-like mix, calibrated, measured.

    xcalab train-locate --seed 0 --workers 2          # build, features, train, calibrate, export, measure

One command, five resumable stages (everything below ``data/cache/``, git-ignored):

1. **Build** the mix of ``config.locate_config(seed)``: 360 cines of natural duration (3.5-7 s, nothing
   squeezed) at 7.5, 15 and 30 fps, left and right trees, of four kinds -- complete passages (status ok),
   recordings that stop before the washout ends or start after contrast entered (partial), and runs
   without contrast (no_contrast) -- split 180 / 60 / 120.
2. **Features** on the one inference grid (``xcalab.inference``): each cine resampled to 7.5 fps, the
   shipped SVS-Net on every 4-frame window (stride 1). Annotations are written on that grid: a partial
   cine's filling starts at frame 0 or its disappearing ends at the last frame; a no_contrast cine has none.
3. **Train** the teach STA-IPCon detector on it (``xcalab.train.loop.train``, model selection on the
   validation cines' mAP).
4. **Calibrate** the decision (status thresholds, confidence) on the validation cines
   (``xcalab.decision.calibrate``) and **export** ``data/weights/detector-locate-sta-ipcon-seed<N>.pt``
   with the calibration, rate and stride in its metadata.
5. **Measure** ``locate`` on the test cines written as DICOM files and read back as a user's would be:
   the deviation of each keyframe per frame rate and the status confusion matrix
   (``figures/locate/locate-test-seed<N>.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xcalab.config import LOCATE_FPS, LOCATE_STRIDE, REPO_ROOT, Config
from xcalab.data.annotations import VideoAnnotation, read_annotations, write_annotations
from xcalab.data.io import atomic_path
from xcalab.decision import STATUSES, CalibrationCase, VesselEvidence, calibrate, ordered_pair
from xcalab.inference import locate_features, resample_index
from xcalab.locator import load_locator, locate_sequence
from xcalab.pipeline import WEIGHTS_DIR, export_detector

REPORT_DIR = REPO_ROOT / "figures" / "locate"


def locate_training_config(seed: int = 0) -> Config:
    """``locate_config(seed)`` on the inference grid: features at stride 1 of cines resampled to 7.5 fps."""
    import dataclasses

    from xcalab.config import locate_config

    cfg = locate_config(seed)
    return cfg.replace(features=dataclasses.replace(cfg.features, stride=LOCATE_STRIDE))


def features_dir_of(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "features" / f"{cfg.name}-seed{cfg.seed}-learned-7p5fps-s{LOCATE_STRIDE}"


def truth_of(annotation: VideoAnnotation) -> tuple[str, tuple[float | None, float | None, float | None]]:
    """(status, true keyframes in seconds with None where absent) of a build's annotation record."""
    status = annotation.status or "ok"
    if status == "no_contrast" or annotation.keyframes is None:
        return "no_contrast", (None, None, None)
    present = annotation.keyframes_present or (True, True, True)
    return status, tuple(k / annotation.fps if p else None for k, p in zip(annotation.keyframes, present))


def resampled_annotation(annotation: VideoAnnotation, n_frames: int) -> VideoAnnotation:
    """A build's record (original fps) on the resampled 7.5 fps grid of a cine of ``n_frames`` frames."""
    index = resample_index(n_frames, annotation.fps, LOCATE_FPS)
    rate = LOCATE_FPS if annotation.fps > LOCATE_FPS * (1 + 1e-6) else annotation.fps
    n_res = len(index)
    if annotation.keyframes is None or annotation.status == "no_contrast":
        return VideoAnnotation.without_contrast(annotation.video_id, rate, n_res, annotation.subset, annotation.setting)
    kf = [min(k * rate / annotation.fps, n_res) for k in annotation.keyframes]
    return VideoAnnotation.from_keyframes(annotation.video_id, kf, rate, n_res, annotation.subset, annotation.setting,
                                          status=annotation.status, keyframes_present=annotation.keyframes_present)


def prepare_locate_features(cfg: Config, workers: int = 2, progress: bool = True) -> tuple[Path, Path, Path]:
    """Stages 1-2: (build folder, features folder, annotations path); cached and resumable."""
    from tqdm.auto import tqdm

    from xcalab.data.synth.benchmark import build_benchmark, load_benchmark
    from xcalab.features.extract import DEFAULT_CACHE
    from xcalab.features.weights import load_extractor

    build_dir = build_benchmark(cfg, workers=workers, progress=progress)
    bench = load_benchmark(build_dir)
    out = features_dir_of(cfg)
    out.mkdir(parents=True, exist_ok=True)
    extractor = load_extractor(device=cfg.device)
    records = []
    for video_id in tqdm(bench.video_ids(), desc="locate features (7.5 fps, stride 1)", unit="cine", disable=not progress):
        annotation = bench.annotations[video_id]
        npy = out / f"{video_id}.npy"
        n_frames = round(annotation.duration * annotation.fps)
        if not npy.is_file():
            seq = bench.load(video_id)
            n_frames = seq.n_frames
            features, _, _ = locate_features(seq, extractor, cfg.device, cache=DEFAULT_CACHE)
            with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
                np.save(fh, features)
        records.append(resampled_annotation(annotation, n_frames))
    annotations = write_annotations(out / "annotations.json", records)
    return build_dir, out, annotations


def calibration_cases(locator, annotations: dict[str, VideoAnnotation], features_dir: Path,
                      subset: str = "validation") -> list[CalibrationCase]:
    """Each cine of ``subset`` (features already extracted): its best ordered pair and its truth."""

    from xcalab.data.annotations import FeatureGrid
    from xcalab.inference import detect_features

    grid = FeatureGrid(stride=locator.stride, window=locator.cfg.features.window)
    cases = []
    for vid, a in sorted(annotations.items()):
        if a.subset != subset:
            continue
        features = np.load(features_dir / f"{vid}.npy")
        prediction, _ = detect_features(locator.model, features, a.fps, a.duration, vid, grid, seed=locator.cfg.seed)
        status, keyframes = truth_of(a)
        times = np.asarray(grid.grid_to_seconds(np.arange(features.shape[0], dtype=np.float64), a.fps))
        evidence = VesselEvidence.of(features.mean(axis=1), times)
        cases.append(CalibrationCase(ordered_pair(prediction, locator.calibration.sigma_s), a.duration, status,
                                     keyframes, evidence))
    return cases


# --------------------------------------------------------------------------------------------------
# Stage 5: measure locate on DICOM test cines
# --------------------------------------------------------------------------------------------------


@dataclass
class LocateReport:
    """Per-rate keyframe deviations (frames, over the keyframes that exist and were found) and statuses."""

    rows: list[dict[str, Any]]
    seconds: float

    def confusion(self) -> dict[str, dict[str, int]]:
        table = {t: {p: 0 for p in STATUSES} for t in STATUSES}
        for r in self.rows:
            table[r["true_status"]][r["status"]] += 1
        return table

    def deviations(self) -> dict[str, dict[str, dict[str, float | int | None]]]:
        """{fps: {keyframe: {"mean", "worst", "n", "missed"}}}: |predicted - true| in the cine's own frames."""
        out: dict[str, dict[str, dict[str, float | int | None]]] = {}
        for fps in sorted({r["fps"] for r in self.rows}):
            per = {}
            for name in ("start", "apex", "end"):
                dev = [abs(r["pred"][name] - r["true"][name]) for r in self.rows
                       if r["fps"] == fps and r["true"][name] is not None and r["pred"][name] is not None]
                missed = sum(1 for r in self.rows if r["fps"] == fps and r["true"][name] is not None
                             and r["pred"][name] is None)
                per[name] = {"mean": float(np.mean(dev)) if dev else None, "worst": int(max(dev)) if dev else None,
                             "n": len(dev), "missed": missed}
            out[f"{fps:g}"] = per
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"confusion": self.confusion(), "deviations": self.deviations(), "n_cines": len(self.rows),
                "seconds": self.seconds, "rows": self.rows}

    def markdown(self) -> str:
        lines = ["| fps | keyframe | mean dev. (frames) | worst | n | missed |", "|---|---|---|---|---|---|"]
        for fps, per in self.deviations().items():
            for name, d in per.items():
                mean = "—" if d["mean"] is None else f"{d['mean']:.2f}"
                lines.append(f"| {fps} | {name} | {mean} | {d['worst'] if d['worst'] is not None else '—'} | "
                             f"{d['n']} | {d['missed']} |")
        lines += ["", "| true \\ predicted | " + " | ".join(STATUSES) + " |", "|---" * (len(STATUSES) + 1) + "|"]
        for t, row in self.confusion().items():
            lines.append(f"| {t} | " + " | ".join(str(row[p]) for p in STATUSES) + " |")
        return "\n".join(lines) + "\n"


def measure_locate(locator, build_dir: Path, subset: str = "test", progress: bool = True) -> LocateReport:
    """``locate`` on every cine of ``subset``, each written as a DICOM XA file and read back from it."""
    from tqdm.auto import tqdm

    from xcalab.data.io import read_sequence, write_dicom
    from xcalab.data.synth.benchmark import load_benchmark

    bench = load_benchmark(build_dir)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for vid in tqdm(bench.video_ids(subset), desc=f"locate on {subset} DICOMs", unit="cine", disable=not progress):
            a = bench.annotations[vid]
            path = write_dicom(bench.load(vid), Path(tmp) / f"{vid}.dcm")
            seq = read_sequence(path)
            record = locate_sequence(seq, locator).record
            path.unlink()
            status, seconds = truth_of(a)
            true = {n: None if s is None else int(round(s * a.fps)) for n, s in zip(("start", "apex", "end"), seconds)}
            pred = {n: None if record[n] is None else record[n]["frame"] for n in ("start", "apex", "end")}
            rows.append({"video_id": vid, "fps": a.fps, "true_status": status, "status": record["status"],
                         "confidence": record["confidence"], "true": true, "pred": pred})
    return LocateReport(rows, time.perf_counter() - start)


def score_on_teach(locator, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The locate detector on the teach preset's 29 test cines, the numbers the teach detector ships with:
    average mAP (tIoU 0.3:0.1:0.7, the paper's top-1 protocol) and AD (frames) from the top-1 segments (eq. 14),
    plus AD from the ordered decode. Teach cines are squeezed full passages: outside the locate mix."""
    from tqdm.auto import tqdm

    from xcalab.config import get_preset
    from xcalab.data.annotations import FeatureGrid
    from xcalab.frame_metrics import average_deviation
    from xcalab.inference import detect_features
    from xcalab.metrics import PAPER_TIOUS, Detection, GroundTruth, mean_average_precision
    from xcalab.pipeline import prepare_features

    data = prepare_features(get_preset("teach", seed=seed), subsets=("test",), progress=progress)
    grid = FeatureGrid(stride=locator.stride, window=locator.cfg.features.window)
    detections, truth, top1_kf, ordered_kf, true_kf = [], [], [], [], []
    for vid in tqdm(data.video_ids("test"), desc="teach test (locate detector)", unit="cine", disable=not progress):
        seq, a = data.cine(vid), data.annotations[vid]
        features, small, _ = locate_features(seq, locator.extractor, locator.device)
        pred, _ = detect_features(locator.model, features, small.fps, small.duration, vid, grid, seed=locator.cfg.seed)
        detections += [Detection(vid, d.label_id, d.t0, d.t1, d.score) for d in pred.detections()]
        truth += [GroundTruth(vid, act.label_id, *act.segment) for act in a.actions]
        if pred.keyframes is not None and a.keyframes is not None:
            top1_kf.append([k / small.fps * seq.fps for k in pred.keyframes])
            pair = ordered_pair(pred, locator.calibration.sigma_s)
            ordered_kf.append([t * seq.fps for t in pair.keyframes] if pair else top1_kf[-1])
            true_kf.append(list(a.keyframes))
    result = mean_average_precision(detections, truth, PAPER_TIOUS, protocol="top1")
    return {"n_cines": len(data.video_ids("test")), "average_map": result.average_map,
            "ad_top1": average_deviation(np.rint(top1_kf), true_kf), "ad_ordered": average_deviation(np.rint(ordered_kf), true_kf),
            "n_decoded": len(true_kf)}


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def train_locate(seed: int = 0, workers: int = 2, progress: bool = True, out: str | Path | None = None,
                 measure: bool = True) -> dict[str, Any]:
    """Stages 1-5 (see the module docstring); returns what was measured. Resumable at every stage."""
    from xcalab.train.loop import train

    cfg = locate_training_config(seed)
    timings = {}
    t0 = time.perf_counter()
    build_dir, features_dir, annotations_path = prepare_locate_features(cfg, workers, progress)
    timings["build_and_features_s"] = time.perf_counter() - t0
    run_dir = Path(cfg.data_dir) / "runs" / f"locate-sta-ipcon-seed{seed}"
    t0 = time.perf_counter()
    resume = (run_dir / "checkpoint.pt").is_file()
    result = train(cfg, features_dir, annotations_path, run_dir, resume=resume, progress=progress)
    timings["train_s"] = time.perf_counter() - t0

    # Calibrate on the validation cines with the selected weights, then export them with the calibration.
    out = Path(out) if out is not None else WEIGHTS_DIR / f"detector-locate-sta-ipcon-seed{seed}.pt"
    locator = load_locator(result.best_checkpoint, device=cfg.device)
    cases = calibration_cases(locator, read_annotations(annotations_path), features_dir, "validation")
    calibration = calibrate(cases)
    command = f"xcalab train-locate --seed {seed} --workers {workers}"
    inference = {"rate": LOCATE_FPS, "stride": LOCATE_STRIDE, "calibration": calibration.to_dict(),
                 "trained_on": f"XCA-Synth locate mix, seed {seed} ({command})"}
    export_detector(run_dir, out, command=command, extra={"inference": inference})
    summary = {"weights": str(out), "calibration": calibration.to_dict(), "best_epoch": result.best_epoch,
               "best_validation_map": result.best_score, "timings": timings}
    if measure:
        report = measure_locate(load_locator(out, device=cfg.device), build_dir, "test", progress)
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        with atomic_path(REPORT_DIR / f"locate-test-seed{seed}.json") as tmp:
            tmp.write_text(json.dumps({**summary, **report.as_dict()}, indent=1, default=str) + "\n")
        with atomic_path(REPORT_DIR / f"locate-test-seed{seed}.md") as tmp:
            tmp.write_text(f"# `xcalab locate` on the XCA-Synth locate test cines (seed {seed}, DICOM)\n\n"
                           f"Weights `{out.name}`; {len(report.rows)} cines in {report.seconds:.0f} s.\n\n"
                           + report.markdown())
        summary["report"] = report.as_dict()
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xcalab train-locate", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="simulator processes")
    p.add_argument("--out", default=None, help="weights file (default data/weights/detector-locate-sta-ipcon-seed<N>.pt)")
    p.add_argument("--no-measure", action="store_true", help="skip stage 5 (locate on the test DICOMs)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = train_locate(args.seed, args.workers, not args.no_progress, args.out, not args.no_measure)
    print(json.dumps({k: v for k, v in summary.items() if k != "report"}, indent=1, default=str))
    if "report" in summary:
        print(json.dumps({k: summary["report"][k] for k in ("confusion", "deviations")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
