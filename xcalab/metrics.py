"""Segment metrics: how well were the two actions found? AP and mAP (eq. 16) as ActivityNet scores them.

The seed paper (STA-IPCon, IEEE TMI 2023, Sec. IV-B) scores a cine at three levels. This module is the first,
the sequence level; ``xcalab.frame_metrics`` holds the frame level (P, R, F), the keyframe level (AD) and the
statistics of Table III. Both compute from plain data (records and numpy arrays), with the reference code's
quirks available behind explicit switches.

**AP and mAP (eq. 16).** Each detection is a segment [t0, t1] in seconds with a label and a score. Per class
and per tIoU threshold theta, we follow the official ActivityNet evaluator:

1. rank the detections by score, highest first;
2. a detection on a video that has no ground truth of its class is a false positive (this includes
   videos outside the evaluated subset, as the official code does);
3. otherwise, visit that video's ground-truth segments from the highest tIoU down: the first one not yet
   matched is taken if its tIoU >= theta (true positive); a segment below theta ends the search (false
   positive). So a detection *falls back* to its second-best segment when the best is taken;
4. AP is the area under the interpolated precision-recall curve (VOC 2011, all points): with ``npos``
   ground-truth segments, AP = (1 / npos) * sum over true positives i of max_{j >= i} precision_j.

mAP at theta is the mean AP over the classes, and "average mAP" the mean over the thresholds
(0.3:0.1:0.7 in the paper). Two protocols: ``"all"`` scores every detection (the standard), ``"top1"``
keeps only the best segment per class and video (the paper's; ``top1_per_class``).

Conventions that the official evaluator leaves open, fixed here:

- **Ties.** Detections with equal scores are ranked by (video id, t0, t1, label id), so every metric is
  invariant to the order of the input lists; ground-truth segments of equal tIoU are visited by (t0, t1).
  With distinct scores this is exactly the official result; with ties the official order is whatever
  numpy's argsort gives, and ours is one of the orders it could give.
- **Empty classes.** A class without detections has AP 0. A class without ground truth has no AP:
  ``average_precision`` raises, and ``mean_average_precision`` reports NaN for it and leaves it out of
  the mean (the official evaluator averages over the classes present in the ground truth).
- **Duplicates.** ``deduplicate=True`` drops ground-truth segments shorter than 1 ms and repeats of a
  segment within 1 ms, as ActionFormer's evaluator (the reference's) does; the official one keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from xcalab.errors import XcalabInputError

#: The tIoU thresholds of the paper (THUMOS convention, 0.3:0.1:0.7).
PAPER_TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


class Detection(NamedTuple):
    """One detected action: segment [t0, t1] in seconds, class ``label_id``, confidence ``score``."""

    video_id: str
    label_id: int
    t0: float
    t1: float
    score: float


class GroundTruth(NamedTuple):
    """One annotated action: segment [t0, t1] in seconds, class ``label_id``."""

    video_id: str
    label_id: int
    t0: float
    t1: float


def _check_segment(t0: Any, t1: Any, where: str) -> tuple[float, float]:
    """Return (t0, t1) as floats after checking they are finite and t0 <= t1."""
    try:
        t0, t1 = float(t0), float(t1)
    except (TypeError, ValueError):
        raise XcalabInputError(where, f"segment bounds must be numbers, got [{t0!r}, {t1!r}]") from None
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise XcalabInputError(where, f"segment bounds must be finite, got [{t0}, {t1}]")
    if t1 < t0:
        raise XcalabInputError(where, f"segment has a negative duration: [{t0}, {t1}]")
    return t0, t1


def _check_detection(d: Detection) -> None:
    where = f"detection on video {d.video_id!r}"
    _check_segment(d.t0, d.t1, where)
    if not math.isfinite(float(d.score)):
        raise XcalabInputError(where, f"score must be a finite number, got {d.score!r}")


def _check_ground_truth(g: GroundTruth) -> None:
    _check_segment(g.t0, g.t1, f"ground truth of video {g.video_id!r}")


def parse_ground_truth(data: Mapping[str, Any], subset: str | None = None) -> list[GroundTruth]:
    """Ground-truth records from an ActivityNet-1.3 annotation dict.

    Args:
        data: ``{"database": {video_id: {"subset", "annotations": [{"segment": [t0, t1], "label_id"}]}}}``
            (parsed JSON; other fields are ignored).
        subset: keep only videos of this subset (compared case-insensitively); None keeps all.

    Returns:
        one ``GroundTruth`` per annotation, in file order.
    """
    if "database" not in data:
        raise XcalabInputError("ground truth", 'no "database" key (expected ActivityNet-1.3 format)')
    records = []
    for vid, rec in data["database"].items():
        if subset is not None and str(rec.get("subset", "")).lower() != subset.lower():
            continue
        for ann in rec.get("annotations", []):
            where = f"ground truth of video {vid!r}"
            if "label_id" not in ann or "segment" not in ann or len(ann["segment"]) != 2:
                raise XcalabInputError(where, f'an annotation needs "segment": [t0, t1] and "label_id", got {ann}')
            t0, t1 = _check_segment(*ann["segment"], where)
            records.append(GroundTruth(str(vid), int(ann["label_id"]), t0, t1))
    return records


def parse_label_ids(data: Mapping[str, Any]) -> dict[str, int]:
    """The label name -> label_id map of an ActivityNet-1.3 annotation dict (to read named predictions)."""
    if "database" not in data:
        raise XcalabInputError("ground truth", 'no "database" key (expected ActivityNet-1.3 format)')
    return {
        ann["label"]: int(ann["label_id"])
        for rec in data["database"].values()
        for ann in rec.get("annotations", [])
        if "label" in ann and "label_id" in ann
    }


def parse_detections(data: Mapping[str, Any], label_ids: Mapping[str, int] | None = None) -> list[Detection]:
    """Detection records from an ActivityNet result dict.

    Args:
        data: ``{"results": {video_id: [{"segment": [t0, t1], "score": s, "label_id": k}, ...]}}``;
            an entry may give ``"label"`` (a name) instead of ``"label_id"``.
        label_ids: name -> label_id map for named entries (``parse_label_ids`` of the ground truth).

    Returns:
        one ``Detection`` per entry, in file order. Videos are not filtered by subset: a detection on a
        video without ground truth counts as a false positive, as in the official evaluator.
    """
    if "results" not in data:
        raise XcalabInputError("predictions", 'no "results" key (expected ActivityNet format)')
    records = []
    for vid, entries in data["results"].items():
        where = f"prediction on video {vid!r}"
        for e in entries:
            if "segment" not in e or len(e["segment"]) != 2 or "score" not in e:
                raise XcalabInputError(where, f'an entry needs "segment": [t0, t1] and "score", got {e}')
            if "label_id" in e:
                label = int(e["label_id"])
            elif label_ids is not None and e.get("label") in label_ids:
                label = label_ids[e["label"]]
            else:
                raise XcalabInputError(where, f"unknown label {e.get('label')!r} (give label_id or a label map)")
            t0, t1 = _check_segment(*e["segment"], where)
            score = e["score"]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise XcalabInputError(where, f"score must be a finite number, got {score!r}")
            records.append(Detection(str(vid), label, t0, t1, float(score)))
    return records


def deduplicate_ground_truth(ground_truth: Iterable[GroundTruth], tol: float = 1e-3) -> list[GroundTruth]:
    """Drop segments shorter than ``tol`` seconds and repeats of an earlier segment (same video and label,
    both bounds within ``tol``), as ActionFormer's evaluator does. Order is kept."""
    kept: list[GroundTruth] = []
    for g in ground_truth:
        if g.t1 - g.t0 < tol:
            continue
        repeat = any(
            k.video_id == g.video_id and k.label_id == g.label_id and abs(k.t0 - g.t0) <= tol and abs(k.t1 - g.t1) <= tol
            for k in kept
        )
        if not repeat:
            kept.append(g)
    return kept


