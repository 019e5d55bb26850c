"""The AttentionExplorer of notebooks/90_attention_explorer.ipynb in a real browser.

A JupyterLab server (fresh config, data and runtime folders, XCALAB_SMOKE=1 so the notebook picks the smoke
preset) serves a copy of the notebook from tmp_path; Debian's chromium, driven by Playwright's sync API,
opens it, runs all cells and then moves the frame slider and switches the module. Both must change the
readout and the picture.

Run it with ``make browser`` or ``.venv/bin/pytest -q -s tests/browser`` (``-s`` prints the timings).
It skips when /usr/bin/chromium or playwright is missing; ``make chromium`` installs chromium with apt.
Never run ``playwright install``: the browser is Debian's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (make chromium installs it with apt)"
)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "notebooks" / "90_attention_explorer.ipynb"
SCREENSHOT = REPO_ROOT / "build" / "browser" / "attention-explorer.png"
TOKEN = "xcalab-browser-test"

#: Run All computes a detector's maps on the CPU before the explorer shows up.
RENDER_TIMEOUT_S = 300
#: One slider move or module switch: the kernel renders a new picture.
UPDATE_TIMEOUT_S = 120
SERVER_TIMEOUT_S = 60
PAGE_TIMEOUT_S = 60

# The explorer's DOM contract; every selector is scoped to the explorer (the notebook shows other widgets).
EXPLORER = ".xcalab-explorer"
IMAGE = f"{EXPLORER} img.xcalab-explorer-image"
READOUT = f"{EXPLORER} .xcalab-explorer-readout"
HANDLE = f"{EXPLORER} .xcalab-explorer-frame .noUi-handle"
MODULE = f"{EXPLORER} .xcalab-explorer-module select"

FRAME_RE = re.compile(r"\bframe (\d+)")
#: JupyterLab renders errors with the stderr mime type, so a traceback is told apart by its text.
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
TRACEBACK = "Traceback (most recent call last)"
#: Run All counts as finished (and the explorer as missing) after this long with no cell running.
FINISHED_GRACE_S = 15
#: Without this the "official Jupyter news?" toast covers the output (--LabApp.news_url=None is not enough).
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass
class Clock:
    """Seconds since the test started, per named step, printed at the end (``pytest -s`` shows them)."""

    start: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic() - self.start

    def report(self) -> str:
        return "browser test timings (s from start): " + ", ".join(
            f"{k} {v:.1f}" for k, v in self.marks.items()
        )


@dataclass
class Server:
    url: str
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(work: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: smoke preset, no progress bars, nothing from ~."""
    env = os.environ.copy()
    env.pop("MPLBACKEND", None)  # a non-inline backend would drop the notebook's inline figures
    env.update(
        XCALAB_SMOKE="1",
        TQDM_DISABLE="1",
        JUPYTER_PREFER_ENV_PATH="1",
        JUPYTER_CONFIG_DIR=str(work / "jupyter-config"),
        JUPYTER_DATA_DIR=str(work / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(work / "jupyter-runtime"),
        IPYTHONDIR=str(work / "ipython"),
    )
    return env


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, work: Path):
    """Start ``jupyter lab`` serving root_dir on a free port; yield a Server once /api/status answers."""
    labconfig = work / "jupyter-config" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    port = free_port()
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
        f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    server = Server(url=f"http://127.0.0.1:{port}", log=work / "jupyter-server.log")
    with server.log.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root_dir,
            env=server_env(work),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status?token={TOKEN}", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"jupyter lab did not answer within {SERVER_TIMEOUT_S} s:\n{server.log_tail()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()  # SIGTERM to this PID only: the server shuts its kernel down itself
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def image_sha(page) -> tuple[str, str, int]:
    """(src, SHA-256, size) of the explorer's picture; ipywidgets 8 shows it from a blob: URL."""
    src, data = page.evaluate(
        """async sel => {
            const img = document.querySelector(sel);
            const src = img.src;
            const buf = await (await fetch(src)).arrayBuffer();
            return [src, Array.from(new Uint8Array(buf))];
        }""",
        IMAGE,
    )
    return src, hashlib.sha256(bytes(data)).hexdigest(), len(data)


def wait_image_replaced(page, old_src: str, timeout_s: float) -> None:
    """Wait until the picture's src is no longer old_src and then stays the same for half a second.

    One key press is one kernel update; the quiet period lets the last of them land before we hash.
    """
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel); return e && e.src && e.src !== old; }",
        arg=[IMAGE, old_src],
        timeout=timeout_s * 1000,
    )
    page.wait_for_function(
        """([sel, quietMs]) => {
            const e = document.querySelector(sel);
            if (!e || !e.src) return false;
            const w = (window.__xcalabSrc ||= {src: null, t: 0});
            const now = performance.now();
            if (e.src !== w.src) { w.src = e.src; w.t = now; return false; }
            return now - w.t >= quietMs;
        }""",
        arg=[IMAGE, 500],
        timeout=timeout_s * 1000,
    )


