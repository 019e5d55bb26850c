"""From a preset to features and a trained detector: where notebooks 03-08 and ``xcalab reproduce`` start.

    data = prepare_features(cfg)                       # XCA-Synth build + (T, 4096) vessel features, cached
    run = load_or_train_detector(cfg, "STA-IPCon", data)  # the shipped teach model, a cached run, or trains one
    run.model(features, mask, return_attention=True)

Everything is cached under ``cfg.data_dir`` (git-ignored) and keyed by what made it, so the second call
is instant:

    xca-synth-<preset>-seed<N>/            the simulated cines (``xcalab simulate``)
    features/<preset>-seed<N>-<source>-s<stride>/
        <video_id>.npy                     (T, 4096) float32 per cine
        annotations-setting<k>.json        ActivityNet-1.3 ground truth of problem setting k
    runs/<preset>-<variant>-seed<N>/       training runs (``xcalab train``'s files)

**Variants.** The paper's ablations (Tables II, IV, V) by name: every row is a ``ModelConfig.ablation``
of the preset's model. "STA-IPCon" is the full model (the paper's "Ours"), "ActionFormer" the baseline
with every switch off.

**Shipped weights.** ``data/weights/detector-teach-<variant>-seed0.pt`` holds the EMA weights of a teach
run with its training history, so a student's notebook starts from a trained model in seconds; any
other preset, seed or variant is trained on first use (``retrain=True`` always trains).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xcalab.config import ACTIONFORMER, WEIGHTS_DIR, Config, config_from_dict
from xcalab.data.annotations import FeatureGrid, VideoAnnotation, read_annotations, write_annotations
from xcalab.data.dataset import FeatureDataset, dataset_for
from xcalab.data.io import Cine, atomic_path
from xcalab.data.phases import phases_path, step_phases
from xcalab.errors import XcalabInputError
from xcalab.models.detector import load_detector, read_checkpoint
from xcalab.runtime import resolve_device
from xcalab.train.checkpoint import BEST, CHECKPOINT, CONFIG, CSV_LOG, LOG, save_checkpoint
from xcalab.train.loop import train

#: Every row of the paper's Tables II, IV and V as model switches (on top of the preset's sizes).
VARIANTS: dict[str, dict[str, Any]] = {
    "Baseline w/o S-T": {**ACTIONFORMER, "short_term": False},
    "TA w/o S-T": {**ACTIONFORMER, "long_term": "TA", "short_term": False},
    "SA w/o S-T": {**ACTIONFORMER, "long_term": "SA", "short_term": False},
    "STA w/o S-T": {**ACTIONFORMER, "long_term": "STA", "short_term": False},
    "ActionFormer": dict(ACTIONFORMER),
    "TA": {**ACTIONFORMER, "long_term": "TA"},
    "SA": {**ACTIONFORMER, "long_term": "SA"},
    "STA": {**ACTIONFORMER, "long_term": "STA"},
    "STA+ICon": {**ACTIONFORMER, "long_term": "STA", "imagewise": True},
    "STA+PCon": {**ACTIONFORMER, "long_term": "STA", "patchwise": True},
    "STA-IPCon": {"long_term": "STA", "imagewise": True, "patchwise": True, "short_term": True},
    # The other seed papers' modules, each on the plain detector as its paper adds it to one, and on STA-IPCon.
    "ActionFormer+GAF": {**ACTIONFORMER, "generative_attention": True},
    "ActionFormer+TSA": {**ACTIONFORMER, "refinement": True},
    "Phase attention": {**ACTIONFORMER, "phase_attention": True},
    "STA-IPCon+GAF": {"long_term": "STA", "imagewise": True, "patchwise": True, "generative_attention": True},
    "STA-IPCon+TSA": {"long_term": "STA", "imagewise": True, "patchwise": True, "refinement": True},
}



def variant_slug(variant: str) -> str:
    """A file-name-safe name: "STA w/o S-T" -> "sta-wo-st", "STA+ICon" -> "sta+icon"."""
    check_variant(variant)
    return variant.lower().replace(" w/o s-t", "-wo-st").replace(" ", "-")


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")


def variant_config(cfg: Config, variant: str) -> Config:
    """``cfg`` with the model switches of ``variant`` (sizes, training and seed unchanged)."""
    check_variant(variant)
    return cfg.replace(model=cfg.model.ablation(**VARIANTS[variant]))


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------


@dataclass
class FeatureData:
    """The features of one XCA-Synth build, ready for the detector.

    cfg               the preset they were made for
    build_dir         the simulated cines (``load_benchmark``; frames for drawing)
    features_dir      ``<video_id>.npy``, (T, 4096) float32 each
    annotations_path  the ActivityNet-1.3 ground truth of ``cfg.setting``, for the cines present
    source, stride    how the features were made (``xcalab.features.extract_features``)
    """

    cfg: Config
    build_dir: Path
    features_dir: Path
    annotations_path: Path
    source: str
    stride: int
    annotations: dict[str, VideoAnnotation] = field(repr=False, default_factory=dict)

    def video_ids(self, subset: str | None = None) -> list[str]:
        """The video ids present, of one subset ("train", "validation", "test") or all, sorted."""
        return sorted(v for v, a in self.annotations.items() if subset is None or a.subset == subset)

    def dataset(self, subset: str | None, training: bool = False) -> FeatureDataset:
        """A ``FeatureDataset`` of a subset (``training=True``: random crops as in training)."""
        return dataset_for(self.cfg, self.features_dir, self.annotations, subset, training=training)

    def features(self, video_id: str) -> np.ndarray:
        """(T, 4096) float32 features of one cine."""
        return np.load(self.features_dir / f"{video_id}.npy")

    def cine(self, video_id: str) -> Cine:
        """The simulated cine itself (frames, vessel maps, keyframes)."""
        from xcalab.data.synth.benchmark import read_sequence_npz

        return read_sequence_npz(self.build_dir / "sequences" / f"{video_id}.npz")


def features_dir_for(cfg: Config, source: str = "learned", stride: int | None = None) -> Path:
    stride = cfg.features.stride if stride is None else stride
    return Path(cfg.data_dir) / "features" / f"{cfg.name}-seed{cfg.seed}-{source}-s{stride}"


def prepare_features(
    cfg: Config,
    subsets: tuple[str, ...] | None = None,
    source: str = "learned",
    stride: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> FeatureData:
    """Simulate the cines of ``cfg`` (or only those of ``subsets``) and extract their features; cached.

    cfg       the preset: its synth sizes, seed, setting, feature grid, device and data_dir
    subsets   e.g. ("test",) when only the test cines are needed (a notebook that loads a trained model);
              None: all of them
    source    "learned" (the shipped SVS-Net), "frangi", "raw" or "oracle" (Table VI)
    stride    frames between feature steps (default ``cfg.features.stride``: 4, the paper's)
    workers   simulator processes (default: the CPU count, at most 4)
    progress  progress bars
    """
    from tqdm.auto import tqdm

    from xcalab.data.synth.benchmark import (
        annotation_from_summary,
        build_benchmark,
        plan,
        read_phases,
        read_sequence_npz,
        read_summary,
    )
    from xcalab.features.extract import extract_features

    stride = cfg.features.stride if stride is None else stride
    workers = workers or min(4, os.cpu_count() or 1)
    build_dir = build_benchmark(cfg, workers=workers, progress=progress, subsets=subsets)
    out = features_dir_for(cfg, source, stride)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cfg.data_dir) / "features"  # content-keyed arrays, shared by every export below data_dir
    extractor = None
    if source == "learned":
        from xcalab.features.weights import load_extractor

        extractor = load_extractor(device=cfg.device)

    videos = []
    for job in tqdm(plan(cfg), desc=f"features ({source}, stride {stride})", unit="cine", disable=not progress):
        npz = build_dir / "sequences" / f"{job['video_id']}.npz"
        npy = out / f"{job['video_id']}.npy"
        if not npz.is_file():  # a subset that was not asked for
            continue
        if not npy.is_file():
            seq = read_sequence_npz(npz)
            features = extract_features(seq, source, stride, extractor, device=cfg.device, cache=cache)
            with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
                np.save(fh, features)
        if not phases_path(npy).is_file():  # the phase recogniser's labels, one per step (cheap: no frames read)
            n_steps = int(np.load(npy, mmap_mode="r").shape[0])
            labels = step_phases(read_phases(npz), n_steps, FeatureGrid(stride=stride, window=cfg.features.window))
            with atomic_path(phases_path(npy)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, labels)
        # As annotations.json has it (a scenario cine's status; no actions for one without contrast).
        videos.append(annotation_from_summary(job["video_id"], read_summary(npz), job["subset"], cfg.setting))
    if not videos:
        raise XcalabInputError(build_dir, f"no cines of the subsets {subsets} in this build")
    annotations_path = write_annotations(out / f"annotations-setting{cfg.setting}.json", videos)
    grid_cfg = cfg.replace(features=dataclasses.replace(cfg.features, stride=stride))  # datasets on this grid
    return FeatureData(grid_cfg, build_dir, out, annotations_path, source, stride, read_annotations(annotations_path))


# --------------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainedDetector:
    """A trained detector and where it came from.

    model       ``KeyframeDetector`` with the selected EMA weights, in eval mode, on ``cfg.device``
    cfg         the configuration it was trained with (variant switches included)
    variant     its name in ``VARIANTS``
    history     one record per epoch (mean loss terms, lr, validation mAP, seconds), as ``xcalab train`` logs
    checkpoint  the file the weights came from
    origin      "shipped" (data/weights), "cached" (an earlier run in data/cache/runs) or "trained" (just now)
    """

    model: torch.nn.Module
    cfg: Config
    variant: str
    history: list[dict[str, Any]]
    checkpoint: Path
    origin: str


def shipped_detector_path(variant: str, preset: str = "teach", seed: int = 0) -> Path:
    return WEIGHTS_DIR / f"detector-{preset}-{variant_slug(variant)}-seed{seed}.pt"


def run_dir_for(cfg: Config, variant: str, source: str = "learned") -> Path:
    """``<data_dir>/runs/<preset>-<variant>[-<source>][-s<stride>][-setting<k>]-seed<N>`` (defaults left out)."""
    parts = [cfg.name, variant_slug(variant)]
    if source != "learned":
        parts.append(source)
    if cfg.features.stride != 4:
        parts.append(f"s{cfg.features.stride}")
    if cfg.setting:
        parts.append(f"setting{cfg.setting}")
    return Path(cfg.data_dir) / "runs" / "-".join([*parts, f"seed{cfg.seed}"])


def _same_training(a: Config, b: Config) -> bool:
    """Do two configurations train the same model (``Config.training_identity``)?"""
    return a.training_identity() == b.training_identity()


def _history(path: Path) -> list[dict[str, Any]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "history" in ckpt:
        return list(ckpt["history"])
    meta = json.loads(ckpt["meta"])
    return list(meta.get("history", []))


def load_or_train_detector(
    cfg: Config,
    variant: str = "STA-IPCon",
    data: FeatureData | None = None,
    retrain: bool = False,
    progress: bool = True,
    run_dir: str | Path | None = None,
) -> TrainedDetector:
    """The detector of ``variant`` trained with ``cfg``: shipped weights, else a cached run, else train now.

    cfg       the preset (sizes, training, seed); the variant's switches are applied here
    variant   a name of ``VARIANTS`` (default the full STA-IPCon)
    data      the features to train on (default ``prepare_features(cfg)``, only built when training)
    retrain   ignore shipped weights and cached runs (a cached run is resumed if unfinished)
    progress  progress bars while training
    run_dir   where the run goes (default ``run_dir_for(cfg, variant)``); shipped weights are only used
              with the default folder and the learned features, the ones they were trained on
    """
    vcfg = variant_config(cfg, variant)
    source = "learned" if data is None else data.source
    if data is not None and data.stride != cfg.features.stride:
        raise ValueError(f"the features have stride {data.stride}, the configuration {cfg.features.stride}: "
                         f"pass cfg with features.stride={data.stride}")
    shipped = shipped_detector_path(variant, cfg.name, cfg.seed)
    if not retrain and run_dir is None and source == "learned" and shipped.is_file():
        model, saved = load_detector(shipped, device=_device(cfg))
        if _same_training(saved, vcfg):
            return TrainedDetector(model, saved, variant, _history(shipped), shipped, "shipped")
    run_dir = run_dir_for(cfg, variant, source) if run_dir is None else Path(run_dir)

    # A run folder holds a finished run of this configuration (load it), an unfinished one (resume it) or
    # something else: another configuration, or retrain=True (start afresh: its files are replaced).
    resume = False
    if (run_dir / CHECKPOINT).is_file():
        ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        saved = config_from_dict(json.loads(ckpt["meta"])["config"], where=run_dir / CHECKPOINT)
        same = _same_training(saved, vcfg)
        finished = int(ckpt["epoch"]) >= vcfg.train.epochs
        if same and finished and not retrain and (run_dir / BEST).is_file():
            model, _ = load_detector(run_dir / BEST, device=_device(cfg))
            return TrainedDetector(model, saved, variant, list(ckpt["history"]), run_dir / BEST, "cached")
        resume = same and not finished and not retrain
        if not resume:
            _clear_run(run_dir)

    data = data or prepare_features(cfg, progress=progress)
    result = train(vcfg, data.features_dir, data.annotations_path, run_dir, resume=resume, progress=progress)
    if result.best_checkpoint is None:
        raise RuntimeError(f"training in {run_dir} selected no checkpoint")
    model, saved = load_detector(result.best_checkpoint, device=_device(cfg))
    return TrainedDetector(model, vcfg, variant, result.history, result.best_checkpoint, "trained")


def trained_detector_exists(cfg: Config, variant: str = "STA-IPCon") -> bool:
    """Would ``load_or_train_detector(cfg, variant)`` load (shipped weights or a finished cached run of this
    configuration) rather than train? Never trains; notebooks use it to offer optional comparisons."""
    vcfg = variant_config(cfg, variant)
    shipped = shipped_detector_path(variant, cfg.name, cfg.seed)
    if shipped.is_file():
        saved = config_from_dict(json.loads(read_checkpoint(shipped)["meta"])["config"], where=shipped)
        if _same_training(saved, vcfg):
            return True
    run_dir = run_dir_for(cfg, variant)
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / BEST).is_file():
        return False
    ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    saved = config_from_dict(json.loads(ckpt["meta"])["config"], where=run_dir / CHECKPOINT)
    return _same_training(saved, vcfg) and int(ckpt["epoch"]) >= vcfg.train.epochs


def _clear_run(run_dir: Path) -> None:
    """Remove the files of a training run (``xcalab train``'s names), nothing else."""
    for name in (CHECKPOINT, BEST, LOG, CSV_LOG, CONFIG):
        (run_dir / name).unlink(missing_ok=True)


def _device(cfg: Config) -> torch.device:
    return resolve_device(cfg.device)


def export_detector(run_dir: str | Path, path: str | Path, command: str, extra: dict[str, Any] | None = None) -> Path:
    """Ship a run's selected EMA weights (``best.pt``) with its history: the file ``load_or_train_detector``
    and ``load_detector`` read. Weights are stored in float16 (half the size; the model runs in float32)."""
    run_dir = Path(run_dir)
    best = read_checkpoint(run_dir / BEST)
    meta = json.loads(best["meta"])
    meta.update({"history": _history(run_dir / CHECKPOINT), "command": command, **(extra or {})})
    ema = {k: v.half() if v.is_floating_point() else v for k, v in best["ema"].items()}
    return save_checkpoint(path, {"format": "xcalab-weights-1", "ema": ema, "meta": json.dumps(meta, default=str)})


# --------------------------------------------------------------------------------------------------
# Shipping a detector: one call from a preset and a variant to data/weights/, with its test scores
# --------------------------------------------------------------------------------------------------


def measure_test_scores(model: torch.nn.Module, cfg: Config, data: FeatureData) -> dict[str, Any]:
    """A detector's scores on the test cines of ``data``, as a shipped file records them (``meta["test"]``).

    model  a ``KeyframeDetector`` (eval mode) trained with ``cfg``; cfg its configuration (problem setting, window)
    data   the features it is scored on (their test subset; the paper's protocol: top-1 segment per class)
    Returns plain JSON numbers: ``average_map`` (mean of ``map_per_tiou`` over ``tious``, 0..1), ``ad`` (frames,
    the correct convention) and ``ad_paper`` (the reference's), ``prf_paper`` (frame P/R/F with background),
    ``n_missing`` (cines without keyframes), ``split`` and ``protocol`` (what was measured).
    """
    from xcalab.inference import evaluate

    dataset = dataset_for(cfg, data.features_dir, data.annotations, "test")
    if not len(dataset):
        raise XcalabInputError(data.annotations_path, "no test cines to score the detector on")
    scores = evaluate(model, dataset, cfg)
    if scores.map_top1 is None:
        raise XcalabInputError(data.annotations_path, "the test cines have no ground-truth actions to score against")
    return {
        "split": f"XCA-Synth {data.cfg.name} seed {data.cfg.seed}, test subset ({len(dataset)} cines)",
        "protocol": "paper (top-1 per class)",
        "average_map": float(scores.average_map),
        "tious": [float(t) for t in scores.map_top1.tious],
        "map_per_tiou": [float(m) for m in scores.map_top1.map],
        "ad": scores.ad, "ad_paper": scores.ad_paper,
        "prf_paper": None if scores.prf is None else {k: float(v) for k, v in scores.prf._asdict().items()},
        "n_missing": scores.n_missing,
    }


def recorded_test_scores(path: str | Path) -> dict[str, Any] | None:
    """The test scores a weights file records (``measure_test_scores``' dict; read with ``weights_only=True``),
    or None when it records none."""
    meta = json.loads(read_checkpoint(path)["meta"])
    return meta.get("test")


def ship_detector(
    cfg: Config,
    variant: str,
    weights_dir: str | Path | None = None,
    data: FeatureData | None = None,
    command: str | None = None,
    progress: bool = True,
) -> Path:
    """Train ``variant`` with ``cfg`` (or reuse its finished run), export it and record its test scores.

    The run is ``run_dir_for(cfg, variant)`` under ``cfg.data_dir`` (trained, resumed or reused as
    ``load_or_train_detector`` does; shipped weights are never the source). The file is
    ``<weights_dir>/detector-<preset>-<variant>-seed<N>.pt`` (default ``data/weights/``, where
    ``load_or_train_detector`` looks first): the selected EMA weights in float16 with the configuration, the
    history, ``command`` and ``meta["test"]``: ``measure_test_scores`` of the float16 weights themselves (what
    a student who loads the file gets). Returns the file's path.

    cfg       the preset (sizes, training, seed)
    variant   a name of ``VARIANTS``
    data      its learned features (default ``prepare_features(cfg)``, cached)
    command   what made the file, recorded in it (default: the ``xcalab ship-detector`` line that does this)
    """
    import shlex

    check_variant(variant)
    if data is not None and data.source != "learned":
        raise ValueError(f"shipped detectors are trained on the learned features, not {data.source!r} ones")
    data = data or prepare_features(cfg, progress=progress)
    run_dir = run_dir_for(cfg, variant)
    load_or_train_detector(cfg, variant, data, progress=progress, run_dir=run_dir)
    name = shipped_detector_path(variant, cfg.name, cfg.seed).name
    path = Path(WEIGHTS_DIR if weights_dir is None else weights_dir) / name
    if command is None:
        command = f"xcalab ship-detector {shlex.quote(variant)} --preset {cfg.name} --seed {cfg.seed}"
    # Score what the file will hold (float16-rounded weights): export a draft beside it, score, then the file.
    draft = export_detector(run_dir, path.with_name(f"{path.stem}.unscored.pt"), command)
    try:
        model, saved = load_detector(draft, device=_device(cfg))
        scores = measure_test_scores(model, saved, data)
    finally:
        draft.unlink(missing_ok=True)
    return export_detector(run_dir, path, command, extra={"test": scores})


__all__ = [
    "VARIANTS", "FeatureData", "TrainedDetector", "check_variant", "export_detector", "features_dir_for",
    "load_or_train_detector", "measure_test_scores", "prepare_features", "recorded_test_scores", "run_dir_for",
    "ship_detector", "shipped_detector_path", "trained_detector_exists", "variant_config", "variant_slug",
]
