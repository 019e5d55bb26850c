"""setup(): preset choice, smoke from the environment, seeding, device, the banner; runtime helpers."""

import numpy as np
import pytest
import torch

import xcalab
from xcalab.notebook import SMOKE_NOTICE, banner, markdown_table, package_map, setup
from xcalab.runtime import resolve_device, seed_everything


def test_setup_picks_preset_and_prints_one_banner(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("XCALAB_SMOKE", raising=False)
    cfg = setup(SMOKE=False, SEED=3, DEVICE="cpu", PRESET="teach", FIG_DIR=str(tmp_path))
    out = capsys.readouterr().out.strip().splitlines()
    assert cfg.name == "teach" and cfg.seed == 3 and cfg.device == "cpu" and cfg.fig_dir == tmp_path
    assert out == [f"xcalab {xcalab.__version__} | torch {torch.__version__} | device cpu | preset teach | seed 3 | smoke=False"]


def test_a_smoke_run_says_its_models_are_untrained(capsys, monkeypatch):
    monkeypatch.delenv("XCALAB_SMOKE", raising=False)
    setup(SMOKE=True, DEVICE="cpu")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].endswith("smoke=True") and out[1] == SMOKE_NOTICE
    assert SMOKE_NOTICE.startswith("SMOKE RUN: ") and "untrained" in SMOKE_NOTICE and "README.md" in SMOKE_NOTICE


def test_smoke_parameter_or_environment_forces_smoke(monkeypatch):
    monkeypatch.delenv("XCALAB_SMOKE", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert setup(SMOKE=True, PRESET="paper", quiet=True).name == "smoke"
    import os

    assert os.environ["TQDM_DISABLE"] == "1"
    monkeypatch.setenv("XCALAB_SMOKE", "1")
    assert setup(SMOKE=False, PRESET="paper", quiet=True).name == "smoke"
    monkeypatch.setenv("XCALAB_SMOKE", "0")
    assert setup(SMOKE=False, PRESET="paper", quiet=True).name == "paper"


def test_setup_seeds_everything(monkeypatch):
    monkeypatch.delenv("XCALAB_SMOKE", raising=False)
    setup(SEED=11, quiet=True)
    a = (np.random.rand(3), torch.rand(3))
    setup(SEED=11, quiet=True)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    seed_everything(12)
    assert not torch.equal(torch.rand(3), b[1])


def test_banner_matches_sanitizer_rule():
    import re

    from xcalab.config import get_preset

    rule = re.compile(r"(?m)^xcalab .*\| smoke=\w+$")
    assert rule.fullmatch(banner(get_preset("smoke")))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("mps")


def test_markdown_table_and_package_map():
    assert markdown_table([("a", "x|y")], ["k", "v"]).splitlines() == ["| k | v |", "|---|---|", "| a | x\\|y |"]
    modules = dict(package_map())
    assert modules["xcalab.data.annotations"].startswith("Annotations")
    assert all(doc for doc in modules.values()), "every module opens with a docstring"


def test_package_map_never_cuts_a_wrapped_summary(tmp_path, monkeypatch):
    import xcalab.notebook as notebook

    pkg = tmp_path / "xcalab"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The package."""\n')
    (pkg / "sub" / "__init__.py").write_text('"""A layer."""\n')
    (pkg / "sub" / "deep.py").write_text('"""A summary that wraps\nover two lines.\n\nDetails."""\n')
    (pkg / "top.py").write_text('"""Top module, in this order:\n\n    a list\n"""\n')
    monkeypatch.setattr(notebook, "REPO_ROOT", tmp_path)
    modules = dict(notebook.package_map())
    assert modules["xcalab.sub.deep"] == "A summary that wraps over two lines."
    assert modules["xcalab.top"] == "Top module, in this order."
    assert [m for m, _ in notebook.package_map(depth=2)] == ["xcalab", "xcalab.sub", "xcalab.top"]
    assert [m for m, _ in notebook.package_map(packages_only=True)] == ["xcalab", "xcalab.sub"]


def test_package_map_summaries_are_whole_paragraphs():
    for module, doc in package_map():
        assert "\n" not in doc and not doc.endswith((" the", " of", " behind", ",", ":")), f"{module}: cut summary {doc!r}"


def test_notebook_table_reads_a_wrapped_cpu_time(tmp_path, monkeypatch):
    import json

    import xcalab.notebook as notebook

    cell = {"cell_type": "markdown", "metadata": {}, "source": [
        "# 07 · A title\n", "\n", "**CPU time:** teach ≈ 1 min (with a note that\n", "wraps) · smoke ≈ 20 s\n",
        "\n", "more text\n"]}
    (tmp_path / "07_x.ipynb").write_text(json.dumps({"cells": [cell]}))
    monkeypatch.setattr(notebook, "NOTEBOOK_DIR", tmp_path)
    (row,) = notebook.notebook_table()
    assert row["title"] == "A title" and row["cpu_time"] == "teach ≈ 1 min (with a note that wraps) · smoke ≈ 20 s"
