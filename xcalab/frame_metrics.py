"""Frame and keyframe metrics: P, R, F over frames (eq. 15), the average deviation AD (eq. 17), Table III's tests.

The second and third of the seed paper's three levels (STA-IPCon, Sec. IV-B); the first, AP and mAP over
segments, is ``xcalab.metrics``. Everything here takes keyframes in frames as plain arrays.

**Frame level: P, R, F (eq. 15).** The keyframes label every frame: [start, apex) filling (1),
[apex, end) disappearing (2), else background (0). The paper's numbers are the per-video *macro*
averages over every label present in either labelling, background included (an sklearn default), then
averaged over videos; ``convention="foreground"`` leaves the background class out.

**Keyframe level: AD (eq. 17).** The mean absolute deviation, in frames, of the three predicted
keyframes from the true ones. The reference turns ground truth into keyframes as int(f - window/2) rather
than f (it drops the +window/2 that centres a feature step), so even a perfect prediction is 2 frames off;
``paper_compatible=True`` reproduces that, for comparison with the paper's tables only.

**Statistics (Table III).** A one-sided one-sample t-test of the pooled deviations against a few
population means, and a confidence interval for their mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import stats

from xcalab.errors import XcalabInputError

#: The population means of the paper's t-test (Table III), in frames.
PAPER_POPMEANS = (5.2, 5.4, 5.6, 5.8, 6.0, 6.2)
#: The reference's confidence-interval factor: roughly the one-sided 95 % t quantile at 191 degrees of
#: freedom (64 test videos x 3 keyframes).
PAPER_CI_FACTOR = 1.653

#: Frame labels.
BACKGROUND, FILLING, DISAPPEARING = 0, 1, 2


# --------------------------------------------------------------------------------------------------
# Frame-level P, R, F (eq. 15)
# --------------------------------------------------------------------------------------------------


class PRF(NamedTuple):
    """Precision, recall and F-score, each in [0, 1]."""

    precision: float
    recall: float
    f1: float


def _check_keyframes(kf: Any, where: str, ordered: bool = True) -> np.ndarray:
    """[..., 3] float64 keyframes after checking they are finite and (if ``ordered``) start <= apex <= end."""
    a = np.asarray(kf, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] != 3:
        raise XcalabInputError(where, f"keyframes must be (start, apex, end) triples, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise XcalabInputError(where, "keyframes must be finite numbers")
    if not ordered:
        return a
    bad = np.flatnonzero(~((a[..., 0] <= a[..., 1]) & (a[..., 1] <= a[..., 2])).reshape(-1))
    if bad.size:
        first = a.reshape(-1, 3)[bad[0]].tolist()
        raise XcalabInputError(where, f"keyframes out of order (need start <= apex <= end), e.g. {first}")
    return a


def paper_gt_keyframes(gt: Any, window: int = 4) -> np.ndarray:
    """Ground-truth keyframes as the reference code computes them: int(f - window/2).

    The reference stores ground truth on the feature grid as g = (f - window/2) / stride and turns it back
    with int(stride * g), forgetting the +window/2 that centres a step on ActionFormer's grid; the
    stride cancels. ``int`` truncates toward zero, so frames below window/2 can become negative.

    Args:
        gt: [..., 3] true (start, apex, end) frame coordinates.
        window: frames per feature step (4 in the paper).

    Returns:
        [..., 3] int64.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    return np.trunc(np.asarray(gt, dtype=np.float64) - window / 2).astype(np.int64)


def frame_labels(keyframes: Sequence[int], n_frames: int) -> np.ndarray:
    """Label every frame from the keyframes: [start, apex) filling (1), [apex, end) disappearing (2), else 0.

    Args:
        keyframes: (start, apex, end) non-negative integer frame indices. They may be out of order (a
            poor detector's prediction): a reversed interval is simply empty, as in the reference's
            slicing. Frames past ``n_frames`` are cut off (the reference's array is int(duration * fps) long).
        n_frames: length of the cine in frames.

    Returns:
        [n_frames] int64 labels.
    """
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    kf = _check_keyframes(keyframes, "frame_labels", ordered=False)
    if np.any(kf != np.round(kf)) or np.any(kf < 0):
        raise XcalabInputError("frame_labels", f"keyframes must be non-negative frame indices, got {kf.tolist()}")
    start, apex, end = (int(v) for v in kf)
    labels = np.full(int(n_frames), BACKGROUND, dtype=np.int64)
    labels[start:apex] = FILLING
    labels[apex:end] = DISAPPEARING
    return labels


