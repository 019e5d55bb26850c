"""CPU times: ``xcalab notebooks --record-times`` records them in one file and writes them where students read them."""

import json

import pytest

from xcalab.config import REPO_ROOT
from xcalab.notebook import (
    _README_ROW,
    _TIME_TOKEN,
    NOTEBOOK_DIR,
    format_seconds,
    list_notebooks,
    record_times,
    write_times,
)


def test_format_seconds_by_hand():
    assert [format_seconds(s) for s in (0.4, 12.6, 89.4, 90.0, 150.0, 361.0)] == [
        "0 s", "13 s", "89 s", "1.5 min", "2.5 min", "6.0 min"]
    with pytest.raises(ValueError, match="negative"):
        format_seconds(-1.0)


def _toy(tmp_path):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    first = "# 03 · Toy\n\n**CPU time:** teach ≈ 0.5 min (with the shipped weights) · smoke ≈ 15 s\n"
    (nb_dir / "03_toy.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": [first]}]}))
    readme = tmp_path / "README.md"
    readme.write_text("| # | notebook | what | CPU time (teach · smoke) |\n|---|---|---|---|\n"
                      "| 03 | `03_toy` | a toy, with a | pipe-free text | 0.3 min* (6 min with `RETRAIN`) · 15 s |\n"
                      "| 04 | `04_other` | untouched | 0.3 min · 9 s |\n")
    return nb_dir, readme


def test_record_then_write_changes_only_the_numbers(tmp_path):
    nb_dir, readme = _toy(tmp_path)
    path = tmp_path / "times.json"
    record_times({"03_toy.ipynb": 150.04}, "teach", "test CPU", path=path, when="2026-12-02")
    record = record_times({"03_toy.ipynb": 21.4}, "smoke", "test CPU", path=path, when="2026-12-02")
    assert record == {"03_toy.ipynb": {"teach": {"seconds": 150.0, "measured": "2026-12-02", "machine": "test CPU"},
                                       "smoke": {"seconds": 21.4, "measured": "2026-12-02", "machine": "test CPU"}}}
    assert json.loads(path.read_text()) == record
    assert write_times(record, nb_dir, readme) == ["03_toy.ipynb", "README.md (03_toy.ipynb)"]
    first = "".join(json.loads((nb_dir / "03_toy.ipynb").read_text())["cells"][0]["source"])
    assert "**CPU time:** teach ≈ 2.5 min (with the shipped weights) · smoke ≈ 21 s" in first
    rows = readme.read_text().splitlines()
    assert rows[2].endswith("| 2.5 min* (6 min with `RETRAIN`) · 21 s |")
    assert rows[3] == "| 04 | `04_other` | untouched | 0.3 min · 9 s |"  # not measured: left alone
    assert write_times(record, nb_dir, readme) == []  # the same numbers: nothing to change


def test_one_size_leaves_the_other_as_it_was(tmp_path):
    nb_dir, readme = _toy(tmp_path)
    record = record_times({"03_toy.ipynb": 8.0}, "smoke", "test CPU", path=tmp_path / "t.json")
    write_times(record, nb_dir, readme)
    first = "".join(json.loads((nb_dir / "03_toy.ipynb").read_text())["cells"][0]["source"])
    assert "teach ≈ 0.5 min (with the shipped weights) · smoke ≈ 8 s" in first
    assert readme.read_text().splitlines()[2].endswith("| 0.3 min* (6 min with `RETRAIN`) · 8 s |")
    with pytest.raises(ValueError, match='"teach" or "smoke"'):
        record_times({}, "paper", "test CPU", path=tmp_path / "t.json")


def test_every_notebook_and_readme_row_carries_both_times():
    """The writer can reach every number: each title cell has a teach and a smoke token, each README row parses."""
    readme_rows = {m.group(2) for line in (REPO_ROOT / "README.md").read_text().splitlines()
                   if (m := _README_ROW.match(line))}
    for path in list_notebooks():
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        assert sorted(m.group(1) for m in _TIME_TOKEN.finditer(first)) == ["smoke", "teach"], path.name
        assert path.name[:2] in readme_rows, path.name
    assert NOTEBOOK_DIR == REPO_ROOT / "notebooks"
