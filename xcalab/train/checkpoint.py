"""What a training run leaves on disk, and what lets it continue exactly: files, RNG states, checkpoints,
weights, the run log and the run lock.

**Files** in a run's folder (written by rank 0 only; checkpoints atomically):

    config.json        the run's configuration
    log.jsonl          one record per step ({"kind": "step", ...every loss term...}) and per epoch
    epochs.csv         one row per epoch
    checkpoint.pt      everything needed to resume: model, EMA, optimiser, scheduler, loss normaliser,
                       epoch, best score so far, history, and every process's RNG states
    best.pt            the selected EMA weights + metadata (config, versions, scores) as a JSON string
    run.lock           the training process's id while it trains

Both ``.pt`` files load with ``torch.load(..., weights_only=True)``: tensors and plain Python values only,
no code. ``load_detector(path)`` rebuilds the model (EMA weights) and its configuration from either file.

**Resuming.** Every random draw of training is either seeded by where it happens (``xcalab.runtime``'s
seed streams) or comes from the global RNGs (drop-path), whose states ``rng_state`` saves at every epoch's
end. So training 2 epochs gives the same weights as training 1, resuming, and training 1 more (on the
CPU). A resumed run may raise ``train.epochs`` or change the device, nothing that changes training
(``check_resumable``).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xcalab import __version__ as xcalab_version
from xcalab.config import Config, config_from_dict, config_to_dict
from xcalab.data.io import atomic_path
from xcalab.errors import XcalabInputError
from xcalab.runtime import PROCESS_STREAM, derive_seed

CHECKPOINT, BEST, LOG, CSV_LOG, CONFIG = "checkpoint.pt", "best.pt", "log.jsonl", "epochs.csv", "config.json"


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


def seed_process(seed: int, rank: int) -> None:
    """Give each process its own global RNG streams (used by drop-path), derived from the seed."""
    process_seed = derive_seed(seed, PROCESS_STREAM, rank)
    random.seed(process_seed)
    np.random.seed(process_seed % 2**32)
    torch.manual_seed(process_seed)


# --------------------------------------------------------------------------------------------------
# Checkpoints and weights
# --------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    return {"xcalab": str(xcalab_version), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def weights_metadata(cfg: Config, **extra: Any) -> str:
    """Config, versions and scores as one JSON string (a plain value inside the checkpoint)."""
    return json.dumps({"config": config_to_dict(cfg), "versions": _versions(), **extra}, default=str)


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


# --------------------------------------------------------------------------------------------------
# The run log, the resume check and the run lock
# --------------------------------------------------------------------------------------------------


class RunLog:
    """log.jsonl (every step and epoch) and epochs.csv; rank 0 only. On resume, records of epochs that
    were not finished (after the checkpoint) are dropped first."""

    CSV_FIELDS = ("epoch", "steps", "loss", "cls", "reg", "con", "lr", "val_average_map", "val_ad", "best_epoch", "seconds")
    #: The loss terms of the other seed papers' modules, in epochs.csv after "con" when the run has them.
    MODULE_TERMS = ("gaf_cvae", "gaf_bg", "gaf_recon", "tsa", "phase")

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
            extra = tuple(k for k in self.MODULE_TERMS if history and k in history[-1])
            fields = self.CSV_FIELDS[:6] + extra + self.CSV_FIELDS[6:]
            writer = csv.DictWriter(f, fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)

    def close(self) -> None:
        if self.enabled:
            self.file.close()


#: What a resumed run may change besides what ``Config.training_identity`` leaves out: more epochs.
RESUMABLE_CHANGES = ("train.epochs",)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: Mapping[str, Any], cfg: Config, where: Path) -> None:
    """A resumed run must train the same thing: its ``training_identity`` equal except ``RESUMABLE_CHANGES``.

    The saved configuration is read back through ``config_from_dict`` first, so a setting added to xcalab after
    the checkpoint was written takes its default -- what the code of that time did -- and does not count as a
    change."""
    old = _flatten(config_from_dict(saved, where).training_identity())
    new = _flatten(cfg.training_identity())
    differ = sorted(
        key for key in old.keys() | new.keys()
        if old.get(key) != new.get(key) and not any(key == c or key.startswith(c + ".") for c in RESUMABLE_CHANGES)
    )
    if differ:
        raise XcalabInputError(where, f"cannot resume: the configuration differs from the checkpoint's in {differ}")


class RunLock:
    """``out_dir/run.lock`` holds the training process's id while it trains (rank 0 only): a second process
    that would train into the same folder (and interleave its checkpoints with the first's) stops with a
    clear error instead. A lock left by a process that no longer runs (killed) is taken over."""

    NAME = "run.lock"

    def __init__(self, out_dir: Path, enabled: bool):
        self.path, self.enabled = out_dir / self.NAME, enabled

    def __enter__(self) -> RunLock:
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
                if pid and pid != os.getpid() and process_alive(pid):
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


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True
