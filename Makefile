# xcalab: `make run` (the notebook sequence on XCA-Synth at the teach preset) and `make test` (everything CI runs).
# Both create .venv on first use: torch==2.13.0 (CPU wheel) first, then the package with its extras.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xcalab-installed

# Notebook kernels: the venv's python3 kernel, smoke sizes without progress bars in tests.
# Never export MPLBACKEND here: it removes inline figures from executed notebooks.
export JUPYTER_PREFER_ENV_PATH := 1
export PYTHONHASHSEED := 0
export OMP_NUM_THREADS ?= 2
# Let Python cache compiled modules: with PYTHONDONTWRITEBYTECODE set, every test process and notebook kernel
# compiles xcalab afresh (~4 s each).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run test lint unit notebooks nbval browser chromium lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $(STAMP)

run: setup
	$(BIN)/xcalab notebooks --preset teach --jobs 2 --out build/notebooks --fig-dir figures

test: setup lint unit notebooks nbval browser
	@echo "make test: all green"

lint: setup
	$(BIN)/ruff check xcalab tests notebooks
	$(BIN)/nbstripout --verify --extra-keys "metadata.papermill cell.metadata.papermill" notebooks/*.ipynb

# Two test processes (pytest-xdist), one torch thread each: both cores work. A module's tests stay in one process
# (--dist loadfile), so its module-scoped fixtures (trained smoke models) are built once.
unit: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -n 2 --dist loadfile tests/unit

# One serial step builds what the notebooks share (features, shared smoke detectors, the example cine); then
# two notebooks run at a time; then their Markdown numbers and saved figures are checked.
notebooks: setup
	rm -rf build/executed build/figure-audit
	XCALAB_SMOKE=1 TQDM_DISABLE=1 $(BIN)/xcalab notebooks --smoke --prepare-only
	XCALAB_SMOKE=1 TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(BIN)/pytest -q -s -n 2 tests/notebooks/test_execute.py
	XCALAB_SMOKE=1 TQDM_DISABLE=1 $(BIN)/pytest -q tests/notebooks/test_markdown_numbers.py tests/notebooks/test_figures.py

nbval: setup
	XCALAB_SMOKE=1 TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(BIN)/pytest -q -n 2 --dist loadfile -p no:python --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 600 build/executed/

# The explorer notebook in JupyterLab, driven by Playwright with Debian's chromium (never `playwright install`).
browser: setup chromium
	XCALAB_SMOKE=1 TQDM_DISABLE=1 $(BIN)/pytest -q tests/browser

# Debian's chromium for the browser test; without apt or root this only warns and the test skips.
chromium:
	test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || echo "no apt/root: the browser test will skip"

lab: setup
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf build .pytest_cache .ruff_cache
