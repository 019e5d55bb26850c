"""Optimisation: AdamW with two parameter groups, linear warm-up + cosine decay, and a model EMA.

The reference trains STA-IPCon as ActionFormer trains its detector:

**AdamW** (lr 1e-4, betas 0.9 / 0.999, eps 1e-8) with weight decay 0.05 on some parameters only:

    decay      the weights of every Linear, Conv1d and Conv2d, and the weights of the BatchNorm layers
    no decay   every bias, every LayerNorm weight, the per-level regression ``Scale`` and the transformer
               blocks' ``AffineDropPath`` scales; and the learned scalars of the other seed papers' modules
               (TSA's refinement gain, the phase recogniser's Gaussian widths log beta), which are not weights
               to shrink towards 0

The BatchNorm weights are the odd ones out: ActionFormer puts them in neither list, but the reference hides
the long-term attention (ConvLSTM and SA, with SA's BatchNorm) and the imagewise projection inside its first
temporal convolution, and collects that convolution's parameters recursively, so they all get decayed. In
xcalab those modules are ``KeyframeDetector.long_term`` and ``.imagewise``; the BatchNorm layers sit in
``long_term.spatial``. Any parameter the rules above do not cover is an error, so a new kind of layer
forces a decision.

**Learning rate**, set at every iteration i (not every epoch), with W warm-up iterations and a horizon H:

    lr(i) = base * i / W                                               i < W   (starts at 0)
    lr(i) = eta_min + (base - eta_min) * (1 + cos(pi (i - W) / (H - W))) / 2     W <= i <= H
    lr(i) = eta_min                                                    i > H

W = warmup_epochs x iterations per epoch, H = (warmup_epochs + cosine_epochs) x iterations per epoch.
The reference's horizon is 60 epochs (5 + 45 + 10) but it stops after 50, so its last lr is ~7.9e-6, not
eta_min = 1e-8.

**EMA.** After every optimiser step, every entry of the model's state dict -- parameters *and* buffers
such as BatchNorm's running statistics -- is averaged into a copy:

    ema <- decay * ema + (1 - decay) * model,      decay = 0.999

Integer buffers (BatchNorm's batch counter) are copied. The EMA copy is the model that is evaluated and
saved (the reference never evaluates the raw weights).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from xcalab.config import TrainConfig
from xcalab.models.heads import Scale
from xcalab.models.self_attention_refinement import TemporalSelfAttention
from xcalab.models.short_term import AffineDropPath
from xcalab.models.sparse_spatial_attention import PhaseRecogniser

#: The floor of the cosine decay (the reference's eta_min).
ETA_MIN = 1e-8
#: Layers whose ``weight`` is decayed. BatchNorm is here because of the reference (module docstring).
DECAYED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.modules.batchnorm._BatchNorm)
#: Layers whose ``weight`` is not decayed.
UNDECAYED_LAYERS = (nn.LayerNorm, nn.GroupNorm)
#: (name, module class) of the learned scalars that get no decay.
SCALAR_PARAMETERS = {
    ("gain", TemporalSelfAttention),
    ("log_beta_discriminative", PhaseRecogniser),
    ("log_beta_complementary", PhaseRecogniser),
}


# --------------------------------------------------------------------------------------------------
# AdamW and its two parameter groups
# --------------------------------------------------------------------------------------------------


def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay, and of those that do not (module docstring).

    Raises ValueError for a parameter no rule covers.
    """
    decay, no_decay, unknown = [], [], []
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name == "bias":
                no_decay.append(full)
            elif name == "weight" and isinstance(module, DECAYED_LAYERS):
                decay.append(full)
            elif name == "weight" and isinstance(module, UNDECAYED_LAYERS):
                no_decay.append(full)
            elif name == "scale" and isinstance(module, (Scale, AffineDropPath)):
                no_decay.append(full)
            elif (name, type(module)) in SCALAR_PARAMETERS:
                no_decay.append(full)
            else:
                unknown.append(f"{full} ({type(module).__name__})")
    if unknown:
        raise ValueError(f"no weight-decay rule for: {', '.join(unknown)}; add one in xcalab.train.optim")
    return decay, no_decay


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's two groups: {"params": decayed, "weight_decay": wd} and {"params": the rest, "weight_decay": 0}."""
    decay, no_decay = decay_split(model)
    params = dict(model.named_parameters())
    return [
        {"params": [params[n] for n in decay if params[n].requires_grad], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay if params[n].requires_grad], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW(lr, betas (0.9, 0.999), eps 1e-8) over ``parameter_groups(model, train.weight_decay)``."""
    return torch.optim.AdamW(parameter_groups(model, train.weight_decay), lr=train.lr, betas=(0.9, 0.999), eps=1e-8)


# --------------------------------------------------------------------------------------------------
# Linear warm-up, then cosine decay (per iteration)
# --------------------------------------------------------------------------------------------------


def warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, eta_min: float = ETA_MIN) -> float:
    """The learning rate at iteration ``step`` (0-based): the three cases of the module docstring."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if total_steps <= warmup_steps:
        return base_lr
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    return eta_min + (base_lr - eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineSchedule(LRScheduler):
    """``warmup_cosine_lr`` for every parameter group, stepped once per iteration (after the optimiser).

    optimizer      the optimiser; each group's lr at construction is its base lr
    warmup_steps   W, iterations of linear warm-up from 0
    total_steps    H, the iteration at which the cosine reaches ``eta_min``
    eta_min        floor of the cosine (1e-8)

    Its state (``state_dict``) is plain numbers, so it is stored in checkpoints.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, eta_min: float = ETA_MIN):
        if warmup_steps < 0 or total_steps < 0:
            raise ValueError(f"warmup_steps and total_steps must be >= 0, got {warmup_steps}, {total_steps}")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [
            warmup_cosine_lr(self.last_epoch, base, self.warmup_steps, self.total_steps, self.eta_min)
            for base in self.base_lrs
        ]


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, steps_per_epoch: int) -> WarmupCosineSchedule:
    """W = warmup_epochs x steps_per_epoch, H = (warmup_epochs + cosine_epochs) x steps_per_epoch."""
    warmup = train.warmup_epochs * steps_per_epoch
    return WarmupCosineSchedule(optimizer, warmup, warmup + train.cosine_epochs * steps_per_epoch)


# --------------------------------------------------------------------------------------------------
# Model EMA
# --------------------------------------------------------------------------------------------------


class ModelEMA:
    """An exponential moving average of a model's weights: the model that is evaluated and shipped.

    model            the model being trained (unwrapped: not the DDP wrapper); copied once here
    decay            weight of the old average (reference 0.999)
    warmup           ramp the decay up as decay_t = min(decay, (1 + t) / (10 + t)) at update t (the
                     TensorFlow / timm warm-up). Without it, an average of a few hundred steps still holds
                     0.999^t of the random initial weights (0.54 after the 620 steps of the teach preset).
    average_buffers  also average BatchNorm's running statistics (the reference). They start at mean 0,
                     variance 1 and are already running averages of the live model: averaged again they lag
                     so far behind that SA's batch norm (the attention map A) is wrong at inference after a
                     short schedule. False (default) copies them from the live model.

    ``module`` is the averaged copy, in eval mode and without gradients. Call ``update(model, step)``
    after every optimiser step (``step`` counts from 0, so a resumed run continues the same decays).
    The reference behaviour is ``warmup=False, average_buffers=True``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True, average_buffers: bool = False):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        self.decay = float(decay)
        self.warmup = warmup
        self.average_buffers = average_buffers
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._parameters = {name for name, _ in self.module.named_parameters()}

    def decay_at(self, step: int) -> float:
        """The decay used by update number ``step`` (0-based)."""
        return min(self.decay, (1.0 + step) / (10.0 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int = 0) -> None:
        """ema <- d * ema + (1 - d) * model for floating parameters (d = ``decay_at(step)``); floating buffers
        likewise with ``average_buffers``, else copied; integer entries are copied."""
        ema_state, state = self.module.state_dict(), model.state_dict()
        if ema_state.keys() != state.keys():
            raise ValueError("the EMA and the model have different state-dict entries (pass the unwrapped model)")
        decay = self.decay_at(step)
        for name, average in ema_state.items():
            value: Tensor = state[name].detach()
            averaged = name in self._parameters or self.average_buffers
            if average.dtype.is_floating_point and averaged:
                average.mul_(decay).add_(value.to(average.dtype), alpha=1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.module.load_state_dict(state)