def readout_frame(page) -> int:
    text = page.locator(READOUT).text_content()
    match = FRAME_RE.search(text)
    assert match, f"the readout does not name a frame: {text!r}"
    return int(match.group(1))


def tracebacks(page) -> list[str]:
    return page.locator(STDERR, has_text=TRACEBACK).all_text_contents()


def page_text(page) -> str:
    """What the page shows, cells out of view included.

    JupyterLab skips the rendering of cells out of view (content-visibility), and innerText is empty there.
    """
    return (
        page.locator("body").inner_text() + "\n" + (page.locator(".jp-Notebook").first.text_content() or "")
    )


def wait_for_explorer(page, timeout_s: float) -> None:
    """Wait for the explorer's picture; fail early on a traceback, a widget that cannot be shown, or a
    Run All that ended (no cell running, kernel idle) without showing the explorer.
    """
    deadline = time.monotonic() + timeout_s
    idle_since = None
    running = page.locator(".jp-InputPrompt", has_text="[*]")
    status = page.locator("#jp-main-statusbar")
    while not page.locator(IMAGE).count():
        if errors := tracebacks(page):
            pytest.fail(f"a notebook cell failed during Run All:\n{errors[0][-3000:]}")
        if "Error displaying widget" in page_text(page):
            pytest.fail("JupyterLab says 'Error displaying widget'")
        if running.count() == 0 and "| Idle" in status.inner_text():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > FINISHED_GRACE_S:
                stderr = "\n".join(page.locator(STDERR).all_text_contents())[-3000:]
                pytest.fail(f"Run All finished but the explorer ({IMAGE}) is not shown; stderr:\n{stderr}")
        else:
            idle_since = None
        if time.monotonic() > deadline:
            pytest.fail(f"the explorer ({IMAGE}) did not show within {timeout_s} s of Run All")
        page.wait_for_timeout(1000)


