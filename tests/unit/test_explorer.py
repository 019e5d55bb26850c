"""The knob explorer, driven like a student would: set widget values, read the traits (no kernel needed)."""

import numpy as np
import pytest

from xcalab.viz.explorer import KnobExplorer, frames_to_png

PNG = b"\x89PNG\r\n\x1a\n"


def test_frames_to_png_layout():
    import io

    from PIL import Image

    png = frames_to_png(np.zeros((8, 5)), np.ones((8, 3)), gap=2)
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert png[:8] == PNG and img.shape == (8, 5 + 2 + 3)
    assert img[:, :5].max() == 0 and img[:, 5:].min() == 255
    with pytest.raises(ValueError, match="same height"):
        frames_to_png(np.zeros((8, 5)), np.zeros((7, 5)))


@pytest.fixture(scope="module")
def explorer():
    return KnobExplorer(seed=2, image_size=48, n_frames=24)


def test_starts_at_the_apex_with_default_knobs(explorer):
    seq = explorer.render()
    assert explorer.frame.value == seq.truth.keyframes[1]
    assert explorer.image.value[:8] == PNG
    assert "dose = 1" in explorer.label.value and "apex" in explorer.label.value


def test_moving_a_knob_rerenders_the_same_seed(explorer):
    explorer.knob.value = "dose"
    before = explorer.image.value
    explorer.value.value = 0.05  # 20x less dose: far noisier
    after = explorer.image.value
    assert after != before and "dose = 0.05" in explorer.label.value
    noisy, clean = explorer._cache[("dose", 0.05)], explorer._cache[("dose", 1.0)]
    # the knob changes the noise, not the anatomy or the timing
    assert noisy.truth.keyframes == clean.truth.keyframes
    assert np.array_equal(noisy.truth.vessel_maps, clean.truth.vessel_maps)
    assert np.std(np.diff(noisy.frames, axis=0)) > np.std(np.diff(clean.frames, axis=0))


def test_switching_knob_resets_the_slider(explorer):
    explorer.knob.value = "vessel_contrast"
    assert explorer.value.value == 1.0 and (explorer.value.min, explorer.value.max) == (0.25, 2.0)
    explorer.knob.value = "dose"


def test_every_frame_of_the_slider_renders(explorer):
    seen = set()
    for i in range(explorer.frame.min, explorer.frame.max + 1):
        explorer.frame.value = i
        assert f"frame {i} (" in explorer.label.value
        seen.add(explorer.image.value)
    assert len(seen) > explorer.frame.max // 2  # frames differ (motion, contrast)
