"""``setup()``: the third cell of every notebook.

    cfg = xcalab.notebook.setup(SMOKE=SMOKE, SEED=SEED, DEVICE=DEVICE, PRESET=PRESET, FIG_DIR=FIG_DIR)

It picks the preset (``smoke`` when SMOKE is true or the environment says XCALAB_SMOKE=1, so nbval and
friends running a notebook directly also get smoke sizes), seeds everything, resolves the device, quiets
progress bars in smoke mode, sets figure defaults and prints one banner line::

    xcalab 0.1.0 | torch 2.13.0+cpu | device cpu | preset smoke | seed 0 | smoke=True
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import matplotlib as mpl
import torch

import xcalab
from xcalab.config import REPO_ROOT, Config, get_preset
from xcalab.runtime import resolve_device, seed_everything


def setup(
    SMOKE: bool = False,
    SEED: int = 0,
    DEVICE: str = "auto",
    PRESET: str = "teach",
    FIG_DIR: str | Path = "",
    DATA_DIR: str | Path = "",
    quiet: bool = False,
) -> Config:
    """Configure a notebook run and return its ``Config`` (preset, seed, device, figure folder).

    Args mirror the notebook's ``parameters`` cell. Relative FIG_DIR / DATA_DIR are taken from the
    current folder (papermill runs notebooks with ``cwd=notebooks/``); empty means the preset's default.
    """
    smoke = bool(SMOKE) or os.environ.get("XCALAB_SMOKE", "") == "1"
    preset = "smoke" if smoke else PRESET
    device = resolve_device(DEVICE)
    changes: dict = {"seed": int(SEED), "device": str(device)}
    if FIG_DIR:
        changes["fig_dir"] = Path(FIG_DIR).resolve()
    if DATA_DIR:
        changes["data_dir"] = Path(DATA_DIR).resolve()
    cfg = get_preset(preset, **changes)
    seed_everything(cfg.seed)
    if smoke:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm >= 4.66 reads this when a bar is created
    mpl.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (8, 3.2), "image.cmap": "gray"})
    _check_version()
    if not quiet:
        print(banner(cfg))
    return cfg


def banner(cfg: Config) -> str:
    """One line that says what runs where (nbval's sanitizer replaces it as a whole)."""
    return (
        f"xcalab {xcalab.__version__} | torch {torch.__version__} | device {cfg.device} | "
        f"preset {cfg.name} | seed {cfg.seed} | smoke={cfg.smoke}"
    )


def _check_version() -> None:
    """Warn when the imported xcalab is not the repository's (a stale install makes notebooks drift)."""
    pyproject = REPO_ROOT / "pyproject.toml"
    if not pyproject.is_file():
        return
    match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
    if match and match.group(1) != xcalab.__version__:
        warnings.warn(
            f"xcalab {xcalab.__version__} is imported but the repository is {match.group(1)}: "
            "reinstall with `pip install -e .` (make run does it)",
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------------------
# Running the notebook sequence headless (``make run``, ``xcalab notebooks``, the CI tests)
# --------------------------------------------------------------------------------------------------

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def list_notebooks(pattern: str = "[0-9][0-9]_*.ipynb") -> list[Path]:
    """The numbered notebooks in teaching order."""
    return sorted(NOTEBOOK_DIR.glob(pattern))


def execute_notebook(
    src: Path, out_dir: Path, parameters: dict, timeout: int = 1800, log_output: bool = False
) -> tuple[Path, float]:
    """Run one notebook with papermill (kernel ``python3``, cwd ``notebooks/``) into ``out_dir``.

    Returns (executed copy, seconds). On failure papermill raises ``PapermillExecutionError``;
    the executed copy with the failing cell stays in ``out_dir`` for inspection.
    """
    import papermill  # imported here: only notebook runs need it

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / Path(src).name
    nb = papermill.execute_notebook(
        str(src), str(dst), parameters=parameters, kernel_name="python3", cwd=str(NOTEBOOK_DIR),
        execution_timeout=timeout, progress_bar=False, log_output=log_output,
    )
    return dst, float(nb.metadata.papermill.get("duration") or 0.0)


def notebook_table() -> list[dict[str, str]]:
    """One row per numbered notebook: number, title, and the CPU-time line of its first cell.

    The first markdown cell of every notebook starts ``# NN · Title`` and holds a line
    ``**CPU time:** ...`` (a hygiene test checks both), so this table can never drift from the notebooks.
    """
    import json

    rows = []
    for path in list_notebooks():
        first = json.loads(path.read_text())["cells"][0]
        text = "".join(first["source"])
        title = re.search(r"^#\s*(\d\d)\s*·\s*(.+)$", text, re.MULTILINE)
        cpu = re.search(r"\*\*CPU time:\*\*\s*(.+)$", text, re.MULTILINE)
        rows.append({
            "notebook": path.name,
            "number": title.group(1) if title else path.name[:2],
            "title": title.group(2).strip() if title else path.stem,
            "cpu_time": cpu.group(1).strip() if cpu else "",
        })
    return rows


def package_map() -> list[tuple[str, str]]:
    """(module, first docstring line) for every module of the package, read without importing it."""
    import ast

    root = REPO_ROOT / "xcalab"
    rows = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        rows.append((".".join(parts), doc.strip().split("\n")[0]))
    return rows


def markdown_table(rows: list[dict[str, str]] | list[tuple], header: list[str]) -> str:
    """A Markdown table from rows (dicts in header order, or tuples)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[h]) for h in header] if isinstance(row, dict) else [str(c) for c in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
