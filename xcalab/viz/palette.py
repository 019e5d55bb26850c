"""The one palette of every xcalab figure: keyframes, actions and contrast phases look the same everywhere.

    KEYFRAME_COLORS   start / apex / end
    ACTION_COLORS     the two actions (filling, disappearing) and the whole passage
    PHASE_COLORS      background shade of each phase: pre-contrast, filling, apex plateau, washout, after
    PHASE_LINE_COLORS a line colour per phase (its probability curve), the shade's darker tone
"""

from __future__ import annotations

#: One colour per keyframe.
KEYFRAME_COLORS = {"start": "tab:green", "apex": "tab:red", "end": "tab:blue"}
#: One colour per action name (index them by ``xcalab.data.annotations.LABELS`` for a label id).
ACTION_COLORS = {"filling": "tab:orange", "disappearing": "tab:purple", "whole": "tab:gray"}
#: One background colour per phase (pre-contrast, filling, apex plateau, washout, after).
PHASE_COLORS = ("#f0f0f0", "#fde0c5", "#f9b4b4", "#c9dbf5", "#e8e8e8")
#: One line colour per phase, in the same order: the darker tone of its shade.
PHASE_LINE_COLORS = ("#7f7f7f", "#e6862e", "#d62728", "#3b75c4", "#2b2b2b")

__all__ = ["ACTION_COLORS", "KEYFRAME_COLORS", "PHASE_COLORS", "PHASE_LINE_COLORS"]
