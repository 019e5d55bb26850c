"""Every attention map of one cine, computed once, each with its kind and range: what the explorer draws.

    from xcalab.locator import load_locator
    maps = sequence_maps(seq, load_locator("data/weights/detector-teach-sta-ipcon-seed0.pt"))
    maps.names("step")              # ['TA', 'TA.input_gate', ..., 'A', 'STA', 'foreground', ...]
    maps.step_of_frame(17)          # the feature step whose window holds frame 17 (None past the last one)
    maps.value_range("A")           # (0.0, 1.0), fixed; an unbounded map gives the range it reached

One forward of the detector with attention capture (``locate_sequence(..., return_attention=True)``), so
the maps belong to exactly the keyframes, segments and scores ``xcalab locate`` reports for the cine.
The detector declares each map's ``MapKind`` beside it (``xcalab.models.detector``); this module adds
the per-step curves the decision reads (the two class probabilities and the vessel curve) and the
bookkeeping between the cine's own frames and the feature steps:

    analysed frames  the cine resampled to the weights' rate (every frame for the teach weights)
    step s           the window of ``window`` analysed frames starting at s * stride
    frame f          belongs to the latest window that starts at or before it: s = j // stride, where j is
                     the analysed frame nearest to f; a frame after the last window belongs to no step
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xcalab.data.io import Cine
from xcalab.locator import locate_sequence
from xcalab.models.maps import UNIT_RANGE, MapKind

#: Curves over the steps that sit beside the detector's maps (the decision reads them).
SCORE_CURVES = ("P(filling)", "P(disappearing)")
VESSEL_CURVE = "vessel curve"


@dataclass
class SequenceMaps:
    """One cine's maps under one model.

    result   the ``xcalab.locator.LocateResult`` of the forward (record, scores, decision, the cine)
    maps     name -> array: "step" (T, S, S), "band" (heads, T_l, 2w + 1), "curve" (T,), "points" (2,)
    kinds    name -> ``MapKind``
    stride   analysed frames between steps; window: analysed frames per step
    """

    result: object
    maps: dict[str, np.ndarray]
    kinds: dict[str, MapKind]
    stride: int
    window: int

    def __post_init__(self) -> None:
        missing = sorted(set(self.maps) ^ set(self.kinds))
        if missing:
            raise ValueError(f"every map needs a kind and every kind a map; unmatched: {missing}")
        self._ranges = {}
        for name, kind in self.kinds.items():
            if kind.value_range is not None:
                self._ranges[name] = (float(kind.value_range[0]), float(kind.value_range[1]))
            else:
                data = self.maps[name]
                lo, hi = float(np.min(data)), float(np.max(data))
                self._ranges[name] = (lo, hi if hi > lo else lo + 1.0)

    # The cine ---------------------------------------------------------------------------------------

    @property
    def sequence(self) -> Cine:
        return self.result.sequence

    @property
    def n_frames(self) -> int:
        return self.sequence.n_frames

    @property
    def n_steps(self) -> int:
        return int(len(self.result.step_times))

    @property
    def frame_index(self) -> np.ndarray:
        """[M] original frame of each analysed frame."""
        index = self.result.frame_index
        return np.arange(self.n_frames) if index is None else np.asarray(index)

    @property
    def map_size(self) -> int:
        """Side S of the step maps (they cover the whole frame)."""
        return next((int(self.maps[n].shape[-1]) for n in self.names("step")), 64)

    def step_of_frame(self, frame: int) -> int | None:
        """The feature step whose window holds original ``frame``; None when it lies after the last window."""
        if not 0 <= frame < self.n_frames:
            raise ValueError(f"frame {frame} is outside the cine (0..{self.n_frames - 1})")
        index = self.frame_index
        j = int(np.argmin(np.abs(index - frame)))  # the nearest analysed frame (the first on a tie)
        if j >= (self.n_steps - 1) * self.stride + self.window:
            return None
        return min(j // self.stride, self.n_steps - 1)

    def frames_of_step(self, step: int) -> tuple[int, int]:
        """(first, last) original frame of step ``step``'s window."""
        if not 0 <= step < self.n_steps:
            raise ValueError(f"step {step} is outside 0..{self.n_steps - 1}")
        index = self.frame_index
        first = step * self.stride
        last = min(first + self.window, len(index)) - 1
        return int(index[first]), int(index[last])

    def last_window_frame(self) -> int:
        """The last original frame any window holds."""
        return self.frames_of_step(self.n_steps - 1)[1]

    # The maps ---------------------------------------------------------------------------------------

    def names(self, kind: str | None = None) -> list[str]:
        """Map names, in capture order, optionally of one kind."""
        return [name for name, k in self.kinds.items() if kind is None or k.kind == kind]

    def value_range(self, name: str) -> tuple[float, float]:
        """The colour limits of map ``name``: its fixed range, or for an unbounded map the range it reached."""
        return self._ranges[name]

    def range_is_fixed(self, name: str) -> bool:
        return self.kinds[name].value_range is not None

    def band(self, name: str, head: int) -> np.ndarray:
        """One head of a "band" map: (T_l, 2w + 1)."""
        data = self.maps[name]
        if self.kinds[name].kind != "band":
            raise ValueError(f"{name!r} is a {self.kinds[name].kind} map, not a band")
        if not 0 <= head < data.shape[0]:
            raise ValueError(f"{name!r} has heads 0..{data.shape[0] - 1}, not {head}")
        return data[head]


def sequence_maps(seq: Cine, locator, result=None) -> SequenceMaps:
    """Every map of ``seq`` under ``locator`` (an ``xcalab.locator.Locator``), from one forward.

    result: a ``LocateResult`` of this cine and these weights that already holds attention (reused as is).
    """

    if result is None or result.attention is None:
        result = locate_sequence(seq, locator, return_attention=True)
    maps = dict(result.attention)
    kinds = dict(result.kinds)
    for c, name in enumerate(SCORE_CURVES):
        maps[name], kinds[name] = np.asarray(result.scores[:, c], dtype=np.float32), MapKind("curve", UNIT_RANGE)
    maps[VESSEL_CURVE], kinds[VESSEL_CURVE] = np.asarray(result.vessel_curve, dtype=np.float32), MapKind("curve", None)
    return SequenceMaps(result, maps, kinds, locator.stride, locator.cfg.features.window)


__all__ = ["SCORE_CURVES", "VESSEL_CURVE", "SequenceMaps", "sequence_maps"]
