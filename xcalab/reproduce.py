"""``xcalab reproduce``: train and evaluate the variants of one of the seed paper's tables on XCA-Synth.

Usage::

    xcalab reproduce --table IV [--preset teach] [--seeds 3] [--workers 2] [--out figures/tables]

``--table seeds`` is xcalab's own table: the other three seed papers' modules (GAF, TSA+TPP, the phase
recogniser's class-peak attention) beside ActionFormer and STA-IPCon, with two baselines for the phase
recogniser (keyframes read off its phase changes, and a constant majority phase).

Each row of a table is a detector variant (``xcalab.pipeline.VARIANTS``), sometimes with other features
(Table VI), another problem setting (Table VIII) or another PCon patch (Table VII). For every row and
training seed 0..N-1 the command trains the variant on the preset's XCA-Synth training split (model
selection on its validation split, as ``xcalab train``), predicts the test split and scores it with
``xcalab.evaluation``. The data are the same for every seed (the build of ``--data-seed``); only the
training seed changes, so the spread over seeds is the training's.

It writes, in ``--out`` (default ``figures/tables``):

    table-<T>-<preset>.md     the table as mean +- std over seeds, next to the paper's numbers
    table-<T>-<preset>.csv    the same, one row per variant
    table-<T>-<preset>.json   every number of every seed, the command and the wall time
    table-<T>-<preset>-bars.png          mAP and AD per variant with error bars (std over seeds)
    table-<T>-<preset>-pr.png            precision-recall curves per tIoU of the table's last row (seed 0)
    table-<T>-<preset>-deviations.png    keyframe deviations per keyframe, per variant (all seeds)

**Resumable.** Each (row, seed) keeps its training run in ``data/cache/runs/`` and its scores in
``data/cache/reproduce/``; running the same command again skips what is finished and resumes a killed
training run. ``--workers 2`` trains two runs at once, one thread each (on a 2-core CPU about twice the
throughput of one run on two threads).

**Protocol.** The paper's tables report mAP over the top-1 segment per class and video (``paper``); the
JSON also holds the ActivityNet protocol over all detections (``all``). AD is in frames, with xcalab's
correct frame convention; the reference's 2-frame-shifted AD is in the JSON as ``ad_paper``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xcalab.config import PRESETS, REPO_ROOT, Config, get_preset
from xcalab.data.io import atomic_path
from xcalab.metrics import PAPER_TIOUS

# --------------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a table: a variant and what else differs from the preset.

    label       the row's name in the table
    variant     a name of ``xcalab.pipeline.VARIANTS``
    source      feature source ("learned" SVS-Net; "frangi" stands in for the paper's I3D row)
    stride      feature stride (None: the preset's)
    setting     problem setting (0, 1, 2)
    patch       Table VII: None trains; k >= 1 re-evaluates the row-0 model with another PCon patch draw
    readout     None: the detector's keyframes. "phases": keyframes read off the per-step phases of the
                variant's phase recogniser (``keyframes_from_phases``; the same trained model as the
                variant's own row); "majority": off a constant phase, the training split's most frequent
                (nothing is trained)
    better_of   variants of earlier rows: the row becomes ``variant`` + the module ("+GAF", "+TSA") of the
                one with the higher mean mAP, decided once those rows are done
    """

    label: str
    variant: str
    source: str = "learned"
    stride: int | None = None
    setting: int = 0
    patch: int | None = None
    readout: str | None = None
    better_of: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.readout not in (None, "phases", "majority"):
            raise ValueError(f'readout must be None, "phases" or "majority", got {self.readout!r}')

    @property
    def later(self) -> bool:
        """Does the row wait for other rows (their models or their scores)?"""
        return self.patch is not None or self.readout is not None or bool(self.better_of)

    def key(self) -> str:
        from xcalab.pipeline import variant_slug

        parts = [variant_slug(self.variant)]
        if self.source != "learned":
            parts.append(self.source)
        if self.stride is not None:
            parts.append(f"s{self.stride}")
        if self.setting:
            parts.append(f"setting{self.setting}")
        if self.patch is not None:
            parts.append(f"patch{self.patch}")
        if self.readout is not None:
            parts.append(self.readout)
        if self.better_of:
            parts.append("better")
        return "-".join(parts)


