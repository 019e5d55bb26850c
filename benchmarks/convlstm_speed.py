"""How fast is the ConvLSTM's long-term attention, alone and inside the paper-size detector? Optionally beside
another xcalab (a checkout or a commit), in the same run.

    .venv/bin/python benchmarks/convlstm_speed.py [--threads 2] [--against 34e96ea] [--rounds 2]
        [--parts long_term detector] [--infer-lengths 128 512] [--train-lengths 64 128 256 512]

For the ``paper`` configuration, on random (T, 4096) inputs, it times

- inference, batch 1, T = 128 and 512: the forward pass (``torch.inference_mode``, eval mode) and, for the
  detector, the post-processing (Soft-NMS, top-1, keyframes) separately;
- one training step, batch 2, T = 64, 128, 256 and 512 (train mode). ``long_term``: the long-term
  attention's forward and backward (loss: the mean square of its gated features plus the mean of its
  residual). ``detector``: what ``xcalab.train`` does per step (forward with L_con, assignment and losses,
  backward, gradient clipping, AdamW, lr schedule, EMA). The CPU time per step of T should not grow with T
  (the reference's ConvLSTM grows with T^2: 0.5 s at T = 64, 3.7 s at 128, 13.5 s at 256 for its backward).

Each measurement runs in a fresh process, so its peak memory (``ru_maxrss``, torch's own footprint
included) is its own; the time is the fastest of ``--repeats`` after one warm-up. With ``--against`` each
measurement runs for this tree and the other one alternately (``--rounds`` times each, the fastest kept),
so both see the same load, and the table gives other / this. ``--against`` takes a directory holding an
``xcalab`` package or a git commit of this repository (exported to a temporary folder with ``git archive``).
The configuration is each tree's own ``get_preset("paper")``: the defaults a user gets (ConvLSTM
checkpointing as configured).

Wall-clock times suffer when other programs share the CPU; CPU times less so, and both are printed.
Timings live here, never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _detector_step_parts():
    """(build_detector, training_loss, LossNormaliser, Distributed, optim helpers) of whichever xcalab is imported:
    the current layout, or the older one in which the training helpers sat in ``xcalab.train.engine``."""
    from xcalab.train.losses import LossNormaliser
    from xcalab.train.optim import ModelEMA, build_optimizer, build_scheduler

    try:
        from xcalab.models.detector import build_detector
        from xcalab.train.distributed import Distributed
        from xcalab.train.losses import training_loss
    except ImportError:
        from xcalab.train.engine import Distributed, build_detector, training_loss
    return build_detector, training_loss, LossNormaliser, Distributed, ModelEMA, build_optimizer, build_scheduler


def _measure(part: str, kind: str, steps: int, threads: int, repeats: int) -> dict:
    """One measurement in this process: part "long_term" or "detector", kind "train" (batch 2) or "infer" (batch 1)."""
    import torch

    torch.set_num_threads(threads)
    from xcalab.config import get_preset
    from xcalab.data.dataset import Batch

    build_detector, training_loss, LossNormaliser, Distributed, ModelEMA, build_optimizer, build_scheduler = (
        _detector_step_parts()
    )
    cfg = get_preset("paper")
    torch.manual_seed(0)
    model = build_detector(cfg)
    batch_size = 2 if kind == "train" else 1
    features = torch.rand(batch_size, cfg.features.dim, steps)
    mask = torch.ones(batch_size, steps, dtype=torch.bool)

    decode = []
    if kind == "infer":
        model.eval()
        module = model if part == "detector" else model.long_term
        from xcalab.data.annotations import FeatureGrid
        from xcalab.postprocess import decode_batch

        grid = FeatureGrid(cfg.features.stride, cfg.features.window)

        def run(i: int) -> None:
            with torch.inference_mode():
                if part == "detector":
                    out = module(features, mask, generator=torch.Generator().manual_seed(i))
                    start = time.perf_counter()  # the post-processing: Soft-NMS, top-1, keyframes
                    decode_batch(out.cls_logits, out.offsets, out.masks, model.strides, [15.0], [steps * 4 / 15.0], grid)
                    decode.append(time.perf_counter() - start)
                else:
                    module(features, mask)

    elif part == "long_term":
        model.train()
        module = model.long_term

        def run(i: int) -> None:
            out = module(features, mask)
            (out.features.square().mean() + out.residual.mean()).backward()

    else:
        apex = 0.25 * steps  # filling over ~15 % of the steps, disappearing over the next ~45 %
        segments = [torch.tensor([[0.1 * steps, apex], [apex, 0.7 * steps]])] * batch_size
        labels = [torch.tensor([0, 1])] * batch_size
        fields = (features, mask, segments, labels, ["b"] * batch_size, [15.0] * batch_size,
                  [steps * 4 / 15.0] * batch_size)
        batch = Batch(*fields)
        optimizer = build_optimizer(model, cfg.train)
        scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch=68)
        ema = ModelEMA(model, cfg.train.ema_decay)
        normaliser, ctx = LossNormaliser(100.0), Distributed()
        model.train()

        def run(i: int) -> None:
            optimizer.zero_grad(set_to_none=True)  # before the forward pass, as xcalab.train does
            out = model(features, mask, segments, labels, contrast=True, generator=torch.Generator().manual_seed(i))
            loss, _ = training_loss(out, batch, model.strides, cfg, normaliser, ctx)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
            optimizer.step()
            scheduler.step()
            ema.update(model)

    run(0)  # warm-up: first-call allocations
    wall, cpu = [], []
    for i in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run(i + 1)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    import xcalab

    if decode:  # the forward pass alone
        wall = [w - d for w, d in zip(wall, decode[1:])]
    return {"part": part, "kind": kind, "T": steps, "seconds": min(wall), "cpu_seconds": min(cpu),
            "decode_seconds": min(decode) if decode else None, "parameters": sum(p.numel() for p in model.parameters()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KB on Linux
            "xcalab": str(Path(xcalab.__file__).parent.parent)}


def _tree(target: str, scratch: Path) -> Path:
    """A folder that holds an ``xcalab`` package: ``target`` itself, or commit ``target`` exported from this repository."""
    path = Path(target)
    if (path / "xcalab" / "__init__.py").is_file():
        return path.resolve()
    out = scratch / target
    out.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", target, "xcalab"], capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"--against {target}: neither a folder with xcalab/ nor a commit of {REPO}: "
                         f"{archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue's 2-core CPU)")
    parser.add_argument("--parts", nargs="+", choices=["long_term", "detector"], default=["long_term", "detector"])
    parser.add_argument("--infer-lengths", type=int, nargs="*", default=[128, 512])
    parser.add_argument("--train-lengths", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions per process (the fastest is kept)")
    parser.add_argument("--against", help="another xcalab: a folder holding xcalab/, or a commit of this repository")
    parser.add_argument("--rounds", type=int, default=1, help="processes per measurement and tree (the fastest is kept)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("--measure", nargs=3, metavar=("PART", "KIND", "T"), help=argparse.SUPPRESS)  # child
    args = parser.parse_args(argv)

    if args.measure:  # inside a child: one measurement, printed as JSON
        part, kind, steps = args.measure
        print(json.dumps(_measure(part, kind, int(steps), args.threads, args.repeats)))
        return 0

    with tempfile.TemporaryDirectory(prefix="convlstm-speed-") as scratch:
        trees = {"this": REPO}
        if args.against:
            trees["other"] = _tree(args.against, Path(scratch))

        def child(tree: Path, part: str, kind: str, steps: int) -> dict:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
                   "PYTHONPATH": str(tree)}
            command = [sys.executable, __file__, "--measure", part, kind, str(steps),
                       "--threads", str(args.threads), "--repeats", str(args.repeats)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
            if done.returncode:
                raise SystemExit(f"measurement {part} {kind} T={steps} under {tree} failed:\n{done.stderr}")
            return json.loads(done.stdout.strip().splitlines()[-1])

        import torch

        print(f"paper configuration on the CPU: {args.threads} threads, torch {torch.__version__}, "
              f"{os.cpu_count()} CPUs visible; best of {args.repeats} after a warm-up, "
              f"{args.rounds} process(es) per tree and measurement")
        for name, tree in trees.items():
            print(f"  {name}: {tree}")
        print(f"  parameters of the detector: {child(REPO, 'detector', 'infer', 8)['parameters']:,}")
        plan = [(part, "infer", t) for part in args.parts for t in args.infer_lengths]
        plan += [(part, "train", t) for part in args.parts for t in args.train_lengths]
        rows = []
        for part, kind, steps in plan:
            best: dict[str, dict] = {}
            for _ in range(args.rounds):
                for name, tree in trees.items():  # alternate: both trees see the same load
                    row = child(tree, part, kind, steps)
                    if name not in best or row["seconds"] < best[name]["seconds"]:
                        cpu = min(row["cpu_seconds"], best.get(name, row)["cpu_seconds"])
                        best[name] = {**row, "cpu_seconds": cpu}
                    else:
                        best[name]["cpu_seconds"] = min(best[name]["cpu_seconds"], row["cpu_seconds"])
                    best[name]["peak_rss_mb"] = max(best[name]["peak_rss_mb"], row["peak_rss_mb"])
            rows.append(best)
            this = best["this"]
            what = f"{part:<9} {'forward, batch 1' if kind == 'infer' else 'train step, batch 2':<19} T={steps:<4}"
            line = (f"{what} this {this['seconds']:6.2f} s (CPU {this['cpu_seconds']:6.2f} s) "
                    f"{this['peak_rss_mb'] / 1024:5.2f} GB")
            if kind == "train":  # linear in T: the same CPU time per step
                line += f" {1000 * this['cpu_seconds'] / steps:5.1f} CPU ms/T"
            elif this.get("decode_seconds") is not None:
                line += f" + decode {this['decode_seconds']:.3f} s"
            if "other" in best:
                other = best["other"]
                line += (f" | other {other['seconds']:6.2f} s (CPU {other['cpu_seconds']:6.2f} s) "
                         f"{other['peak_rss_mb'] / 1024:5.2f} GB | other/this: time {other['seconds'] / this['seconds']:4.2f}x, "
                         f"CPU {other['cpu_seconds'] / this['cpu_seconds']:4.2f}x, memory "
                         f"{other['peak_rss_mb'] / this['peak_rss_mb']:4.2f}x")
            print(line, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
