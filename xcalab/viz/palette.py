"""The one palette of every xcalab figure: keyframes, actions and contrast phases look the same everywhere.

    KEYFRAME_COLORS   start / apex / end
    ACTION_COLORS     the two actions (filling, disappearing) and the whole passage
    PHASE_COLORS      background shade of each phase: pre-contrast, filling, apex plateau, washout, after
"""

from __future__ import annotations

#: One colour per keyframe.
KEYFRAME_COLORS = {"start": "tab:green", "apex": "tab:red", "end": "tab:blue"}
#: One colour per action name (index them by ``xcalab.data.annotations.LABELS`` for a label id).
ACTION_COLORS = {"filling": "tab:orange", "disappearing": "tab:purple", "whole": "tab:gray"}
#: One background colour per phase (pre-contrast, filling, apex plateau, washout, after).
PHASE_COLORS = ("#f0f0f0", "#fde0c5", "#f9b4b4", "#c9dbf5", "#e8e8e8")

__all__ = ["ACTION_COLORS", "KEYFRAME_COLORS", "PHASE_COLORS"]