def resolve_better(row: Row, mean_map: dict[str, float]) -> Row:
    """A ``better_of`` row made concrete: ``row.variant`` + the module of the variant with the highest mean
    mAP in ``mean_map`` (variant -> mean mAP over seeds; on a tie the first listed)."""
    if not row.better_of:
        return row
    from xcalab.pipeline import check_variant

    if any("+" not in v for v in row.better_of):
        raise ValueError(f"row {row.label!r}: every better_of variant must be a detector + a module, got {row.better_of}")
    missing = [v for v in row.better_of if v not in mean_map]
    if missing:
        raise ValueError(f"row {row.label!r} needs the scores of {', '.join(missing)} first")
    best = max(row.better_of, key=lambda v: (mean_map[v], -row.better_of.index(v)))
    module = best.split("+", 1)[1]
    variant = f"{row.variant}+{module}"
    check_variant(variant)
    return replace(row, label=f"{row.variant} + {module} (the better module)", variant=variant, better_of=())


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    keyframes_only: bool = False  # Table VIII reports P/R/F and AD only
    pr_row: int = -1  # the row whose precision-recall curves are drawn (seed 0)


_AF = "ActionFormer"
_OURS = "STA-IPCon"
TABLES: dict[str, Table] = {
    "II": Table("II", "STA-IPCon vs the ActionFormer baseline (AP and mAP)", (
        Row("ActionFormer [6]", _AF), Row("Ours (STA-IPCon)", _OURS)),
        notes=("The paper's Table II also lists AFSD, TALLFormer and E2E-TAD: separate code bases, out of scope "
               "for xcalab.", "The paper's Table II has no AD column; the bracketed AD values are the same models' "
               "rows of its Tables IV and V.")),
    "IV": Table("IV", "Ablation of the spatiotemporal attention module", tuple(
        Row(name, name) for name in ("Baseline w/o S-T", "TA w/o S-T", "SA w/o S-T", "STA w/o S-T")) + (
        Row("Baseline [6]", _AF), Row("TA", "TA"), Row("SA", "SA"), Row("STA", "STA"))),
    "V": Table("V", "Ablation of the image-to-patch contrastive module", (
        Row("STA", "STA"), Row("STA+ICon", "STA+ICon"), Row("STA+PCon", "STA+PCon"), Row("STA+IPCon", _OURS))),
    "VI": Table("VI", "Feature extraction strategies", (
        Row("Baseline, SVS-Net", _AF), Row("Baseline, Frangi", _AF, source="frangi"),
        Row("Ours (stride = 1)", _OURS, stride=1), Row("Ours (stride = 2)", _OURS, stride=2),
        Row("Ours (stride = 4)", _OURS, stride=4)),
        notes=("The paper's second row uses I3D features. I3D needs Kinetics-pretrained weights (a download) "
               "and destroys the 64 x 64 spatial layout the long-term attention needs; xcalab's stand-in is the "
               "classical Frangi vesselness on the same grid.",)),
    "VII": Table("VII", "Different random patches of PCon (the same trained models)", (
        Row("Ours", _OURS), Row("Ours (other patch 1)", _OURS, patch=1), Row("Ours (other patch 2)", _OURS, patch=2))),
    "VIII": Table("VIII", "Problem settings", (
        Row("Ours", _OURS), Row("Ours (setting-1)", _OURS, setting=1), Row("Ours (setting-2)", _OURS, setting=2)),
        notes=("The paper's rows with multiple boundary regression (MBR) are not reproduced: neither the paper "
               "nor the reference code defines MBR (the released code regresses one boundary pair per point), "
               "so there is nothing to implement faithfully.",),
        keyframes_only=True),
    # Not a table of the seed paper: the other three seed papers' modules against STA-IPCon (issue 14).
    "seeds": Table("seeds", "The four seed papers' attention modules side by side", (
        Row("ActionFormer", _AF), Row("STA-IPCon", _OURS),
        Row("ActionFormer + GAF", "ActionFormer+GAF"), Row("ActionFormer + TSA+TPP", "ActionFormer+TSA"),
        Row("STA-IPCon + the better module", _OURS, better_of=("ActionFormer+GAF", "ActionFormer+TSA")),
        Row("Phase attention", "Phase attention"),
        Row("Keyframes from the recogniser's phase changes", "Phase attention", readout="phases"),
        Row("Majority phase", "Phase attention", readout="majority")),
        notes=("Phase attention: the phase recogniser (seed paper 004's class-peak sparse attention, on each "
               "step's 64 x 64 map) gates the features with its discriminative attention and adds its five phase "
               "probabilities to the embedding's input; it trains jointly with the detector on the training "
               "cines, so no phase probability comes from a model that saw the cine's labels otherwise.",
               "The two baselines read keyframes straight off per-step phases (xcalab.data.phases."
               "keyframes_from_phases): those of the phase-attention row's recogniser (the same trained "
               "models), and a constant phase, the training split's most frequent, which needs no training.",
               "STA-IPCon + the better module adds whichever of GAF and TSA+TPP has the higher mean mAP on "
               "the plain detector in this table."),
        pr_row=4),
}

