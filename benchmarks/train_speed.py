"""How fast does the paper-size detector train and predict on this CPU? (reference code: ~6.3 s per step)

    .venv/bin/python benchmarks/train_speed.py [--threads 2] [--lengths 64 128 256 512] [--repeats 2]

To compare with another checkout or commit in the same run (alternating processes, ratios printed), use
``benchmarks/convlstm_speed.py --against COMMIT``, which times the same detector step and forward.

For the ``paper`` configuration (STA-IPCon at the paper's sizes) it prints:

- the parameter count;
- one training step at batch 2 for T = 64, 128, 256 and 512 feature steps: forward (contrastive epoch:
  L_con on), label assignment and losses, backward, gradient clipping, AdamW, lr schedule and EMA update,
  exactly as ``xcalab.train.loop`` runs them. The time per step should grow linearly with T (the
  reference's ConvLSTM grows with T^2: 0.5 s at T = 64, 3.7 s at 128, 13.5 s at 256 for its backward alone);
- inference at batch 1 for T = 128 and 512: the forward pass and the post-processing (Soft-NMS, top-1,
  keyframes) separately;
- the peak resident memory of each measurement. Every measurement runs in its own process, so the peak
  (``resource.getrusage(...).ru_maxrss``) is that measurement's and not the largest one so far.

Wall-clock times suffer when other programs share the CPU; the CPU time of the process (all threads
together, ``time.process_time``) suffers much less, so both are printed. On an idle machine wall time is
about CPU time / threads.

Timings belong here, never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    """Current resident memory of this process (VmRSS), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure(kind: str, steps: int, threads: int, repeats: int) -> dict:
    """One measurement in this process: 'train' (batch 2) or 'infer' (batch 1) at T = steps."""
    import torch

    torch.set_num_threads(threads)
    from xcalab.config import get_preset
    from xcalab.data.annotations import FeatureGrid
    from xcalab.data.dataset import Batch
    from xcalab.models.detector import build_detector
    from xcalab.postprocess import decode_batch
    from xcalab.runtime import count_parameters
    from xcalab.train.distributed import Distributed
    from xcalab.train.losses import LossNormaliser, training_loss
    from xcalab.train.optim import ModelEMA, build_optimizer, build_scheduler

    cfg = get_preset("paper")
    torch.manual_seed(0)
    model = build_detector(cfg)
    batch_size = 2 if kind == "train" else 1
    features = torch.rand(batch_size, cfg.features.dim, steps)
    mask = torch.ones(batch_size, steps, dtype=torch.bool)
    # Filling over the first ~15 % of the steps, disappearing over the next ~45 %, as in the paper's cines.
    apex = 0.25 * steps
    segments = [torch.tensor([[0.1 * steps, apex], [apex, 0.7 * steps]])] * batch_size
    labels = [torch.tensor([0, 1])] * batch_size
    batch = Batch(features, mask, segments, labels, ["b"] * batch_size, [15.0] * batch_size, [steps * 4 / 15.0] * batch_size)
    result = {"kind": kind, "T": steps, "parameters": count_parameters(model)}

    if kind == "train":
        optimizer = build_optimizer(model, cfg.train)
        scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch=68)
        ema = ModelEMA(model, cfg.train.ema_decay)
        normaliser, ctx = LossNormaliser(100.0), Distributed()
        model.train()
        result["rss_before_mb"] = _rss_mb()

        def step(i: int) -> None:
            generator = torch.Generator().manual_seed(i)
            out = model(features, mask, segments, labels, contrast=True, generator=generator)
            loss, _ = training_loss(out, batch, model.strides, cfg, normaliser, ctx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
            optimizer.step()
            scheduler.step()
            ema.update(model)

        step(0)  # warm-up: first-call allocations
        wall, cpu = [], []
        for i in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            step(i + 1)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        result["seconds"], result["cpu_seconds"] = min(wall), min(cpu)
    else:
        model.eval()
        grid = FeatureGrid(cfg.features.stride, cfg.features.window)
        result["rss_before_mb"] = _rss_mb()
        forward, forward_cpu, decode = [], [], []
        with torch.inference_mode():
            for i in range(repeats + 1):  # the first pass is a warm-up
                start, start_cpu = time.perf_counter(), time.process_time()
                out = model(features, mask, generator=torch.Generator().manual_seed(i))
                middle, middle_cpu = time.perf_counter(), time.process_time()
                decode_batch(out.cls_logits, out.offsets, out.masks, model.strides, batch.fps, batch.duration, grid)
                end = time.perf_counter()
                if i:
                    forward.append(middle - start)
                    forward_cpu.append(middle_cpu - start_cpu)
                    decode.append(end - middle)
        result["seconds"], result["cpu_seconds"], result["decode_seconds"] = min(forward), min(forward_cpu), min(decode)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the reference was timed on 2)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512], help="T of the training steps")
    parser.add_argument("--infer-lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions (the fastest is kept)")
    parser.add_argument("--measure", choices=["train", "infer"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:  # inside a child: one measurement, printed as JSON
        print(json.dumps(_measure(args.measure, args.steps, args.threads, args.repeats)))
        return 0

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}

    def child(kind: str, steps: int) -> dict:
        command = [sys.executable, __file__, "--measure", kind, "--steps", str(steps),
                   "--threads", str(args.threads), "--repeats", str(args.repeats)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    import torch

    print(f"xcalab paper configuration on the CPU: {args.threads} threads, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs visible (best of {args.repeats} after a warm-up)")
    train_rows = [child("train", t) for t in args.lengths]
    print(f"parameters: {train_rows[0]['parameters']:,} (all trained)\n")
    print("training step, batch 2 (forward with L_con, assignment, losses, backward, clip, AdamW, lr, EMA)")
    print(f"{'T':>6} {'wall s':>8} {'CPU s':>8} {'CPU ms per T':>13} {'peak RSS':>10} {'RSS before':>11}")
    for row in train_rows:
        print(f"{row['T']:>6} {row['seconds']:>8.2f} {row['cpu_seconds']:>8.2f} {1000 * row['cpu_seconds'] / row['T']:>13.1f} "
              f"{row['peak_rss_mb'] / 1024:>8.2f} GB {row['rss_before_mb'] / 1024:>8.2f} GB")
    print("\ninference, batch 1 (forward; then Soft-NMS, top-1 and keyframes)")
    print(f"{'T':>6} {'forward wall s':>15} {'forward CPU s':>14} {'decode s':>9} {'peak RSS':>10}")
    for t in args.infer_lengths:
        row = child("infer", t)
        print(f"{row['T']:>6} {row['seconds']:>15.2f} {row['cpu_seconds']:>14.2f} {row['decode_seconds']:>9.3f} "
              f"{row['peak_rss_mb'] / 1024:>8.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
