"""Execute every numbered notebook with papermill at smoke size into build/executed/.

Run by ``make test`` after the unit tests; nbval then re-runs the executed copies (``--nbval-lax``).
A failing notebook stays in build/executed/ with its error cell, and the error is printed here.
"""

import os

import pytest

from xcalab.config import REPO_ROOT
from xcalab.notebook import execute_notebook, list_notebooks

EXECUTED = REPO_ROOT / "build" / "executed"
FIGURES = REPO_ROOT / "build" / "figures-smoke"
#: Smoke work per notebook must stay small: CI runs every notebook twice (papermill, then nbval).
SMOKE_BUDGET_SECONDS = 120


@pytest.mark.parametrize("src", list_notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_size(src):
    import papermill

    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        dst, seconds = execute_notebook(src, EXECUTED, {"SMOKE": True, "FIG_DIR": str(FIGURES)}, timeout=600)
    except papermill.PapermillExecutionError as err:
        pytest.fail(f"{src.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n{''.join(err.traceback)}")
    print(f"{src.name}: {seconds:.1f} s at smoke size")
    assert seconds < SMOKE_BUDGET_SECONDS, f"{src.name} took {seconds:.0f} s at smoke size (budget {SMOKE_BUDGET_SECONDS} s)"
