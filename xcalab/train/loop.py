"""The training loop of the keyframe detector: ``train()`` reads top to bottom, one short function per stage.

**One training step** (the reference's, i.e. ActionFormer's), for a batch of cropped videos padded to
``max_seq_len`` steps:

    out      = detector(features, mask, segments, labels, contrast=epoch in contrast_epochs)
    targets  = assign_targets(pyramid points, segments)                    centre sampling, ranges
    N        <- 0.9 N + 0.1 max(#positive points, 1)                       the loss normaliser
    L        = L_con + L_cls + L_reg                                       (L_con only in contrast epochs)
    backward; clip the gradient's global L2 norm to 1; AdamW step; lr step (per iteration); EMA update

**One epoch** is floor(N_train / batch_size) steps over a fresh shuffle (incomplete batches are dropped).
After each epoch from ``select_after`` on (and always after the last), the EMA model predicts the
validation videos and is scored by the paper's average mAP (tIoU 0.3:0.1:0.7, top-1 segment per class);
the best one is kept in ``best.pt``. The reference saves 20 EMA checkpoints and picks afterwards; this
picks on the fly and saves one. What is written where: ``xcalab.train.checkpoint``.

**What is trained** is a ``DetectionTask``: the model it builds, the loss of one step and the score an
epoch is selected on, plus two hooks that are empty for STA-IPCon: optimisers of parts trained outside the
step (``side_optimizers``) and a pass over the training set before the epoch's steps (``before_epoch``).
GAF's alternating epochs (``xcalab.train.generative``) fill both; the loop itself does not change. The
losses of the other modules (TSA + TPP, the phase recogniser, GAF's) are terms of the step's loss
(``xcalab.train.losses.module_losses``) and are logged beside cls / reg / con.

**Several processes (DDP).** The same call runs under ``torchrun`` (``torchrun --nproc_per_node 2 -m
xcalab.cli train ...``); ``xcalab.train.distributed`` says how W processes compute the gradient of the
global batch. Random draws inside the model (the PCon patch, ICon's sampled steps, drop-path) come from
one stream per process, so a DDP run equals a 1-process run exactly only where those draws do not matter
(tests/unit/test_ddp.py). Only rank 0 writes files or evaluates.

**Devices.** ``device="auto"``: CUDA when present, with bf16 autocast for the forward pass (losses in
float32; bf16 needs no gradient scaler); the CPU otherwise, in float32.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from xcalab.config import Config, config_to_dict
from xcalab.data.annotations import check_setting_of, read_annotations
from xcalab.data.dataset import FeatureDataset, collate, dataset_for
from xcalab.data.io import atomic_path
from xcalab.errors import XcalabInputError
from xcalab.runtime import LOADER_STREAM, derive_seed, seed_everything
from xcalab.train.checkpoint import (
    BEST,
    CHECKPOINT,
    CONFIG,
    RunLock,
    RunLog,
    check_resumable,
    rng_state,
    save_checkpoint,
    seed_process,
    set_rng_state,
    weights_metadata,
)
from xcalab.train.distributed import Distributed, occasional_parameters, use_global_batchnorm
from xcalab.train.generative import GenerativeAttentionTask
from xcalab.train.losses import INIT_LOSS_NORM, LossNormaliser
from xcalab.train.optim import ModelEMA, build_optimizer, build_scheduler
from xcalab.train.task import DetectionTask


@dataclass
class TrainResult:
    """What ``train`` leaves behind.

    out_dir          the run's folder
    checkpoint       ``checkpoint.pt`` (the last epoch; resume from it)
    best_checkpoint  ``best.pt`` (the selected EMA weights), None if no epoch was selected
    best_epoch       0-based epoch of ``best.pt``
    best_score       its average validation mAP (top-1 protocol); None without validation videos
    history          one record per epoch (mean loss terms, lr, validation mAP, seconds)
    world_size       processes that trained
    """

    out_dir: Path
    checkpoint: Path
    best_checkpoint: Path | None
    best_epoch: int | None
    best_score: float | None
    history: list[dict[str, Any]]
    world_size: int = 1


@dataclass
class TrainingState:
    """Everything that changes while training, and so everything ``checkpoint.pt`` holds."""

    core: nn.Module
    ema: ModelEMA
    optimizer: torch.optim.Optimizer
    scheduler: Any
    normaliser: LossNormaliser
    epoch: int = 0  # the next epoch to run
    best_epoch: int | None = None
    best_score: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    side_optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def load(self, ckpt: dict[str, Any]) -> None:
        self.core.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.normaliser.load_state_dict(ckpt["normaliser"])
        self.epoch, self.history = int(ckpt["epoch"]), list(ckpt["history"])
        self.best_epoch, self.best_score = ckpt["best"]["epoch"], ckpt["best"]["score"]
        for name, optimizer in self.side_optimizers.items():
            optimizer.load_state_dict(ckpt["side_optimizers"][name])

    def checkpoint(self, rng: list[dict[str, Any]], meta: str) -> dict[str, Any]:
        side = {"side_optimizers": {k: o.state_dict() for k, o in self.side_optimizers.items()}}
        return {
            "format": "xcalab-checkpoint-1", "epoch": self.epoch,
            "model": self.core.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "normaliser": self.normaliser.state_dict(), "rng": rng,
            "best": {"epoch": self.best_epoch, "score": self.best_score}, "history": self.history,
            "meta": meta, **(side if self.side_optimizers else {}),
        }


def train(
    cfg: Config,
    features_dir: str | Path,
    annotations_path: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    task: DetectionTask | None = None,
) -> TrainResult:
    """Train the detector of ``cfg`` on the "train" videos, select on "validation"; see the module docstring.

    cfg               configuration (``get_preset(...)`` plus overrides)
    features_dir      folder of ``<video_id>.npy`` feature files, (T, 4096) each
    annotations_path  ActivityNet-1.3 JSON with "train" and (for model selection) "validation" videos
    out_dir           where config, logs and checkpoints go (must not hold a run unless ``resume``)
    resume            continue from ``out_dir/checkpoint.pt`` (``cfg.train.epochs`` may be raised)
    progress          show a tqdm progress bar (rank 0)
    task              what is trained and selected on (default: ``DetectionTask()``)

    Under torchrun the processes train together (DDP); call it the same way in each.
    """
    from tqdm.auto import tqdm

    task = task or task_for(cfg)
    out_dir = Path(out_dir)
    ctx = Distributed.start(cfg.device)
    try:
        with RunLock(out_dir, ctx.is_main):
            train_set, val_set = _datasets(cfg, Path(features_dir), Path(annotations_path), ctx)
            steps = len(train_set) // cfg.train.batch_size
            if not resume and (out_dir / CHECKPOINT).exists():
                raise XcalabInputError(out_dir, "already holds a training run (checkpoint.pt): pass --resume or "
                                                "choose another folder")
            state = _build_state(cfg, task, steps, ctx)
            if resume:
                _resume(state, out_dir / CHECKPOINT, cfg, ctx)
            model = _parallel(state.core, ctx)
            if ctx.is_main:
                out_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(out_dir / CONFIG) as tmp:
                    tmp.write_text(json.dumps(config_to_dict(cfg), indent=1))
            log = RunLog(out_dir, state.epoch, ctx.is_main)
            bar = tqdm(total=cfg.train.epochs * steps, initial=state.epoch * steps, unit="step", desc="train",
                       disable=not (progress and ctx.is_main), dynamic_ncols=True)
            for epoch in range(state.epoch, cfg.train.epochs):
                started = time.perf_counter()
                sums = _train_one_epoch(model, state, task, train_set, cfg, epoch, steps, ctx, log, bar)
                _select_and_save(state, task, val_set, cfg, epoch, steps, sums, started, out_dir, ctx, log)
            bar.close()
            log.close()
            best = out_dir / BEST if state.best_epoch is not None else None
            return TrainResult(out_dir, out_dir / CHECKPOINT, best, state.best_epoch, state.best_score,
                               state.history, ctx.world_size)
    finally:
        ctx.close()


def _datasets(cfg: Config, features_dir: Path, annotations_path: Path,
              ctx: Distributed) -> tuple[FeatureDataset, FeatureDataset]:
    """The training and validation sets, checked: batch divisible over processes, one setting, >= one batch."""
    batch_size = cfg.train.batch_size
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} (the global batch) must be divisible by the {ctx.world_size} processes")
    annotations = read_annotations(annotations_path)
    check_setting_of(annotations.values(), cfg.setting, annotations_path)
    train_set = dataset_for(cfg, features_dir, annotations, "train", training=True)
    val_set = dataset_for(cfg, features_dir, annotations, "validation")
    if len(train_set) < batch_size:
        raise XcalabInputError(annotations_path, f"{len(train_set)} training videos: fewer than one batch of {batch_size}")
    return train_set, val_set


def _build_state(cfg: Config, task: DetectionTask, steps_per_epoch: int, ctx: Distributed) -> TrainingState:
    """The model, its EMA copy, the optimiser, the lr schedule and the loss normaliser, from the seed."""
    seed_everything(cfg.seed)
    core = task.build_model(cfg).to(ctx.device)
    ema = ModelEMA(core, cfg.train.ema_decay, warmup=not cfg.model.paper_compatible,
                   average_buffers=cfg.model.paper_compatible)
    if ctx.world_size > 1:
        use_global_batchnorm(core, ctx.group)
    optimizer = build_optimizer(core, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch)
    state = TrainingState(core, ema, optimizer, scheduler, LossNormaliser(INIT_LOSS_NORM),
                          side_optimizers=task.side_optimizers(core, cfg))
    seed_process(cfg.seed, ctx.rank)
    return state


def _resume(state: TrainingState, checkpoint_path: Path, cfg: Config, ctx: Distributed) -> None:
    """Continue from ``checkpoint.pt``: every state, and this process's RNG states when the world is the same."""
    if not checkpoint_path.is_file():
        raise XcalabInputError(checkpoint_path, "no checkpoint to resume from")
    # On the CPU first: load_state_dict copies into the model's device, and RNG states must be CPU tensors.
    ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    check_resumable(json.loads(ckpt["meta"])["config"], cfg, checkpoint_path)
    state.load(ckpt)
    if len(ckpt["rng"]) == ctx.world_size:
        set_rng_state(ckpt["rng"][ctx.rank])
    else:  # a different number of processes: fresh, but still seeded, streams
        seed_process(derive_seed(cfg.seed, state.epoch), ctx.rank)


