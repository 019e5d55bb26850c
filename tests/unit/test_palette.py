"""One palette for keyframes, actions and phases in every figure (xcalab.viz.palette)."""

from __future__ import annotations

import re
from pathlib import Path

from xcalab.data.annotations import LABELS
from xcalab.viz import palette

VIZ = Path(palette.__file__).parent


def test_no_viz_module_defines_its_own_colours():
    own = re.compile(r"^(KEYFRAME|ACTION|PHASE)_COLOU?RS\s*=", re.MULTILINE)
    offenders = [p.name for p in VIZ.glob("*.py") if p.name != "palette.py" and own.search(p.read_text())]
    assert offenders == []


def test_modules_share_the_palette_objects():
    from xcalab.viz import common, sequences, synth, training

    assert sequences.KEYFRAME_COLORS is palette.KEYFRAME_COLORS is synth.KEYFRAME_COLORS
    assert sequences.ACTION_COLORS is palette.ACTION_COLORS and common.PHASE_COLORS is palette.PHASE_COLORS  # common shades the phases
    assert training.ACTION_COLOURS_BY_LABEL == tuple(palette.ACTION_COLORS[name] for name in LABELS[0])  # setting 0
    assert len(set(palette.KEYFRAME_COLORS.values())) == 3 and len(palette.PHASE_COLORS) == 5
