"""The knob explorer, driven like a student would: set widget values, read the traits (no kernel needed); and the
still every explorer carries for copies without a kernel (``widget_still``, the display mime bundle)."""

import base64
import io

import ipywidgets as widgets
import numpy as np
import pytest
from PIL import Image

from xcalab.viz.explorer import (
    WIDGET_VIEW_MIME,
    KnobExplorer,
    _colour_bar,
    _still_parts,
    frames_to_png,
    html_to_lines,
    widget_still,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _position(big: np.ndarray, small: np.ndarray) -> tuple[int, int] | None:
    """(row, column) where ``small`` sits pixel for pixel inside ``big`` (both (H, W, 3)), else None."""
    h, w = small.shape[:2]
    for r in range(big.shape[0] - h + 1):
        for c in np.nonzero((big[r, : big.shape[1] - w + 1] == small[0, 0]).all(axis=-1))[0]:
            if np.array_equal(big[r:r + h, c:c + w], small):
                return r, int(c)
    return None


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


def test_the_picture_carries_a_fixed_grey_colour_bar(explorer):
    picture = _rgb(explorer.image.value)
    h = picture.shape[0]
    assert h == 48 and picture.shape[1] > 48 + 4 + 48
    bar = _colour_bar((0.0, 1.0), "gray", h, fixed=True)
    np.testing.assert_array_equal(picture[:, -bar.shape[1]:], bar)
    seq = explorer.render()
    i = explorer.frame.value
    frame = np.round(np.clip(seq.frames[i], 0, 1) * 255)  # the frame on the fixed [0, 1] scale, not stretched
    np.testing.assert_array_equal(picture[:, :48, 0], frame)


def test_html_to_lines():
    assert html_to_lines("<b>a</b> &lt; b<br>c<br/>  d ") == ["a < b", "c", "d"]


def test_the_still_shows_each_part_of_a_widget_top_to_bottom():
    art = np.zeros((10, 30, 3), dtype=np.uint8)
    art[:, :15] = (200, 30, 30)
    buffer = io.BytesIO()
    Image.fromarray(art).save(buffer, format="PNG")
    hidden = widgets.Dropdown(options=["x"], description="level")
    hidden.layout.display = "none"
    box = widgets.VBox([
        widgets.HBox([widgets.Dropdown(options=[("first", 1), ("second", 2)], value=2, description="cine"),
                      hidden, widgets.FloatSlider(0.25, description="opacity")]),
        widgets.Image(value=buffer.getvalue(), format="png"),
        widgets.HTML("<b>frame 3</b><br>step 0"),
    ])
    parts = _still_parts(box)
    assert parts[0] == ["cine: second · opacity: 0.25"]  # a dropdown by its label; hidden controls left out
    np.testing.assert_array_equal(parts[1], art)
    assert parts[2] == ["frame 3", "step 0"]
    still = _rgb(widget_still(box, gap=6, min_width=100))
    assert still.shape[1] == 100 + 2 * 6
    row, col = _position(still, art)
    assert col == 6 and row > 6 + 15  # left-aligned, below the title and the controls' line
    assert _position(_rgb(widget_still(box, title="")), art)[0] < row  # no title: the picture moves up
    with pytest.raises(ValueError, match="nothing to draw"):
        widget_still(widgets.VBox([]))


def test_the_display_bundle_is_the_live_widget_a_still_and_one_readable_line(explorer):
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(explorer)  # what IPython sends when a cell ends with `explorer`
    assert set(data) == {WIDGET_VIEW_MIME, "image/png", "text/plain"}
    assert data[WIDGET_VIEW_MIME]["model_id"] == explorer.widget.model_id
    still = base64.b64decode(data["image/png"])
    assert still[:8] == PNG and _position(_rgb(still), _rgb(explorer.image.value)) is not None
    text = data["text/plain"]
    assert text.startswith("KnobExplorer") and "VBox" not in text and "\n" not in text
    assert f"dose = 1, frame {explorer.frame.value} of 24" in text


def test_the_still_follows_the_sliders(explorer):
    explorer.frame.value = 3
    before = explorer.still()
    assert _position(_rgb(before), _rgb(explorer.image.value)) is not None
    explorer.frame.value = 15
    after = explorer.still()
    assert after != before and _position(_rgb(after), _rgb(explorer.image.value)) is not None
    assert "frame 15 of 24" in explorer.summary()
    explorer.value.value = 0.05
    assert explorer.still() != after and "dose = 0.05" in explorer.summary()
    explorer.value.value = 1.0


def test_a_closed_widget_still_displays_its_still():
    closed = KnobExplorer(seed=3, image_size=32, n_frames=16)
    closed.widget.close()
    bundle = closed._repr_mimebundle_()
    assert WIDGET_VIEW_MIME not in bundle and base64.b64decode(bundle["image/png"])[:8] == PNG
