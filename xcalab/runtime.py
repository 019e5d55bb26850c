"""Seeds and devices: the two things every run sets first.

``seed_everything`` makes a run repeatable on the CPU (same seed -> same data, model and numbers);
``resolve_device`` turns "auto" into CUDA when there is one, else the CPU. No code path assumes CUDA.
``count_parameters`` counts what a model trains; ``as_array`` checks what a figure or probe is given.

**Seed streams.** Every random draw of training and inference that must not depend on the order things
run in is seeded by *where it happens*: ``derive_seed(seed, STREAM, ...)`` with one stream per kind of
draw, all listed here so that no two kinds ever share seeds:

    CROP_STREAM     1   a training crop: (seed, epoch, item index)              data.dataset
    STEP_STREAM     2   the model's draws in a training step (ICon steps, PCon patch): (seed, step, rank)
    EVAL_STREAM     3   PCon's patch at inference: (seed, video ids)            inference
    PROCESS_STREAM  4   each process's global RNGs (drop-path): (seed, rank)    train.checkpoint
    LOADER_STREAM   5   the DataLoader's shuffle generator: (seed, epoch)       train.loop
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

CROP_STREAM, STEP_STREAM, EVAL_STREAM, PROCESS_STREAM, LOADER_STREAM = 1, 2, 3, 4, 5


def derive_seed(*keys: int) -> int:
    """A 63-bit seed made from a few non-negative integers, e.g. ``derive_seed(seed, CROP_STREAM, epoch, i)``.

    NumPy's ``SeedSequence`` hashes the keys, so nearby keys give unrelated seeds. Randomness seeded this
    way has no state to save: it is a function of where we are (epoch, step, item), not of what came before.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        # warn_only: a kernel without a deterministic version warns instead of stopping a student's run
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; "cpu" / "cuda" / "cuda:1" are checked and returned."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {name!r}")
    return device


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable (``requires_grad``) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def as_array(x, ndim: int, name: str, shape: str, dtype=np.float32) -> np.ndarray:
    """Anything array-like (torch tensors included, detached to the CPU) as a numpy array of ``ndim``
    dimensions; ValueError naming ``name`` and the expected ``shape`` otherwise."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=dtype)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {shape}, got shape {a.shape}")
    return a
