"""Execute every numbered notebook with papermill at smoke size into build/executed/.

Run by ``make test`` after the unit tests, two notebooks at a time (pytest-xdist), after
``xcalab notebooks --smoke --prepare-only`` has built what they share; nbval then re-runs the executed copies
(``--nbval-lax``).
A failing notebook stays in build/executed/ with its error cell, and the error is printed here.

How long each notebook took is a reported figure, not an assertion (timings depend on what else the
machine runs): ``build/executed/timings.json`` collects them, and a notebook over
``SMOKE_BUDGET_SECONDS`` is named in a warning, so a slow one is seen without making CI flaky.
"""

import fcntl
import json
import os
import warnings

import pytest

from xcalab.config import REPO_ROOT
from xcalab.notebook import execute_notebook, list_notebooks
from xcalab.viz.save import AUDIT_ENV

EXECUTED = REPO_ROOT / "build" / "executed"
FIGURES = REPO_ROOT / "build" / "figures-smoke"
AUDIT = REPO_ROOT / "build" / "figure-audit"  # each saved figure's map-convention audit (test_figures.py)
TIMINGS = EXECUTED / "timings.json"
#: Smoke work per notebook should stay small: CI runs every notebook twice (papermill, then nbval).
SMOKE_BUDGET_SECONDS = 120


def _record(name: str, seconds: float) -> None:
    """Add one notebook's time to timings.json; a lock keeps two pytest-xdist workers from losing an entry."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with open(TIMINGS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        timings = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}
        timings[name] = round(seconds, 1)
        TIMINGS.write_text(json.dumps(dict(sorted(timings.items())), indent=1) + "\n")


@pytest.mark.parametrize("src", list_notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_size(src):
    import papermill

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ[AUDIT_ENV] = str(AUDIT)  # the kernel inherits it: save_figure writes each figure's audit
    try:
        dst, seconds = execute_notebook(src, EXECUTED, {"SMOKE": True, "FIG_DIR": str(FIGURES)}, timeout=600)
    except papermill.PapermillExecutionError as err:
        pytest.fail(f"{src.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n{''.join(err.traceback)}")
    print(f"{src.name}: {seconds:.1f} s at smoke size")
    _record(src.name, seconds)
    if seconds > SMOKE_BUDGET_SECONDS:
        warnings.warn(f"{src.name} took {seconds:.0f} s at smoke size (budget {SMOKE_BUDGET_SECONDS} s)", stacklevel=1)
    assert dst.is_file()
