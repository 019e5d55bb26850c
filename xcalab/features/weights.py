"""The vessel extractor as shipped: a trained SVS-Net, its metadata JSON beside the weights, and loading them.

    extractor = load_extractor()            # data/weights/svsnet_small.pt + svsnet_small.json, checked by SHA-256
    extractor.model, extractor.work_size, extractor.version

``xcalab.features.train`` writes these files (``save_extractor``); ``xcalab.features.extract`` and
``xcalab locate`` read them. Weights load with ``torch.load(weights_only=True)``: no pickled code.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xcalab.config import WEIGHTS_DIR
from xcalab.data.io import atomic_path
from xcalab.errors import XcalabInputError
from xcalab.features.svsnet import TARGET_INDEX, WINDOW, SVSNet, SVSNetConfig
from xcalab.runtime import count_parameters, resolve_device

#: The shipped extractor (weights; the JSON metadata sits beside it with the same stem).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "svsnet_small.pt"


@dataclass
class Extractor:
    """A trained SVS-Net ready for feature export.

    model      the network (eval mode)
    work_size  frames are resized so their longer side is this (the size it was trained at)
    meta       its metadata (config, training, scores, versions, the command that made it)
    path       the weights file it came from, if any
    """

    model: SVSNet
    work_size: int
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def version(self) -> str:
        """A short hash of the weights: features from different weights never share a cache entry."""
        if "sha256" in self.meta:
            return str(self.meta["sha256"])[:16]
        h = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def metadata_path(weights: str | Path) -> Path:
    """The JSON beside a weights file: same stem, .json."""
    return Path(weights).with_suffix(".json")


def save_extractor(model: SVSNet, path: str | Path, work_size: int, meta: dict[str, Any] | None = None) -> Path:
    """Write the weights (a plain state dict) and the JSON metadata beside them, both atomically.

    The JSON records the network config, the working size, the weights' SHA-256, library versions and
    whatever ``meta`` adds (training config, scores, the command).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    record = {
        "what": "SVS-Net vessel extractor for xcalab (4 frames -> vessel map of the third)",
        "network": model.config.to_dict(),
        "parameters": count_parameters(model),
        "work_size": work_size,
        "window": WINDOW,
        "target_index": TARGET_INDEX,
        "sha256": digest,
        "bytes": path.stat().st_size,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        **(meta or {}),
    }
    with atomic_path(metadata_path(path)) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path


def load_extractor(path: str | Path | None = None, device: str | torch.device = "cpu") -> Extractor:
    """Read an extractor: weights with ``torch.load(weights_only=True)``, metadata from the JSON beside them.

    ``path`` defaults to the shipped ``data/weights/svsnet_small.pt``. Raises XcalabInputError when a file
    is missing or unreadable, or when the weights do not match the SHA-256 their metadata records.
    """
    path = Path(DEFAULT_WEIGHTS if path is None else path)
    side = metadata_path(path)
    if not path.is_file():
        raise XcalabInputError(path, "no such weights file (train one with `xcalab features train --export PATH`)")
    if not side.is_file():
        raise XcalabInputError(side, "missing: the extractor's metadata JSON must sit beside its weights")
    try:
        meta = json.loads(side.read_text())
        config = SVSNetConfig(**meta["network"])
        work_size = int(meta["work_size"])
    except (ValueError, KeyError, TypeError) as err:
        raise XcalabInputError(side, f"not an extractor's metadata ({err})") from err
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if meta.get("sha256") not in (None, digest):
        raise XcalabInputError(path, "the weights do not match the SHA-256 recorded in their metadata JSON")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = SVSNet(config)
        model.load_state_dict(state)
    except Exception as err:  # unpickling refused, wrong keys or shapes
        raise XcalabInputError(path, f"cannot load the weights: {err}") from err
    meta["sha256"] = digest
    device = resolve_device(device) if isinstance(device, str) else device
    return Extractor(model.to(device).eval(), work_size, meta, path)