#: The seed paper's numbers (AP@0.3..0.7 and mAP in %, P, R, F, AD in frames), for the side-by-side columns.
PAPER: dict[str, dict[str, list[float]]] = {
    "II": {"ActionFormer [6]": [90.85, 85.25, 70.45, 52.56, 32.62, 66.35, 5.46],
           "Ours (STA-IPCon)": [98.44, 92.93, 80.91, 53.85, 36.10, 72.45, 4.71]},
    "IV": {"Baseline w/o S-T": [82.35, 60.79, 37.00, 17.14, 6.95, 40.84, 0.7189, 0.7387, 0.6893, 11.14],
           "TA w/o S-T": [79.15, 62.45, 39.11, 17.94, 7.33, 41.20, 0.7336, 0.7508, 0.7016, 10.35],
           "SA w/o S-T": [79.36, 60.78, 37.20, 20.82, 8.88, 41.41, 0.7491, 0.7707, 0.7167, 9.83],
           "STA w/o S-T": [77.39, 65.81, 42.18, 22.22, 8.11, 43.14, 0.7218, 0.7523, 0.6936, 10.54],
           "Baseline [6]": [90.85, 85.25, 70.45, 52.56, 32.62, 66.35, 0.8096, 0.8356, 0.8013, 5.46],
           "TA": [90.48, 87.43, 70.17, 50.74, 37.35, 67.23, 0.7974, 0.8279, 0.7951, 5.81],
           "SA": [91.64, 90.76, 74.35, 54.21, 35.62, 69.31, 0.8136, 0.8393, 0.8092, 5.30],
           "STA": [92.60, 89.42, 75.23, 57.94, 35.86, 70.21, 0.8177, 0.8422, 0.8115, 5.16]},
    "V": {"STA": [92.60, 89.42, 75.23, 57.94, 35.86, 70.21, 0.8177, 0.8422, 0.8115, 5.16],
          "STA+ICon": [94.27, 91.41, 75.16, 56.67, 35.26, 70.56, 0.8195, 0.8509, 0.8161, 5.07],
          "STA+PCon": [97.34, 92.45, 80.07, 53.20, 36.40, 71.90, 0.8294, 0.8575, 0.8258, 5.14],
          "STA+IPCon": [98.44, 92.93, 80.91, 53.85, 36.10, 72.45, 0.8342, 0.8612, 0.8296, 4.71]},
    "VI": {"Baseline, SVS-Net": [90.85, 85.25, 70.45, 52.56, 32.62, 66.35, 0.8096, 0.8356, 0.8013, 5.46],
           "Baseline, Frangi": [88.79, 77.02, 62.61, 48.05, 26.27, 60.55, 0.6767, 0.6867, 0.6660, 9.26],
           "Ours (stride = 1)": [96.90, 89.27, 71.91, 51.41, 37.41, 69.38, 0.8216, 0.8515, 0.8167, 5.13],
           "Ours (stride = 2)": [96.63, 91.25, 72.90, 54.78, 35.94, 70.30, 0.8222, 0.8564, 0.8195, 5.10],
           "Ours (stride = 4)": [98.44, 92.93, 80.91, 53.85, 36.10, 72.45, 0.8342, 0.8612, 0.8296, 4.71]},
    "VII": {"Ours": [98.44, 92.93, 80.91, 53.85, 36.10, 72.45, 0.8342, 0.8612, 0.8296, 4.71],
            "Ours (other patch 1)": [98.44, 92.93, 80.64, 53.71, 35.10, 72.16, 0.8349, 0.8619, 0.8303, 4.71],
            "Ours (other patch 2)": [98.44, 91.67, 81.95, 53.25, 35.97, 72.25, 0.8352, 0.8629, 0.8313, 4.70]},
    "VIII": {"Ours": [0.8342, 0.8612, 0.8296, 4.71], "Ours (setting-1)": [0.8104, 0.8419, 0.8061, 5.59],
             "Ours (setting-2)": [0.5808, 0.5551, 0.5563, 10.31]},
}