def _parallel(core: nn.Module, ctx: Distributed) -> nn.Module:
    """The model the steps run: ``core`` alone, or wrapped in DDP when several processes train."""
    if ctx.world_size == 1:
        return core
    # The ICon projection only learns in contrast epochs: DDP leaves it alone (no search for unused parameters
    # in every step) and _train_one_epoch averages its gradient itself (train.distributed explains).
    occasional = occasional_parameters(core)
    if occasional:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(core, list(occasional))
        ctx.broadcast_parameters(list(occasional.values()))
    return DistributedDataParallel(core, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def _train_one_epoch(model: nn.Module, state: TrainingState, task: DetectionTask, train_set: FeatureDataset,
                     cfg: Config, epoch: int, steps: int, ctx: Distributed, log: RunLog, bar) -> dict[str, float]:
    """The task's pass before the steps (none for STA-IPCon), then one pass of steps over a fresh shuffle;
    returns the summed loss terms."""
    tc = cfg.train
    train_set.set_epoch(epoch)
    sums = dict(task.before_epoch(state, _batches(train_set, cfg, epoch, ctx, 1), cfg, epoch, ctx))
    model.train()
    sums.update({"loss": 0.0, "cls": 0.0, "reg": 0.0, "con": 0.0})
    occasional = list(occasional_parameters(state.core).values()) if ctx.world_size > 1 else []
    for i, batch in enumerate(_batches(train_set, cfg, epoch, ctx)):
        step = epoch * steps + i
        # Before the forward pass, not after it: the last step's gradients (one float per parameter, 0.15 GB
        # for the paper's detector) are freed before the activations are made.
        state.optimizer.zero_grad(set_to_none=True)
        loss, terms = task.step_loss(model, state.core, batch.to(ctx.device), cfg, epoch, step, state.normaliser, ctx)
        if not math.isfinite(terms["loss"]):  # the same global value on every process: all stop
            raise FloatingPointError(f"the loss is {terms['loss']} at epoch {epoch}, step {step}: "
                                     f"lower train.lr (now {tc.lr}) or check the features")
        loss.backward()
        ctx.average_gradients(occasional)  # what DDP leaves alone (none when alone)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(state.core.parameters(), tc.clip_grad)) if tc.clip_grad > 0 else None
        lr = state.optimizer.param_groups[0]["lr"]
        state.optimizer.step()
        state.scheduler.step()
        state.ema.update(state.core, step)

        for k, v in terms.items():
            if k not in ("num_pos", "normaliser"):
                sums[k] = sums.get(k, 0.0) + (v or 0.0)
        log.write({"kind": "step", "epoch": epoch, "step": step, "iteration": i, "lr": lr, **terms, "grad_norm": grad_norm})
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{terms['loss']:.3f}", lr=f"{lr:.2e}")
    return sums


def _batches(train_set: FeatureDataset, cfg: Config, epoch: int, ctx: Distributed, pass_index: int = 0):
    """The batches of one pass over the epoch's shuffle (this process's share); pass 0 is the steps' pass, a
    task's extra pass draws its order from its own stream."""
    tc = cfg.train
    sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    sampler.set_epoch(epoch)
    keys = (cfg.seed, LOADER_STREAM, epoch) + ((pass_index,) if pass_index else ())
    return DataLoader(
        train_set, tc.batch_size // ctx.world_size, sampler=sampler, collate_fn=partial(collate, pad_to=tc.max_seq_len),
        drop_last=True, generator=torch.Generator().manual_seed(derive_seed(*keys)),
        pin_memory=ctx.device.type == "cuda",
    )


def task_for(cfg: Config) -> DetectionTask:
    """The task of a configuration: GAF's alternating epochs when its generative attention is on."""
    return GenerativeAttentionTask() if cfg.model.generative_attention else DetectionTask()


def _improves(score: float | None, best_epoch: int | None, best_score: float | None) -> bool:
    """Is this epoch the new best? The first candidate always is; then a higher validation mAP (ties keep
    the earlier epoch, as the reference's argmax). Without validation scores the latest epoch wins."""
    if best_epoch is None:
        return True
    if score is None:
        return best_score is None
    return best_score is None or score > best_score


def _select_and_save(state: TrainingState, task: DetectionTask, val_set: FeatureDataset, cfg: Config, epoch: int,
                     steps: int, sums: dict[str, float], started: float, out_dir: Path, ctx: Distributed,
                     log: RunLog) -> None:
    """Score the EMA model on the validation videos (rank 0), keep it in ``best.pt`` if it is the best so far,
    log the epoch and write ``checkpoint.pt``."""
    val_map = val_ad = None
    if epoch >= min(cfg.train.select_after, cfg.train.epochs - 1) and ctx.is_main:
        if len(val_set):
            val_map, val_ad = task.validate(state.ema.module, val_set, cfg)
        if _improves(val_map, state.best_epoch, state.best_score):
            state.best_epoch, state.best_score = epoch, val_map
            save_checkpoint(out_dir / BEST, {
                "format": "xcalab-weights-1", "ema": state.ema.state_dict(),
                "meta": weights_metadata(cfg, epoch=epoch, val_average_map=val_map, world_size=ctx.world_size),
            })
    contrast = epoch in cfg.train.contrast_epochs and cfg.model.imagewise
    record = ctx.broadcast({  # rank 0's record, with its validation scores, on every process
        "kind": "epoch", "epoch": epoch, "steps": steps,
        **{k: v / steps for k, v in sums.items()},
        "con": sums["con"] / steps if contrast else None,
        "lr": state.optimizer.param_groups[0]["lr"], "val_average_map": val_map, "val_ad": val_ad,
        "best_epoch": state.best_epoch, "best_score": state.best_score, "seconds": time.perf_counter() - started,
    })
    state.best_epoch, state.best_score = record["best_epoch"], record["best_score"]
    state.history.append(record)
    log.write(record)
    log.write_csv(state.history)

    # Everything needed to continue exactly from here, every process's RNG states included.
    state.epoch = epoch + 1
    rng = ctx.gather_objects(rng_state())
    if ctx.is_main:
        save_checkpoint(out_dir / CHECKPOINT, state.checkpoint(rng, weights_metadata(
            cfg, epoch=epoch, world_size=ctx.world_size, best_epoch=state.best_epoch, best_score=state.best_score)))
    ctx.barrier()
