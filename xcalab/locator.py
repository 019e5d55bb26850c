"""One cine in, its keyframes record out: the detector, the extractor and the calibrated decision behind
``xcalab locate``, the attention explorer and the notebooks.

    from xcalab.locator import load_locator, locate_sequence
    locator = load_locator()                       # the shipped locate weights, on "auto" device
    result = locate_sequence(read_sequence("run1.dcm"), locator)
    result.record["apex"]                          # {"frame": 31, "seconds": 1.03, "score": 0.87}

``load_locator`` reads detector weights (``weights_only=True``) and how to feed them (rate, stride,
calibration, from the weights' metadata); ``locate_sequence`` runs ``xcalab.inference`` on a cine already
read -- resampled to that rate, vessel features, the detector, the ordered decode, the decision -- and
returns the JSON record of ``keyframes.json`` with the arrays a summary figure draws. Files, batches and the
command are ``xcalab.locate``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xcalab import __version__
from xcalab.config import WEIGHTS_DIR
from xcalab.data.annotations import FeatureGrid
from xcalab.data.io import Cine
from xcalab.decision import KEYFRAME_NAMES, Calibration, Decision, VesselEvidence, decide, ordered_pair
from xcalab.errors import XcalabInputError
from xcalab.features.weights import load_extractor
from xcalab.inference import detect_features, locate_features, step_scores
from xcalab.models.detector import load_detector, read_checkpoint
from xcalab.runtime import resolve_device

#: The weights ``locate`` uses unless told otherwise (trained on XCA-Synth's archive-like mix).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "detector-locate-sta-ipcon-seed0.pt"
SCHEMA = "xcalab-keyframes/1"


# --------------------------------------------------------------------------------------------------
# The model: detector + extractor + how to feed them, read from the weights
# --------------------------------------------------------------------------------------------------


@dataclass
class Locator:
    """Everything ``locate`` needs, loaded once for a batch of cines.

    model        the detector (eval mode, on ``device``); cfg its training configuration
    rate         frames per second cines are resampled to (None: used at their own rate)
    stride       feature stride on the (resampled) cine
    calibration  decision thresholds and confidence maps (``xcalab.decision.Calibration``)
    weights      the file they came from, and its SHA-256
    """

    model: torch.nn.Module
    cfg: Any
    extractor: Any
    rate: float | None
    stride: int
    calibration: Calibration
    weights: Path
    sha256: str
    device: torch.device
    trained_on: str = ""


def load_locator(weights: str | Path | None = None, device: str = "auto") -> Locator:
    """Load detector weights (``weights_only=True``; pickled code is refused) and the shipped extractor.

    The weights' metadata say how cines are fed to them (``meta["inference"]``: rate, stride, calibration);
    weights without it (e.g. the teach detector) run at the cines' own rate, on their training stride,
    with default thresholds.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise XcalabInputError(path, "no such weights file")
    dev = resolve_device(device)
    ckpt = read_checkpoint(path)
    try:
        meta = json.loads(ckpt["meta"])
        model, cfg = load_detector(path, device=dev)
    except (ValueError, KeyError, RuntimeError, TypeError) as err:
        raise XcalabInputError(path, f"not detector weights xcalab can load ({str(err).splitlines()[0]})") from None
    inference = meta.get("inference") or {}
    calibration = Calibration.from_dict(inference.get("calibration", {}))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return Locator(model, cfg, load_extractor(device=dev), inference.get("rate"),
                   int(inference.get("stride", cfg.features.stride)), calibration, path, sha, dev,
                   str(inference.get("trained_on", meta.get("command", ""))))


def locator_for_model(model: torch.nn.Module, cfg: Any, name: str = "in-memory detector") -> Locator:
    """A ``Locator`` around a detector already in memory (say a notebook's trained run): the cines' own
    rate, the model's training stride, default thresholds, the shipped extractor."""
    device = next(model.parameters()).device
    return Locator(model.eval(), cfg, load_extractor(device=device), None, int(cfg.features.stride),
                   Calibration(), Path(name), "", device, name)


# --------------------------------------------------------------------------------------------------
# One cine
# --------------------------------------------------------------------------------------------------


@dataclass
class LocateResult:
    """One cine's answer: the JSON record, and the arrays its summary figure draws.

    record        what ``keyframes.json`` holds
    sequence      the cine as read (original frames and rate); None when ``locate(keep_frames=False)``
    step_times    [T] seconds of each feature step's centre
    scores        [T, 2] per-step class probabilities (filling, disappearing)
    vessel_curve  [T] mean vessel probability per step (what the detector sees)
    decision      the ``xcalab.decision.Decision``
    activitynet   the kept segments in ActivityNet results format
    frame_index   [M] the original frame of each analysed (resampled) frame
    attention     with ``locate_sequence(..., return_attention=True)``: every map the detector captured, for
                  this cine, as numpy arrays; ``kinds`` beside it (``xcalab.models.detector.MapKind``)
    """

    record: dict[str, Any]
    sequence: Cine
    step_times: np.ndarray
    scores: np.ndarray
    vessel_curve: np.ndarray
    decision: Decision
    activitynet: list[dict[str, Any]] = field(default_factory=list)
    frame_index: np.ndarray | None = None
    attention: dict[str, np.ndarray] | None = None
    kinds: dict[str, Any] | None = None


