"""From the detector's scores to honest keyframes: the best ordered pair, what the cine holds, a confidence.

**Ordered decoding** (``ordered_pair``). The paper reads the top-1 segment of each class (eq. 14); nothing
keeps that pair in order, and on hard cines the decoded start can lie after the end. Here every filling
candidate [s0, e0] (score p) is paired with every disappearing candidate [s1, e1] (score q), the apex is
(e0 + s1) / 2 as in eq. 14, and a pair scores

    score = sqrt(p q) * exp(-(e0 - s1)^2 / (2 sigma^2))      if s0 <= apex <= e1, else 0

so the two actions must meet (filling ends where disappearing begins) and be ordered; sigma is one feature
step. The best pair is decoded; the paper's top-1 protocol stays the default of ``evaluate``/``reproduce``.

**Status** (``decide``). The same detector says what the cine holds, through thresholds calibrated on
XCA-Synth validation cines (``calibrate``) and stored with the weights. Beside the best pair, ``decide``
reads the *vessel curve* -- the per-step mean of the features the detector itself reads -- on its own
min..max scale (``VesselEvidence``), so it means the same on a brighter or darker archive:
    no_contrast   the best pair scores below ``min_pair_score``, or the curve rises by less than ``min_rise``
                  of its peak (a static cine): no keyframes at all
    start absent  the filling segment begins within ``start_edge_s`` of the first frame (contrast already
                  there when the recording began: the detector was trained to start such a filling at frame
                  0), or the curve's first step is already at ``first_level`` of its range
    end absent    the disappearing segment ends within ``end_edge_s`` of the last frame, or the curve's last
                  step is still at ``last_level`` of its range (still opacified)
    partial       a keyframe is absent; ok otherwise
The confidence is Platt scaling of the pair score's logit, fitted on the same validation cines: the
probability that the status is right and every keyframe present lies within ``tolerance_s`` of the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xcalab.config import LOCATE_FPS, LOCATE_STRIDE
from xcalab.postprocess import VideoPrediction

STATUSES = ("ok", "partial", "no_contrast")
KEYFRAME_NAMES = ("start", "apex", "end")


# --------------------------------------------------------------------------------------------------
# 3. The best ordered pair of segments
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderedPair:
    """The decoded pair (seconds): filling [s0, e0] with score p, disappearing [s1, e1] with score q.

    keyframes  (start, apex, end) in seconds: (s0, (e0 + s1) / 2, e1), eq. 14
    score      the pair's score (see the module docstring), in [0, 1]
    """

    filling: tuple[float, float]
    filling_score: float
    disappearing: tuple[float, float]
    disappearing_score: float
    score: float

    @property
    def keyframes(self) -> tuple[float, float, float]:
        (s0, e0), (s1, e1) = self.filling, self.disappearing
        return s0, (e0 + s1) / 2.0, e1


def pair_scores(filling: Tensor, p: Tensor, disappearing: Tensor, q: Tensor, sigma: float) -> Tensor:
    """Scores of every (filling i, disappearing j) pair: [N_f, N_d] (module docstring's formula)."""
    s0, e0 = filling[:, 0:1], filling[:, 1:2]
    s1, e1 = disappearing[None, :, 0], disappearing[None, :, 1]
    apex = (e0 + s1) / 2
    ordered = (s0 <= apex) & (apex <= e1)
    meet = torch.exp(-((e0 - s1) ** 2) / (2 * sigma**2))
    return torch.sqrt(p[:, None] * q[None, :]) * meet * ordered


def ordered_pair(prediction: VideoPrediction, sigma: float) -> OrderedPair | None:
    """The best ordered pair among a prediction's kept segments (setting 0), or None without one.

    sigma: how far (seconds) filling's end and disappearing's start may sit apart (one feature step).
    """
    if prediction.setting != 0:
        raise ValueError("ordered decoding needs problem setting 0 (filling + disappearing)")
    segments, scores, labels = prediction.segments.double(), prediction.scores.double(), prediction.labels
    fill, gone = labels == 0, labels == 1
    if not fill.any() or not gone.any():
        return None
    table = pair_scores(segments[fill], scores[fill], segments[gone], scores[gone], sigma)
    flat = int(torch.argmax(table))
    i, j = divmod(flat, table.shape[1])
    if float(table[i, j]) <= 0:
        return None
    f, d = segments[fill][i].tolist(), segments[gone][j].tolist()
    return OrderedPair((f[0], f[1]), float(scores[fill][i]), (d[0], d[1]), float(scores[gone][j]), float(table[i, j]))


# --------------------------------------------------------------------------------------------------
# 4. Status, keyframes present, confidence
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Decision thresholds and confidence maps, fitted on XCA-Synth validation cines (``calibrate``).

    min_pair_score  below it the cine has no contrast
    start_edge_s    a filling that begins this close to the first frame means the start is not in the cine
    end_edge_s      a disappearing that ends this close to the last frame means the end is not in the cine
    min_rise        the vessel curve must change by this fraction of its peak, else no contrast (0: not used)
    first_level     the start is not in the cine when the vessel curve's first step is already this high on
                    its own min..max scale (None: not used)
    last_level      the end is not in the cine when its last step is still this high (None: not used)
    fuse            keyframe -> (level, weight): a present keyframe is (1 - weight) * the pair's +
                    weight * the vessel curve's crossing of ``level`` (``VesselEvidence.crossing``); a
                    keyframe not listed is the pair's
    platt_contrast  (a, b): confidence = sigmoid(a logit(score) + b) when contrast is found
    platt_none      (a, b): the same when no contrast is declared
    tolerance_s     what "right" meant when fitting the confidence
    sigma_s         the ordered decode's meeting width
    n_cines         how many validation cines it was fitted on
    """

    min_pair_score: float = 0.05
    start_edge_s: float = 0.2
    end_edge_s: float = 0.2
    min_rise: float = 0.0
    first_level: float | None = None
    last_level: float | None = None
    fuse: dict[str, tuple[float, float]] = field(default_factory=dict)
    platt_contrast: tuple[float, float] = (1.0, 0.0)
    platt_none: tuple[float, float] = (-1.0, 0.0)
    tolerance_s: float = 2.0 / LOCATE_FPS
    sigma_s: float = LOCATE_STRIDE / LOCATE_FPS
    n_cines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        d = dict(d)
        for key in ("platt_contrast", "platt_none"):
            if key in d:
                d[key] = tuple(d[key])
        if "fuse" in d:
            d["fuse"] = {k: tuple(v) for k, v in (d["fuse"] or {}).items()}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Decision:
    """What ``locate`` says about one cine, in the resampled cine's seconds.

    status      "ok", "partial" or "no_contrast"
    keyframes   (start, apex, end) seconds, None for each keyframe the cine does not contain
    pair        the ordered pair behind them (None when no pair exists)
    confidence  calibrated probability that this answer is right
    """

    status: str
    keyframes: tuple[float | None, float | None, float | None]
    pair: OrderedPair | None
    confidence: float
    present: tuple[bool, bool, bool] = field(default=(False, False, False))


@dataclass(frozen=True)
class VesselEvidence:
    """What the vessel curve -- the per-step mean of the features, the detector's own input -- says about a
    cine, on the curve's own min..max scale o(t) (0 its lowest, 1 its peak), so a brighter or darker archive
    reads the same:

    first, last  o at the first and last step: high at the first = contrast was already there; high at the
                 last = still opacified
    rise         (max - min) / max: how much the curve changes at all (a static cine stays low)
    curve, times the curve (T,) and each step's time in seconds (T,), for the crossing times below
    """

    first: float
    last: float
    rise: float
    curve: tuple[float, ...] = ()
    times: tuple[float, ...] = ()

    @classmethod
    def of(cls, curve: np.ndarray, times: np.ndarray | None = None) -> VesselEvidence:
        c = np.asarray(curve, dtype=np.float64)
        if c.ndim != 1 or len(c) == 0 or not np.isfinite(c).all():
            raise ValueError("the vessel curve must be a finite 1-D array with at least one step")
        t = np.arange(len(c), dtype=np.float64) if times is None else np.asarray(times, dtype=np.float64)
        if t.shape != c.shape:
            raise ValueError(f"one time per step: {t.shape} times for {c.shape} steps")
        lo, hi = float(c.min()), float(c.max())
        span = hi - lo
        if span <= 0:
            return cls(0.0, 0.0, 0.0, tuple(c), tuple(t))
        return cls(float((c[0] - lo) / span), float((c[-1] - lo) / span), float(span / hi) if hi > 0 else 0.0,
                   tuple(c), tuple(t))

    def _scaled(self) -> tuple[np.ndarray, np.ndarray]:
        c, t = np.asarray(self.curve), np.asarray(self.times)
        span = c.max() - c.min() if len(c) else 0.0
        return (c - c.min()) / span if span > 0 else np.zeros_like(c), t

    def rise_time(self, level: float) -> float | None:
        """When o first reaches ``level`` (seconds, linear between steps); None on a flat curve."""
        o, t = self._scaled()
        if len(o) == 0 or o.max() <= 0:
            return None
        i = int(np.argmax(o >= level))
        if i == 0:
            return float(t[0])
        return float(t[i - 1] + (level - o[i - 1]) / (o[i] - o[i - 1]) * (t[i] - t[i - 1]))

    def peak_time(self, level: float) -> float | None:
        """The first step at which o reaches ``level`` of the peak (seconds)."""
        o, t = self._scaled()
        return None if len(o) == 0 or o.max() <= 0 else float(t[int(np.argmax(o >= level))])

    def fall_time(self, level: float) -> float | None:
        """When o, after its peak, first falls to ``level`` (seconds, linear between steps); None if never."""
        o, t = self._scaled()
        if len(o) == 0 or o.max() <= 0:
            return None
        peak = int(np.argmax(o))
        after = np.flatnonzero(o[peak:] <= level)
        if len(after) == 0:
            return None
        i = peak + int(after[0])
        return float(t[i - 1] + (o[i - 1] - level) / (o[i - 1] - o[i]) * (t[i] - t[i - 1]))

    def crossing(self, keyframe: str, level: float) -> float | None:
        """The curve's own estimate of ``keyframe`` ("start", "apex", "end") at ``level``."""
        return {"start": self.rise_time, "apex": self.peak_time, "end": self.fall_time}[keyframe](level)

    def rise_over(self, baseline: float) -> float:
        """``rise`` of the curve with ``baseline`` added to every step (static structures that add vessel-like
        response everywhere: first, last and the crossings do not change, the rise does)."""
        c = np.asarray(self.curve)
        if len(c) == 0:
            return self.rise
        hi = float(c.max()) + baseline
        return float((c.max() - c.min()) / hi) if hi > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"first": round(self.first, 4), "last": round(self.last, 4), "rise": round(self.rise, 4)}


