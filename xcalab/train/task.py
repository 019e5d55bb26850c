"""What the training loop trains: the model, the loss of one step, the score of an epoch, and two hooks.

``xcalab.train.loop.train`` calls a ``DetectionTask`` and nothing else that depends on the model, so a new
kind of training subclasses it and overrides what differs (GAF's alternating epochs:
``xcalab.train.generative.GenerativeAttentionTask``). STA-IPCon's task, this one, leaves both hooks empty.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from xcalab.config import Config
from xcalab.data.dataset import Batch, FeatureDataset
from xcalab.inference import device_autocast, evaluate
from xcalab.models.detector import build_detector
from xcalab.runtime import STEP_STREAM, derive_seed
from xcalab.train.distributed import Distributed
from xcalab.train.losses import LossNormaliser, training_loss


class DetectionTask:
    """What the loop trains, and how it judges an epoch: the extension point of ``train``.

    build_model      the network of ``cfg`` (seeded just before, so every run of a seed starts the same)
    side_optimizers  name -> optimiser of a part trained outside the step (saved in ``checkpoint.pt``)
    before_epoch     a pass before the epoch's steps; returns its summed loss terms for the epoch's record
    step_loss        the loss of one step and its terms for the log
    validate         (the score epochs are selected on -- higher is better, None without one -- and the AD)
    """

    def build_model(self, cfg: Config) -> nn.Module:
        return build_detector(cfg)

    def side_optimizers(self, core: nn.Module, cfg: Config) -> dict[str, torch.optim.Optimizer]:
        return {}

    def before_epoch(self, state: Any, batches, cfg: Config, epoch: int, ctx: Distributed) -> dict[str, float]:
        """``state`` is the loop's ``TrainingState``; ``batches`` a fresh pass over the epoch's shuffle."""
        return {}

    def step_loss(self, model: nn.Module, core: nn.Module, batch: Batch, cfg: Config, epoch: int, step: int,
                  normaliser: LossNormaliser, ctx: Distributed) -> tuple[Tensor, dict[str, Any]]:
        contrast = epoch in cfg.train.contrast_epochs and cfg.model.imagewise
        generator = torch.Generator().manual_seed(derive_seed(cfg.seed, STEP_STREAM, step, ctx.rank))
        with device_autocast(ctx.device):
            out = model(batch.features, batch.mask, batch.segments, batch.labels, contrast=contrast,
                        generator=generator, background=cfg.model.generative_attention)
        return training_loss(out, batch, core.strides, cfg, normaliser, ctx, epoch)

    def validate(self, model: nn.Module, dataset: FeatureDataset, cfg: Config) -> tuple[float | None, float | None]:
        scores = evaluate(model, dataset, cfg)
        return (None if math.isnan(scores.average_map) else scores.average_map), scores.ad
