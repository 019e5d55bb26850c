"""Scoring: predictions + ground truth -> numbers. Pure (no model, no files), below the training loop.

``score_predictions`` gives what the training loop selects on and what notebooks show: mAP per tIoU with
the paper's protocol (top-1 segment per class and video) and ActivityNet's (every kept segment), the
average keyframe deviation AD (eq. 14's keyframes, nearest frames) and the reference's ``ad_paper``
(truncated frames vs int(true - window / 2)), and frame-level precision / recall / F.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xcalab.data.annotations import VideoAnnotation
from xcalab.metrics import (
    PAPER_TIOUS,
    PRF,
    GroundTruth,
    MapResult,
    average_deviation,
    mean_average_precision,
    mean_frame_prf,
)
from xcalab.postprocess import VideoPrediction


@dataclass
class Evaluation:
    """Scores of one model on one subset.

    predictions   one ``VideoPrediction`` per video
    map_top1      mAP per tIoU with the paper's protocol (top-1 segment per class and video)
    map_all       mAP per tIoU over every kept segment (ActivityNet's protocol)
    ad            average keyframe deviation in frames (nearest frames vs the true keyframes), over
                  the videos whose keyframes could be decoded
    ad_paper      the same as the reference computes it (int() frames vs int(true - 2): 2 frames worse)
    prf           frame-level precision / recall / F (macro with background, the paper's convention)
    n_missing     videos where a class had no detection (no keyframes; they count in mAP only)
    """

    predictions: list[VideoPrediction]
    map_top1: MapResult | None
    map_all: MapResult | None
    ad: float | None
    ad_paper: float | None
    prf: PRF | None
    n_missing: int

    @property
    def average_map(self) -> float:
        """The paper's headline number: average over tIoU 0.3:0.1:0.7 of the top-1 mAP (NaN without ground truth)."""
        return self.map_top1.average_map if self.map_top1 is not None else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers."""
        return {
            "average_map": None if math.isnan(self.average_map) else self.average_map,
            "map_top1": None if self.map_top1 is None else self.map_top1.as_dict(),
            "map_all": None if self.map_all is None else self.map_all.as_dict(),
            "ad": self.ad, "ad_paper": self.ad_paper,
            "prf": None if self.prf is None else self.prf._asdict(),
            "n_videos": len(self.predictions), "n_missing": self.n_missing,
        }


def score_predictions(
    predictions: Sequence[VideoPrediction],
    videos: Sequence[VideoAnnotation],
    window: int,
    tious: Sequence[float] = PAPER_TIOUS,
) -> Evaluation:
    """Score predictions against the videos' ground truth: mAP (both protocols), AD, frame P/R/F.

    predictions  one ``VideoPrediction`` per video (``xcalab.inference.predict``)
    videos       the ground truth of those videos
    window       frames per feature step (the reference's AD convention subtracts window / 2)
    """
    truth = [GroundTruth(v.video_id, a.label_id, *a.segment) for v in videos for a in v.actions]
    detections = [d for p in predictions for d in p.detections()]
    map_top1 = map_all = None
    if truth:
        map_top1 = mean_average_precision(detections, truth, tious, protocol="top1")
        map_all = mean_average_precision(detections, truth, tious, protocol="all")
    by_id = {v.video_id: v for v in videos}
    decoded = [(p, by_id[p.video_id]) for p in predictions if p.keyframes is not None and by_id[p.video_id].keyframes]
    ad = ad_paper = prf = None
    if decoded:
        nearest = [list(p.frame_indices("nearest")) for p, _ in decoded]
        truncated = [list(p.frame_indices("truncate")) for p, _ in decoded]
        true = [list(v.keyframes) for _, v in decoded]
        n_frames = [max(1, round(v.duration * v.fps)) for _, v in decoded]
        ad = average_deviation(nearest, true, window=window)
        ad_paper = average_deviation(truncated, true, paper_compatible=True, window=window)
        prf = mean_frame_prf(nearest, [[round(k) for k in kf] for kf in true], n_frames)
    n_missing = sum(1 for p in predictions if p.missing)
    return Evaluation(list(predictions), map_top1, map_all, ad, ad_paper, prf, n_missing)