def _logit(p: float | np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decide(pair: OrderedPair | None, duration: float, cal: Calibration,
           evidence: VesselEvidence | None = None) -> Decision:
    """Status, present keyframes and confidence of a cine of ``duration`` seconds from its best pair and,
    when given, what its vessel curve says (contrast needs both; a keyframe is present when neither the
    pair's edges nor the curve say it lies outside the cine)."""
    score = 0.0 if pair is None else pair.score
    flat = evidence is not None and evidence.rise < cal.min_rise
    if pair is None or score < cal.min_pair_score or flat:
        a, b = cal.platt_none
        return Decision("no_contrast", (None, None, None), pair, float(_sigmoid(a * _logit(score) + b)))
    start, apex, end = pair.keyframes
    has_start = start > cal.start_edge_s
    has_end = end < duration - cal.end_edge_s
    if evidence is not None and cal.first_level is not None:
        has_start = has_start and evidence.first < cal.first_level
    if evidence is not None and cal.last_level is not None:
        has_end = has_end and evidence.last < cal.last_level
    status = "ok" if has_start and has_end else "partial"
    a, b = cal.platt_contrast
    if evidence is not None and cal.fuse:
        start, apex, end = fuse_keyframes((start, apex, end), evidence, cal.fuse)
    keyframes = (start if has_start else None, apex, end if has_end else None)
    return Decision(status, keyframes, pair, float(_sigmoid(a * _logit(score) + b)), (has_start, True, has_end))


def fuse_keyframes(keyframes: tuple[float, float, float], evidence: VesselEvidence,
                   fuse: dict[str, tuple[float, float]]) -> tuple[float, float, float]:
    """The pair's (start, apex, end) moved toward the vessel curve's crossings by ``fuse``'s weights.

    Two estimates of one keyframe that err differently average to a better one (measured on XCA-Synth
    validation cines by ``calibrate``). A crossing the curve does not have (no fall after the peak) leaves
    the pair's value. Both triples are ordered; with unequal weights the result is kept ordered too.
    """
    out = list(keyframes)
    for i, name in enumerate(KEYFRAME_NAMES):
        if name in fuse:
            level, weight = fuse[name]
            curve = evidence.crossing(name, level)
            if curve is not None:
                out[i] = (1.0 - weight) * keyframes[i] + weight * curve
    out[1] = max(out[1], out[0])
    out[2] = max(out[2], out[1])
    return out[0], out[1], out[2]


def fit_platt(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 100) -> tuple[float, float]:
    """Logistic regression y ~ sigmoid(a x + b) by Newton's method with a small L2 penalty on a: (a, b).

    x [n] float, y [n] in {0, 1}. With one class only, a = 0 and b is the (smoothed) log-odds of y.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) == 0:
        return 0.0, 0.0
    if y.min() == y.max():
        rate = (y.sum() + 0.5) / (len(y) + 1.0)
        return 0.0, float(np.log(rate / (1 - rate)))
    w = np.zeros(2)
    design = np.stack([x, np.ones_like(x)], 1)
    penalty = np.diag([l2, 0.0])
    for _ in range(iterations):
        p = _sigmoid(design @ w)
        grad = design.T @ (p - y) + penalty @ w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


@dataclass(frozen=True)
class CalibrationCase:
    """One validation cine: its best pair, duration (s), true status and true keyframes (s, None if absent)."""

    pair: OrderedPair | None
    duration: float
    status: str
    keyframes: tuple[float | None, float | None, float | None]
    evidence: VesselEvidence | None = None


#: Baselines added to each validation curve when ``min_rise`` is fitted. Real archive cines carry static
#: vessel-like structure (catheter, wires, bone edges, denser backgrounds) that XCA-Synth lacks: their
#: per-step feature mean sits at 0.007-0.05 before contrast arrives, against 0.001-0.004 on XCA-Synth. A rise
#: threshold must hold over that range, so it is fitted on every validation curve lifted by each of these.
RISE_BASELINES = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05)

#: Candidate levels of the vessel-curve thresholds.
LEVELS = np.round(np.arange(0.05, 1.0001, 0.05), 2)


def _best_level(cases: Sequence[CalibrationCase], right) -> float:
    """The candidate level maximising the total of ``right(case, level)`` (a bool, or a count of the case's
    variants it gets right) over the cases; ties: the middle one."""
    counts = np.array([sum(int(right(c, t)) for c in cases) for t in LEVELS])
    best = np.flatnonzero(counts == counts.max())
    return float(LEVELS[best[len(best) // 2]])


def _best_threshold(values: np.ndarray, positive: np.ndarray, candidates: np.ndarray) -> float:
    """The candidate t maximising the accuracy of "value > t <=> positive" (the smallest on ties)."""
    accuracy = [np.mean((values > t) == positive) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def calibrate(cases: Sequence[CalibrationCase], tolerance_s: float = 2.0 / LOCATE_FPS,
              sigma_s: float = LOCATE_STRIDE / LOCATE_FPS) -> Calibration:
    """Fit ``Calibration`` on validation cines: each threshold maximises the accuracy of what it decides.

    min_pair_score: contrast vs none over every cine; start_edge_s / end_edge_s: start / end present vs
    absent over the cines with contrast and a pair; when every case carries its ``VesselEvidence``, the
    curve's min_rise (among the cines the pair score lets through, each curve also lifted by every
    ``RISE_BASELINES``), first_level and last_level (among those whose edges say the keyframe is in) and the
    keyframe fusion; then the two Platt maps on the decisions they all yield.
    """
    if not cases:
        raise ValueError("calibration needs at least one validation cine")
    scores = np.array([0.0 if c.pair is None else c.pair.score for c in cases])
    has_contrast = np.array([c.status != "no_contrast" for c in cases])
    grid = np.unique(np.concatenate([[0.0], scores]))
    # "score > t" must mean contrast: a threshold between the scores (candidates at the observed values).
    t = _best_threshold(scores, has_contrast, grid)
    min_pair_score = float(np.nextafter(t, 1.0))  # decide() treats score < min as no contrast
    edges = np.round(np.arange(0.0, 1.01, 0.05), 2)
    with_pair = [c for c in cases if c.pair is not None and c.status != "no_contrast"]
    start_edge = end_edge = 0.2
    if with_pair:
        starts = np.array([c.pair.keyframes[0] for c in with_pair])
        ends = np.array([c.duration - c.pair.keyframes[2] for c in with_pair])
        start_edge = _best_threshold(starts, np.array([c.keyframes[0] is not None for c in with_pair]), edges)
        end_edge = _best_threshold(ends, np.array([c.keyframes[2] is not None for c in with_pair]), edges)
    min_rise, first_level, last_level = 0.0, None, None
    if all(c.evidence is not None for c in cases):
        # The vessel curve's thresholds, each given the pair's: contrast among the cines the pair score lets
        # through; the first / last level among the cines with contrast whose edge says the keyframe is in.
        passed = [c for c, s in zip(cases, scores) if c.pair is not None and s >= min_pair_score]
        if passed:
            min_rise = _best_level(passed, lambda c, t: sum(
                (c.evidence.rise_over(b) >= t) == (c.status != "no_contrast") for b in RISE_BASELINES))
        starts_in = [c for c in with_pair if c.pair.keyframes[0] > start_edge]
        ends_in = [c for c in with_pair if c.pair.keyframes[2] < c.duration - end_edge]
        if starts_in:
            first_level = _best_level(starts_in, lambda c, t: (c.evidence.first < t) == (c.keyframes[0] is not None))
        if ends_in:
            last_level = _best_level(ends_in, lambda c, t: (c.evidence.last < t) == (c.keyframes[2] is not None))
    fuse = {} if any(c.evidence is None or not c.evidence.times for c in cases) else _fit_fuse(with_pair)
    provisional = Calibration(min_pair_score, start_edge, end_edge, min_rise, first_level, last_level, fuse,
                              tolerance_s=tolerance_s, sigma_s=sigma_s, n_cines=len(cases))
    xs_c, ys_c, xs_n, ys_n = [], [], [], []
    for case, score in zip(cases, scores):
        d = decide(case.pair, case.duration, provisional, case.evidence)
        right = decision_is_right(d, case.status, case.keyframes, tolerance_s)
        (xs_n if d.status == "no_contrast" else xs_c).append(float(_logit(score)))
        (ys_n if d.status == "no_contrast" else ys_c).append(float(right))
    return Calibration(min_pair_score, start_edge, end_edge, min_rise, first_level, last_level, fuse,
                       fit_platt(np.array(xs_c), np.array(ys_c)), fit_platt(np.array(xs_n), np.array(ys_n)),
                       tolerance_s, sigma_s, len(cases))


#: Where the vessel curve's crossing of each keyframe is looked for, and how much it may weigh.
FUSE_LEVELS = {"start": (0.05, 0.1, 0.15, 0.2, 0.3), "apex": (0.8, 0.9, 0.95, 0.99), "end": (0.05, 0.1, 0.15, 0.2, 0.3)}
FUSE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _fit_fuse(cases: Sequence[CalibrationCase]) -> dict[str, tuple[float, float]]:
    """Per keyframe, the (level, weight) with the smallest mean |fused - true| over the cases where it is
    in the cine; weight 0 (the pair alone) wins ties, so the curve is used only where it measurably helps."""
    fuse = {}
    for i, name in enumerate(KEYFRAME_NAMES):
        have = [c for c in cases if c.keyframes[i] is not None]
        if not have:
            continue
        best, best_error = (FUSE_LEVELS[name][0], 0.0), None
        for weight in FUSE_WEIGHTS:
            for level in FUSE_LEVELS[name]:
                errors = []
                for c in have:
                    got = c.pair.keyframes[i]
                    curve = c.evidence.crossing(name, level)
                    if curve is not None:
                        got = (1.0 - weight) * got + weight * curve
                    errors.append(abs(got - c.keyframes[i]))
                error = float(np.mean(errors))
                if best_error is None or error < best_error - 1e-12:
                    best, best_error = (level, weight), error
        if best[1] > 0:
            fuse[name] = best
    return fuse


def decision_is_right(d: Decision, status: str, keyframes: Sequence[float | None], tolerance_s: float) -> bool:
    """Is the status right, and is every true keyframe found within ``tolerance_s`` (none invented)?"""
    if d.status != status:
        return False
    for got, true in zip(d.keyframes, keyframes):
        if (got is None) != (true is None):
            return False
        if got is not None and abs(got - true) > tolerance_s:
            return False
    return True


__all__ = [
    "Calibration", "CalibrationCase", "Decision", "KEYFRAME_NAMES", "OrderedPair", "STATUSES", "VesselEvidence",
    "calibrate", "decide", "decision_is_right", "fit_platt", "fuse_keyframes", "ordered_pair", "pair_scores",
]