def check_explorer(page, url: str, notebook: str, clock: Clock, screenshot: Path) -> None:
    """Open notebook, run all cells, then drive the explorer's frame slider and module dropdown."""
    expect = sync_api.expect
    page_errors: list[str] = []
    console_errors: list[str] = []
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{url}/lab/tree/{notebook}?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook", timeout=PAGE_TIMEOUT_S * 1000)
    clock.mark("notebook visible")
    # The toolbar's execution indicator says "idle" before the kernel is up; the status bar does not.
    expect(page.locator("#jp-main-statusbar")).to_contain_text(
        "Python 3 (ipykernel) | Idle", timeout=PAGE_TIMEOUT_S * 1000
    )
    clock.mark("kernel idle")

    # JupyterLab 4.6: Run -> Run All Cells is runmenu:run-all (notebook:run-all-cells is not in the menu).
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    run_all = time.monotonic()

    wait_for_explorer(page, RENDER_TIMEOUT_S)
    page.locator(EXPLORER).scroll_into_view_if_needed()
    expect(page.locator(IMAGE)).to_be_visible()
    expect(page.locator(HANDLE)).to_be_visible()
    expect(page.locator(MODULE)).to_be_visible()
    expect(page.locator(READOUT)).to_contain_text(FRAME_RE)
    clock.mark("widget rendered")
    # Later cells may still be running; let Run All finish so the kernel answers the widget at once.
    left_s = max(10.0, RENDER_TIMEOUT_S - (time.monotonic() - run_all))
    expect(page.locator(".jp-InputPrompt", has_text="[*]")).to_have_count(0, timeout=left_s * 1000)
    clock.mark("run all done")
    page.locator(EXPLORER).scroll_into_view_if_needed()
    body = page_text(page)
    assert "Error displaying widget" not in body
    assert "Loading widget" not in body
    assert not tracebacks(page), f"a notebook cell failed: {tracebacks(page)[0][-3000:]}"
    # The kernel inherits XCALAB_SMOKE=1 from the server; xcalab.notebook.setup's banner names the preset.
    if "| preset " in body:
        assert "| preset smoke |" in body, "the notebook did not pick the smoke preset from XCALAB_SMOKE=1"

    # Frame slider: three key presses, one step each (backwards when fewer than three frames are left).
    readout = page.locator(READOUT)
    first_text = readout.text_content()
    first_frame = readout_frame(page)
    src0, sha0, size0 = image_sha(page)
    handle = page.locator(HANDLE)
    now, top = float(handle.get_attribute("aria-valuenow")), float(handle.get_attribute("aria-valuemax"))
    key, step = ("ArrowRight", 3) if now + 3 <= top else ("ArrowLeft", -3)
    handle.focus()
    for _ in range(3):
        handle.press(key)
    target = first_frame + step
    expect(readout).to_contain_text(re.compile(rf"\bframe {target}\b"), timeout=UPDATE_TIMEOUT_S * 1000)
    wait_image_replaced(page, src0, UPDATE_TIMEOUT_S)
    src1, sha1, size1 = image_sha(page)
    assert src1 != src0
    assert sha1 != sha0, f"the picture did not change from frame {first_frame} to frame {target}"
    clock.mark("frame changed")

    # Module dropdown: switch to the first option whose label differs from the current one.
    select = page.locator(MODULE)
    labels = [label.strip() for label in select.locator("option").all_text_contents()]
    current = select.evaluate("s => s.options[s.selectedIndex].text").strip()
    others = [label for label in labels if label != current]
    assert others, f"the module dropdown offers only {labels}"
    module = others[0]
    select.select_option(label=module)
    # "module TA" must not match "module TA.forget_gate".
    module_re = re.compile(rf"\bmodule {re.escape(module)}(?![\w.])")
    expect(readout).to_contain_text(module_re, timeout=UPDATE_TIMEOUT_S * 1000)
    wait_image_replaced(page, src1, UPDATE_TIMEOUT_S)
    _, sha2, size2 = image_sha(page)
    assert sha2 != sha1, f"the picture did not change from module {current} to module {module}"
    clock.mark("module changed")

    body = page_text(page)
    assert "Error displaying widget" not in body
    assert "Loading widget" not in body
    assert not page_errors, f"errors in the page: {page_errors}"

    page.locator(IMAGE).scroll_into_view_if_needed()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))
    print(f"\nreadout before: {first_text!r}; after: {readout.text_content()!r}")
    print(
        f"picture bytes: {size0} (frame {first_frame}), {size1} (frame {target}), {size2} (module {module})"
    )
    if console_errors:
        print(f"console errors (not failing the test): {console_errors[:5]}")
    print(f"screenshot: {screenshot}")


def run_browser_check(notebook_src: Path, work: Path, screenshot: Path = SCREENSHOT) -> Clock:
    """Serve a copy of notebook_src from work/served and check its explorer; print and return the timings."""
    clock = Clock()
    served = work / "served"
    served.mkdir()
    shutil.copy2(notebook_src, served / notebook_src.name)
    with jupyter_lab(served, work) as server:
        clock.mark("server ready")
        try:
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    check_explorer(page, server.url, notebook_src.name, clock, screenshot)
                finally:
                    browser.close()
        except BaseException:
            print(f"\n--- jupyter server log ({server.log}) ---\n{server.log_tail()}")
            raise
    clock.mark("total")
    print(clock.report())
    return clock


def test_attention_explorer_in_jupyterlab(tmp_path):
    run_browser_check(NOTEBOOK, tmp_path)