def class_prf(pred: np.ndarray, gt: np.ndarray, label: int) -> PRF:
    """P, R and F of one class over frames (eq. 15): pred, gt (N,) frame labels (``frame_labels``).

    A 0/0 counts as 0 (sklearn's default); F = 2·TP / (predicted + true) = 2PR / (P + R).
    """
    tp = np.sum((pred == label) & (gt == label))
    n_pred, n_true = np.sum(pred == label), np.sum(gt == label)
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * tp / (n_pred + n_true) if n_pred + n_true else 0.0
    return PRF(float(p), float(r), float(f))


def _macro_prf(pred: np.ndarray, gt: np.ndarray, classes: Iterable[int]) -> PRF:
    """Unweighted mean over ``classes`` of the per-class P, R, F (``class_prf``)."""
    scores = [class_prf(pred, gt, c) for c in classes]
    if not scores:
        return PRF(1.0, 1.0, 1.0)  # nothing to find and nothing found
    return PRF(*(float(v) for v in np.mean(scores, axis=0)))


def frame_prf(
    pred_kf: Sequence[int],
    gt_kf: Sequence[int],
    n_frames: int,
    convention: Literal["paper", "foreground"] = "paper",
    paper_compatible: bool = False,
    window: int = 4,
) -> PRF:
    """Frame-level precision, recall and F-score of one cine (eq. 15, counted over frames).

    Args:
        pred_kf, gt_kf: (start, apex, end) frame indices; the ground truth must be in order.
        n_frames: frames in the cine (the reference uses int(duration * fps)).
        convention: ``"paper"``: macro average over every label present in either labelling, background
            included (the reference's sklearn call); ``"foreground"``: the same without the background
            class, so only filling and disappearing are scored. The paper's F is the mean of the per-class
            F-scores, not the F of the mean P and R.
        paper_compatible: shift the ground truth to int(f - window/2) as the reference does
            (``paper_gt_keyframes``); negative frames are clipped to 0 (the reference would wrap them).
        window: frames per feature step, for the shift.

    Returns:
        ``PRF`` for this cine. Average over cines with ``mean_frame_prf``.
    """
    if convention not in ("paper", "foreground"):
        raise ValueError(f'convention must be "paper" or "foreground", got {convention!r}')
    gt = _check_keyframes(gt_kf, "ground-truth keyframes")
    if paper_compatible:
        gt = np.clip(paper_gt_keyframes(gt, window), 0, None)
    pred = frame_labels(pred_kf, n_frames)
    true = frame_labels(gt, n_frames)
    classes = set(np.unique(pred).tolist()) | set(np.unique(true).tolist())
    if convention == "foreground":
        classes.discard(BACKGROUND)
    return _macro_prf(pred, true, sorted(classes))


def mean_frame_prf(
    pred_kfs: Sequence[Sequence[int]],
    gt_kfs: Sequence[Sequence[int]],
    n_frames: Sequence[int],
    convention: Literal["paper", "foreground"] = "paper",
    paper_compatible: bool = False,
    window: int = 4,
) -> PRF:
    """``frame_prf`` averaged over cines (each cine counts once, whatever its length), as the paper reports.

    Args:
        pred_kfs, gt_kfs: [V, 3] keyframes; n_frames: [V] lengths. Other arguments as ``frame_prf``.
    """
    if not (len(pred_kfs) == len(gt_kfs) == len(n_frames)) or len(n_frames) == 0:
        raise ValueError(
            f"need the same non-zero number of predictions, ground truths and lengths, "
            f"got {len(pred_kfs)}, {len(gt_kfs)}, {len(n_frames)}"
        )
    per_video = [frame_prf(p, g, n, convention, paper_compatible, window) for p, g, n in zip(pred_kfs, gt_kfs, n_frames)]
    return PRF(*(float(v) for v in np.mean(per_video, axis=0)))


# --------------------------------------------------------------------------------------------------
# Average deviation (eq. 17)
# --------------------------------------------------------------------------------------------------


