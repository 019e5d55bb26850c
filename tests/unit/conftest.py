"""Unit-test setup: a non-interactive matplotlib backend (only here: notebook kernels keep inline figures)."""

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def one_thread_and_a_private_feature_cache(tmp_path_factory):
    """One torch thread (training tests on a shared 2-core machine) and the content-addressed feature cache in
    the session's temporary folder (shared by the modules that use it, so SVS-Net features are computed once)."""
    import torch

    from xcalab.features import extract

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(extract, "DEFAULT_CACHE", tmp_path_factory.getbasetemp() / "xcalab-feature-cache")
        yield
    torch.set_num_threads(threads)


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
