"""Training SVS-Net on XCA-Synth's opacified-vessel maps, and the extractor it produces.

The data are free: XCA-Synth renders cines with the exact opacified-vessel map of every frame (0 where there
is no iodine, up to 1 where the lumen is fully opacified; catheter, ribs and blush are not vessel). One
training example is a window of 4 frames (t-2, t-1, t, t+1) and the map of frame t:

    windows   drawn over all frames of a pool of simulated cines, the filling front and the washout
              ``front_weight`` times more often than the rest (those frames decide start and end)
    crops     ``crop`` x ``crop`` pixels, zoomed 0.8-1.25x, flipped and rotated by multiples of 90 degrees
    domain    the look-up table (gamma, contrast, level), noise (white or correlated), blur and background
              (a smooth additive field) are redrawn for every example, the same for its 4 frames, so the
              network cannot rely on the simulator's own rendering (domain randomisation)
    loss      BCE + soft Dice on the map: pure Dice is unstable on pre-contrast windows, whose map is empty
    optimiser AdamW with warm-up and cosine decay (the paper: SGD 0.01, Nesterov; too slow for minutes on a CPU);
              an exponential moving average (EMA) of the weights is what gets exported

Every random draw comes from the seed: the weights at step s depend only on (config, s), so a run that was
killed resumes from its last checkpoint to exactly the weights of an uninterrupted run (checkpoints hold
model, EMA, optimiser, step and the torch RNG; the learning rate is a function of the step).

An **Extractor** is the trained network plus its metadata: the working size it was trained at, its version
(a hash of the weights) and its scores. ``load_extractor()`` reads the shipped one from ``data/weights/``
(``torch.load(weights_only=True)``; metadata in the JSON beside it); ``load_or_train`` trains one when the
file is missing.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.stats import rankdata
from torch import Tensor

from xcalab.config import REPO_ROOT
from xcalab.data.io import Cine, atomic_path
from xcalab.errors import XcalabInputError
from xcalab.features.svsnet import SIZES, TARGET_INDEX, WINDOW, SVSNet, SVSNetConfig
from xcalab.features.weights import DEFAULT_WEIGHTS, Extractor, load_extractor, metadata_path, save_extractor

#: A pixel is "vessel" for Dice and AUC when its true opacification reaches this (half-opacified lumen).
VESSEL_THRESHOLD = 0.5
#: First element of every simulator seed drawn here, so training cines never coincide with a benchmark's.
SEED_BASE = 6_401
#: Second element: which set a cine belongs to.
SPLITS = {"train": 1, "validation": 2, "check": 3, "test": 4}


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractorTrainConfig:
    """Everything that fixes a training run (and so its weights).

    size          SVS-Net size ("tiny", "small", "paper")
    seed          seed of the data, the initial weights and dropout
    steps         optimiser steps
    batch_size    windows per step
    crop          side of the training crops (pixels at the working size)
    lr            peak learning rate (AdamW), reached after ``warmup`` steps, then cosine decay to 5 %
    weight_decay  AdamW weight decay
    dice_weight   weight of the soft-Dice loss (BCE has weight 1)
    front_weight  how much more often windows of the filling front and the washout are drawn
    ema_decay     decay of the weights' moving average (the exported weights)
    checkpoint_every  steps between checkpoints
    image_size    XCA-Synth frame size = the extractor's working size
    frames        (min, max) frames per simulated cine
    n_train, n_val  simulated cines for training and validation
    val_windows   validation windows per validation cine
    """

    size: str = "small"
    seed: int = 0
    steps: int = 1200
    batch_size: int = 8
    crop: int = 96
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 1e-4
    dice_weight: float = 1.0
    front_weight: float = 4.0
    ema_decay: float = 0.99
    checkpoint_every: int = 50
    image_size: int = 256
    frames: tuple[int, int] = (40, 160)
    fps_choices: tuple[float, ...] = (7.5, 15.0, 30.0)
    trees: tuple[str, ...] = ("left", "right")
    n_train: int = 40
    n_val: int = 6
    val_windows: int = 8

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.steps < 1 or self.batch_size < 1 or self.crop < 8:
            raise ValueError("steps and batch_size must be >= 1 and crop >= 8")

    @property
    def net(self) -> SVSNetConfig:
        return SIZES[self.size]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, as in a JSON file

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractorTrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        return cls(**clean)


#: A few seconds on a CPU: what the tests train (128 px frames: at 64 px the vessels are 1-2 px wide and
#: a few seconds of training barely move the scores).
SMOKE = ExtractorTrainConfig(size="tiny", steps=100, batch_size=8, crop=64, image_size=128, frames=(24, 32), fps_choices=(15.0,),
                    n_train=4, n_val=2, val_windows=4, checkpoint_every=20, warmup=20, lr=5e-3, ema_decay=0.9)


# --------------------------------------------------------------------------------------------------
# Training cines from XCA-Synth
# --------------------------------------------------------------------------------------------------


def synth_sequences(split: str, cfg: ExtractorTrainConfig, n: int | None = None, progress: bool = False) -> list[Cine]:
    """Simulated cines for ``split`` ("train", "validation", "check" or "test"): list of Cine with truth.

    Cine i has simulator seed (SEED_BASE, split code, cfg.seed, i); its frame rate and tree are drawn from
    that seed too, its length from ``cfg.frames``. ``n`` defaults to n_train / n_val.
    """
    from tqdm.auto import tqdm

    from xcalab.data.synth.simulator import simulate_sequence

    n = {"train": cfg.n_train, "validation": cfg.n_val}.get(split, 2) if n is None else n
    out = []
    for i in tqdm(range(n), desc=f"simulating {split} cines", unit="cine", disable=not progress, leave=False):
        seed = (SEED_BASE, SPLITS[split], cfg.seed, i)
        rng = np.random.default_rng(seed)
        fps = float(rng.choice(cfg.fps_choices))
        tree = str(rng.choice(cfg.trees))
        out.append(
            simulate_sequence(seed, image_size=cfg.image_size, fps=fps, tree=tree, frames_range=cfg.frames,
                              video_id=f"svsnet-{split}-{cfg.seed}-{i}")
        )
    return out


# --------------------------------------------------------------------------------------------------
# Windows: which to draw, and the domain randomisation applied to them
# --------------------------------------------------------------------------------------------------


def target_frames(n_frames: int) -> np.ndarray:
    """Frames t that can be a window's target: the window (t-2 .. t+1) must fit, int64 [N - 3]."""
    return np.arange(TARGET_INDEX, n_frames - (WINDOW - 1 - TARGET_INDEX))