# --------------------------------------------------------------------------------------------------
# One (row, seed): train, predict, score
# --------------------------------------------------------------------------------------------------


def row_config(cfg: Config, row: Row, seed: int) -> Config:
    """The training configuration of a row: the preset with the row's stride, setting and the seed."""
    from xcalab.pipeline import variant_config

    features = cfg.features if row.stride is None else replace(cfg.features, stride=row.stride)
    return variant_config(cfg.replace(seed=seed, setting=row.setting, features=features), row.variant)


def cache_dir(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "reproduce" / cfg.name


def run_one(cfg: Config, row: Row, seed: int, data_seed: int = 0, threads: int | None = None,
            progress: bool = False) -> dict[str, Any]:
    """Train (or load) the row's model for one seed and score it on the test split; cached.

    Returns {"paper": metrics of the top-1 protocol, "all": metrics over all detections, "seconds": ...}
    (metrics as ``xcalab.evaluation`` writes them).
    """
    import torch

    from xcalab.evaluation import evaluate_files, write_predictions
    from xcalab.inference import predict, predict_phases
    from xcalab.models.sparse_spatial_attention import majority_phase
    from xcalab.pipeline import load_or_train_detector, prepare_features

    if threads:
        torch.set_num_threads(threads)
    if row.better_of:
        raise ValueError(f"row {row.label!r} is not resolved yet (resolve_better)")
    base = replace(row, patch=None, readout=None)  # Table VII and the readouts reuse the variant's model
    tcfg = row_config(cfg, base, seed)
    trained_with = tcfg.training_identity() if row.readout != "majority" else "nothing (a constant phase)"
    out = cache_dir(cfg) / f"{row.key()}-data{data_seed}-seed{seed}"
    done = out / "scores.json"
    if done.is_file():
        scores = json.loads(done.read_text())
        if scores.get("trained_with") == trained_with:  # else the preset changed since: score again
            return scores
    started = time.perf_counter()
    data_cfg = cfg.replace(seed=data_seed, setting=row.setting)
    data = prepare_features(data_cfg, source=row.source, stride=row.stride, workers=1, progress=progress)
    # The preset's own model (learned features, its stride, setting 0, data seed 0) is the one
    # load_or_train_detector caches (or ships): share its run; every other row gets its own folder.
    default = (row.source == "learned" and row.stride in (None, cfg.features.stride) and row.setting == 0
               and data_seed == 0)
    run_dir = None if default else Path(cfg.data_dir) / "runs" / f"{cfg.name}-{base.key()}-data{data_seed}-seed{seed}"
    test = data.dataset("test")
    trained = None
    if row.readout == "majority":
        train = data.dataset("train")
        predictions = phase_predictions(test, majority_phase([train.video(i).phases for i in range(len(train))]),
                                        row.setting)
    else:
        trained = load_or_train_detector(tcfg, row.variant, data, progress=progress, run_dir=run_dir)
        if row.readout == "phases":
            predictions = phase_predictions(test, predict_phases(trained.model, test), row.setting)
        else:
            # The PCon patch of a prediction is drawn from (cfg.seed, the video ids): another seed, another patch.
            eval_cfg = trained.cfg if row.patch is None else trained.cfg.replace(seed=trained.cfg.seed + 1000 * row.patch)
            predictions = predict(trained.model, test, eval_cfg)
    out.mkdir(parents=True, exist_ok=True)
    pred_path = write_predictions(out / "predictions.json", predictions)
    scores = {
        protocol: evaluate_files(pred_path, data.annotations_path, out / protocol, subset="test", protocol=protocol,
                                 setting=row.setting, window=cfg.features.window)
        for protocol in ("paper", "all")
    }
    # Per-video keyframe deviations (predicted - true, frames), for the histograms.
    scores["deviations"] = {
        p.video_id: (np.asarray(p.frame_indices("nearest"), float) - np.asarray(data.annotations[p.video_id].keyframes,
                                                                                 float)).tolist()
        for p in predictions if p.keyframes is not None and data.annotations[p.video_id].keyframes
    }
    scores["seconds"] = time.perf_counter() - started
    scores["train_epochs"] = len(trained.history) if trained else 0
    scores["trained_with"] = trained_with
    scores["origin"] = trained.origin if trained else "none"
    with atomic_path(done) as tmp:
        tmp.write_text(json.dumps(scores, indent=1, default=str))
    return scores


def phase_predictions(dataset, phases, setting: int = 0) -> list:
    """One prediction per video of ``dataset`` from per-step phases: keyframes read off the phase changes
    (``keyframes_from_phases``), the two actions made from them with score 1.

    phases  one (T,) int array per video (a recogniser's), or one int: the same phase at every step
    """
    from xcalab.data.phases import keyframes_from_phases
    from xcalab.postprocess import prediction_from_keyframes

    predictions = []
    for i in range(len(dataset)):
        video = dataset.video(i)
        n_steps = video.features.shape[1]
        steps = np.full(n_steps, phases) if isinstance(phases, (int, np.integer)) else np.asarray(phases[i])
        if len(steps) != n_steps:
            raise ValueError(f"{video.video_id}: {len(steps)} phases for {n_steps} feature steps")
        keyframes = keyframes_from_phases(steps, round(video.duration * video.fps), dataset.grid)
        predictions.append(prediction_from_keyframes(video.video_id, keyframes, video.fps, setting))
    return predictions


def _run_job(args: tuple) -> tuple[str, int, dict[str, Any]]:
    """Worker entry (top level: spawn-safe)."""
    cfg, row, seed, data_seed = args
    return row.key(), seed, run_one(cfg, row, seed, data_seed, threads=1)


# --------------------------------------------------------------------------------------------------
# Aggregation: mean +- std over seeds
# --------------------------------------------------------------------------------------------------

#: Columns: AP per tIoU and mAP in %, P/R/F (the paper's macro convention), AD in frames.
def _values(metrics: dict[str, Any], tious: list[float]) -> dict[str, float | None]:
    ap = metrics["map_per_tiou"]
    values = {f"AP@{t:g}": 100 * a for t, a in zip(tious, ap)}
    values["mAP"] = 100 * metrics["mAP"]
    prf = (metrics.get("prf") or {}).get("paper") or {}
    for k in ("precision", "recall", "f1"):
        values[k[0].upper()] = prf.get(k)
    values["AD"] = metrics.get("ad")
    values["AD (reference)"] = metrics.get("ad_paper")
    return values


def summarise(table_rows: list[Row], per_row: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One record per row: the label, per-seed values, mean and std (ddof 1; 0 with one seed)."""
    rows = []
    for row in table_rows:
        runs = per_row[row.key()]
        tious = runs[0]["paper"]["tiou"]
        values = [_values(r["paper"], tious) for r in runs]
        mean, std = {}, {}
        for col in values[0]:
            xs = np.array([v[col] for v in values if v[col] is not None], dtype=float)
            mean[col] = float(xs.mean()) if xs.size else None
            std[col] = float(xs.std(ddof=1)) if xs.size > 1 else 0.0 if xs.size else None
        rows.append({"label": row.label, "variant": row.variant, "key": row.key(), "per_seed": values,
                     "mean": mean, "std": std,
                     "map_all": [100 * r["all"]["mAP"] for r in runs],
                     "n_missing": [r["paper"].get("n_missing") for r in runs],
                     "seconds": [r["seconds"] for r in runs]})
    return rows


def heading(table: Table) -> str:
    """"Table IV" for a table of the seed paper; the title for xcalab's own ("seeds")."""
    return f"Table {table.name}" if table.name in PAPER else table.title


def _fmt(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _columns(table: Table, tious: list[float]) -> list[tuple[str, int]]:
    cols = [] if table.keyframes_only else [(f"AP@{t:g}", 2) for t in tious] + [("mAP", 2)]
    cols += [("AD", 2)] if table.name == "II" else [("P", 4), ("R", 4), ("F", 4), ("AD", 2)]
    return cols


def markdown(table: Table, rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The table: xcalab's mean ± std over seeds, then the paper's value of the same cell in brackets."""
    paper_cols = [c for c, _ in _columns(table, info["tious"])]  # what the paper's numbers are
    # Shown: the paper's columns, and after AD the same deviation with the reference's 2-frame shift: the
    # paper measured its AD that way, so its bracketed AD sits there.
    cols = [(c, d) for c, d in _columns(table, info["tious"])] + [("AD (reference)", 2)]
    paper = PAPER.get(table.name, {})
    lines = [
        (f"### Table {table.name} on XCA-Synth `{info['preset']}`: {table.title}" if table.name in PAPER
         else f"### {table.title}, on XCA-Synth `{info['preset']}`"),
        "",
        f"mean ± std over training seeds {info['seeds']} (data seed {info['data_seed']}); test split, "
        f"{info['n_test']} cines; mAP with the paper's protocol (top-1 segment per class); AD in frames "
        "(xcalab's frame convention; \"AD (reference)\": the reference code's, 2 frames shifted, as the paper "
        "measured it)." + (" [brackets]: the paper's value on its clinical data." if paper else ""),
        "",
        "| Method | " + " | ".join(c for c, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for r in rows:
        theirs = dict(zip(paper_cols, paper.get(r["label"], [])))
        theirs["AD (reference)"] = theirs.pop("AD", None)
        cells = []
        for col, digits in cols:
            cell = _fmt(r["mean"][col], r["std"][col], digits)
            if theirs.get(col) is not None:
                cell += f" [{theirs[col]:.{digits}f}]"
            cells.append(cell)
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    run_minutes = sum(sum(r["seconds"]) for r in rows) / 60
    lines += ["", f"Command: `{info['command']}` — {sum(len(r['seconds']) for r in rows)} runs, "
              f"{run_minutes:.1f} min of training and scoring summed over runs (a run shared with another table "
              f"is counted in both); this invocation: {info['wall_seconds'] / 60:.1f} min wall on {info['machine']}."]
    lines += [f"Note: {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def csv_text(table: Table, rows: list[dict[str, Any]], tious: list[float]) -> str:
    cols = [c for c, _ in _columns(table, tious)] + ["AD (reference)"]
    out = ["method," + ",".join(f"{c} mean,{c} std" for c in cols)]
    for r in rows:
        cells = [f"{r['mean'][c]:.6g},{r['std'][c]:.6g}" if r["mean"][c] is not None else "," for c in cols]
        out.append(f"\"{r['label']}\"," + ",".join(cells))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def reproduce(
    table_name: str,
    preset: str = "teach",
    seeds: int = 3,
    out_dir: str | Path = REPO_ROOT / "figures" / "tables",
    workers: int = 1,
    data_seed: int = 0,
    data_dir: str | Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Reproduce one table (see the module docstring); returns the JSON record it writes."""
    from tqdm.auto import tqdm

    from xcalab.pipeline import prepare_features
    from xcalab.viz.evaluation import plot_deviation_histograms, plot_precision_recall, plot_table_bars
    from xcalab.viz.save import save_figure

    if table_name not in TABLES:
        raise ValueError(f"unknown table {table_name!r}; choose one of {', '.join(TABLES)}")
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    table = TABLES[table_name]
    cfg = get_preset(preset) if data_dir is None else get_preset(preset, data_dir=Path(data_dir))
    started = time.perf_counter()
    # The data first, in this process (simulation in parallel), so workers only train.
    for source, stride, setting in sorted({(r.source, r.stride, r.setting) for r in table.rows}, key=str):
        prepare_features(cfg.replace(seed=data_seed, setting=setting), source=source, stride=stride,
                         workers=max(workers, 1), progress=progress)

    # Two rounds: the rows that train first; then the rows that reuse their models (Table VII's other
    # patches, the phase readouts) or their scores (a ``better_of`` row, resolved here).
    results: dict[str, dict[int, dict[str, Any]]] = {}
    bar = tqdm(total=len(table.rows) * seeds, desc=f"Table {table.name} ({preset})", unit="run", disable=not progress)

    def run_all(batch: list[Row]) -> None:
        jobs = [(cfg, row, seed, data_seed) for row in batch for seed in range(seeds)]
        if workers > 1 and len(jobs) > 1:
            import multiprocessing

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for future in as_completed([pool.submit(_run_job, j) for j in jobs]):
                    key, seed, scores = future.result()
                    results.setdefault(key, {})[seed] = scores
                    bar.update(1)
        else:
            for j in jobs:
                results.setdefault(j[1].key(), {})[j[2]] = run_one(*j, progress=False)
                bar.update(1)

    run_all([r for r in table.rows if not r.later])
    mean_map = {r.variant: float(np.mean([100 * results[r.key()][s]["paper"]["mAP"] for s in range(seeds)]))
                for r in table.rows if not r.later}
    table_rows = [resolve_better(r, mean_map) for r in table.rows]
    run_all([r for r in table_rows if r.key() not in results])
    bar.close()

    per_row = {k: [v[s] for s in sorted(v)] for k, v in results.items()}
    rows = summarise(table_rows, per_row)
    n_test = len(prepare_features(cfg.replace(seed=data_seed), subsets=("test",), progress=False).video_ids("test"))
    import platform

    info = {
        "table": table.name, "title": table.title, "preset": preset, "seeds": list(range(seeds)),
        "data_seed": data_seed, "protocol": "paper", "tious": list(PAPER_TIOUS), "n_test": n_test,
        "command": command or f"xcalab reproduce --table {table.name} --preset {preset} --seeds {seeds}",
        "wall_seconds": time.perf_counter() - started,
        "machine": f"{platform.machine()} CPU, {__import__('os').cpu_count()} cores, {workers} worker(s)",
        "notes": list(table.notes),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"table-{table.name}-{preset}"
    record = {**info, "rows": rows, "paper": PAPER.get(table.name, {})}
    with atomic_path(out_dir / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    with atomic_path(out_dir / f"{stem}.md") as tmp:
        tmp.write_text(markdown(table, rows, info))
    with atomic_path(out_dir / f"{stem}.csv") as tmp:
        tmp.write_text(csv_text(table, rows, info["tious"]))

    # Figures: bars of every row; PR curves and deviations from the cached predictions.
    import matplotlib.pyplot as plt

    def save(fig, name):  # and close: a notebook calling reproduce() should not show them twice
        save_figure(fig, name, out_dir)
        plt.close(fig)

    save(plot_table_bars(rows, title=f"{heading(table)} on XCA-Synth {preset}"), f"{stem}-bars")
    shown = table_rows[table.pr_row]
    run0 = cache_dir(cfg) / f"{shown.key()}-data{data_seed}-seed0"
    annotations = prepare_features(cfg.replace(seed=data_seed, setting=shown.setting), subsets=("test",),
                                   stride=shown.stride, source=shown.source, progress=False).annotations_path
    save(plot_precision_recall(run0 / "predictions.json", annotations, info["tious"], title=shown.label), f"{stem}-pr")
    deviations = {r.label: [d for s in range(seeds) for d in results[r.key()][s]["deviations"].values()]
                  for r in table_rows}
    save(plot_deviation_histograms(deviations), f"{stem}-deviations")
    return record


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xcalab reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, choices=list(TABLES), help="which table of the seed paper")
    p.add_argument("--preset", choices=PRESETS, default="teach", help="sizes and training (default teach)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    p.add_argument("--workers", type=int, default=1, help="runs trained at once, one thread each")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the XCA-Synth build (default 0)")
    p.add_argument("--data-dir", default=None, help="cache folder (default data/cache)")
    p.add_argument("--out", default=str(REPO_ROOT / "figures" / "tables"), help="where tables and figures go")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "xcalab reproduce " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.seeds < 1:
        print("xcalab reproduce: --seeds must be >= 1", file=sys.stderr)
        return 2
    record = reproduce(args.table, args.preset, args.seeds, args.out, args.workers, args.data_seed, args.data_dir,
                       progress=not args.no_progress, command=command)
    stem = Path(args.out) / f"table-{args.table}-{args.preset}"
    print(Path(f"{stem}.md").read_text())
    print(f"wrote {stem}.md/.csv/.json and 3 figures in {record['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
