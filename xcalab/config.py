"""Configuration: typed dataclasses and the three presets ``smoke``, ``teach`` and ``paper``.

This file is the one source of truth for every size, seed and path in xcalab. Notebooks and commands
pick a preset by name and never type numbers of their own:

    smoke   seconds on a CPU -- what CI runs
    teach   minutes on a 2-core CPU laptop -- the default of ``make run`` and of every notebook
    paper   the seed paper's sizes and hyper-parameters -- meant for a GPU

    >>> cfg = get_preset("teach")
    >>> cfg.synth.n_sequences, cfg.synth.image_size
    (120, 256)
    >>> cfg.replace(seed=3).seed
    3
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

#: The repository root (the folder that holds ``xcalab/``); data and figures live below it.
REPO_ROOT = Path(__file__).resolve().parent.parent

PRESETS = ("smoke", "teach", "paper")


@dataclass(frozen=True)
class SynthConfig:
    """Size of an XCA-Synth benchmark (the simulator's physics knobs live in ``xcalab.data.synth``).

    n_sequences   number of cines
    split         (train, validation, test) counts; they add up to ``n_sequences``
    image_size    frames are image_size x image_size pixels
    frames        (min, max) frames per cine (the paper's clinical cines have 31-379 frames)
    fps_choices   frame rates drawn uniformly per cine (clinical cines run at 7.5, 15 or 30 fps)
    trees         coronary trees drawn uniformly per cine ("left", "right")
    """

    n_sequences: int
    split: tuple[int, int, int]
    image_size: int
    frames: tuple[int, int]
    fps_choices: tuple[float, ...] = (7.5, 15.0, 30.0)
    trees: tuple[str, ...] = ("left", "right")

    def __post_init__(self) -> None:
        if sum(self.split) != self.n_sequences:
            raise ValueError(f"split {self.split} does not add up to n_sequences={self.n_sequences}")
        if not 0 < self.frames[0] <= self.frames[1]:
            raise ValueError(f"frames must be (min, max) with 0 < min <= max, got {self.frames}")


@dataclass(frozen=True)
class FeatureConfig:
    """The per-frame vessel feature grid (seed paper Sec. IV-A; spec sta-ipcon.md Sec. 2.2-2.3).

    window    frames per feature step (4: SVS-Net reads 4 consecutive frames)
    stride    frames between consecutive steps (4 = non-overlapping, the paper's; 1 and 2 for Table VI)
    map_size  each step is one map_size x map_size vessel map, flattened row-major (64 -> 4096 features)
    """

    window: int = 4
    stride: int = 4
    map_size: int = 64

    @property
    def dim(self) -> int:
        """Feature dimension per step (4096 for 64 x 64 maps)."""
        return self.map_size * self.map_size


@dataclass(frozen=True)
class Config:
    """Everything one run needs. Build it with ``get_preset(name)``; change it with ``replace``.

    name          the preset it came from ("smoke", "teach", "paper")
    seed          the seed of every random thing (data, model, training)
    device        "auto" (CUDA when present, else CPU), "cpu" or "cuda"
    setting       problem setting 0 / 1 / 2 (seed paper eqs. 14, 19, 20); 0 is the paper's
    synth         size of the XCA-Synth benchmark
    features      the feature grid
    frames_shown  how many frames a notebook strip shows
    data_dir      where generated data sets go (git-ignored)
    fig_dir       where figures are written
    """

    name: str
    seed: int = 0
    device: str = "auto"
    setting: int = 0
    synth: SynthConfig = field(default_factory=lambda: _SYNTH["teach"])
    features: FeatureConfig = field(default_factory=FeatureConfig)
    frames_shown: int = 8
    data_dir: Path = REPO_ROOT / "data" / "cache"
    fig_dir: Path = REPO_ROOT / "figures"

    @property
    def smoke(self) -> bool:
        return self.name == "smoke"

    def replace(self, **changes) -> Config:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


# The paper: 260 clinical cines of 31-379 frames, split 136/60/64, reshaped to 512 x 512 (Sec. IV-A).
# teach keeps the paper's split proportions (136:60:64 of 120 -> 63:28:29) at 256 x 256.
_SYNTH = {
    "smoke": SynthConfig(n_sequences=8, split=(4, 2, 2), image_size=64, frames=(32, 48), fps_choices=(15.0,)),
    "teach": SynthConfig(n_sequences=120, split=(63, 28, 29), image_size=256, frames=(40, 160)),
    "paper": SynthConfig(n_sequences=260, split=(136, 60, 64), image_size=512, frames=(31, 379)),
}


def get_preset(name: str, **changes) -> Config:
    """The preset called ``name`` ("smoke", "teach" or "paper"), with optional field changes.

    Raises ValueError for an unknown name, listing the known ones.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    frames_shown = {"smoke": 4, "teach": 8, "paper": 8}[name]
    cfg = Config(name=name, synth=_SYNTH[name], frames_shown=frames_shown)
    return cfg.replace(**changes) if changes else cfg
