"""Running notebooks side by side: the shared preparation, the job pool, and the command's bad options."""

import json

import pytest

import xcalab.data.samples
import xcalab.pipeline
from xcalab import cli
from xcalab.config import get_preset
from xcalab.notebook import SHARED_VARIANTS, execute_notebooks, prepare_shared


def _toy_notebook(path, value):
    cells = [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None,
         "source": ["X: int = 0  # a parameter\n"]},
        {"cell_type": "code", "id": "c", "metadata": {}, "outputs": [], "execution_count": None,
         "source": [f"import os\nprint('value', {value}, 'threads', os.environ.get('OMP_NUM_THREADS'))\n"]},
    ]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def _printed(path):
    return "".join(json.loads(path.read_text())["cells"][-1]["outputs"][0]["text"])


def test_two_jobs_run_every_notebook_and_report_in_source_order(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    sources = [_toy_notebook(tmp_path / f"{name}.ipynb", i) for i, name in enumerate(["b", "a", "c"])]
    timings = execute_notebooks(sources, tmp_path / "out", {"X": 1}, jobs=2, timeout=120, progress=False)
    assert [name for name, _ in timings] == ["b.ipynb", "a.ipynb", "c.ipynb"]
    assert all(seconds > 0 for _, seconds in timings)
    for i, src in enumerate(sources):  # each kernel got its share of the cores, not the parent's 7
        assert _printed(tmp_path / "out" / src.name).startswith(f"value {i} threads ")
        assert "threads 7" not in _printed(tmp_path / "out" / src.name)
    with pytest.raises(ValueError, match="at least 1"):
        execute_notebooks(sources, tmp_path / "out", {}, jobs=0)


def _recorded_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(xcalab.pipeline, "prepare_features",
                        lambda cfg, subsets=None, progress=True: calls.append(("features", subsets)) or "DATA")
    monkeypatch.setattr(xcalab.pipeline, "load_or_train_detector",
                        lambda cfg, variant, data=None, progress=True: calls.append(("detector", variant, data)))
    monkeypatch.setattr(xcalab.data.samples, "example_cine",
                        lambda path, workdir, seed, image_size=256: calls.append(("cine", image_size)))
    return calls


def test_prepare_shared_at_smoke_builds_every_subset_and_trains_the_shared_detectors(monkeypatch, tmp_path):
    calls = _recorded_calls(monkeypatch)
    cfg = get_preset("smoke", data_dir=tmp_path)
    prepare_shared(cfg, progress=False)
    assert calls[0] == ("features", None)                                         # train, validation and test
    assert calls[1:3] == [("detector", v, "DATA") for v in SHARED_VARIANTS]       # trained on those features
    assert calls[3:] == [("cine", 256), ("cine", cfg.synth.image_size)]           # notebooks 01 and 02


def test_prepare_shared_at_teach_builds_only_the_test_cines(monkeypatch, tmp_path):
    calls = _recorded_calls(monkeypatch)
    prepare_shared(get_preset("teach", data_dir=tmp_path), progress=False)
    assert calls[0] == ("features", ("test",))
    assert calls[1:3] == [("detector", v, None) for v in SHARED_VARIANTS]         # the shipped weights


@pytest.mark.parametrize("argv, message", [
    (["notebooks", "--jobs", "0"], "--jobs must be at least 1"),
    (["notebooks", "--smoke", "--record-times", "--jobs", "2"], "--record-times needs --jobs 1"),
])
def test_notebooks_command_rejects_bad_options(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
