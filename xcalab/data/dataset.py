"""Feature datasets: what the detector reads, one video at a time, and padded batches with masks.

On disk a data set is a folder of feature files next to an ActivityNet-1.3 annotation file:

    features/<video_id>.npy     (T, 4096) float32, one row-major 64 x 64 vessel map per feature step
    annotations.json            {"database": {video_id: {"subset", "fps", "duration", "annotations"}}}

``FeatureDataset`` pairs them for one subset ("train", "validation" or "test"). An item is one video:

    features   (C, T) float32          channels first, as the detector reads them
    segments   (K, 2) float32          ground-truth actions in feature-grid units (``FeatureGrid``)
    labels     (K,)   int64            0 filling [start, apex], 1 disappearing [apex, end] (setting 0)
    phases     (T,)   int64 or None    the contrast phase of each step, when ``phases/<video_id>.npy`` is
                                       there (``xcalab.data.phases``; synthetic cines), else None

Seconds become grid units in one place, ``FeatureGrid.seconds_to_grid``: g = (seconds * fps - window/2) / stride.

**Training crops.** A training item is cut to a random window first (``xcalab.data.crops``, the
reference's ``truncate_feats``: at most ``max_seq_len`` steps, a random 90-100 % of a shorter video). The
crop's randomness comes from a generator seeded by (seed, epoch, item index) only, never from a shared
stream, so an item is cut the same way whichever process, worker or batch reads it. That is what lets a
resumed run, or a run split over several processes, see exactly the same crops.

**Batches.** ``collate`` stacks videos of different lengths: each is zero-padded on the right to a common
length and a boolean mask (True at real steps) says which steps are real. In training the common length is
``max_seq_len`` (128 in the paper), as in the reference; at inference it is the longest video of the batch.

Bad files are reported by name: a missing feature file, a wrong shape, or NaN / infinite values raise
``XcalabInputError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from xcalab.config import Config
from xcalab.data.annotations import FeatureGrid, VideoAnnotation, read_annotations
from xcalab.data.crops import truncate_features
from xcalab.data.phases import NO_PHASE, PHASE_NAMES, phases_path
from xcalab.errors import XcalabInputError
from xcalab.runtime import CROP_STREAM, derive_seed


class VideoFeatures(NamedTuple):
    """One video of a ``FeatureDataset``.

    video_id   the id in the annotation file
    features   (C, T) float32 features, C = 4096 (one 64 x 64 map per step); cropped in training
    segments   (K, 2) float32 actions [start, end] in feature-grid units (relative to the crop in training)
    labels     (K,) int64 class of each action
    fps        frames per second of the cine
    duration   length of the cine in seconds
    index      position of the video in the data set
    phases     (T,) int64 contrast phase of each step (cropped with the features), or None without labels
    """

    video_id: str
    features: Tensor
    segments: Tensor
    labels: Tensor
    fps: float
    duration: float
    index: int
    phases: Tensor | None = None


class Batch(NamedTuple):
    """Videos padded to a common length T.

    features   (B, C, T) float32, zero at padded steps
    mask       (B, T) bool, True at real steps (videos are left-aligned)
    segments   B tensors (K_b, 2): actions in grid units
    labels     B tensors (K_b,): their classes
    video_ids, fps, duration   one per video
    phases     (B, T) int64 contrast phase of each step, ``NO_PHASE`` (-1) at padded steps; None unless every
               video of the batch has phase labels
    """

    features: Tensor
    mask: Tensor
    segments: list[Tensor]
    labels: list[Tensor]
    video_ids: list[str]
    fps: list[float]
    duration: list[float]
    phases: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with every tensor on ``device``."""
        return self._replace(
            features=self.features.to(device, non_blocking=True),
            mask=self.mask.to(device, non_blocking=True),
            segments=[s.to(device) for s in self.segments],
            labels=[c.to(device) for c in self.labels],
            phases=None if self.phases is None else self.phases.to(device, non_blocking=True),
        )


