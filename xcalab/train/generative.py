"""GAF's alternating epochs (Wang et al., seed paper 002; ``xcalab.models.generative_attention``).

Every epoch visits the training set twice (the released code's ``run_one_epoch``):

1. **CVAE phase** (``before_epoch``): the detector and the lambda head stay as they are; one pass optimises
   only the CVAE, L_cvae = mean((X - X_hat)^2) + 0.1 KL(N(mu, sigma^2) || N(lambda, I)), with its own Adam
   (lr ``train.gaf_cvae_lr``, 1e-3, betas (0.8, 0.999)) -- lambda is computed without a gradient.
2. **Detector phase** (``step_loss``): the CVAE frozen, the usual steps train the lambda head and the
   detector on the foreground X * lambda / s, plus the background X * (1 - lambda) / s classified as
   background and the ramped reconstruction loss through the frozen decoder
   (``xcalab.train.losses.module_losses``: gaf_bg, gaf_recon).

"Frozen" is literal: the CVAE's parameters do not require a gradient while a step's graph is built, so its
parameters get no gradient, AdamW (which skips parameters without one) leaves them alone, and gradient
clipping does not count them. The CVAE's Adam state is saved in ``checkpoint.pt``, so a resumed GAF run
continues exactly. One process only: the CVAE phase has no gradient all-reduce.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from xcalab.config import Config
from xcalab.data.dataset import Batch
from xcalab.runtime import STEP_STREAM, derive_seed
from xcalab.train.distributed import Distributed
from xcalab.train.losses import LossNormaliser
from xcalab.train.task import DetectionTask

#: Adam's betas in GAF's CVAE phase (the released code's).
CVAE_BETAS = (0.8, 0.999)


@contextlib.contextmanager
def frozen(parameters: list[nn.Parameter]) -> Iterator[None]:
    """Parameters that require no gradient inside the block (a graph built there leaves them out)."""
    before = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, before):
            p.requires_grad_(flag)


class GenerativeAttentionTask(DetectionTask):
    """STA-IPCon's task with GAF's CVAE phase before every epoch's steps, and the CVAE frozen during them."""

    def side_optimizers(self, core: nn.Module, cfg: Config) -> dict[str, torch.optim.Optimizer]:
        if core.generative is None:
            raise ValueError("GenerativeAttentionTask needs a detector with model.generative_attention on")
        return {"cvae": torch.optim.Adam(core.generative.cvae_parameters(), lr=cfg.train.gaf_cvae_lr,
                                         betas=CVAE_BETAS)}

    def before_epoch(self, state: Any, batches, cfg: Config, epoch: int, ctx: Distributed) -> dict[str, float]:
        """The CVAE phase: one pass over ``batches`` optimising the CVAE alone; returns {"gaf_cvae": summed loss}."""
        if ctx.world_size > 1:
            raise ValueError("GAF's CVAE phase trains in one process (no gradient all-reduce); run without torchrun")
        gaf, optimizer = state.core.generative, state.side_optimizers["cvae"]
        gaf.train()
        total = 0.0
        for i, batch in enumerate(batches):
            batch = batch.to(ctx.device)
            generator = torch.Generator().manual_seed(derive_seed(cfg.seed, STEP_STREAM, epoch, i, 1))
            loss, _ = gaf.cvae_step_loss(batch.features, batch.mask, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        return {"gaf_cvae": total}

    def step_loss(self, model: nn.Module, core: nn.Module, batch: Batch, cfg: Config, epoch: int, step: int,
                  normaliser: LossNormaliser, ctx: Distributed) -> tuple[Tensor, dict[str, Any]]:
        with frozen(core.generative.cvae_parameters()):
            return super().step_loss(model, core, batch, cfg, epoch, step, normaliser, ctx)
