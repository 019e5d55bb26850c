"""Unit-test setup: a non-interactive matplotlib backend (only here: notebook kernels keep inline figures)."""

from contextlib import contextmanager

import matplotlib
import pytest

matplotlib.use("Agg")


@contextmanager
def torch_threads(count: int):
    """torch with ``count`` CPU threads inside the block, the previous count restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One torch thread: a tiny model on a shared 2-core machine is 100x faster without thread contention."""
    with torch_threads(1):
        yield


@pytest.fixture
def two_torch_threads():
    """Two torch threads (``make unit`` runs one a process), for what runs differently with more than one."""
    with torch_threads(2):
        yield


@pytest.fixture(scope="module")
def one_thread_and_a_private_feature_cache(tmp_path_factory):
    """One torch thread (training tests on a shared 2-core machine) and the content-addressed feature cache in
    the session's temporary folder (shared by the modules that use it, so SVS-Net features are computed once)."""
    from xcalab.features import extract

    with torch_threads(1), pytest.MonkeyPatch.context() as mp:
        mp.setattr(extract, "DEFAULT_CACHE", tmp_path_factory.getbasetemp() / "xcalab-feature-cache")
        yield


@pytest.fixture(scope="session")
def smoke_feature_cache(tmp_path_factory):
    """``seed(data_dir)``: puts the SVS-Net features of the smoke build (data seed 0: learned, stride 4) into
    ``data_dir``'s content-addressed feature cache, so that ``prepare_features`` there reads them instead of
    extracting them again; it still simulates, exports and labels every cine itself.

    They are extracted once per test run, by ``prepare_features`` itself: under pytest-xdist the first worker
    that asks extracts them into the run's shared temporary folder (under a file lock) and the others read them.
    Cache entries are keyed by the cine's pixels, the grid, the working size and the extractor's weights."""
    import os
    import re
    import shutil

    from filelock import FileLock

    from xcalab.config import get_preset
    from xcalab.pipeline import prepare_features

    built = tmp_path_factory.getbasetemp() / "smoke-features"
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' common folder, named after this run
        built = tmp_path_factory.getbasetemp().parent / f"smoke-features-{os.environ['PYTEST_XDIST_TESTRUNUID']}"
    with FileLock(str(built) + ".lock"):
        if not (built / "complete").is_file():
            prepare_features(get_preset("smoke", data_dir=built / "data"), workers=1, progress=False)
            (built / "complete").touch()

    def seed(data_dir):
        for folder in (built / "data" / "features").iterdir():
            if folder.is_dir() and re.fullmatch(r"[0-9a-f]{2}", folder.name):
                shutil.copytree(folder, data_dir / "features" / folder.name, dirs_exist_ok=True)

    return seed


@pytest.fixture(scope="module")
def learned_features_computed_once(tmp_path_factory):
    """Features asked for without a cache (as ``locate`` and the explorers ask) go through a content-addressed
    ``FeatureCache`` private to the module: the same cine under the same extractor and grid is extracted once,
    whatever the number of locators, explorers or calls that read it. For modules whose subject is what
    happens after the features; the cache key names the pixels, the grid, the working size and the extractor."""
    import inspect

    from xcalab.features import extract

    original = extract.extract_features
    signature = inspect.signature(original)
    cache = extract.FeatureCache(tmp_path_factory.mktemp("module-feature-cache"))

    def extract_features(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        if bound.arguments.get("cache") is None:
            bound.arguments["cache"] = cache
        return original(*bound.args, **bound.kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(extract, "extract_features", extract_features)
        yield cache


@pytest.fixture(scope="session")
def teach_locator():
    """The shipped teach detector as ``xcalab locate`` loads it (CPU)."""
    from xcalab.locator import load_locator
    from xcalab.pipeline import shipped_detector_path

    return load_locator(shipped_detector_path("STA-IPCon"), device="cpu")


@pytest.fixture(scope="session")
def small_cine():
    """A 64^2, 40-frame XCA-Synth cine at 15 fps (with its truth)."""
    from xcalab.data.synth.simulator import simulate_sequence

    return simulate_sequence((5, 1), image_size=64, fps=15.0, n_frames=40, video_id="synth-small")
