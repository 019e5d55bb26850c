"""Training and evaluation of the keyframe detector: the loop, checkpoints, DDP, prediction, the command.

**One training step** (spec sta-ipcon.md Sec. 3.8-3.10), for a batch of cropped videos padded to
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
picks on the fly and saves one.

**Files** in the output folder (written by rank 0 only; checkpoints atomically):

    config.json        the run's configuration
    log.jsonl          one record per step ({"kind": "step", ...every loss term...}) and per epoch
    epochs.csv         one row per epoch
    checkpoint.pt      everything needed to resume: model, EMA, optimiser, scheduler, loss normaliser,
                       epoch, best score so far, history, and every process's RNG states
    best.pt            the selected EMA weights + metadata (config, versions, scores) as a JSON string

Both load with ``torch.load(..., weights_only=True)``: tensors and plain Python values only, no code.
``load_detector(path)`` rebuilds the model (EMA weights) and its configuration from either file.

**Determinism and resuming.** Every random draw of training is either seeded by where it happens --
crops by (seed, epoch, video), the model's draws (ICon steps, PCon patch) by (seed, step, rank), the
shuffle by (seed, epoch) -- or comes from the global RNGs (drop-path), whose states are saved at every
epoch's end. So training 2 epochs gives the same weights as training 1, resuming, and training 1 more
(on the CPU). ``--resume`` may raise ``train.epochs`` or change the device, nothing that changes training.

**Several processes (DDP).** The same command runs under ``torchrun``: ``torchrun --nproc_per_node 2
-m xcalab.train.engine ...`` (gloo on CPUs, NCCL on GPUs, one GPU per process). ``batch_size`` stays the
*global* batch: each of the W processes gets batch_size / W videos from a ``DistributedSampler``. Three
things make W processes compute the gradient of the same loss as one process would:

- the loss normaliser counts the positive points of the whole global batch (an all-reduce), and each
  process scales its detection loss by W, because DDP averages gradients over processes;
- the imagewise contrast gathers every process's foreground/background embeddings (with gradients), so
  every anchor sees every positive and negative of the global batch, as in one process;
- SA's BatchNorm computes its statistics over the global batch (``GlobalBatchNorm2d``; PyTorch's
  ``SyncBatchNorm`` does not run on CPUs).

Random draws inside the model (the PCon patch, ICon's sampled steps, drop-path) come from one stream per
process, so they differ between a split and an unsplit batch: a DDP run equals a 1-process run exactly
only where those draws do not matter (tests/unit/test_ddp.py). Only rank 0 writes files or evaluates.

**Devices.** ``device="auto"``: CUDA when present, with bf16 autocast for the forward pass (losses in
float32; bf16 needs no gradient scaler); the CPU otherwise, in float32.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from xcalab.config import PRESETS, Config, get_preset
from xcalab.data.annotations import FeatureGrid, read_annotations
from xcalab.data.dataset import Batch, FeatureDataset, collate, derive_seed
from xcalab.data.io import atomic_path
from xcalab.errors import XcalabInputError
from xcalab.inference import detect_batch, device_autocast
from xcalab.metrics import (
    PAPER_TIOUS,
    PRF,
    GroundTruth,
    MapResult,
    average_deviation,
    mean_average_precision,
    mean_frame_prf,
)
from xcalab.models.contrastive import soft_nearest_neighbour_loss
from xcalab.models.detector import DetectorOutput, KeyframeDetector
from xcalab.postprocess import PostprocessConfig, VideoPrediction
from xcalab.runtime import resolve_device, seed_everything
from xcalab.train.assign import assign_targets, concat_levels, pyramid_points
from xcalab.train.losses import LossNormaliser, detection_losses
from xcalab.train.optim import ModelEMA, build_optimizer, build_scheduler

#: Seed streams of the engine (the dataset's crops use ``xcalab.data.dataset.CROP_STREAM`` = 1).
STEP_STREAM, PROCESS_STREAM, LOADER_STREAM = 2, 4, 5  # 3 is inference's EVAL_STREAM
#: N_0 of the loss normaliser (spec Sec. 3.8).
INIT_LOSS_NORM = 100.0
CHECKPOINT, BEST, LOG, CSV_LOG, CONFIG = "checkpoint.pt", "best.pt", "log.jsonl", "epochs.csv", "config.json"


# --------------------------------------------------------------------------------------------------
# Configuration <-> JSON
# --------------------------------------------------------------------------------------------------


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain JSON values (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _as_tuples(value: Any) -> Any:
    """JSON lists back to the tuples the frozen config dataclasses hold."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def apply_overrides(cfg: Config, overrides: Mapping[str, Any], where: str | Path = "config overrides") -> Config:
    """``cfg`` with some settings changed, e.g. ``{"model": {"long_term": "none"}, "train": {"epochs": 3}}``.

    Sections (synth, features, model, train) take a dict of their fields; top-level fields (seed,
    device, setting, ...) a value. Unknown names and invalid values raise ``XcalabInputError`` naming ``where``.
    """
    if not isinstance(overrides, Mapping):
        raise XcalabInputError(where, f"overrides must be a JSON object, got {type(overrides).__name__}")
    top = {f.name: f for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in top:
            raise XcalabInputError(where, f"unknown setting {key!r}; known: {', '.join(top)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise XcalabInputError(where, f"{key!r} must be an object of {type(current).__name__} fields")
            known = {f.name for f in dataclasses.fields(current)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise XcalabInputError(where, f"unknown {key} setting(s) {unknown}; known: {', '.join(sorted(known))}")
            try:
                changes[key] = dataclasses.replace(current, **{k: _as_tuples(v) for k, v in value.items()})
            except (TypeError, ValueError) as err:
                raise XcalabInputError(where, f"{key}: {err}") from None
        elif isinstance(current, Path):
            changes[key] = Path(value)
        else:
            changes[key] = _as_tuples(value)
    return cfg.replace(**changes)


def config_from_dict(data: Mapping[str, Any], where: str | Path = "config") -> Config:
    """Inverse of ``config_to_dict``: the preset named in ``data["name"]`` with every value of ``data``."""
    name = data.get("name")
    if name == "locate":  # the archive-like mix that ``xcalab locate``'s detector trains on
        from xcalab.config import locate_config

        base = locate_config(int(data.get("seed", 0)))
    elif name in PRESETS:
        base = get_preset(name)
    else:
        raise XcalabInputError(where, f"config needs a preset name in {PRESETS} (or 'locate'), got {name!r}")
    return apply_overrides(base, {k: v for k, v in data.items() if k != "name"}, where)


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a JSON file of config overrides (see ``apply_overrides``)."""
    path = Path(path)
    if not path.is_file():
        raise XcalabInputError(path, "no such config file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise XcalabInputError(path, f"not valid JSON ({err})") from None


# --------------------------------------------------------------------------------------------------
# Distributed training: process context, collectives with gradients, global BatchNorm
# --------------------------------------------------------------------------------------------------


@dataclass
class Distributed:
    """Where this process stands: rank, world size, device; ``group`` carries the loss collectives.

    Built by ``Distributed.start`` from torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); a plain
    ``python`` run is rank 0 of 1. Collectives of the loss (positive counts, ICon gather, BatchNorm
    statistics) use their own process group, so they never interleave with DDP's gradient all-reduces.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    group: Any = None
    owns_process_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str = "auto") -> Distributed:
        """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA), or run alone."""
        resolved = resolve_device(device)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1 and not dist.is_initialized():
            return cls(device=resolved)
        owns = False
        if resolved.type == "cuda":
            resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(resolved)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
            owns = True
        group = dist.new_group(backend=dist.get_backend())
        return cls(dist.get_rank(), dist.get_world_size(), resolved, group, owns)

    def sum(self, tensor: Tensor) -> Tensor:
        """Sum of a (detached) tensor over processes; the tensor itself when alone."""
        if self.world_size == 1:
            return tensor.detach()
        total = tensor.detach().clone()
        dist.all_reduce(total, group=self.group)
        return total

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(group=self.group)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (e.g. the best epoch, which only rank 0 evaluates)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (for the RNG states in checkpoints)."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def close(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """y = sum over processes of x. Backward: every process's loss depends on y, so dL/dx = sum of dL_r/dy."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _AllGather(torch.autograd.Function):
    """(n, E) per process -> (W, n, E) stacked in rank order. Backward: the summed gradient of my slice."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad[dist.get_rank(ctx.group)], None


def gather_rows(x: Tensor, group: Any = None) -> Tensor:
    """Concatenate every process's rows (n_r, E) in rank order -> (sum n_r, E), with gradients.

    Processes may hold different numbers of rows: they are padded to the longest for the all-gather.
    """
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size(group))]
    dist.all_gather(counts, count, group=group)
    counts = [int(c) for c in counts]
    padded = F.pad(x, (0, 0, 0, max(counts) - x.shape[0]))
    stacked = _AllGather.apply(padded, group)
    return torch.cat([stacked[r, :n] for r, n in enumerate(counts)])


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole global batch, over all processes.

    Same parameters, buffers and evaluation as ``nn.BatchNorm2d`` (state dicts are interchangeable).
    In training, with W > 1 processes: mean = sum x / n and var = sum (x - mean)^2 / n over every
    process's maps (two all-reduces that carry gradients), computed in float32.
    """

    group: Any = None

    def forward(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) -> (N, C, H, W)."""
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(x)
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        xf = x.float()
        count = torch.full((1,), xf.numel() / max(xf.shape[1], 1), device=x.device)
        totals = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]), self.group)
        n = totals[-1]
        mean = totals[:-1] / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.group) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * n / (n - 1).clamp(min=1), alpha=m)
        return out.to(x.dtype)


def use_global_batchnorm(module: nn.Module, group: Any = None) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (in place) by a ``GlobalBatchNorm2d`` holding the
    same parameter and buffer tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            glob = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            glob.load_state_dict(child.state_dict())
            if child.affine:
                glob.weight, glob.bias = child.weight, child.bias
            glob.group = group
            glob.train(child.training)
            setattr(module, name, glob)
        else:
            use_global_batchnorm(child, group)
    return module


# --------------------------------------------------------------------------------------------------
# RNG states (saved as tensors and plain values, so checkpoints load with weights_only=True)
# --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy, torch (CPU) and the current CUDA device."""
    version, py_state, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def _seed_process(seed: int, rank: int) -> None:
    """Give each process its own global RNG streams (used by drop-path), derived from the seed."""
    process_seed = derive_seed(seed, PROCESS_STREAM, rank)
    random.seed(process_seed)
    np.random.seed(process_seed % 2**32)
    torch.manual_seed(process_seed)


# --------------------------------------------------------------------------------------------------
# Checkpoints and weights
# --------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from xcalab import __version__ as xcalab_version

    return {"xcalab": str(xcalab_version), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _metadata(cfg: Config, **extra: Any) -> str:
    """Config, versions and scores as one JSON string (a plain value inside the checkpoint)."""
    return json.dumps({"config": config_to_dict(cfg), "versions": _versions(), **extra}, default=str)


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise XcalabInputError(path, "no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # an unpickling error means code or foreign objects: refuse, and never advise
        # loading it unsafely (torch's message suggests weights_only=False): keep only its first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in first or "Weights only load failed" in first:
            first = "it holds pickled objects or code, which xcalab never loads"
        raise XcalabInputError(path, f"not an xcalab checkpoint (weights) file that loads safely ({first})") from None
    if not isinstance(ckpt, dict) or "ema" not in ckpt or "meta" not in ckpt:
        raise XcalabInputError(path, "not an xcalab checkpoint (needs 'ema' weights and 'meta')")
    return ckpt


def build_detector(cfg: Config) -> KeyframeDetector:
    """The detector of a configuration (feature size from ``cfg.features``)."""
    return KeyframeDetector(cfg.model, feature_dim=cfg.features.dim, map_size=cfg.features.map_size)


def load_detector(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> tuple[KeyframeDetector, Config]:
    """The EMA weights of ``checkpoint.pt`` or ``best.pt`` in a detector (eval mode), and the run's config."""
    ckpt = read_checkpoint(checkpoint_path, map_location="cpu")
    meta = json.loads(ckpt["meta"])
    cfg = config_from_dict(meta["config"], where=checkpoint_path)
    model = build_detector(cfg)
    model.load_state_dict(ckpt["ema"])
    return model.to(device).eval(), cfg


# --------------------------------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------------------------------


def pad_segments(segments: Sequence[Tensor], labels: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """B lists of (K_b, 2) segments and (K_b,) labels -> (B, K, 2), (B, K) and a (B, K) bool mask."""
    batch, most = len(segments), max((len(s) for s in segments), default=0)
    device = segments[0].device if segments else torch.device("cpu")
    padded = torch.zeros(batch, most, 2, device=device)
    padded_labels = torch.zeros(batch, most, dtype=torch.int64, device=device)
    mask = torch.zeros(batch, most, dtype=torch.bool, device=device)
    for b, (s, c) in enumerate(zip(segments, labels)):
        padded[b, : len(s)], padded_labels[b, : len(s)], mask[b, : len(s)] = s, c, True
    return padded, padded_labels, mask


def training_loss(
    out: DetectorOutput,
    batch: Batch,
    strides: Sequence[int],
    cfg: Config,
    normaliser: LossNormaliser,
    ctx: Distributed,
) -> tuple[Tensor, dict[str, float]]:
    """L = w_con L_con + L_cls + L_reg of one step, and its terms as numbers for the log.

    out         the detector's output on the (local) batch
    batch       the batch (segments in grid units, relative to the crops)
    strides     the pyramid's strides
    normaliser  the moving average N of positive points; updated here with the *global* count

    Returns (the loss to back-propagate, {"loss", "cls", "reg", "con", "num_pos", "normaliser"}).
    With W processes the returned tensor is W x this process's detection loss + the global L_con, so
    that DDP's average over processes is the gradient of the global-batch loss; the logged terms are
    global.
    """
    device = out.cls_logits[0].device
    points = pyramid_points([c.shape[-1] for c in out.cls_logits], strides, cfg.model.regression_ranges, device)
    segments, labels, segment_mask = pad_segments(batch.segments, batch.labels)
    point_mask = concat_levels(out.masks)
    targets = assign_targets(
        points, segments, labels, segment_mask, point_mask,
        n_classes=out.cls_logits[0].shape[1], center_radius=cfg.model.centre_radius,
    )
    num_pos = int(ctx.sum(targets.positive.sum()))
    norm = normaliser.update(num_pos)
    det = detection_losses(
        concat_levels(out.cls_logits).float(), concat_levels(out.offsets).float(),
        targets.cls, targets.reg, point_mask, norm,
    )
    loss = ctx.world_size * det["total"]
    con = None
    if out.contrast is not None:
        if ctx.world_size == 1:
            con = out.contrast.loss.float()
        else:  # every anchor sees the positives and negatives of the whole global batch
            foreground = gather_rows(out.contrast.foreground.float(), ctx.group)
            background = gather_rows(out.contrast.background.float(), ctx.group)
            con = soft_nearest_neighbour_loss(foreground, background, cfg.model.temperature)
        loss = loss + cfg.train.contrast_weight * con
    cls_loss, reg_loss = ctx.sum(torch.stack([det["cls"], det["reg"]]).float()).tolist()
    con_value = None if con is None else float(con.detach())
    total = cls_loss + reg_loss + (0.0 if con_value is None else cfg.train.contrast_weight * con_value)
    return loss, {"loss": total, "cls": cls_loss, "reg": reg_loss, "con": con_value, "num_pos": num_pos, "normaliser": norm}


# --------------------------------------------------------------------------------------------------
# Prediction and evaluation
# --------------------------------------------------------------------------------------------------


def dataset_for(cfg: Config, features_dir: str | Path, annotations: Any, subset: str | None, training: bool = False) -> FeatureDataset:
    """The ``FeatureDataset`` of one subset with the grid, feature size and crops of ``cfg``."""
    return FeatureDataset(
        features_dir, annotations, subset,
        grid=FeatureGrid(stride=cfg.features.stride, window=cfg.features.window),
        feature_dim=cfg.features.dim, training=training, max_seq_len=cfg.train.max_seq_len,
        trunc_thresh=cfg.train.trunc_thresh, crop_ratio=cfg.train.crop_ratio, seed=cfg.seed,
        gain_range=cfg.train.feature_gain if training else None,
        clutter_range=cfg.train.feature_clutter if training else None,
    )


def _inference_padding(cfg: Config) -> tuple[int | None, int]:
    """(pad_to, multiple) at inference: the batch's longest video, or the reference's padding to
    max(max_seq_len, a multiple of the coarsest stride x the attention window) with ``paper_compatible``
    (there padding leaks into valid outputs, so it must match)."""
    if not cfg.model.paper_compatible:
        return None, 1
    return cfg.train.max_seq_len, 2 ** (cfg.model.n_levels - 1) * 2 * cfg.model.half_window


@torch.no_grad()
def predict(
    model: KeyframeDetector,
    dataset: FeatureDataset,
    cfg: Config,
    batch_size: int = 1,
    postprocess: PostprocessConfig | None = None,
) -> list[VideoPrediction]:
    """Detect the two actions and the keyframes of every video of ``dataset`` (whole videos, no crops).

    model       a detector (use the EMA weights: ``load_detector``); run in eval mode
    dataset     videos to predict (its ``training`` flag is ignored: nothing is cropped)
    cfg         the run's configuration (feature grid, problem setting, padding)
    batch_size  videos per forward pass (1, as the reference; > 1 is faster, but PCon's patches are
                then drawn per batch, so a video's result depends on its batch)
    postprocess  Soft-NMS and decoding settings (default: the reference's ``PostprocessConfig()``)

    The random patch of PCon is drawn from a generator seeded by (cfg.seed, the batch's video ids), so a
    video's prediction does not depend on the order of the data set. Returns one ``VideoPrediction``
    per video, in data-set order.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    grid = FeatureGrid(stride=cfg.features.stride, window=cfg.features.window)
    pad_to, multiple = _inference_padding(cfg)
    predictions: list[VideoPrediction] = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset.video(i) for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collate(items, pad_to, multiple).to(device)
        decoded, _ = detect_batch(model, batch.features, batch.mask, batch.fps, batch.duration, batch.video_ids, grid,
                                  setting=cfg.setting, seed=cfg.seed, postprocess=postprocess)
        predictions += decoded
    model.train(was_training)
    return predictions


@dataclass
class Evaluation:
    """Scores of one model on one subset.

    predictions   one ``VideoPrediction`` per video
    map_top1      mAP per tIoU with the paper's protocol (top-1 segment per class and video)
    map_all       mAP per tIoU over every kept segment (ActivityNet's protocol)
    ad            average keyframe deviation in frames (nearest frames vs the true keyframes), over
                  the videos whose keyframes could be decoded
    ad_paper      the same as the reference computes it (int() frames vs int(true - 2): 2 frames worse)
    prf           frame-level precision / recall / F (macro with background, the paper's convention)
    n_missing     videos where a class had no detection (no keyframes; they count in mAP only)
    """

    predictions: list[VideoPrediction]
    map_top1: MapResult | None
    map_all: MapResult | None
    ad: float | None
    ad_paper: float | None
    prf: PRF | None
    n_missing: int

    @property
    def average_map(self) -> float:
        """The paper's headline number: average over tIoU 0.3:0.1:0.7 of the top-1 mAP (NaN without ground truth)."""
        return self.map_top1.average_map if self.map_top1 is not None else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers."""
        return {
            "average_map": None if math.isnan(self.average_map) else self.average_map,
            "map_top1": None if self.map_top1 is None else self.map_top1.as_dict(),
            "map_all": None if self.map_all is None else self.map_all.as_dict(),
            "ad": self.ad, "ad_paper": self.ad_paper,
            "prf": None if self.prf is None else self.prf._asdict(),
            "n_videos": len(self.predictions), "n_missing": self.n_missing,
        }


def evaluate(
    model: KeyframeDetector,
    dataset: FeatureDataset,
    cfg: Config,
    predictions: list[VideoPrediction] | None = None,
    tious: Sequence[float] = PAPER_TIOUS,
) -> Evaluation:
    """Predict ``dataset`` (unless ``predictions`` are given) and score it: mAP, AD, frame P/R/F."""
    if predictions is None:
        predictions = predict(model, dataset, cfg)
    truth = [GroundTruth(v.video_id, a.label_id, *a.segment) for v in dataset.videos for a in v.actions]
    detections = [d for p in predictions for d in p.detections()]
    map_top1 = map_all = None
    if truth:
        map_top1 = mean_average_precision(detections, truth, tious, protocol="top1")
        map_all = mean_average_precision(detections, truth, tious, protocol="all")
    by_id = {v.video_id: v for v in dataset.videos}
    decoded = [(p, by_id[p.video_id]) for p in predictions if p.keyframes is not None and by_id[p.video_id].keyframes]
    ad = ad_paper = prf = None
    if decoded:
        nearest = [list(p.frame_indices("nearest")) for p, _ in decoded]
        truncated = [list(p.frame_indices("truncate")) for p, _ in decoded]
        true = [list(v.keyframes) for _, v in decoded]
        n_frames = [max(1, round(v.duration * v.fps)) for _, v in decoded]
        ad = average_deviation(nearest, true, window=cfg.features.window)
        ad_paper = average_deviation(truncated, true, paper_compatible=True, window=cfg.features.window)
        prf = mean_frame_prf(nearest, [[round(k) for k in kf] for kf in true], n_frames)
    n_missing = sum(1 for p in predictions if p.missing)
    return Evaluation(predictions, map_top1, map_all, ad, ad_paper, prf, n_missing)


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------


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


class _RunLog:
    """log.jsonl (every step and epoch) and epochs.csv; rank 0 only. On resume, records of epochs that
    were not finished (after the checkpoint) are dropped first."""

    CSV_FIELDS = ("epoch", "steps", "loss", "cls", "reg", "con", "lr", "val_average_map", "val_ad", "best_epoch", "seconds")

    def __init__(self, out_dir: Path, start_epoch: int, enabled: bool):
        self.enabled = enabled
        self.jsonl, self.csv = out_dir / LOG, out_dir / CSV_LOG
        if not enabled:
            return
        kept = []
        if start_epoch > 0 and self.jsonl.is_file():
            kept = [line for line in self.jsonl.read_text().splitlines()
                    if line.strip() and json.loads(line)["epoch"] < start_epoch]
        with atomic_path(self.jsonl) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
        self.file = self.jsonl.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def write_csv(self, history: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        with atomic_path(self.csv) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)

    def close(self) -> None:
        if self.enabled:
            self.file.close()


#: Settings a resumed run may change: more epochs, another device. Paths and the simulator do not matter.
RESUMABLE_CHANGES = ("train.epochs", "device", "data_dir", "fig_dir", "frames_shown", "synth")


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_resumable(saved: Mapping[str, Any], cfg: Config, where: Path) -> None:
    """A resumed run must train the same thing: every setting equal except ``RESUMABLE_CHANGES``."""
    old, new = _flatten(saved), _flatten(config_to_dict(cfg))
    differ = sorted(
        key for key in old.keys() | new.keys()
        if old.get(key) != new.get(key) and not any(key == c or key.startswith(c + ".") for c in RESUMABLE_CHANGES)
    )
    if differ:
        raise XcalabInputError(where, f"cannot resume: the configuration differs from the checkpoint's in {differ}")


def _improves(score: float | None, best_epoch: int | None, best_score: float | None) -> bool:
    """Is this epoch the new best? The first candidate always is; then a higher validation mAP (ties keep
    the earlier epoch, as the reference's argmax). Without validation scores the latest epoch wins."""
    if best_epoch is None:
        return True
    if score is None:
        return best_score is None
    return best_score is None or score > best_score


def train(
    cfg: Config,
    features_dir: str | Path,
    annotations_path: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the detector of ``cfg`` on the "train" videos, select on "validation"; see the module docstring.

    cfg               configuration (``get_preset(...)`` plus overrides)
    features_dir      folder of ``<video_id>.npy`` feature files, (T, 4096) each
    annotations_path  ActivityNet-1.3 JSON with "train" and (for model selection) "validation" videos
    out_dir           where config, logs and checkpoints go (must not hold a run unless ``resume``)
    resume            continue from ``out_dir/checkpoint.pt`` (``cfg.train.epochs`` may be raised)
    progress          show a tqdm progress bar (rank 0)

    Under torchrun the processes train together (DDP); call it the same way in each.
    """
    ctx = Distributed.start(cfg.device)
    try:
        with _RunLock(Path(out_dir), ctx.is_main):
            return _train(cfg, Path(features_dir), Path(annotations_path), Path(out_dir), resume, progress, ctx)
    finally:
        ctx.close()


class _RunLock:
    """``out_dir/run.lock`` holds the training process's id while it trains (rank 0 only): a second process
    that would train into the same folder (and interleave its checkpoints with the first's) stops with a
    clear error instead. A lock left by a process that no longer runs (killed) is taken over."""

    NAME = "run.lock"

    def __init__(self, out_dir: Path, enabled: bool):
        self.path, self.enabled = out_dir / self.NAME, enabled

    def __enter__(self) -> _RunLock:
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _process_alive(pid):
                    raise XcalabInputError(self.path.parent, f"another process (pid {pid}) is training in this "
                                                             "folder; wait for it or choose another --out") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise XcalabInputError(self.path, "could not take the training lock")

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _train(cfg: Config, features_dir: Path, annotations_path: Path, out_dir: Path, resume: bool,
           progress: bool, ctx: Distributed) -> TrainResult:
    from tqdm.auto import tqdm

    tc = cfg.train
    if tc.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {tc.batch_size} (the global batch) must be divisible by the {ctx.world_size} processes")
    annotations = read_annotations(annotations_path)
    wrong = sorted({v.setting for v in annotations.values()} - {cfg.setting})
    if wrong:
        raise XcalabInputError(annotations_path, f"holds problem setting(s) {wrong}, the config says setting {cfg.setting}")
    train_set = dataset_for(cfg, features_dir, annotations, "train", training=True)
    val_set = dataset_for(cfg, features_dir, annotations, "validation")
    steps_per_epoch = len(train_set) // tc.batch_size
    if steps_per_epoch == 0:
        raise XcalabInputError(annotations_path, f"{len(train_set)} training videos: fewer than one batch of {tc.batch_size}")

    checkpoint_path = out_dir / CHECKPOINT
    if not resume and checkpoint_path.exists():
        raise XcalabInputError(out_dir, "already holds a training run (checkpoint.pt): pass --resume or choose another folder")

    # The model, its EMA copy, the optimiser, the lr schedule and the loss normaliser.
    seed_everything(cfg.seed)
    core = build_detector(cfg).to(ctx.device)
    ema = ModelEMA(core, tc.ema_decay, warmup=not cfg.model.paper_compatible,
                   average_buffers=cfg.model.paper_compatible)
    if ctx.world_size > 1:
        use_global_batchnorm(core, ctx.group)
    optimizer = build_optimizer(core, tc)
    scheduler = build_scheduler(optimizer, tc, steps_per_epoch)
    normaliser = LossNormaliser(INIT_LOSS_NORM)
    _seed_process(cfg.seed, ctx.rank)

    start_epoch, best_epoch, best_score, history = 0, None, None, []
    if resume:
        if not checkpoint_path.is_file():
            raise XcalabInputError(checkpoint_path, "no checkpoint to resume from")
        # On the CPU first: load_state_dict copies into the model's device, and RNG states must be CPU tensors.
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        _check_resumable(json.loads(ckpt["meta"])["config"], cfg, checkpoint_path)
        core.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        normaliser.load_state_dict(ckpt["normaliser"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
        best_epoch, best_score = ckpt["best"]["epoch"], ckpt["best"]["score"]
        if len(ckpt["rng"]) == ctx.world_size:
            set_rng_state(ckpt["rng"][ctx.rank])
        else:  # a different number of processes: fresh, but still seeded, streams
            _seed_process(derive_seed(cfg.seed, start_epoch), ctx.rank)

    model: nn.Module = core
    if ctx.world_size > 1:
        model = DistributedDataParallel(
            core, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=cfg.model.imagewise,  # the ICon projection only learns in contrast epochs
        )
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / CONFIG) as tmp:
            tmp.write_text(json.dumps(config_to_dict(cfg), indent=1))
    log = _RunLog(out_dir, start_epoch, ctx.is_main)
    sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    collate_train = partial(collate, pad_to=tc.max_seq_len)
    bar = tqdm(total=tc.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               desc="train", disable=not (progress and ctx.is_main), dynamic_ncols=True)
    best_path = out_dir / BEST if best_epoch is not None else None

    for epoch in range(start_epoch, tc.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        loader = DataLoader(
            train_set, tc.batch_size // ctx.world_size, sampler=sampler, collate_fn=collate_train, drop_last=True,
            generator=torch.Generator().manual_seed(derive_seed(cfg.seed, LOADER_STREAM, epoch)),
            pin_memory=ctx.device.type == "cuda",
        )
        contrast = epoch in tc.contrast_epochs and cfg.model.imagewise
        model.train()
        sums: dict[str, float] = {"loss": 0.0, "cls": 0.0, "reg": 0.0, "con": 0.0}
        for i, batch in enumerate(loader):
            step = epoch * steps_per_epoch + i
            batch = batch.to(ctx.device)
            generator = torch.Generator().manual_seed(derive_seed(cfg.seed, STEP_STREAM, step, ctx.rank))
            with device_autocast(ctx.device):
                out = model(batch.features, batch.mask, batch.segments, batch.labels, contrast=contrast, generator=generator)
            loss, terms = training_loss(out, batch, core.strides, cfg, normaliser, ctx)
            if not math.isfinite(terms["loss"]):  # the same global value on every process: all stop
                raise FloatingPointError(f"the loss is {terms['loss']} at epoch {epoch}, step {step}: "
                                         f"lower train.lr (now {tc.lr}) or check the features")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(core.parameters(), tc.clip_grad)) if tc.clip_grad > 0 else None
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            ema.update(core, step)

            for k in sums:
                sums[k] += terms[k] or 0.0
            log.write({"kind": "step", "epoch": epoch, "step": step, "iteration": i, "lr": lr, **terms, "grad_norm": grad_norm})
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{terms['loss']:.3f}", lr=f"{lr:.2e}")

        # Model selection on the validation videos, with the EMA weights (rank 0).
        val_map = val_ad = None
        selecting = epoch >= min(tc.select_after, tc.epochs - 1)
        if selecting and ctx.is_main:
            if len(val_set):
                scores = evaluate(ema.module, val_set, cfg)
                val_map = None if math.isnan(scores.average_map) else scores.average_map
                val_ad = scores.ad
            if _improves(val_map, best_epoch, best_score):
                best_epoch, best_score = epoch, val_map
                save_checkpoint(out_dir / BEST, {
                    "format": "xcalab-weights-1", "ema": ema.state_dict(),
                    "meta": _metadata(cfg, epoch=epoch, val_average_map=val_map, world_size=ctx.world_size),
                })
        record = ctx.broadcast({  # rank 0's record, with its validation scores, on every process
            "kind": "epoch", "epoch": epoch, "steps": steps_per_epoch,
            **{k: v / steps_per_epoch for k, v in sums.items()},
            "con": sums["con"] / steps_per_epoch if contrast else None,
            "lr": optimizer.param_groups[0]["lr"], "val_average_map": val_map, "val_ad": val_ad,
            "best_epoch": best_epoch, "best_score": best_score, "seconds": time.perf_counter() - started,
        })
        best_epoch, best_score = record["best_epoch"], record["best_score"]
        best_path = out_dir / BEST if best_epoch is not None else None
        history.append(record)
        log.write(record)
        log.write_csv(history)

        # Everything needed to continue exactly from here, every process's RNG states included.
        rng = ctx.gather_objects(rng_state())
        if ctx.is_main:
            save_checkpoint(checkpoint_path, {
                "format": "xcalab-checkpoint-1", "epoch": epoch + 1,
                "model": core.state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "normaliser": normaliser.state_dict(), "rng": rng,
                "best": {"epoch": best_epoch, "score": best_score}, "history": history,
                "meta": _metadata(cfg, epoch=epoch, world_size=ctx.world_size,
                                  best_epoch=best_epoch, best_score=best_score),
            })
        ctx.barrier()

    bar.close()
    log.close()
    return TrainResult(out_dir, checkpoint_path, best_path, best_epoch, best_score, history, ctx.world_size)


# --------------------------------------------------------------------------------------------------
# The command: xcalab train
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``xcalab train`` (for ``xcalab.cli`` to reuse in its sub-command)."""
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


def run(args: argparse.Namespace) -> int:
    """Run ``xcalab train`` from parsed arguments; returns the exit code."""
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


def main(argv: list[str] | None = None) -> int:
    """``xcalab train --preset P [--config overrides.json] --features DIR --annotations JSON --out DIR
    [--resume] [--seed N] [--device auto]``; under ``torchrun`` every process runs it."""
    parser = add_arguments(argparse.ArgumentParser(prog="xcalab train", description="Train the keyframe detector."))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except XcalabInputError as err:
        print(f"xcalab: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
