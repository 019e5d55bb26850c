"""``setup()``: the third cell of every notebook.

    cfg = xcalab.notebook.setup(SMOKE=SMOKE, SEED=SEED, DEVICE=DEVICE, PRESET=PRESET, FIG_DIR=FIG_DIR)

It picks the preset (``smoke`` when SMOKE is true or the environment says XCALAB_SMOKE=1, so nbval and
friends running a notebook directly also get smoke sizes), seeds everything, resolves the device, quiets
progress bars in smoke mode, sets figure defaults and prints one banner line::

    xcalab 0.1.0 | torch 2.13.0+cpu | device cpu | preset smoke | seed 0 | smoke=True

and, in a smoke run, a second line (``SMOKE_NOTICE``) that says the models are untrained.
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
        if cfg.smoke:
            print(SMOKE_NOTICE)
    return cfg


#: The second banner line of every smoke run: what is untrained, and where the trained results are.
SMOKE_NOTICE = ("SMOKE RUN: tiny cines and a few training steps, so every model trained here is untrained in effect; "
                "the numbers and maps computed below show that the code runs, not what a trained model does "
                "(the teach results: README.md, `make run`).")


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


#: Detectors that more than one notebook loads (trained at smoke size, shipped at teach).
SHARED_VARIANTS = ("STA-IPCon", "ActionFormer")


def prepare_shared(cfg: Config, progress: bool = True) -> None:
    """Build, once, what several notebooks read, so that they can then run side by side.

    Two notebooks that each find a cache missing would both build it, and two that train the same smoke
    detector would collide on its run lock. This builds first: the features of the test cines (of every
    subset at smoke size, where the notebooks train their detectors), the detectors of ``SHARED_VARIANTS``
    (trained at smoke size, loaded from the shipped weights at teach), and the example cine of notebooks 01
    and 02. ``xcalab notebooks`` calls it before it runs notebooks; it is quick when everything is cached.
    """
    from xcalab.data.samples import example_cine
    from xcalab.pipeline import load_or_train_detector, prepare_features

    trains = cfg.name == "smoke"
    data = prepare_features(cfg, subsets=None if trains else ("test",), progress=progress)
    for variant in SHARED_VARIANTS:
        load_or_train_detector(cfg, variant, data=data if trains else None, progress=progress)
    workdir = Path(cfg.data_dir) / "examples"
    example_cine("", workdir=workdir, seed=cfg.seed)
    example_cine("", workdir=workdir, seed=cfg.seed, image_size=cfg.synth.image_size)


def execute_notebooks(sources: list[Path], out_dir: Path, parameters: dict, jobs: int = 1, timeout: int = 1800,
                      progress: bool = True) -> list[tuple[str, float]]:
    """Run ``sources`` with ``execute_notebook``, ``jobs`` at a time; returns (name, seconds) in source order.

    With several jobs each kernel gets an equal share of the cores (``OMP_NUM_THREADS``), so two kernels on two
    cores do not fight over them. Call ``prepare_shared`` first: notebooks running side by side must not build
    the same cache or train the same model.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm.auto import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))  # the kernels inherit it
    seconds: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(sources), desc="notebooks", unit="nb", disable=not progress) as bar:
        futures = {pool.submit(execute_notebook, src, out_dir, parameters, timeout): src for src in sources}
        for future in as_completed(futures):
            _, took = future.result()  # a failed notebook raises here (papermill's error, with its cell)
            seconds[futures[future].name] = took
            bar.update(1)
    return [(src.name, seconds[src.name]) for src in sources]


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
        cpu = re.search(r"\*\*CPU time:\*\*\s*(.+?)(?:\n\s*\n|\Z)", text, re.DOTALL)  # the whole paragraph
        rows.append({
            "notebook": path.name,
            "number": title.group(1) if title else path.name[:2],
            "title": title.group(2).strip() if title else path.stem,
            "cpu_time": _one_line(cpu.group(1)) if cpu else "",
        })
    return rows


# --------------------------------------------------------------------------------------------------
# CPU times: measured by ``xcalab notebooks --record-times``, written where students read them
# --------------------------------------------------------------------------------------------------

