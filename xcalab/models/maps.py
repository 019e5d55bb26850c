"""What a captured attention map is: its kind and the range its values live in, so any viewer can draw it.

Every module that exposes maps (long-term attention, the transformer, GAF, TSA + TPP, the phase recogniser)
declares a ``MapKind`` beside each one; ``xcalab.attention_maps`` and the explorer draw by kind alone, so a new
module's maps need no drawing code of their own.
"""

from __future__ import annotations

from typing import NamedTuple


class MapKind(NamedTuple):
    """What a captured map is, so a viewer can draw it without knowing the module that made it.

    kind         "step"   (T, S, S): one map per feature step, drawn over the step's frame
                 "band"   (heads, T_l, 2w + 1): local attention weights of pyramid level ``level``, row t =
                          how much step t attends to its neighbours t - w .. t + w
                 "curve"  (T,): one number per step
                 "matrix" (T, T): step-to-step weights, row t = how much step t attends to every step
                 "points" (2,): a position (row, column) on the S x S map
    value_range  the fixed range the values live in -- (0, 1) for sigmoid gates, A and softmax weights,
                 (-1, 1) for a ConvLSTM hidden map -- or None for an unbounded response (a viewer shows
                 the range it observed)
    level        the pyramid level of a "band" (its step is 2**level feature steps), else None
    """

    kind: str
    value_range: tuple[float, float] | None
    level: int | None = None


#: The range of sigmoid gates, attention maps and probabilities.
UNIT_RANGE = (0.0, 1.0)
