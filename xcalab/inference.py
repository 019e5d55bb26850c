"""Inference: a cine in, scored segments, per-step class scores and honest keyframes out.

This is the one path from pixels to keyframes that ``xcalab locate``, the notebooks and the explorer share:

    cine (N frames at f fps)
      -> resample_cine: one frame every 2/15 s (7.5 fps: every frame of a 7.5 fps cine, every 2nd at 15 fps,
         every 4th at 30 fps), so a feature step lasts the same 133 ms whatever the acquisition rate
      -> vessel features: the shipped SVS-Net on 4-frame windows at stride 1 -> (T, 4096)
      -> detector -> per-level class logits and boundary offsets -> Soft-NMS (``postprocess.decode_video``)
      -> ordered_pair: the best (filling, disappearing) pair with start <= apex <= end, decoded jointly
      -> decide: status ok / partial / no_contrast, which keyframes the cine holds, a calibrated confidence

**Why one rate.** The paper's clinical cines, and so its detector, mix rates while its feature step is
always 4 frames: a 4-step filling means 0.53 s at 30 fps and 2.1 s at 7.5 fps. Contrast physics runs in
seconds, not frames. Resampling to one rate makes the detector's regression ranges, local-attention windows
and ConvLSTM memory mean the same durations on every cine, and lets one model serve 7.5, 15 and 30 fps.
The frames kept are real acquired frames (nearest in time), not averages: a 7.5 fps archive is exactly
what a 30 fps run looks like when only every 4th exposure is stored.

The ordered decode and the decision (status, keyframes present, confidence) are ``xcalab.decision``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xcalab.config import LOCATE_FPS, LOCATE_STRIDE, Config
from xcalab.data.annotations import FeatureGrid
from xcalab.data.dataset import FeatureDataset, collate
from xcalab.data.io import Cine
from xcalab.errors import XcalabInputError
from xcalab.metrics import PAPER_TIOUS
from xcalab.models.detector import KeyframeDetector
from xcalab.postprocess import PostprocessConfig, VideoPrediction, decode_batch
from xcalab.runtime import EVAL_STREAM, derive_seed
from xcalab.scoring import Evaluation, score_predictions

# --------------------------------------------------------------------------------------------------
# 1. One rate
# --------------------------------------------------------------------------------------------------


def resample_index(n_frames: int, fps: float, rate: float = LOCATE_FPS) -> np.ndarray:
    """Frames kept when a cine of ``n_frames`` at ``fps`` is resampled to ``rate``: int64 [M].

    Frame j of the result is the acquired frame nearest to time j / rate. A cine slower than ``rate``
    keeps every frame (nothing is invented). Examples: 30 fps -> 0, 4, 8, ...; 15 fps -> 0, 2, 4, ...
    """
    if n_frames < 1 or not fps > 0 or not rate > 0:
        raise ValueError(f"need n_frames >= 1, fps > 0 and rate > 0, got {n_frames}, {fps}, {rate}")
    if fps <= rate * (1 + 1e-6):
        return np.arange(n_frames, dtype=np.int64)
    count = int(math.floor((n_frames - 1) * rate / fps + 1e-9)) + 1
    return np.minimum(np.rint(np.arange(count) * fps / rate), n_frames - 1).astype(np.int64)


def resample_cine(seq: Cine, rate: float = LOCATE_FPS) -> tuple[Cine, np.ndarray]:
    """(the cine at ``rate`` -- or at its own rate when slower --, the original index of each kept frame).

    Truth, when present, is carried over frame by frame (keyframes become fractional positions on the new
    axis only through seconds: callers convert with the original fps).
    """
    index = resample_index(seq.n_frames, seq.fps, rate)
    new_fps = rate if seq.fps > rate * (1 + 1e-6) else seq.fps
    meta = {**seq.meta, "resampled_from_fps": seq.fps}
    return Cine(seq.frames[index], new_fps, video_id=seq.video_id, meta=meta), index


# --------------------------------------------------------------------------------------------------
# 2. The detector on one cine or a padded batch
# --------------------------------------------------------------------------------------------------


def device_autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op on the CPU (float32 there). The training loop's forward uses it too."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def detect_batch(
    model: torch.nn.Module,
    features: Tensor,
    mask: Tensor,
    fps: Sequence[float],
    duration: Sequence[float],
    video_ids: Sequence[str],
    grid: FeatureGrid,
    setting: int = 0,
    seed: int = 0,
    postprocess: PostprocessConfig | None = None,
    return_attention: bool = False,
) -> tuple[list[VideoPrediction], Any]:
    """Forward a padded batch and decode every cine: (one ``VideoPrediction`` each, the raw output).

    features (B, C, T) and mask (B, T) on the model's device. PCon's random patch is drawn from a
    generator seeded by (seed, the batch's video ids), so a prediction does not depend on data-set order.
    With ``return_attention`` the raw output also holds every attention map and its kind.
    """
    device = features.device
    key = zlib.crc32(" ".join(video_ids).encode())
    generator = torch.Generator().manual_seed(derive_seed(seed, EVAL_STREAM, key))
    with device_autocast(device):
        out = model(features, mask, generator=generator, return_attention=return_attention)
    predictions = decode_batch(
        [c.float().cpu() for c in out.cls_logits], [o.float().cpu() for o in out.offsets],
        [m.cpu() for m in out.masks], model.strides, list(fps), list(duration), grid,
        setting=setting, config=postprocess or PostprocessConfig(), video_ids=list(video_ids),
    )
    return predictions, out


def detect_features(model: torch.nn.Module, features: np.ndarray, fps: float, duration: float, video_id: str,
                    grid: FeatureGrid, seed: int = 0, return_attention: bool = False) -> tuple[VideoPrediction, Any]:
    """``detect_batch`` for one cine's features (T, C) float32: (its ``VideoPrediction``, the raw output)."""
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(features.T))[None].to(device)
    mask = torch.ones(1, features.shape[0], dtype=torch.bool, device=device)
    (prediction,), out = detect_batch(model, x, mask, [fps], [duration], [video_id], grid, seed=seed,
                                      return_attention=return_attention)
    return prediction, out


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