def _frame_of(seconds: float, seq: Cine) -> int:
    return int(min(max(round(seconds * seq.fps), 0), seq.n_frames - 1))


def plateau_frames(vessel_curve: np.ndarray, step_times: np.ndarray, apex_s: float, end_s: float | None,
                   level: float = 0.7) -> tuple[float, float]:
    """(first, last) seconds of the opacified plateau: from the apex to the last step before the end (or the
    cine's end) where the vessel curve still reaches ``level`` x its peak after the apex. The last step
    above, not the first below: the heartbeat makes the curve dip for a frame or two inside the plateau."""
    first = int(np.argmin(np.abs(step_times - apex_s)))
    stop = len(step_times) if end_s is None else max(first + 1, int(np.searchsorted(step_times, end_s, "right")))
    window = vessel_curve[first:stop]
    above = np.flatnonzero(window >= level * window.max())
    return float(step_times[first]), float(step_times[first + int(above[-1])])


def end_diastolic_frames(seq: Cine, plateau_s: tuple[float, float] | None, apex_frame: int | None) -> list[int]:
    """R-wave frames (end diastole) inside the plateau, nearest the apex first; [] without ECG timing."""
    rwaves = [int(f) for f in seq.meta.get("rwave_frames", []) or []]
    if not rwaves or plateau_s is None or apex_frame is None:
        return []
    first, last = plateau_s[0] * seq.fps, plateau_s[1] * seq.fps
    inside = [f for f in rwaves if first - 0.5 <= f <= last + 0.5]
    return sorted(inside, key=lambda f: (abs(f - apex_frame), f))


def locate_sequence(seq: Cine, locator: Locator, return_attention: bool = False) -> LocateResult:
    """Keyframes of one cine (already read): features -> detector -> ordered decode -> decision.

    With ``return_attention`` the same forward also captures every attention map (``LocateResult.attention``).
    """
    rate = locator.rate if locator.rate is not None else float("inf")  # None: weights trained on native rates
    features, small, index = locate_features(seq, locator.extractor, locator.device, rate=rate, stride=locator.stride)
    grid = FeatureGrid(stride=locator.stride, window=locator.cfg.features.window)
    prediction, out = detect_features(locator.model, features, small.fps, small.duration, seq.video_id, grid,
                                      seed=locator.cfg.seed, return_attention=return_attention)
    cal = locator.calibration
    pair = ordered_pair(prediction, cal.sigma_s)
    vessel_curve = features.mean(axis=1)
    step_times = np.asarray(grid.grid_to_seconds(np.arange(features.shape[0], dtype=np.float64), small.fps))
    evidence = VesselEvidence.of(vessel_curve, step_times)
    decision = decide(pair, small.duration, cal, evidence)
    scores = step_scores([c.cpu() for c in out.cls_logits], locator.model.strides, features.shape[0])

    scores_of = (None if pair is None else pair.filling_score, None if pair is None else pair.score,
                 None if pair is None else pair.disappearing_score)
    keyframes = {}
    for name, t, s in zip(KEYFRAME_NAMES, decision.keyframes, scores_of):
        keyframes[name] = None if t is None else {"frame": _frame_of(t, seq), "seconds": round(float(t), 4),
                                                  "score": round(float(s), 4)}
    apex_frame = keyframes["apex"]["frame"] if keyframes["apex"] else None
    plateau = None
    if decision.keyframes[1] is not None:
        plateau = plateau_frames(vessel_curve, step_times, decision.keyframes[1], decision.keyframes[2])
    segments = None
    if decision.status != "no_contrast" and pair is not None:
        segments = {
            "filling": {"start_s": round(pair.filling[0], 4), "end_s": round(pair.filling[1], 4),
                        "score": round(pair.filling_score, 4)},
            "disappearing": {"start_s": round(pair.disappearing[0], 4), "end_s": round(pair.disappearing[1], 4),
                             "score": round(pair.disappearing_score, 4)},
        }
    has_ecg = bool(seq.meta.get("rwave_frames"))
    record = {
        "schema": SCHEMA,
        "video_id": seq.video_id,
        "input": Path(str(seq.meta.get("source", seq.video_id))).name,
        "status": decision.status,
        "confidence": round(decision.confidence, 4),
        **keyframes,
        "segments": segments,
        "plateau_s": None if plateau is None else [round(plateau[0], 4), round(plateau[1], 4)],
        "ecg": has_ecg,
        "end_diastolic_frames": end_diastolic_frames(seq, plateau, apex_frame) if decision.status != "no_contrast" else [],
        "n_frames": seq.n_frames,
        "fps": seq.fps,
        "settings": {
            "analysed_fps": small.fps, "analysed_frames": small.n_frames, "feature_stride": locator.stride,
            "feature_window": grid.window, "feature_steps": int(features.shape[0]), "setting": 0,
            "decode": "ordered pair", "calibration": cal.to_dict(), "vessel_evidence": evidence.to_dict(),
            "device": str(locator.device),
        },
        "weights": {"file": locator.weights.name, "sha256": locator.sha256, "trained_on": locator.trained_on},
        "xcalab_version": __version__,
    }
    attention = None
    if return_attention:
        attention = {name: value.float().cpu().numpy() for name, value in out.attention_of(0).items()}
    return LocateResult(record, seq, step_times, scores, vessel_curve, decision, prediction.to_activitynet(),
                        np.asarray(index), attention, dict(out.kinds) if return_attention else None)
