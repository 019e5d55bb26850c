"""Imports point one way: a module never imports from a layer above its own (README, "The package").

Every ``import xcalab...`` and ``from xcalab... import`` counts, at module level or inside a function: an
import moved into a function still runs upward. There is no list of exceptions.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "xcalab"

#: Bottom to top. A module belongs to the longest prefix that names it.
LAYERS = (
    ("xcalab", "xcalab.config", "xcalab.errors", "xcalab.runtime"),
    ("xcalab.data",),
    ("xcalab.features",),
    ("xcalab.models",),
    ("xcalab.metrics", "xcalab.frame_metrics", "xcalab.postprocess", "xcalab.scoring", "xcalab.decision", "xcalab.inference", "xcalab.locator",
     "xcalab.attention_maps", "xcalab.probes"),
    ("xcalab.train",),
    ("xcalab.evaluation", "xcalab.results_table", "xcalab.pipeline", "xcalab.locate_training"),
    ("xcalab.reproduce", "xcalab.locate", "xcalab.cli", "xcalab.notebook", "xcalab.viz"),
)


def layer_of(module: str) -> int:
    best, level = "", None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, level = p, i
    if level is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS")
    return level


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def xcalab_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every xcalab import in a file, wherever it is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "xcalab"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "xcalab":
            found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_from_a_layer_above(path):
    here = module_name(path)
    upward = [f"line {line}: {target} (layer {layer_of(target)})" for line, target in xcalab_imports(path)
              if layer_of(target) > layer_of(here)]
    assert not upward, f"{here} (layer {layer_of(here)}) imports upward: " + "; ".join(upward)


def test_the_check_sees_upward_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from xcalab.train.loop import train\n")
    assert xcalab_imports(bad) == [(2, "xcalab.train.loop")]
    assert layer_of("xcalab.train.loop") > layer_of("xcalab.data.io")
    with pytest.raises(KeyError):
        layer_of("xcalab_other.thing")
