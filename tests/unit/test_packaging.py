"""The environment files agree, and the presets keep their designed sizes (paper: 260 cines, 136 / 60 / 64)."""

import re
import tomllib

import pytest
import yaml

from xcalab.config import PRESETS, REPO_ROOT, get_preset


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r for r in project["dependencies"] if _name(r) != "torch"}
    for extra in ("notebooks", "test"):
        wanted |= set(project["optional-dependencies"][extra])
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "torch==2.13.0" in pip  # pinned first, as the Makefile installs it
    assert {p for p in pip if _name(p) != "torch"} == wanted


def test_makefile_installs_pinned_torch_before_the_package():
    make = (REPO_ROOT / "Makefile").read_text()
    assert make.index("torch==2.13.0") < make.index('-e ".[notebooks,test]"')


def test_presets():
    paper = get_preset("paper")
    assert (paper.synth.n_sequences, paper.synth.split, paper.synth.image_size, paper.synth.frames) == (
        260, (136, 60, 64), 512, (31, 379))
    teach = get_preset("teach")
    assert teach.synth.n_sequences >= 100 and teach.synth.image_size == 256
    assert set(teach.synth.trees) == {"left", "right"} and len(teach.synth.fps_choices) == 3
    # teach keeps the paper's split proportions (136:60:64) within one cine
    for part, ref in zip(teach.synth.split, paper.synth.split):
        assert abs(part - ref * teach.synth.n_sequences / paper.synth.n_sequences) < 1
    assert get_preset("smoke").smoke and not teach.smoke
    for name in PRESETS:
        assert get_preset(name).features.dim == 4096


def test_preset_errors_and_changes():
    with pytest.raises(ValueError, match="smoke, teach, paper"):
        get_preset("huge")
    assert get_preset("smoke", seed=5).seed == 5
    from xcalab.config import SynthConfig

    with pytest.raises(ValueError, match="add up"):
        SynthConfig(n_sequences=10, split=(5, 2, 2), image_size=64, frames=(10, 20))
    with pytest.raises(ValueError, match="frames"):
        SynthConfig(n_sequences=9, split=(5, 2, 2), image_size=64, frames=(20, 10))