def keyframe_deviations(pred: Any, gt: Any, paper_compatible: bool = False, window: int = 4) -> np.ndarray:
    """Absolute keyframe errors |P - L| in frames.

    Args:
        pred: [..., 3] predicted (start, apex, end) frame coordinates (any order: each is compared with
            its own ground truth).
        gt: [..., 3] true ones, same shape, start <= apex <= end.
        paper_compatible: compare with int(gt - window/2) instead of gt, as the reference does
            (``paper_gt_keyframes``): a perfect prediction then deviates by window/2 = 2 frames.
        window: frames per feature step, for the shift.

    Returns:
        [..., 3] float64 non-negative deviations (start, apex, end).
    """
    p = _check_keyframes(pred, "predicted keyframes", ordered=False)
    g = _check_keyframes(gt, "ground-truth keyframes")
    if p.shape != g.shape:
        raise ValueError(f"predictions {p.shape} and ground truth {g.shape} must have the same shape")
    if paper_compatible:
        g = paper_gt_keyframes(g, window).astype(np.float64)
    return np.abs(p - g)


def average_deviation(preds: Any, gts: Any, paper_compatible: bool = False, window: int = 4) -> float:
    """AD (eq. 17): the mean over cines of the mean absolute deviation of the three keyframes, in frames.

    Args:
        preds, gts: [V, 3] keyframes of V cines. ``paper_compatible`` and ``window`` as
            ``keyframe_deviations`` (True reproduces the paper's numbers, 2 frames too high).
    """
    d = keyframe_deviations(preds, gts, paper_compatible, window)
    if d.size == 0:
        raise ValueError("average_deviation: no cines")
    return float(d.reshape(-1, 3).mean(axis=1).mean())


# --------------------------------------------------------------------------------------------------
# Statistics (Table III)
# --------------------------------------------------------------------------------------------------


class TTest(NamedTuple):
    """One-sample t-test of H1 "mean deviation < popmean": t statistic and one-sided p-value."""

    popmean: float
    statistic: float
    pvalue: float


def _pooled(deviations: Any) -> np.ndarray:
    """All deviations as one flat sample (the reference pools the 3 keyframes of every cine)."""
    d = np.asarray(deviations, dtype=np.float64).reshape(-1)
    if d.size < 2:
        raise ValueError(f"need at least 2 deviations for a t statistic, got {d.size}")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("deviations must be finite and non-negative (absolute errors)")
    return d


def one_sided_ttest(deviations: Any, popmeans: Sequence[float] = PAPER_POPMEANS) -> list[TTest]:
    """One-sided one-sample t-tests of the pooled deviations (Table III).

    Args:
        deviations: any shape, e.g. [V, 3] from ``keyframe_deviations``; pooled into one sample of n values.
        popmeans: the hypothesised means tau, in frames.

    Returns:
        one ``TTest`` per tau: t = (mean - tau) / SEM with n - 1 degrees of freedom, p = P(T <= t).
    """
    d = _pooled(deviations)
    tests = []
    for m in popmeans:
        r = stats.ttest_1samp(d, popmean=m, alternative="less")
        tests.append(TTest(float(m), float(r.statistic), float(r.pvalue)))
    return tests


def confidence_interval(
    deviations: Any, level: float = 0.95, kind: Literal["two-sided", "one-sided", "paper"] = "two-sided"
) -> tuple[float, float]:
    """Confidence interval for the mean deviation, from the pooled sample (Student t, n - 1 dof).

    Args:
        deviations: any shape; pooled as in ``one_sided_ttest``.
        level: confidence level in (0, 1).
        kind: ``"two-sided"``: mean -/+ t_{(1+level)/2} * SEM;
            ``"one-sided"``: (0, mean + t_{level} * SEM), an upper bound (deviations are >= 0);
            ``"paper"``: (0, mean + 1.653 * SEM), the reference's fixed factor (``level`` is ignored).

    Returns:
        (low, high) in frames.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    d = _pooled(deviations)
    mean, sem, dof = float(d.mean()), float(stats.sem(d)), d.size - 1
    if kind == "two-sided":
        half = float(stats.t.ppf((1 + level) / 2, dof)) * sem
        return mean - half, mean + half
    if kind == "one-sided":
        return 0.0, mean + float(stats.t.ppf(level, dof)) * sem
    if kind == "paper":
        return 0.0, mean + PAPER_CI_FACTOR * sem
    raise ValueError(f'kind must be "two-sided", "one-sided" or "paper", got {kind!r}')
