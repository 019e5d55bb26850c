"""Every figure a notebook saves follows the map convention (``xcalab.viz.audit``).

``test_execute.py`` runs the notebooks with ``XCALAB_FIGURE_AUDIT`` set, so ``save_figure`` writes each
figure's audit (its images' colour maps and limits, its colour bars) to ``build/figure-audit/<name>.json``.
"""

from __future__ import annotations

import json

import pytest

from xcalab.config import REPO_ROOT
from xcalab.notebook import list_notebooks
from xcalab.viz.audit import problems_of

AUDIT = REPO_ROOT / "build" / "figure-audit"


def _audits(prefix: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(AUDIT.glob(f"{prefix}_*.json"))}


@pytest.mark.parametrize("src", list_notebooks(), ids=lambda p: p.stem)
def test_every_saved_figure_follows_the_map_convention(src):
    if not AUDIT.is_dir():
        pytest.skip(f"{AUDIT} is missing: run tests/notebooks/test_execute.py first (make notebooks)")
    audits = _audits(src.name[:2])
    if "save_figure(" in src.read_text():
        assert audits, f"{src.name} saves figures but none was audited: was it executed with XCALAB_FIGURE_AUDIT?"
    problems = [f"{name}: {p}" for name, audit in audits.items() for p in problems_of(audit)]
    assert not problems, f"{src.name}: figures break the map convention:\n" + "\n".join(problems)