@torch.no_grad()
def predict_phases(model: KeyframeDetector, dataset: FeatureDataset) -> list[np.ndarray]:
    """The contrast phase of every step of every video of ``dataset``, from the detector's phase recogniser.

    model    a detector built with ``phase_attention`` (``xcalab.models.sparse_spatial_attention``)
    Returns one (T,) int64 array per video, in data-set order: the argmax of the fused phase probabilities
    (labels of ``xcalab.data.phases.PHASE_NAMES``). Whole videos, one at a time, in eval mode.
    """
    if getattr(model, "phase", None) is None:
        raise ValueError("this detector has no phase recogniser: build it with model.phase_attention=True")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    phases = []
    for i in range(len(dataset)):
        batch = collate([dataset.video(i)]).to(device)
        with device_autocast(device):
            out = model(batch.features, batch.mask).phases  # the full forward: GAF, if on, comes first
        phases.append(out.probabilities[0].float().argmax(dim=0).cpu().numpy())
    model.train(was_training)
    return phases


def evaluate(
    model: KeyframeDetector,
    dataset: FeatureDataset,
    cfg: Config,
    predictions: list[VideoPrediction] | None = None,
    tious: Sequence[float] = PAPER_TIOUS,
) -> Evaluation:
    """Predict ``dataset`` (unless ``predictions`` are given) and score it (``scoring.score_predictions``)."""
    if predictions is None:
        predictions = predict(model, dataset, cfg)
    return score_predictions(predictions, dataset.videos, cfg.features.window, tious)


def step_scores(cls_logits: Sequence[Tensor], strides: Sequence[int], n_steps: int) -> np.ndarray:
    """Per feature step and class, the highest probability any pyramid point covering it gives: [T, C].

    cls_logits: per level (1, C, T_l) or (C, T_l). A level-l point i covers steps [i s_l, (i + 1) s_l).
    """
    best = None
    for logits, stride in zip(cls_logits, strides):
        prob = torch.sigmoid(logits.float().reshape(-1, logits.shape[-1]))  # [C, T_l]
        up = prob.repeat_interleave(int(stride), dim=1)[:, :n_steps]
        if up.shape[1] < n_steps:  # a coarse level shorter than T: pad with its last point
            up = torch.cat([up, up[:, -1:].expand(-1, n_steps - up.shape[1])], dim=1)
        best = up if best is None else torch.maximum(best, up)
    return best.t().cpu().numpy()


# --------------------------------------------------------------------------------------------------
# 3. Vessel features of any cine, on the one grid
# --------------------------------------------------------------------------------------------------


def locate_features(seq: Cine, extractor, device: str | torch.device = "auto", cache=None,
                    rate: float = LOCATE_FPS, stride: int = LOCATE_STRIDE) -> tuple[np.ndarray, Cine, np.ndarray]:
    """(features (T, 4096) float32, the resampled cine, original frame of each resampled frame).

    Raises ``XcalabInputError`` (naming the file) when the resampled cine is shorter than one window.
    """
    from xcalab.features.extract import extract_features
    from xcalab.features.svsnet import WINDOW

    small, index = resample_cine(seq, rate)
    if small.n_frames < WINDOW:
        raise XcalabInputError(seq.meta.get("source", seq.video_id),
                               f"{seq.n_frames} frames at {seq.fps:g} fps give {small.n_frames} frames at "
                               f"{small.fps:g} fps; a feature step needs {WINDOW}")
    features = extract_features(small, "learned", stride, extractor, device=device, cache=cache)
    return features, small, index


__all__ = [
    "detect_batch", "detect_features", "device_autocast", "evaluate", "locate_features",
    "predict", "resample_cine", "resample_index", "step_scores",
]