class FeatureDataset(Dataset):
    """The videos of one subset: feature files + ground truth in grid units (+ random crops in training).

    features_dir   folder holding ``<video_id>.npy`` files of shape (T, feature_dim)
    annotations    path of the ActivityNet-1.3 JSON, or an already read ``{video_id: VideoAnnotation}``
    subset         "train", "validation", "test", or None for every video
    grid           the feature grid (stride and window, in frames) the features were extracted with;
                   default ``FeatureGrid()`` (stride 4, window 4: the paper's)
    feature_dim    features per step (64 * 64 = 4096)
    training       cut every item to a random window (``truncate_features``); off at inference
    max_seq_len    longest training window, in steps (reference 128)
    trunc_thresh   a cropped action is kept if this share of it stays in the window (reference 0.5)
    crop_ratio     short videos are cut to a random length in [low, high] x T (reference (0.9, 1.0))
    seed           seed of the crops (with the epoch and the item index, see ``set_epoch``)
    gain_range     in training, multiply each item's features by a gain drawn uniformly from this range
                   (then clip to [0, 1]): real trees are denser and wider than synthetic ones, so the same
                   opacification covers more of each 64 x 64 map; None (default) leaves features as they are
    clutter_range  in training, add to every step of an item one static map with a per-step mean drawn
                   uniformly from this range (then clip to [0, 1]): another training video's vessel map at a
                   random step, rescaled. Real cines hold static vessel-like structure (catheter, wires, bone
                   edges) that lifts their features' mean to 0.007-0.05 before any contrast; the detector
                   must learn that structure which does not change is not contrast. None (default): none

    Every feature file is checked when the data set is built (it exists, shape (T, feature_dim) with
    T >= 1); NaN and infinite values are caught when a file is read.
    """

    def __init__(
        self,
        features_dir: str | Path,
        annotations: str | Path | Mapping[str, VideoAnnotation],
        subset: str | None = None,
        grid: FeatureGrid | None = None,
        feature_dim: int = 4096,
        training: bool = False,
        max_seq_len: int = 128,
        trunc_thresh: float = 0.5,
        crop_ratio: tuple[float, float] | None = (0.9, 1.0),
        seed: int = 0,
        gain_range: tuple[float, float] | None = None,
        clutter_range: tuple[float, float] | None = None,
    ):
        self.features_dir = Path(features_dir)
        if not self.features_dir.is_dir():
            raise XcalabInputError(self.features_dir, "no such feature folder")
        if isinstance(annotations, (str, Path)):
            annotations = read_annotations(annotations, subset)
        self.videos: list[VideoAnnotation] = [
            v for v in annotations.values() if subset is None or v.subset == subset
        ]
        self.subset = subset
        self.grid = grid if grid is not None else FeatureGrid()
        self.feature_dim = feature_dim
        self.training = training
        self.max_seq_len = max_seq_len
        self.trunc_thresh = trunc_thresh
        self.crop_ratio = crop_ratio
        self.seed = seed
        self.gain_range = gain_range
        self.clutter_range = clutter_range
        self.epoch = 0
        self.lengths = [self._check_file(v.video_id) for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """Training crops depend on the epoch: call this before each epoch (like ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def path(self, video_id: str) -> Path:
        """The feature file of a video."""
        return self.features_dir / f"{video_id}.npy"

    def _check_file(self, video_id: str) -> int:
        """Check existence and shape from the file header only (no data is read) -> T."""
        path = self.path(video_id)
        if not path.is_file():
            raise XcalabInputError(path, f"feature file of video {video_id!r} is missing")
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise XcalabInputError(path, f"not a readable .npy array ({err})") from None
        if array.ndim != 2 or array.shape[1] != self.feature_dim or array.shape[0] < 1:
            raise XcalabInputError(
                path, f"features must have shape (T, {self.feature_dim}) with T >= 1, got {tuple(array.shape)}"
            )
        if not np.issubdtype(array.dtype, np.number):
            raise XcalabInputError(path, f"features must be numbers, got dtype {array.dtype}")
        return int(array.shape[0])

    def load_features(self, video_id: str) -> Tensor:
        """The whole feature sequence of a video, (C, T) float32, checked for NaN and infinite values."""
        path = self.path(video_id)
        array = np.load(path).astype(np.float32, copy=False)
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            step = int(np.flatnonzero(~finite)[0])
            raise XcalabInputError(path, f"features hold NaN or infinite values (first at step {step})")
        return torch.from_numpy(np.ascontiguousarray(array.T))

    def load_phases(self, video_id: str, n_steps: int) -> Tensor | None:
        """The phase labels of a video, (T,) int64, or None when it has none (a real cine)."""
        path = phases_path(self.path(video_id))
        if not path.is_file():
            return None
        try:
            phases = np.load(path)
        except (ValueError, OSError) as err:
            raise XcalabInputError(path, f"not a readable .npy array ({err})") from None
        if phases.shape != (n_steps,) or not np.issubdtype(phases.dtype, np.integer):
            raise XcalabInputError(path, f"phase labels must be {n_steps} integers (one per step), got "
                                         f"{phases.dtype} {phases.shape}")
        if phases.min() < 0 or phases.max() >= len(PHASE_NAMES):
            raise XcalabInputError(path, f"phase labels must lie in 0..{len(PHASE_NAMES) - 1}")
        return torch.from_numpy(phases.astype(np.int64))

    def ground_truth(self, index: int) -> tuple[Tensor, Tensor]:
        """Video ``index``'s actions: segments (K, 2) float32 in grid units and labels (K,) int64."""
        video = self.videos[index]
        seconds = np.array([a.segment for a in video.actions], dtype=np.float64).reshape(-1, 2)
        segments = torch.from_numpy(self.grid.seconds_to_grid(seconds, video.fps)).float()
        labels = torch.tensor([a.label_id for a in video.actions], dtype=torch.int64)
        return segments, labels

    def video(self, index: int) -> VideoFeatures:
        """Video ``index`` whole, never cropped (what inference reads)."""
        video = self.videos[index]
        segments, labels = self.ground_truth(index)
        features = self.load_features(video.video_id)
        phases = self.load_phases(video.video_id, features.shape[1])
        return VideoFeatures(video.video_id, features, segments, labels, video.fps, video.duration, index, phases)

    def __getitem__(self, index: int) -> VideoFeatures:
        """Video ``index``; in training cut to a random window seeded by (seed, epoch, index)."""
        item = self.video(index)
        if not self.training:
            return item
        generator = torch.Generator().manual_seed(derive_seed(self.seed, CROP_STREAM, self.epoch, index))
        # The phase labels ride along as one more row, so they are cut exactly where the features are (the
        # crop's draws do not depend on the number of rows).
        rows = item.features if item.phases is None else torch.cat((item.features, item.phases[None].float()))
        crop = truncate_features(
            rows, item.segments, item.labels, self.max_seq_len, self.trunc_thresh, self.crop_ratio,
            offset=self.grid.offset, generator=generator,
        )
        feats, phases = crop.feats, None
        if item.phases is not None:
            feats, phases = crop.feats[:-1], crop.feats[-1].long()
        if self.gain_range is not None:  # drawn after the crop, from the same generator: still (seed, epoch, index)
            low, high = self.gain_range
            gain = low + (high - low) * float(torch.rand((), generator=generator))
            feats = (feats * gain).clamp_(0.0, 1.0)
        if self.clutter_range is not None:  # after the gain: the clutter's level is what was measured on real cines
            feats = (feats + self._clutter(generator)[:, None]).clamp_(0.0, 1.0)
        return item._replace(features=feats, segments=crop.segments, labels=crop.labels, phases=phases)

    def _clutter(self, generator: torch.Generator) -> Tensor:
        """One static map (feature_dim,) with a mean drawn from ``clutter_range``: a random video's map at a
        random step, rescaled (a video whose map is empty there gives no clutter)."""
        low, high = self.clutter_range
        donor = int(torch.randint(len(self.videos), (), generator=generator))
        step = int(torch.randint(self.lengths[donor], (), generator=generator))
        level = low + (high - low) * float(torch.rand((), generator=generator))
        vessel = self.load_features(self.videos[donor].video_id)[:, step]
        mean = float(vessel.mean())
        return vessel * (level / mean) if mean > 0 else torch.zeros_like(vessel)


def padded_length(lengths: Sequence[int], pad_to: int | None = None, multiple: int = 1) -> int:
    """The common length of a batch: the longest video, at least ``pad_to``, rounded up to ``multiple``."""
    length = max(max(lengths, default=1), pad_to or 0)
    return int(math.ceil(length / multiple) * multiple)


def dataset_for(cfg: Config, features_dir: str | Path, annotations: str | Path | Mapping[str, VideoAnnotation], subset: str | None, training: bool = False) -> FeatureDataset:
    """The ``FeatureDataset`` of one subset with the grid, feature size and crops of ``cfg``."""
    return FeatureDataset(
        features_dir, annotations, subset,
        grid=FeatureGrid(stride=cfg.features.stride, window=cfg.features.window),
        feature_dim=cfg.features.dim, training=training, max_seq_len=cfg.train.max_seq_len,
        trunc_thresh=cfg.train.trunc_thresh, crop_ratio=cfg.train.crop_ratio, seed=cfg.seed,
        gain_range=cfg.train.feature_gain if training else None,
        clutter_range=cfg.train.feature_clutter if training else None,
    )


def collate(items: Sequence[VideoFeatures], pad_to: int | None = None, multiple: int = 1) -> Batch:
    """Stack videos into a ``Batch``: zero-pad each on the right and mark the real steps in ``mask``.

    items     videos with features (C, T_b)
    pad_to    pad to at least this many steps (``max_seq_len`` in training, as the reference does)
    multiple  round the length up to a multiple of this (the reference pads inference input to 128s)

    -> features (B, C, T) and mask (B, T) with T = ``padded_length``. Use ``functools.partial`` to fix
    ``pad_to`` for a ``DataLoader``.
    """
    if not items:
        raise ValueError("collate needs at least one video")
    lengths = [item.features.shape[1] for item in items]
    steps = padded_length(lengths, pad_to, multiple)
    channels = items[0].features.shape[0]
    features = torch.zeros(len(items), channels, steps, dtype=torch.float32)
    for b, item in enumerate(items):
        features[b, :, : lengths[b]] = item.features
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    phases = None
    if all(item.phases is not None for item in items):
        phases = torch.full((len(items), steps), NO_PHASE, dtype=torch.int64)
        for b, item in enumerate(items):
            phases[b, : lengths[b]] = item.phases
    return Batch(
        features,
        mask,
        [item.segments for item in items],
        [item.labels for item in items],
        [item.video_id for item in items],
        [float(item.fps) for item in items],
        [float(item.duration) for item in items],
        phases,
    )