# --------------------------------------------------------------------------------------------------
# Temporal IoU and AP (eq. 16)
# --------------------------------------------------------------------------------------------------


def temporal_iou(segment: Sequence[float], segments: np.ndarray) -> np.ndarray:
    """tIoU of one segment with many: intersection / union of the intervals, in continuous time.

    Args:
        segment: [2] (t0, t1).
        segments: [M, 2] rows (t0, t1).

    Returns:
        [M] float64 in [0, 1]. Two zero-length segments have tIoU 0 (the union has no length).
    """
    s0, s1 = float(segment[0]), float(segment[1])
    segs = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    if s1 < s0 or np.any(segs[:, 1] < segs[:, 0]):
        raise ValueError("temporal_iou: segments must have t0 <= t1")
    inter = np.clip(np.minimum(s1, segs[:, 1]) - np.maximum(s0, segs[:, 0]), 0.0, None)
    union = (s1 - s0) + (segs[:, 1] - segs[:, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _rank_key(d: Detection) -> tuple:
    # Highest score first; ties broken by content, never by input position (see the module docstring).
    return (-float(d.score), str(d.video_id), d.t0, d.t1, d.label_id)


def _check_tious(tious: Sequence[float]) -> tuple[float, ...]:
    tious = tuple(float(t) for t in np.atleast_1d(tious))
    if not tious or not all(0.0 < t <= 1.0 for t in tious):
        raise ValueError(f"tIoU thresholds must lie in (0, 1], got {tious}")
    return tious


def _true_positives(detections: list[Detection], ground_truth: list[GroundTruth], tious: tuple[float, ...]) -> np.ndarray:
    """Match ranked detections of one class to its ground truth, greedily at every threshold.

    Returns:
        [K, N] bool: tp[k, i] says whether the i-th ranked detection is a true positive at tious[k].
    """
    # Ground truth per video, in a canonical order (so tIoU ties do not depend on input order).
    per_video: dict[str, list[tuple[float, float]]] = {}
    for g in sorted(ground_truth, key=lambda g: (g.t0, g.t1)):
        per_video.setdefault(str(g.video_id), []).append((g.t0, g.t1))
    segments = {v: np.array(s, dtype=np.float64) for v, s in per_video.items()}
    taken = {v: np.zeros((len(tious), len(s)), dtype=bool) for v, s in segments.items()}

    tp = np.zeros((len(tious), len(detections)), dtype=bool)
    for i, d in enumerate(detections):
        vid = str(d.video_id)
        if vid not in segments:
            continue  # no ground truth of this class in the video: false positive at every threshold
        iou = temporal_iou((d.t0, d.t1), segments[vid])
        by_iou = np.argsort(-iou, kind="stable")
        for k, theta in enumerate(tious):
            for j in by_iou:
                if iou[j] < theta:
                    break  # every remaining segment overlaps even less
                if not taken[vid][k, j]:
                    taken[vid][k, j] = tp[k, i] = True
                    break  # else: already matched, fall back to the next best
    return tp


def _interpolated_ap(tp: np.ndarray, npos: int) -> float:
    """All-point interpolated AP of one ranked list of hits [N] bool with ``npos`` positives.

    Recall grows by 1/npos at every hit, so the area under the precision envelope
    (precision at recall r := best precision at any recall >= r) is a sum over the hits.
    """
    if tp.size == 0:
        return 0.0
    hits = np.cumsum(tp)
    precision = hits / np.arange(1, tp.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(envelope[tp].sum() / npos)


def _class_ap(detections: Sequence[Detection], ground_truth: Sequence[GroundTruth], tious: tuple[float, ...]) -> np.ndarray:
    """AP of one class at every threshold: [K]. ``ground_truth`` must not be empty."""
    for d in detections:
        _check_detection(d)
    for g in ground_truth:
        _check_ground_truth(g)
    ranked = sorted(detections, key=_rank_key)
    tp = _true_positives(ranked, list(ground_truth), tious)
    return np.array([_interpolated_ap(row, len(ground_truth)) for row in tp])


def average_precision(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    tiou: float = 0.5,
    label_id: int | None = None,
) -> float:
    """AP of one class at one tIoU threshold (eq. 16), with the ActivityNet rules (module docstring).

    Args:
        detections: the class's detections (any order; see the tie rule in the module docstring).
        ground_truth: the class's ground-truth segments, over all evaluated videos.
        tiou: the threshold theta in (0, 1].
        label_id: if given, only records of this class are used; if None, all records must share one class.

    Returns:
        AP in [0, 1]; 0 if there are no detections.
    """
    if label_id is not None:
        detections = [d for d in detections if d.label_id == label_id]
        ground_truth = [g for g in ground_truth if g.label_id == label_id]
    labels = {int(r.label_id) for r in [*detections, *ground_truth]}
    if len(labels) > 1:
        raise ValueError(f"average_precision scores one class, got labels {sorted(labels)}: pass label_id")
    if not ground_truth:
        raise ValueError("average_precision: empty ground truth (AP is undefined without positives)")
    return float(_class_ap(detections, ground_truth, _check_tious([tiou]))[0])


def precision_recall_curve(
    detections: Sequence[Detection], ground_truth: Sequence[GroundTruth], tiou: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each ranked detection of one class, [N] each (the curve AP integrates).

    The matching is ``average_precision``'s; the area under the curve's precision envelope is the AP.
    Empty arrays when there are no detections.
    """
    labels = {int(r.label_id) for r in [*detections, *ground_truth]}
    if len(labels) > 1:
        raise ValueError(f"precision_recall_curve scores one class, got labels {sorted(labels)}")
    if not ground_truth:
        raise ValueError("precision_recall_curve: empty ground truth (recall is undefined without positives)")
    ranked = sorted(detections, key=_rank_key)
    hits = np.cumsum(_true_positives(ranked, list(ground_truth), _check_tious([tiou]))[0])
    return hits / np.arange(1, len(ranked) + 1), hits / len(ground_truth)


def top1_per_class(detections: Iterable[Detection], ties: Literal["content", "listed"] = "content") -> list[Detection]:
    """The paper's protocol: keep the highest-scoring detection of each class in each video.

    ties  which of equally scored detections wins: "content" ranks them by (video id, t0, t1, label id), as
          every metric here does (the result never depends on input order); "listed" keeps the first in the
          input, for a list already ranked by a decoder (``postprocess``, a checkpoint's predictions.json)

    A class never detected in a video simply has no detection there (its ground truth counts as missed);
    the reference would leave an uninitialised slot. Returns the kept detections, best first.
    """
    if ties not in ("content", "listed"):
        raise ValueError(f'ties must be "content" or "listed", got {ties!r}')
    key = _rank_key if ties == "content" else (lambda d: -float(d.score))  # sorted() is stable: listed order stays
    best: dict[tuple[str, int], Detection] = {}
    for d in sorted(detections, key=key):
        best.setdefault((str(d.video_id), int(d.label_id)), d)
    return list(best.values())


@dataclass(frozen=True)
class MapResult:
    """AP per class and threshold, mAP per threshold, and their mean.

    Attributes:
        tious: the K thresholds.
        labels: the L classes.
        ap: [L, K] AP of labels[l] at tious[k]; NaN for a class without ground truth.
        map: [K] mean AP over the classes with ground truth.
        average_map: mean of ``map`` over the thresholds (the paper's "mAP" column).
    """

    tious: tuple[float, ...]
    labels: tuple[int, ...]
    ap: np.ndarray
    map: np.ndarray
    average_map: float

    def ap_at(self, label_id: int, tiou: float) -> float:
        """AP of one class at one threshold."""
        k = int(np.argmin(np.abs(np.array(self.tious) - tiou)))
        if not math.isclose(self.tious[k], tiou, abs_tol=1e-9):
            raise KeyError(f"tIoU {tiou} was not evaluated (thresholds: {self.tious})")
        return float(self.ap[self.labels.index(label_id), k])

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers (NaN as None)."""

        def plain(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "tious": list(self.tious),
            "ap": {str(c): [plain(v) for v in row] for c, row in zip(self.labels, self.ap)},
            "map": [plain(v) for v in self.map],
            "average_map": plain(self.average_map),
        }

    def __str__(self) -> str:
        head = "label  " + " ".join(f"{t:>6.2f}" for t in self.tious) + "    avg"
        rows = [f"{c:<6d} " + " ".join(f"{100 * v:6.2f}" for v in row) for c, row in zip(self.labels, self.ap)]
        rows.append("mAP    " + " ".join(f"{100 * v:6.2f}" for v in self.map) + f" {100 * self.average_map:6.2f}")
        return "\n".join([head, *rows])


def mean_average_precision(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    tious: Sequence[float] = PAPER_TIOUS,
    labels: Sequence[int] | None = None,
    protocol: Literal["all", "top1"] = "all",
    deduplicate: bool = False,
) -> MapResult:
    """AP per class and threshold, mAP@tIoU and average mAP (eq. 16 and the paper's Table II).

    Args:
        detections: all detections, any classes and videos. Detections on videos without ground truth
            (for instance videos of another subset) are false positives; classes not in ``labels`` are
            ignored.
        ground_truth: the ground truth of the evaluated videos.
        tious: thresholds in (0, 1]; default the paper's 0.3:0.1:0.7.
        labels: the classes to score; default the classes present in the ground truth.
        protocol: ``"all"`` scores every detection (ActivityNet); ``"top1"`` only the best detection per
            class and video (the paper's protocol, as the reference's evaluation scores it).
        deduplicate: drop short and repeated ground truth first (ActionFormer's evaluator).

    Returns:
        ``MapResult``. A class without detections gets AP 0; one without ground truth NaN, out of the mean.
    """
    tious = _check_tious(tious)
    if protocol not in ("all", "top1"):
        raise ValueError(f'protocol must be "all" or "top1", got {protocol!r}')
    ground_truth = list(ground_truth)
    if deduplicate:
        ground_truth = deduplicate_ground_truth(ground_truth)
    if not ground_truth:
        raise ValueError("mean_average_precision: empty ground truth")
    if protocol == "top1":
        detections = top1_per_class(detections)
    labels = tuple(sorted({int(g.label_id) for g in ground_truth})) if labels is None else tuple(int(c) for c in labels)

    ap = np.full((len(labels), len(tious)), np.nan)
    for row, c in enumerate(labels):
        gts = [g for g in ground_truth if g.label_id == c]
        if gts:
            ap[row] = _class_ap([d for d in detections if d.label_id == c], gts, tious)
    if np.all(np.isnan(ap)):
        raise ValueError(f"mean_average_precision: no ground truth for any of the classes {labels}")
    per_tiou = np.nanmean(ap, axis=0)
    return MapResult(tious, labels, ap, per_tiou, float(per_tiou.mean()))
