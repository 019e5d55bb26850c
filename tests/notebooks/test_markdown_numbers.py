"""Every measured number a notebook's Markdown states is one the notebook computes.

Runs on the executed copies in ``build/executed/`` (``test_execute.py`` writes them first). A decimal number
or a percentage in a Markdown cell passes when

- the executed notebook computes it: it appears, at the precision written, in an output of a code cell
  (printed text, generated Markdown, a table) or as an argument in a code cell's source; or
- it equals a constant read from the package (``_constants``: configuration fields, named constants,
  function defaults) or a value of the seed paper's tables (``xcalab.reproduce.PAPER``).

Whole numbers (equation, figure and section numbers, map sizes, frame indices of worked examples) are not
checked: they are definitions, not measurements. The "Exercises" cell is not checked either: its numbers are
what the student should see after changing the code, which the notebook as shipped cannot compute. The **CPU time** paragraph of each title cell is checked
by ``tests/unit/test_notebook_times.py`` against ``docs/notebook-times.json``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re

import pytest

from xcalab.config import LOCATE_FPS, PRESETS, REPO_ROOT, get_preset
from xcalab.frame_metrics import PAPER_CI_FACTOR
from xcalab.metrics import PAPER_TIOUS
from xcalab.models.generative_attention import cvae_loss
from xcalab.models.heads import ClassificationHead
from xcalab.notebook import list_notebooks
from xcalab.reproduce import PAPER
from xcalab.train.losses import LossNormaliser

EXECUTED = REPO_ROOT / "build" / "executed"

#: A decimal or a percentage, not part of a word, a version ("ActivityNet-1.3") or a path.
NUMBER = re.compile(r"(?<![\w.\-/^])(\d+\.\d+|\d+(?:\.\d+)?(?=\s*%))")
#: Numbers anywhere in computed text (outputs, sources), for matching.
ANY_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _paper_values() -> set[float]:
    return {float(v) for table in PAPER.values() for row in table.values() for v in row}


def _defaults(func) -> dict[str, float]:
    return {k: float(v.default) for k, v in inspect.signature(func).parameters.items()
            if isinstance(v.default, float)}


def _constants() -> dict[float, str]:
    """value -> where it comes from, each read from the package (never typed here).

    Every float field of the model and training settings of every preset, the evaluation's tIoU thresholds,
    the reference's confidence-interval factor, the locate frame rate, and the float defaults of the
    functions whose constants the notebooks explain (the class prior, the loss normaliser's momentum and
    its complement, the CVAE's KL weight).
    """
    known: dict[float, str] = {}
    for preset in PRESETS:
        cfg = get_preset(preset)
        for part in (cfg.model, cfg.train):
            for f in dataclasses.fields(part):
                value = getattr(part, f.name)
                if isinstance(value, float):
                    known.setdefault(value, f"{preset}: {type(part).__name__}.{f.name}")
    for theta in PAPER_TIOUS:
        known.setdefault(theta, "metrics.PAPER_TIOUS")
    known.setdefault(PAPER_CI_FACTOR, "frame_metrics.PAPER_CI_FACTOR")
    known.setdefault(LOCATE_FPS, "config.LOCATE_FPS")
    for func in (ClassificationHead.__init__, LossNormaliser.__init__, cvae_loss):
        for name, value in _defaults(func).items():
            known.setdefault(value, f"{func.__qualname__}({name}=...)")
    momentum = _defaults(LossNormaliser.__init__)["momentum"]
    known.setdefault(round(1 - momentum, 12), "1 - LossNormaliser momentum")
    return known


def _markdown_numbers(cell_source: str) -> list[str]:
    text = re.sub(r"```.*?```", " ", cell_source, flags=re.S)     # code blocks
    text = re.sub(r"`[^`]*`", " ", text)                           # inline code
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)           # display maths
    text = re.sub(r"\$[^$\n]*\$", " ", text)                       # inline maths
    text = re.sub(r"\]\([^)]*\)", "]", text)                       # link targets
    text = re.sub(r"\*\*CPU time:\*\*.*?(?:\n\s*\n|\Z)", " ", text, flags=re.S)
    return NUMBER.findall(text)


def _computed_values(nb: dict) -> list[float]:
    chunks = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        chunks.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            chunks.append("".join(out.get("text", "")))
            for mime in ("text/plain", "text/markdown", "text/html"):
                chunks.append("".join(out.get("data", {}).get(mime, "")))
    values = []
    for match in ANY_NUMBER.finditer("\n".join(chunks)):
        try:
            values.append(float(match.group(0)))
        except ValueError:
            continue
    return values


def _decimals(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


def _matches(token: str, value: float, candidates: list[float]) -> bool:
    """Does a computed value round to ``token`` at its precision (a percentage may be printed as a fraction, and
    a fraction as a percentage)?"""
    d = _decimals(token)
    half = 0.5 * 10 ** (-d) + 1e-12
    for x in candidates:
        if abs(x - value) <= half or abs(100 * x - value) <= half or abs(x / 100 - value) <= half:
            return True
    return False


def _unexplained(nb: dict) -> list[str]:
    computed = _computed_values(nb)
    paper = _paper_values()
    constants = _constants()
    missing = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown" or "".join(cell["source"]).lstrip().startswith("## Exercises"):
            continue
        for token in _markdown_numbers("".join(cell["source"])):
            value = float(token)
            if _matches(token, value, computed):
                continue
            if any(math.isclose(value, v, abs_tol=1e-9) for v in paper):
                continue
            if any(math.isclose(value, v, abs_tol=1e-9) for v in constants):
                continue
            missing.append(f"cell {i}: {token}")
    return missing


@pytest.mark.parametrize("src", list_notebooks(), ids=lambda p: p.stem)
def test_markdown_states_only_numbers_the_notebook_computes(src):
    executed = EXECUTED / src.name
    if not executed.is_file():
        pytest.skip(f"{executed} is missing: run tests/notebooks/test_execute.py first (make notebooks)")
    nb = json.loads(executed.read_text())
    missing = _unexplained(nb)
    assert not missing, (f"{src.name}: Markdown states numbers the notebook does not compute "
                         f"(generate them from the run, or check them against a config field / paper value): "
                         + "; ".join(missing))


def test_the_checker_finds_a_typed_number_and_accepts_a_computed_one():
    def nb(markdown, output):
        return {"cells": [{"cell_type": "markdown", "source": [markdown]},
                          {"cell_type": "code", "source": ["x = f()"],
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}]}
    assert _unexplained(nb("A reaches 0.953 at the apex.", "A max 0.95312")) == []
    assert _unexplained(nb("A reaches 0.953 at the apex.", "A max 0.9472")) == ["cell 0: 0.953"]
    assert _unexplained(nb("mAP 85.8 %.", "average mAP 0.8581")) == []           # a percentage of a fraction
    assert _unexplained(nb("`tau = 0.37` and $x = 0.37$", "")) == []                 # code and maths are skipped
    assert _unexplained(nb("ActivityNet-1.3 JSON", "")) == []                         # versions are not numbers
    assert _unexplained(nb("STA reaches 70.21 in the paper", "")) == []               # a paper value
    assert _unexplained(nb("decay 0.999 per step", "")) == []                         # a config constant
    assert _unexplained(nb("## Exercises\n\nExpect about 0.38.", "")) == []          # what a changed run shows
