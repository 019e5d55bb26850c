"""The ``xcalab`` command.

    xcalab simulate --preset {smoke,teach,paper} --seed N [--out DIR] [--workers K] [--dicom]
    xcalab features train [--size small] [--seed N] [--export PATH]     train the SVS-Net vessel extractor
    xcalab features extract INPUT... --out DIR [--source learned|frangi|raw|oracle] [--stride S] [--fps F]
    xcalab train --preset {smoke,teach,paper} --features DIR --annotations JSON --out DIR [--config JSON] [--resume]
                                       (multi-process: torchrun --nproc_per_node N -m xcalab.cli train ...)
    xcalab evaluate --predictions PRED.json --annotations GT.json --out DIR   (or --checkpoint CKPT --features DIR)
    xcalab reproduce --table {II,IV,V,VI,VII,VIII} [--preset teach] [--seeds 3]
    xcalab notebooks [--preset teach] [--smoke] [--jobs 2] [--prepare-only] [--out DIR] [--fig-dir DIR] [--record-times] [NAME ...]
    xcalab locate CINE... [--out DIR] [--fps F] [--weights W.pt]   keyframes of your own cines
    xcalab train-locate [--seed N] [--workers K]          train + calibrate locate's detector (XCA-Synth mix)
    xcalab ship-detector VARIANT... [--preset teach] [--seed 0]   train (or reuse) and ship float16 detectors
    xcalab inspect PATH [--fps F]      read a cine (DICOM XA, frame folder, .npy) and describe it

``xcalab COMMAND --help`` shows a command's options.

Each sub-command is a thin wrapper over a package function, so everything it does can be done from
a notebook too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from xcalab.config import PRESETS, REPO_ROOT
from xcalab.errors import XcalabInputError


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from xcalab.config import get_preset
    from xcalab.notebook import execute_notebooks, list_notebooks, prepare_shared

    if args.record_times and not args.smoke and args.preset not in ("teach", "smoke"):
        print("xcalab notebooks: --record-times records teach or smoke runs only", file=sys.stderr)
        return 2
    if args.record_times and args.jobs != 1:
        print("xcalab notebooks: --record-times needs --jobs 1 (side by side, each notebook takes longer)",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"xcalab notebooks: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    notebooks = list_notebooks()
    if args.names:
        notebooks = [p for p in notebooks if any(p.name.startswith(n) for n in args.names)]
    if not notebooks:
        print("no notebook matches", " ".join(args.names), file=sys.stderr)
        return 2
    out, fig_dir = Path(args.out).resolve(), Path(args.fig_dir).resolve()
    params = {"PRESET": args.preset, "SMOKE": args.smoke, "SEED": args.seed, "FIG_DIR": str(fig_dir)}
    start = time.perf_counter()
    cfg = get_preset("smoke" if args.smoke else args.preset, seed=args.seed)
    print(f"Preparing what the notebooks share ({cfg.name}): features, shared detectors, the example cine")
    prepare_shared(cfg, progress=True)
    print(f"  ready in {time.perf_counter() - start:.0f} s")
    if args.prepare_only:
        return 0
    timings = execute_notebooks(notebooks, out, params, jobs=args.jobs)
    print(f"\nExecuted {len(timings)} notebooks in {time.perf_counter() - start:.0f} s "
          f"({args.jobs} at a time, preparation included):")
    for name, seconds in timings:
        print(f"  {seconds:7.1f} s  {out / name}")
    if args.record_times:
        import os
        import platform

        from xcalab.notebook import TIMES_PATH, record_times, write_times

        machine = f"{platform.machine()} CPU, {os.cpu_count()} cores"
        record = record_times(dict(timings), "smoke" if args.smoke or args.preset == "smoke" else args.preset, machine)
        changed = write_times(record)
        print(f"Times recorded in {TIMES_PATH}; updated: {', '.join(changed) or 'nothing (the same numbers)'}")
    figures = sorted(fig_dir.glob("*.png"))
    print(f"Figures: {len(figures)} PNG files in {fig_dir}")
    print("Open them in JupyterLab with `make lab`.")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from xcalab.data.io import read_sequence

    seq = read_sequence(args.path, fps=args.fps)
    print(seq)
    print(f"  duration {seq.duration:.2f} s, grey levels {np.percentile(seq.frames, [1, 50, 99]).round(3).tolist()} (1/50/99 %)")
    for key, value in sorted(seq.meta.items()):
        if isinstance(value, list) and len(value) > 6:  # e.g. the file list of a frame folder
            value = f"[{', '.join(map(str, value[:3]))}, ... {len(value)} items]"
        print(f"  {key}: {value}")
    return 0


def _cmd_ship_detector(args: argparse.Namespace) -> int:
    import shlex

    from xcalab.config import get_preset
    from xcalab.pipeline import check_variant, prepare_features, ship_detector

    try:
        for variant in args.variants:
            check_variant(variant)
    except ValueError as err:
        print(f"xcalab ship-detector: {err}", file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    changes = {"seed": args.seed} if args.data_dir is None else {"seed": args.seed, "data_dir": Path(args.data_dir)}
    cfg = get_preset(args.preset, **changes)
    command = " ".join(["xcalab ship-detector", *map(shlex.quote, args.variants), f"--preset {args.preset}",
                        f"--seed {args.seed}"])
    data = prepare_features(cfg, progress=not args.no_progress)
    for variant in args.variants:
        start = time.perf_counter()
        path = ship_detector(cfg, variant, args.weights_dir, data, command, progress=not args.no_progress)
        print(f"{variant}: {path} ({time.perf_counter() - start:.0f} s)")
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``xcalab train``."""
    parser.add_argument("--preset", choices=PRESETS, default="teach", help="sizes and hyper-parameters")
    parser.add_argument("--config", default=None, help='JSON overrides, e.g. {"train": {"epochs": 3}}')
    parser.add_argument("--features", required=True, help="folder of <video_id>.npy feature files (T, 4096)")
    parser.add_argument("--annotations", required=True, help="ActivityNet-1.3 JSON (train + validation videos)")
    parser.add_argument("--out", required=True, help="folder for config, logs and checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    parser.add_argument("--device", default=None, help='"auto" (CUDA if present), "cpu" or "cuda"')
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _run_train(args: argparse.Namespace) -> int:
    """Run ``xcalab train`` from parsed arguments; returns the exit code."""
    import os

    from xcalab.config import apply_overrides, get_preset, load_overrides
    from xcalab.train.loop import train

    cfg = get_preset(args.preset)
    if args.config:
        cfg = apply_overrides(cfg, load_overrides(args.config), where=args.config)
    if args.seed is not None:
        cfg = cfg.replace(seed=args.seed)
    if args.device is not None:
        cfg = cfg.replace(device=args.device)
    result = train(cfg, args.features, args.annotations, args.out, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        score = "n/a" if result.best_score is None else f"{100 * result.best_score:.2f} %"
        print(f"trained {len(result.history)} epochs on {result.world_size} process(es); "
              f"best epoch {result.best_epoch} (validation average mAP {score})")
        print(f"  weights: {result.best_checkpoint}\n  resume:  {result.checkpoint}")
    return 0


def train_command(argv: list[str]) -> int:
    """``xcalab train --preset P [--config overrides.json] --features DIR --annotations JSON --out DIR
    [--resume] [--seed N] [--device auto]``; under ``torchrun`` every process runs it."""
    parser = _train_arguments(argparse.ArgumentParser(prog="xcalab train", description="Train the keyframe detector."))
    args = parser.parse_args(argv)
    try:
        return _run_train(args)
    except XcalabInputError as err:
        print(f"xcalab: {err}", file=sys.stderr)
        return 2


#: Commands whose options live with the code they run: ``xcalab NAME ARGS`` calls ``module.main(ARGS)``.
FORWARDED = {
    "simulate": ("xcalab.data.synth.benchmark", "build the XCA-Synth benchmark of a preset (resumable, parallel)"),
    "features train": ("xcalab.features.train", "train the SVS-Net vessel extractor on XCA-Synth (resumable)"),
    "features extract": ("xcalab.features.extract", "turn cines into (T, 4096) vessel-feature arrays"),
    "evaluate": ("xcalab.evaluation", "score ActivityNet predictions (or a checkpoint) against annotations"),
    "reproduce": ("xcalab.reproduce", "train and evaluate the variants of one of the paper's tables on XCA-Synth"),
    "locate": ("xcalab.locate", "start, apex and end of your own cines, with a confidence and a summary figure"),
    "train-locate": ("xcalab.locate_training", "train, calibrate and measure the detector behind xcalab locate"),
}


def _forwarded(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, remaining args) when argv starts with a forwarded command of one or two words."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in FORWARDED:
            return FORWARDED[name][0], argv[words:]
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcalab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("simulate", help=FORWARDED["simulate"][1], add_help=False)
    sub.add_parser("train", help="train the keyframe detector (resumable; DDP under torchrun)", add_help=False)
    sub.add_parser("evaluate", help=FORWARDED["evaluate"][1], add_help=False)
    sub.add_parser("reproduce", help=FORWARDED["reproduce"][1], add_help=False)
    sub.add_parser("locate", help=FORWARDED["locate"][1], add_help=False)
    sub.add_parser("train-locate", help=FORWARDED["train-locate"][1], add_help=False)
    sub.add_parser("features", help="train the vessel extractor, or extract (T, 4096) features (train | extract)",
                   add_help=False)

    p = sub.add_parser("notebooks", help="execute the numbered notebooks with papermill")
    p.add_argument("names", nargs="*", help="notebook name prefixes (e.g. 00 01); default: all")
    p.add_argument("--preset", choices=PRESETS, default="teach")
    p.add_argument("--smoke", action="store_true", help="smoke sizes (what CI runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "notebooks"))
    p.add_argument("--fig-dir", default=str(REPO_ROOT / "figures"))
    p.add_argument("--record-times", action="store_true",
                   help="write the measured times to docs/notebook-times.json, README's table and the title cells "
                        "(teach or smoke runs only, one at a time)")
    p.add_argument("--jobs", type=int, default=1,
                   help="notebooks run side by side (each kernel gets cores / jobs threads); default 1")
    p.add_argument("--prepare-only", action="store_true",
                   help="only build what the notebooks share (features, shared detectors, the example cine)")
    p.set_defaults(func=_cmd_notebooks)

    p = sub.add_parser("ship-detector", help="train (or reuse the cached run of) detector variants and write them "
                       "to data/weights/: float16 weights with their history and test scores")
    p.add_argument("variants", nargs="+", metavar="VARIANT",
                   help='names of xcalab.pipeline.VARIANTS, e.g. TA SA STA (quote names with spaces)')
    p.add_argument("--preset", choices=PRESETS, default="teach")
    p.add_argument("--seed", type=int, default=0, help="the preset's seed (data, model, training)")
    p.add_argument("--data-dir", default=None, help="where the cines, features and runs are cached "
                   "(default: data/cache/)")
    p.add_argument("--weights-dir", default=None, help="where the files go (default: data/weights/, where "
                   "notebooks and load_or_train_detector look first)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_ship_detector)

    p = sub.add_parser("inspect", help="read a cine and describe it")
    p.add_argument("path", help="DICOM XA file, folder of frames, or .npy")
    p.add_argument("--fps", type=float, default=None, help="frame rate, when the file does not carry one")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["train"]:
            return train_command(argv[1:])
        if (target := _forwarded(argv)) is not None:
            module, rest = target
            return importlib.import_module(module).main(rest)
        if argv[:1] == ["features"]:
            print("usage: xcalab features {train,extract} ... (see `xcalab features train --help`)", file=sys.stderr)
            return 2
        args = build_parser().parse_args(argv)
        return args.func(args)
    except XcalabInputError as err:
        print(f"xcalab: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