def front_weights(seq: Cine, front_weight: float) -> np.ndarray:
    """Sampling weight of every target frame of a cine, float64 [len(target_frames)].

    ``front_weight`` for frames in the filling (phase 1) or washout (phase 3) phase, 1 elsewhere. Without
    phases, frames whose true vessel area changes fastest (the top third) count as the front.
    """
    t = target_frames(seq.n_frames)
    if seq.truth.phases is not None:
        front = np.isin(seq.truth.phases[t], (1, 3))
    else:
        area = seq.truth.vessel_maps.sum(axis=(1, 2)).astype(np.float64)
        change = np.abs(np.gradient(area))[t]
        front = change >= np.quantile(change, 2 / 3) if change.max() > 0 else np.zeros(len(t), bool)
    return np.where(front, front_weight, 1.0)


class WindowPool:
    """The training cines, kept as uint8, and a weighted list of (cine, target frame) to draw windows from.

    sample(rng, batch, crop, augment) -> (windows (B, 4, crop, crop) float32, maps (B, crop, crop) float32)
    """

    def __init__(self, sequences: list[Cine], front_weight: float = 4.0):
        if not sequences:
            raise ValueError("WindowPool needs at least one cine")
        self.frames, self.maps, self.tree_pixels, index, weights = [], [], [], [], []
        for i, seq in enumerate(sequences):
            if seq.truth is None or seq.truth.vessel_maps is None:
                raise XcalabInputError(seq.meta.get("source", seq.video_id), "training needs true vessel maps")
            self.frames.append(_to_uint8(seq.frames))
            self.maps.append(_to_uint8(seq.truth.vessel_maps))
            # Where this cine's tree ever is: crops are centred there half of the time (also before the
            # contrast arrives, so that "no contrast yet" is learned where it matters).
            self.tree_pixels.append(np.argwhere(seq.truth.vessel_maps.max(axis=0) >= VESSEL_THRESHOLD))
            t = target_frames(seq.n_frames)
            index.append(np.stack([np.full(len(t), i), t], axis=1))
            weights.append(front_weights(seq, front_weight))
        self.index = np.concatenate(index)
        w = np.concatenate(weights)
        self.probability = w / w.sum()

    def window(self, cine: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames (4, H, W) and the map of frame t (H, W), float32 in [0, 1]."""
        frames = self.frames[cine][t - TARGET_INDEX : t - TARGET_INDEX + WINDOW].astype(np.float32) / 255
        return frames, self.maps[cine][t].astype(np.float32) / 255

    def sample(self, rng: np.random.Generator, batch: int, crop: int, augment: bool = True) -> tuple[Tensor, Tensor]:
        picks = rng.choice(len(self.index), size=batch, p=self.probability)
        xs, ys = [], []
        for cine, t in self.index[picks]:
            frames, target = self.window(int(cine), int(t))
            tree = self.tree_pixels[int(cine)]
            centre = tree[rng.integers(len(tree))] if len(tree) and rng.random() < 0.5 else None
            frames, target = random_crop(frames, target, crop, rng, zoom=augment, centre=centre)
            if augment:
                frames = randomise_domain(frames, rng)
            xs.append(frames)
            ys.append(target)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)


def random_crop(
    frames: np.ndarray,
    target: np.ndarray,
    crop: int,
    rng: np.random.Generator,
    zoom: bool = True,
    centre: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A crop x crop view of a window (4, H, W) and its map (H, W): random zoom 0.8-1.25, flips, 90-degree turns.

    The crop is anywhere in the frame, or around ``centre`` (row, col) when given.
    """
    height, width = target.shape
    scale = math.exp(rng.uniform(math.log(0.8), math.log(1.25))) if zoom else 1.0
    side = min(height, width, max(8, round(crop / scale)))
    if centre is None:
        r, c = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    else:  # the centre anywhere in the middle half of the crop, the crop inside the frame
        r0, c0 = (int(v) - side // 2 + int(rng.integers(-side // 4, side // 4 + 1)) for v in centre)
        r, c = min(max(r0, 0), height - side), min(max(c0, 0), width - side)
    stack = np.concatenate([frames[:, r : r + side, c : c + side], target[None, r : r + side, c : c + side]])
    if side != crop:
        resized = F.interpolate(torch.from_numpy(stack)[None], size=(crop, crop), mode="bilinear",
                                align_corners=False, antialias=side > crop)
        stack = resized[0].numpy()
    if zoom:  # the geometric part of the augmentation travels with "zoom"
        stack = np.rot90(stack, k=int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            stack = stack[:, :, ::-1]
    stack = np.ascontiguousarray(stack, dtype=np.float32)
    return stack[:WINDOW], stack[WINDOW]


def randomise_domain(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Redraw the rendering of a window (4, H, W) in [0, 1]: blur, background, look-up table, noise, quantisation.

    One draw for all 4 frames (they come from one acquisition), except the noise, which is new in every frame.
    """
    x = frames
    if rng.random() < 0.5:  # detector / focal-spot blur
        x = ndimage.gaussian_filter(x, sigma=(0, *[rng.uniform(0.3, 1.2)] * 2))
    if rng.random() < 0.7:  # background: a smooth additive field (heart shadow, gain, scatter)
        coarse = rng.normal(size=(1, 1, 4, 4)).astype(np.float32)
        smooth = F.interpolate(torch.from_numpy(coarse), size=x.shape[1:], mode="bicubic", align_corners=False)[0, 0]
        x = x + rng.uniform(0.0, 0.12) * smooth.numpy()
    # Look-up table: gamma, then contrast and level around mid-grey (the SVS-Net shift U(-0.2, 0.2) included).
    gamma = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    x = np.clip(x, 0.0, 1.0) ** gamma
    x = (x - 0.5) * rng.uniform(0.6, 1.4) + 0.5 + rng.uniform(-0.2, 0.2)
    sigma = rng.uniform(0.0, 0.025)  # quantum + electronic noise, white or spatially correlated
    noise = rng.normal(size=x.shape).astype(np.float32)
    if rng.random() < 0.5:
        noise = ndimage.gaussian_filter(noise, sigma=(0, 0.8, 0.8))
        noise /= noise.std() + 1e-6
    x = np.clip(x + sigma * noise, 0.0, 1.0)
    if rng.random() < 0.5:  # 8-bit export
        x = np.rint(x * 255) / 255
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Loss and scores
# --------------------------------------------------------------------------------------------------


def dice_bce_loss(logits: Tensor, target: Tensor, dice_weight: float = 1.0) -> Tensor:
    """BCE(logits, target) + dice_weight * (1 - soft Dice). logits, target (B, H, W); target may be soft (0..1).

    Dice is pooled over the whole batch (2 sum(p y) + 1) / (sum p + sum y + 1), so an all-empty batch still
    has a defined loss (it asks for p = 0).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice_weight * (1 - dice)


def pixel_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of pixel scores against boolean labels (Mann-Whitney U, ties averaged)."""
    scores, labels = np.ravel(scores), np.ravel(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def segmentation_scores(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Dice at ``threshold``, soft Dice and pixel AUC of maps prob [..., H, W] against true maps [..., H, W].

    The truth is binarised at VESSEL_THRESHOLD (a half-opacified lumen) for Dice and AUC; soft Dice compares
    the maps as they are. All pixels of all maps are pooled.
    """
    prob, truth = np.asarray(prob, np.float64), np.asarray(truth, np.float64)
    vessel = truth >= VESSEL_THRESHOLD
    pred = prob >= threshold
    inter = np.logical_and(pred, vessel).sum()
    dice = 2 * inter / max(pred.sum() + vessel.sum(), 1)
    soft = 2 * (prob * truth).sum() / max(prob.sum() + truth.sum(), 1e-9)
    return {"dice": float(dice), "soft_dice": float(soft), "auc": pixel_auc(prob, vessel)}


def best_threshold(prob: np.ndarray, truth: np.ndarray, grid: np.ndarray | None = None) -> tuple[float, float]:
    """(threshold, Dice) maximising Dice over a grid of thresholds (for baselines without a natural one)."""
    prob = np.asarray(prob, np.float32)
    vessel = np.asarray(truth) >= VESSEL_THRESHOLD
    if grid is None:  # quantiles of the scores: works whatever their scale
        grid = np.unique(np.quantile(prob, np.linspace(0.5, 0.999, 80)))
    n_vessel = vessel.sum()
    dices = [2 * np.logical_and(prob >= t, vessel).sum() / max((prob >= t).sum() + n_vessel, 1) for t in grid]
    best = int(np.argmax(dices))
    return float(grid[best]), float(dices[best])


def validation_windows(sequences: list[Cine], per_cine: int) -> tuple[Tensor, Tensor]:
    """Fixed evaluation windows: ``per_cine`` targets per cine, evenly spread over its frames (no augmentation).

    Returns windows (V, 4, H, W) and true maps (V, H, W).
    """
    xs, ys = [], []
    for seq in sequences:
        t = target_frames(seq.n_frames)
        for i in np.linspace(0, len(t) - 1, per_cine).round().astype(int):
            start = t[i] - TARGET_INDEX
            xs.append(seq.frames[start : start + WINDOW])
            ys.append(seq.truth.vessel_maps[t[i]])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


@torch.no_grad()
def predict_windows(model: SVSNet, windows: Tensor, batch_size: int = 8) -> Tensor:
    """Eval-mode vessel probabilities of windows (V, 4, H, W) -> (V, H, W), batch by batch."""
    return torch.cat([model.predict(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)])


def validation_scores(model: SVSNet, windows: Tensor, maps: Tensor) -> dict[str, float]:
    """Scores (``segmentation_scores``) and loss of a model on fixed windows (V, 4, H, W) and maps (V, H, W)."""
    prob = predict_windows(model, windows)
    logits = torch.logit(prob.clamp(1e-6, 1 - 1e-6))
    scores = segmentation_scores(prob.numpy(), maps.numpy())
    scores["loss"] = float(dice_bce_loss(logits, maps))
    return scores


# --------------------------------------------------------------------------------------------------
# The training loop, with checkpoints
# --------------------------------------------------------------------------------------------------


def learning_rate(cfg: ExtractorTrainConfig, step: int) -> float:
    """Linear warm-up to cfg.lr over cfg.warmup steps, then cosine decay to 5 % at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def update_ema(ema: SVSNet, model: SVSNet, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (batch-norm statistics) are copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


@dataclass
class ExtractorTrainResult:
    """What ``train_extractor`` returns: the EMA model, the config, the loss per step and validation scores."""

    model: SVSNet
    config: ExtractorTrainConfig
    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_extractor(
    cfg: ExtractorTrainConfig = ExtractorTrainConfig(),
    run_dir: str | Path | None = None,
    train_sequences: list[Cine] | None = None,
    val_sequences: list[Cine] | None = None,
    resume: bool = True,
    val_every: int | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> ExtractorTrainResult:
    """Train an SVS-Net; returns its EMA weights (in eval mode) and the history.

    Args:
        cfg: the run's configuration (seed, sizes, steps, ...).
        run_dir: where ``checkpoint.pt`` goes (every ``cfg.checkpoint_every`` steps and at the end); None: no
            checkpoints. With ``resume`` an existing checkpoint of the same config is continued.
        train_sequences, val_sequences: cines with true vessel maps; None simulates them from cfg (XCA-Synth).
        val_every: steps between validations (None: only at the end).
        on_step: called as on_step(step, loss) after every step (e.g. to stop a run early in a test).
    """
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = SVSNet(cfg.net)
    ema = copy.deepcopy(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = ExtractorTrainResult(ema, cfg)
    step = 0
    checkpoint = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    if checkpoint is not None and resume and checkpoint.is_file():
        step = _load_checkpoint(checkpoint, cfg, model, ema, optimiser, result)
    if step >= cfg.steps and result.validation and result.validation[-1]["step"] == step:
        ema.eval()  # a finished run (e.g. exported again): nothing to simulate, train or validate
        return result

    # The cines come from numpy generators only, so simulating them after the model is built changes nothing.
    train_sequences = synth_sequences("train", cfg, progress=progress) if train_sequences is None else train_sequences
    val_sequences = synth_sequences("validation", cfg, progress=progress) if val_sequences is None else val_sequences
    pool = WindowPool(train_sequences, cfg.front_weight)
    val_x, val_y = validation_windows(val_sequences, cfg.val_windows)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc=f"training SVS-Net ({cfg.size})", unit="step", disable=not progress)
    model.train()
    while step < cfg.steps:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(cfg, step)
        x, y = pool.sample(np.random.default_rng([cfg.seed, step]), cfg.batch_size, cfg.crop)
        loss = dice_bce_loss(model(x), y, cfg.dice_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        update_ema(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        step += 1
        result.losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
        if val_every and step % val_every == 0 and step < cfg.steps:
            result.validation.append({"step": step, **validation_scores(ema, val_x, val_y)})
        if checkpoint is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            if step == cfg.steps:  # the final validation goes into the last checkpoint too
                result.validation.append({"step": step, **validation_scores(ema, val_x, val_y)})
            now = time.perf_counter()
            result.seconds, started = result.seconds + now - started, now  # elapsed time survives a resume
            _save_checkpoint(checkpoint, cfg, step, model, ema, optimiser, result)
        if on_step is not None:
            on_step(step, result.losses[-1])
    bar.close()
    if not result.validation or result.validation[-1]["step"] != step:
        result.validation.append({"step": step, **validation_scores(ema, val_x, val_y)})
    result.seconds += time.perf_counter() - started
    ema.eval()
    return result


def _save_checkpoint(path: Path, cfg: ExtractorTrainConfig, step: int, model, ema, optimiser, result: ExtractorTrainResult) -> None:
    """Model, EMA, optimiser, step, torch RNG and history, atomically (a kill never leaves half a file)."""
    state = {
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "step": step,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimiser": optimiser.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "losses": torch.tensor(result.losses, dtype=torch.float64),
        "validation": json.dumps(result.validation),
        "seconds": result.seconds + 0.0,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, cfg: ExtractorTrainConfig, model, ema, optimiser, result: ExtractorTrainResult) -> int:
    """Restore a checkpoint into model, ema, optimiser and result; returns its step."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file
        raise XcalabInputError(path, f"cannot read the checkpoint: {err}") from err
    if state.get("config") != json.dumps(cfg.to_dict(), sort_keys=True):
        raise XcalabInputError(path, "the checkpoint belongs to a different training config; use another run folder or --fresh")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimiser.load_state_dict(state["optimiser"])
    torch.set_rng_state(state["torch_rng"])
    result.losses = state["losses"].tolist()
    result.validation = json.loads(state["validation"])
    result.seconds = float(state["seconds"])
    return int(state["step"])


def check_set(cfg: ExtractorTrainConfig) -> tuple[Tensor, Tensor]:
    """The small seeded set an extractor's metadata records its scores on: 2 simulated cines, 6 windows each.

    Returns windows (12, 4, H, W) and true maps (12, H, W).
    """
    return validation_windows(synth_sequences("check", cfg, n=2), per_cine=6)


def fingerprint(*arrays: Tensor) -> str:
    """A short SHA-256 of tensors' bytes: tells whether XCA-Synth still renders the check set as it did."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_scores(extractor: Extractor, cfg: ExtractorTrainConfig | None = None) -> dict[str, Any]:
    """Scores (``segmentation_scores`` + loss) of an extractor on its check set, and the set's fingerprint.

    The shipped metadata records these; the unit tests recompute them.
    """
    cfg = cfg or ExtractorTrainConfig.from_dict(extractor.meta["training"])
    windows, maps = check_set(cfg)
    return {**validation_scores(extractor.model.cpu(), windows, maps), "fingerprint": fingerprint(windows, maps)}


def rescore(path: str | Path) -> dict[str, Any]:
    """Recompute the check-set scores of the extractor at ``path`` and record them in its JSON (weights unchanged).

    For when XCA-Synth's rendering changed and retraining is not wanted yet; the JSON notes that it happened.
    """
    extractor = load_extractor(path)
    side = metadata_path(extractor.path)
    meta = json.loads(side.read_text())
    meta["check"] = check_scores(extractor)
    meta["check_rescored"] = True
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    return meta["check"]


def load_or_train(path: str | Path | None = None, cfg: ExtractorTrainConfig | None = None, progress: bool = True) -> Extractor:
    """The extractor at ``path`` (default: the shipped one); when the file is missing, train it and save it there."""
    path = Path(DEFAULT_WEIGHTS if path is None else path)
    if not path.is_file():
        cfg = cfg or ExtractorTrainConfig()
        run_dir = REPO_ROOT / "data" / "cache" / "runs" / f"{path.stem}-seed{cfg.seed}"
        result = train_extractor(cfg, run_dir=run_dir, progress=progress)
        export(result, path, command="load_or_train()")
    return load_extractor(path)


def training_history(result: ExtractorTrainResult, every: int = 10) -> dict[str, Any]:
    """The loss curve (mean over blocks of ``every`` steps, at the block's last step) and every validation."""
    losses = np.asarray(result.losses, dtype=float)
    n = len(losses) // every
    means = losses[: n * every].reshape(n, every).mean(axis=1) if n else np.zeros(0)
    return {
        "loss_steps": [int((i + 1) * every) for i in range(n)],
        "loss": [round(float(v), 5) for v in means],
        "validation": result.validation,
    }


def export(result: ExtractorTrainResult, path: str | Path, command: str) -> Extractor:
    """Save a training result as an extractor, with its validation and check-set scores in the metadata."""
    cfg = result.config
    extractor = Extractor(result.model.eval(), cfg.image_size)
    meta = {
        "training": cfg.to_dict(),
        "train_seconds": round(result.seconds, 1),
        "final_loss": float(np.mean(result.losses[-20:])) if result.losses else None,
        "validation": result.validation[-1] if result.validation else None,
        "history": training_history(result),
        "check": check_scores(extractor, cfg),
        "check_set": "synth_sequences('check', training config, n=2), validation_windows(per_cine=6)",
        "command": command,
    }
    save_extractor(result.model, path, cfg.image_size, meta)
    return load_extractor(path)


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = ExtractorTrainConfig()
    p = argparse.ArgumentParser(prog="xcalab features train", description="Train SVS-Net on XCA-Synth vessel maps.")
    p.add_argument("--size", choices=tuple(SIZES), default=d.size)
    p.add_argument("--smoke", action="store_true", help="a few seconds on a CPU (the tests' config)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None, help="simulated frame size = working size")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--run-dir", default=None, help="checkpoint folder (default data/cache/runs/svsnet-<size>-seed<seed>)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--export", default=None, help="write the trained extractor here (.pt + .json)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--rescore", metavar="WEIGHTS", default=None,
                   help="only recompute the check-set scores recorded beside WEIGHTS, then exit")
    return p


def config_from_args(args: argparse.Namespace) -> ExtractorTrainConfig:
    base = SMOKE if args.smoke else ExtractorTrainConfig(size=args.size)
    changes = {"seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "crop": args.crop,
               "image_size": args.image_size, "n_train": args.n_train}
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    """``xcalab features train``: resumable training with a progress bar; optional export of the extractor."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rescore:
        scores = rescore(args.rescore)
        print(f"check-set scores of {args.rescore}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "fingerprint"))
        return 0
    cfg = config_from_args(args)
    run_dir = Path(args.run_dir or REPO_ROOT / "data" / "cache" / "runs" / f"svsnet-{cfg.size}-seed{cfg.seed}")
    if args.fresh and (run_dir / "checkpoint.pt").exists():
        (run_dir / "checkpoint.pt").unlink()
    try:
        result = train_extractor(cfg, run_dir, val_every=args.val_every, progress=not args.no_progress)
    except XcalabInputError as err:
        print(f"xcalab: {err}", file=sys.stderr)
        return 2
    last = result.validation[-1]
    print(f"trained {cfg.steps} steps in {result.seconds:.0f} s; validation Dice {last['dice']:.3f}, "
          f"AUC {last['auc']:.3f}, loss {last['loss']:.3f}")
    if args.export:
        command = "python -m xcalab.features.train " + " ".join(argv)  # = `xcalab features train ...`
        extractor = export(result, args.export, command)
        print(f"extractor written to {args.export} ({extractor.meta['bytes'] / 1e6:.1f} MB); "
              f"check-set Dice {extractor.meta['check']['dice']:.3f}, AUC {extractor.meta['check']['auc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
