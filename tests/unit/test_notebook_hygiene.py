"""Notebook hygiene: standard opening cells, a typed parameters cell, no outputs, python3 kernel."""

import ast
import json

import pytest

from xcalab.notebook import list_notebooks, notebook_table

NOTEBOOKS = list_notebooks()
REQUIRED_PARAMETERS = {"SMOKE": bool, "SEED": int, "DEVICE": str, "PRESET": str, "DATA_DIR": str, "FIG_DIR": str}


def test_teaching_path_is_numbered_from_00_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS if not p.name.startswith("9")]
    assert numbers == list(range(len(numbers))) and numbers[:1] == [0]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def nb(request):
    return request.param, json.loads(request.param.read_text())


def test_kernel_is_python3(nb):
    _, data = nb
    assert data["metadata"]["kernelspec"]["name"] == "python3"


def test_committed_without_outputs(nb):
    _, data = nb
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_standard_opening_cells(nb):
    path, data = nb
    title, params, setup = data["cells"][:3]
    text = "".join(title["source"])
    assert title["cell_type"] == "markdown" and text.startswith(f"# {path.name[:2]} · ")
    for part in ("What you will learn", "**CPU time:**"):
        assert part in text, f"{path.name}: first cell lacks {part!r}"
    assert params["cell_type"] == "code" and "parameters" in params["metadata"].get("tags", [])
    assert "xcalab.notebook.setup(" in "".join(setup["source"])


def test_exactly_one_parameters_cell_with_typed_literals(nb):
    path, data = nb
    tagged = [c for c in data["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    found = {}
    for line, node in zip(source.splitlines(), ast.parse(source).body):
        # papermill --help-notebook lists only annotated assignments of literals
        assert isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant), f"{path.name}: {line!r}"
        assert "#" in line, f"{path.name}: parameter without a comment: {line!r}"
        found[node.target.id] = type(node.value.value)
    for name, typ in REQUIRED_PARAMETERS.items():
        assert found.get(name) is typ, f"{path.name}: parameter {name}: {typ.__name__} missing"


def test_no_trailing_semicolons(nb):
    path, data = nb
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            for line in "".join(cell["source"]).splitlines():
                assert not line.rstrip().endswith(";"), f"{path.name}: use `_ =` or plt.show(), not `;`: {line!r}"


def test_notebook_table_reads_every_title():
    rows = notebook_table()
    assert [r["notebook"] for r in rows] == [p.name for p in NOTEBOOKS]
    assert all(r["title"] and r["cpu_time"] for r in rows)


def test_papermill_sees_every_parameter(nb):
    # papermill silently drops a parameter whose line it cannot parse (e.g. an "=" in its comment); a
    # dropped parameter is missing from --help-notebook and cannot be set by name with a clear message
    import papermill

    path, data = nb
    params = next(c for c in data["cells"] if "parameters" in c["metadata"].get("tags", []))
    names = [node.target.id for node in ast.parse("".join(params["source"])).body]
    assert list(papermill.inspect_notebook(str(path))) == names


def _markdown_tables(text: str) -> list[list[str]]:
    """The Markdown tables of ``text``: runs of consecutive lines that start with "|"."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_markdown_tables_split_by_a_blank_line_are_found_as_two():
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n"
    assert [len(t) for t in _markdown_tables(text)] == [3, 1]


def test_readme_notebook_table_is_one_well_formed_table_with_every_notebook():
    """GitHub renders a table only when it is one run of lines with a header, a rule and equal column counts;
    a blank line inside it turns the rows after it into plain text."""
    from xcalab.config import REPO_ROOT

    tables = _markdown_tables((REPO_ROOT / "README.md").read_text())
    [table] = [t for t in tables if "notebook" in t[0] and "CPU time" in t[0]]
    columns = {line.count("|") for line in table}
    assert len(columns) == 1, f"rows with different column counts: {sorted(columns)}"
    assert set(table[1].replace("|", "").replace(" ", "")) <= set("-:"), "the second line must be the rule"
    listed = [line.split("|")[1].strip() for line in table[2:]]
    assert listed == [p.name[:2] for p in NOTEBOOKS], "one row per notebook, in order"