#: The measured run time of every notebook at each size (the one source of the times in README and title cells).
TIMES_PATH = REPO_ROOT / "docs" / "notebook-times.json"
#: "teach ≈ 0.5 min" / "smoke ≈ 15 s" in a notebook's CPU-time line.
_TIME_TOKEN = re.compile(r"(teach|smoke) ≈ [\d.]+ (?:min|s)\b")
#: README's notebook table: the last cell of a row, "<teach>[*][ (...)] · <smoke>".
_README_ROW = re.compile(r"^(\| (\d\d) \| `[^`]+` \|.*\| )([\d.]+ (?:min|s))(\*?[^·|]*)· ([\d.]+ (?:min|s))( \|)$")


def format_seconds(seconds: float) -> str:
    """A run time as students read it: whole seconds under 90 s ("42 s"), else minutes ("2.5 min")."""
    if seconds < 0:
        raise ValueError(f"a run time cannot be negative, got {seconds}")
    return f"{round(seconds)} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def record_times(timings: dict[str, float], size: str, machine: str, path: Path = TIMES_PATH,
                 when: str | None = None) -> dict:
    """Merge measured run times into ``path`` (JSON: notebook -> size -> {"seconds", "measured", "machine"}).

    timings  notebook file name -> seconds; size "teach" or "smoke" (what the run used)
    """
    import datetime
    import json

    if size not in ("teach", "smoke"):
        raise ValueError(f'size must be "teach" or "smoke", got {size!r}')
    when = when or datetime.date.today().isoformat()
    record = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    for name, seconds in timings.items():
        record.setdefault(name, {})[size] = {"seconds": round(float(seconds), 1), "measured": when, "machine": machine}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(dict(sorted(record.items())), indent=1, ensure_ascii=False) + "\n")
    return record


def write_times(record: dict, notebook_dir: Path = NOTEBOOK_DIR, readme: Path = REPO_ROOT / "README.md") -> list[str]:
    """Put the recorded times into each notebook's CPU-time line and README's notebook table; returns what changed.

    Only the numbers change ("teach ≈ 0.5 min" -> "teach ≈ 0.4 min"); the words around them stay.
    """
    import json

    def fmt(name: str, size: str) -> str | None:
        entry = record.get(name, {}).get(size)
        return None if entry is None else format_seconds(entry["seconds"])

    changed = []
    for name in sorted(record):
        path = Path(notebook_dir) / name
        if not path.is_file():
            continue
        nb = json.loads(path.read_text())
        text = "".join(nb["cells"][0]["source"])
        new = _TIME_TOKEN.sub(lambda m, name=name: f"{m.group(1)} ≈ {fmt(name, m.group(1)) or m.group(0).split('≈ ')[1]}",
                              text)
        if new != text:
            nb["cells"][0]["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(name)
    by_number = {name[:2]: name for name in record}
    lines = Path(readme).read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = _README_ROW.match(line.rstrip("\n"))
        if not m or m.group(2) not in by_number:
            continue
        name = by_number[m.group(2)]
        teach, smoke = fmt(name, "teach") or m.group(3), fmt(name, "smoke") or m.group(5)
        row = f"{m.group(1)}{teach}{m.group(4)}· {smoke}{m.group(6)}\n"
        if row != line:
            lines[i] = row
            changed.append(f"README.md ({name})")
    Path(readme).write_text("".join(lines))
    return changed


def package_map(depth: int | None = None, packages_only: bool = False) -> list[tuple[str, str]]:
    """(module, docstring summary) for the modules of the package, read without importing it.

    The summary is the docstring's whole first paragraph on one line, so a sentence that wraps in the
    source is never cut. ``depth`` keeps modules with at most that many dotted parts (``xcalab.data`` has 2);
    ``packages_only`` keeps the packages (folders with an ``__init__.py``): the layers of the package.
    """
    import ast

    root = REPO_ROOT / "xcalab"
    rows = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        is_package = rel.name == "__init__"
        parts = rel.parts[:-1] if is_package else rel.parts
        if (depth is not None and len(parts) > depth) or (packages_only and not is_package):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        summary = _one_line(doc.strip().split("\n\n")[0])
        rows.append((".".join(parts), summary[:-1] + "." if summary.endswith(":") else summary))  # "...:" opens a list
    return rows


def _one_line(text: str) -> str:
    """A paragraph that wraps over several source lines, as one line."""
    return " ".join(text.split())


def markdown_table(rows: list[dict[str, str]] | list[tuple], header: list[str]) -> str:
    """A Markdown table from rows (dicts in header order, or tuples)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[h]) for h in header] if isinstance(row, dict) else [str(c) for c in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
