"""What do the other seed papers' modules cost beside STA-IPCon? Parameters, a training step, a forward pass.

    .venv/bin/python benchmarks/modules.py [--preset teach] [--threads 2] [--steps 128] [--repeats 3]

For each variant (STA-IPCon, ActionFormer, ActionFormer+GAF, ActionFormer+TSA, Phase attention, STA-IPCon+TSA) at
the preset's sizes it prints the parameter count (all, and the module's own), one training step at batch 2 exactly as the
training loop runs it (forward, the losses with the module's terms, backward, clipping, AdamW, lr, EMA; GAF's
detector pass with the CVAE frozen, plus one step of its CVAE pass), and the inference forward at batch 1. Every
variant runs in its own process, so each peak memory is its own. Random (T, 4096) inputs; times are the fastest of
``--repeats`` after a warm-up. Timings belong here, never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

VARIANTS = ("STA-IPCon", "ActionFormer", "ActionFormer+GAF", "ActionFormer+TSA", "Phase attention", "STA-IPCon+TSA")
#: The module each variant adds to ActionFormer, as an attribute path of the detector.
MODULE = {"ActionFormer+GAF": "generative", "ActionFormer+TSA": "pyramid.refinement", "Phase attention": "phase",
          "STA-IPCon+TSA": "pyramid.refinement"}


def _measure(variant: str, preset: str, steps: int, threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from xcalab.config import get_preset
    from xcalab.data.dataset import Batch
    from xcalab.models.detector import build_detector
    from xcalab.pipeline import variant_config
    from xcalab.runtime import count_parameters
    from xcalab.train.distributed import Distributed
    from xcalab.train.generative import GenerativeAttentionTask
    from xcalab.train.losses import LossNormaliser
    from xcalab.train.optim import ModelEMA, build_optimizer, build_scheduler
    from xcalab.train.task import DetectionTask

    cfg = variant_config(get_preset(preset), variant).replace(device="cpu")
    torch.manual_seed(0)
    model = build_detector(cfg)
    module = model
    for part in MODULE.get(variant, "").split(".") if variant in MODULE else []:
        module = getattr(module, part)
    result = {"variant": variant, "parameters": count_parameters(model),
              "module_parameters": count_parameters(module) if variant in MODULE else 0}

    def batch_of(size: int) -> Batch:
        apex = 0.25 * steps
        return Batch(torch.rand(size, cfg.features.dim, steps), torch.ones(size, steps, dtype=torch.bool),
                     [torch.tensor([[0.1 * steps, apex], [apex, 0.7 * steps]])] * size, [torch.tensor([0, 1])] * size,
                     ["b"] * size, [15.0] * size, [steps * 4 / 15.0] * size,
                     torch.randint(0, 5, (size, steps)))

    task = GenerativeAttentionTask() if cfg.model.generative_attention else DetectionTask()
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch=31)
    ema, normaliser, ctx = ModelEMA(model, cfg.train.ema_decay), LossNormaliser(100.0), Distributed.start("cpu")
    side = task.side_optimizers(model, cfg)
    batch = batch_of(2)

    def train_step(i: int) -> None:
        loss, _ = task.step_loss(model, model, batch, cfg, 0, i, normaliser, ctx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
        optimizer.step()
        scheduler.step()
        ema.update(model, i)

    def cvae_step(i: int) -> None:
        loss, _ = model.generative.cvae_step_loss(batch.features, batch.mask, torch.Generator().manual_seed(i))
        side["cvae"].zero_grad(set_to_none=True)
        loss.backward()
        side["cvae"].step()

    def fastest(fn) -> float:
        fn(0)  # warm-up
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            fn(i + 1)
            times.append(time.perf_counter() - start)
        return min(times)

    model.train()
    result["train_seconds"] = fastest(train_step)
    if side:
        result["cvae_seconds"] = fastest(cvae_step)
    model.eval()
    one = batch_of(1)
    with torch.inference_mode():
        result["infer_seconds"] = fastest(lambda i: model(one.features, one.mask, generator=torch.Generator().manual_seed(i)))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="teach", choices=["smoke", "teach", "paper"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=128, help="T, feature steps per cine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: one variant
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(args.measure, args.preset, args.steps, args.threads, args.repeats)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    print(f"preset {args.preset}, T = {args.steps}, {args.threads} threads, fastest of {args.repeats} after a warm-up")
    print(f"{'variant':<18} {'parameters':>11} {'module':>10} {'train step s':>13} {'CVAE step s':>12} "
          f"{'forward s':>10} {'peak RSS':>9}")
    for variant in args.variants:
        command = [sys.executable, __file__, "--measure", variant, "--preset", args.preset, "--steps", str(args.steps),
                   "--threads", str(args.threads), "--repeats", str(args.repeats)]
        row = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        cvae = f"{row['cvae_seconds']:.3f}" if "cvae_seconds" in row else "–"
        print(f"{variant:<18} {row['parameters']:>11,} {row['module_parameters']:>10,} {row['train_seconds']:>13.3f} "
              f"{cvae:>12} {row['infer_seconds']:>10.3f} {row['peak_rss_mb'] / 1024:>7.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
