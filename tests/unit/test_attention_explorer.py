"""The attention explorer, driven like a researcher would: every control over its whole range, asserting on the
widget traits (PNG bytes, readout) -- no kernel, no browser (tests/browser does the real-browser check)."""

from __future__ import annotations

import base64
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from xcalab.viz.explorer import (
    TRANSFORMER,
    UNSIGNED_CMAP,
    WIDGET_VIEW_MIME,
    AttentionExplorer,
    _colour_bar,
    colour_map_array,
    plot_sequence_maps,
)

PNG = b"\x89PNG\r\n\x1a\n"

#: Every explorer here reads the same two cines: their SVS-Net features are extracted once for the module.
pytestmark = pytest.mark.usefixtures("learned_features_computed_once")


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def _position(big: np.ndarray, small: np.ndarray) -> tuple[int, int] | None:
    """(row, column) where ``small`` sits pixel for pixel inside ``big`` (both (H, W, 3)), else None."""
    h, w = small.shape[:2]
    for r in range(big.shape[0] - h + 1):
        for c in np.nonzero((big[r, : big.shape[1] - w + 1] == small[0, 0]).all(axis=-1))[0]:
            if np.array_equal(big[r:r + h, c:c + w], small):
                return r, int(c)
    return None


@pytest.fixture(scope="module")
def sa_locator(teach_locator):
    """An untrained SA detector of the teach shape: a second variant to sit beside STA."""
    import torch

    from xcalab.locator import locator_for_model
    from xcalab.models.detector import KeyframeDetector

    cfg = teach_locator.cfg
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, long_term="SA"))
    torch.manual_seed(0)
    return locator_for_model(KeyframeDetector(cfg.model), cfg, "untrained SA")


@pytest.fixture(scope="module")
def explorer(teach_locator, small_cine):
    from xcalab.data.synth.simulator import simulate_sequence

    other = simulate_sequence((6, 2), image_size=64, fps=7.5, n_frames=30, video_id="synth-other")
    return AttentionExplorer({"small": small_cine, "other": other}, {"STA": teach_locator}, height=64)


def test_opens_on_the_predicted_apex_with_A(explorer):
    record = explorer.maps_for("STA").result.record
    opening = record["apex"]["frame"] if record["apex"] else 40 // 2  # no contrast found: the middle frame
    assert explorer.module.value == "A" and explorer.frame.value == opening
    assert explorer.image.value[:8] == PNG and explorer.timeline.value[:8] == PNG
    assert f"frame {explorer.frame.value} of 40" in explorer.label.value and "module A" in explorer.label.value


def test_the_readout_gives_the_keyframes_scores_and_truth(explorer, small_cine):
    maps = explorer.maps_for("STA")
    record = maps.result.record
    text = explorer.label.value
    for name in ("start", "apex", "end"):
        if record[name]:
            assert f"{name} {record[name]['frame']} ({record[name]['score']:.2f})" in text
    start, apex, end = small_cine.truth.keyframes
    assert f"true: start {start}, apex {apex}, end {end}" in text
    step = maps.step_of_frame(explorer.frame.value)
    assert f"P(filling) {maps.result.scores[step, 0]:.2f}" in text and "range [0, 1] (fixed)" in text


def test_every_frame_renders_and_names_its_step(explorer):
    explorer.module.value = "A"
    maps = explorer.maps_for("STA")
    per_step = {}
    for k in range(explorer.frame.min, explorer.frame.max + 1):
        explorer.frame.value = k
        text = explorer.label.value
        assert f"<b>frame {k} of 40</b>" in text
        step = maps.step_of_frame(k)
        if step is None:
            assert "past the last feature window" in text
        else:
            a, b = maps.frames_of_step(step)
            assert f"step {step} (window frames {a}–{b})" in text
        per_step.setdefault(step, set()).add(explorer.image.value)
    # every frame is drawn with its own pixels (the frame changes even inside one step)
    assert sum(len(v) for v in per_step.values()) == explorer.frame.max + 1


def test_every_module_renders_and_changes_the_picture(explorer):
    explorer.frame.value = explorer.maps_for("STA").frames_of_step(3)[0]
    seen = {}
    for module in explorer.module.options:
        explorer.module.value = module
        assert f"module {module}" in explorer.label.value
        assert explorer.image.value[:8] == PNG
        seen[module] = explorer.image.value
    seen.pop("STA")  # the paper's name for A in this model: the same map, the same picture
    assert len(set(seen.values())) == len(seen)
    assert {"X", "TA", "TA.forget_gate", "A", "foreground", "patch_centre", TRANSFORMER, "P(filling)"} <= set(seen)


def test_transformer_levels_and_heads(explorer):
    explorer.module.value = TRANSFORMER
    assert explorer.level.layout.display is None and explorer.head.layout.display is None
    maps = explorer.maps_for("STA")
    for level in explorer.level.options:
        explorer.level.value = level[1]
        pictures = set()
        for head in explorer.head.options:
            explorer.head.value = head
            assert f"module transformer</b> {level[0]}, head {head}" in explorer.label.value
            pictures.add(explorer.image.value)
        heads = maps.maps[level[1]]
        # heads that attend differently draw differently (a level with one point attends only to itself)
        assert len(pictures) == len({heads[h].tobytes() for h in range(heads.shape[0])})
    assert len(pictures) >= 1 and maps.maps["transformer/level0.block0"].shape[0] == len(explorer.head.options)
    explorer.module.value = "A"
    assert explorer.level.layout.display == "none"


def test_opacity_zero_shows_the_plain_frame_and_one_the_map(explorer, small_cine):
    explorer.module.value = "A"
    maps = explorer.maps_for("STA")
    k = maps.frames_of_step(2)[0]
    explorer.frame.value = k
    explorer.opacity.value = 0.0
    plain = _pixels(explorer.image.value)[:, :64]
    shown = np.round(np.clip(small_cine.frames[k], 0, 1) * 255)  # a 64^2 cine is shown at its own size
    np.testing.assert_allclose(plain[..., 0], shown, atol=1)
    explorer.opacity.value = 1.0
    full = _pixels(explorer.image.value)[:, :64]
    np.testing.assert_array_equal(full, colour_map_array(maps.maps["A"][2], (0, 1), "magma"))
    bars = set()
    for value in np.linspace(0, 1, 5):
        explorer.opacity.value = float(value)
        bars.add(explorer.image.value)
    assert len(bars) == 5
    explorer.opacity.value = 0.6


def test_switching_cines_recomputes_once_and_caches(explorer):
    explorer.cine.value = "other"
    assert explorer.frame.max == 29 and "of 30" in explorer.label.value
    n = len(explorer._maps)
    explorer.cine.value = "small"
    explorer.cine.value = "other"
    assert len(explorer._maps) == n == 2
    explorer.cine.value = "small"


def test_sa_and_sta_side_by_side(teach_locator, sa_locator, small_cine):
    both = AttentionExplorer(small_cine, {"STA": teach_locator, "SA": sa_locator})
    both.module.value = "A"
    wide = _pixels(both.image.value)
    assert "left to right: STA, SA" in both.label.value
    both.module.value = "TA"  # only STA has a ConvLSTM
    narrow = _pixels(both.image.value)
    assert wide.shape[1] > 2 * narrow.shape[1] - 20 and "left to right" not in both.label.value
    assert set(both.module.options) >= {"TA", "A", "SA", "STA"}


def test_a_locate_result_is_explored_without_a_second_forward(teach_locator, small_cine):
    from xcalab.locator import locate_sequence

    result = locate_sequence(small_cine, teach_locator, return_attention=True)
    explorer = AttentionExplorer({"located": result}, {"STA": teach_locator})
    assert explorer.maps_for("STA").result is result


def test_bad_construction_fails_clearly(teach_locator, small_cine):
    with pytest.raises(ValueError, match="at least one cine"):
        AttentionExplorer({}, {"STA": teach_locator})
    with pytest.raises(ValueError, match="at least one model"):
        AttentionExplorer(small_cine, {})


def test_small_cines_are_drawn_at_least_256_pixels_high(teach_locator, small_cine):
    default = AttentionExplorer(small_cine, {"STA": teach_locator})
    picture = _pixels(default.image.value)
    assert picture.shape[0] == 256 and default.image.layout.width == f"{picture.shape[1]}px"


def test_static_fallback_figure(explorer):
    from matplotlib.figure import Figure

    maps = explorer.maps_for("STA", "small")
    fig = plot_sequence_maps(maps, ["A", "TA"], [0, 10, 39])
    assert isinstance(fig, Figure)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 6 and images[0].images[1].get_clim() == (0.0, 1.0)
    assert images[3].images[1].get_clim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match="not a step map"):
        plot_sequence_maps(maps, ["transformer/level0.block0"], [0])


def test_the_other_papers_maps_need_no_explorer_code_of_their_own(teach_locator, small_cine):
    """An (untrained) teach-shape detector with GAF, TSA + TPP and the phase recogniser on: the explorer lists and
    draws every map they capture, by kind alone -- TSA's (T, T) matrices with the current step's row outlined."""
    import torch

    from xcalab.locator import locator_for_model
    from xcalab.models.detector import KeyframeDetector

    cfg = teach_locator.cfg
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, generative_attention=True, refinement=True,
                                                phase_attention=True))
    torch.manual_seed(0)
    locator = locator_for_model(KeyframeDetector(cfg.model), cfg, "untrained, every module")
    explorer = AttentionExplorer({"small": small_cine}, {"all": locator}, height=64)
    modules = set(explorer.module.options)
    assert {"GAF.lambda", "GAF.reconstruction", "TSA.fused", "TSA.agreement", "TPP.actionness", "phase.peaks",
            "phase.discriminative", "P(apex plateau)"} <= modules
    maps = explorer.maps_for("all")
    assert maps.kinds["TSA.fused"].kind == "matrix" and maps.maps["TSA.fused"].shape == (maps.n_steps, maps.n_steps)
    pictures = {}
    for step in (1, 4):
        explorer.frame.value = maps.frames_of_step(step)[0]
        explorer.module.value = "TSA.fused"
        pictures[step] = _pixels(explorer.image.value)
        assert (pictures[step] == (0, 255, 0)).all(axis=-1).any()  # the outlined row
    assert not np.array_equal(pictures[1], pictures[4])  # the outline follows the step
    for module in modules:
        explorer.module.value = module
        assert explorer.image.value[:8] == PNG, module


def test_the_display_bundle_is_the_live_widget_a_still_and_one_readable_line(explorer):
    from IPython.core.formatters import DisplayFormatter

    explorer.module.value = "A"
    data, _ = DisplayFormatter().format(explorer)  # what IPython sends when a cell ends with `explorer`
    assert set(data) == {WIDGET_VIEW_MIME, "image/png", "text/plain"}
    assert data[WIDGET_VIEW_MIME]["model_id"] == explorer.widget.model_id
    assert base64.b64decode(data["image/png"])[:8] == PNG
    text = data["text/plain"]
    assert text.startswith("AttentionExplorer (STA;") and "VBox" not in text and "\n" not in text
    assert f"cine 'small', module A, frame {explorer.frame.value} of 40" in text


def test_the_still_is_the_current_view_with_its_fixed_colour_bar(explorer):
    """The still holds the widget's own panel row and timeline pixel for pixel; for A that row is the map on
    the fixed range (0, 1) followed by its colour bar, and it follows the frame slider and the module."""
    explorer.module.value = "A"
    explorer.opacity.value = 1.0
    maps = explorer.maps_for("STA")
    stills = []
    for step in (1, 4):
        explorer.frame.value = maps.frames_of_step(step)[0]
        still = _pixels(explorer.still())[..., :3]
        row, timeline = _pixels(explorer.image.value), _pixels(explorer.timeline.value)
        panel, timeline_at = _position(still, row), _position(still, timeline)
        assert panel is not None and timeline_at is not None and timeline_at[0] > panel[0]
        np.testing.assert_array_equal(row[:, :64], colour_map_array(maps.maps["A"][step], (0, 1), UNSIGNED_CMAP))
        np.testing.assert_array_equal(row[:, 64:], _colour_bar((0.0, 1.0), UNSIGNED_CMAP, 64, True))
        stills.append(still)
    assert not np.array_equal(stills[0], stills[1])  # the still shows the frame the slider is on, not the first
    assert _position(stills[1], _pixels(explorer.image.value)) is not None
    assert f"frame {explorer.frame.value} of 40" in explorer.summary()
    explorer.module.value = "TA"
    assert not np.array_equal(_pixels(explorer.still())[..., :3], stills[1]) and "module TA," in explorer.summary()
    explorer.module.value = "A"
    explorer.opacity.value = 0.6


def test_a_flat_gate_is_flagged_in_the_readout(teach_locator, small_cine):
    explorer = AttentionExplorer({"small": small_cine}, {"STA": teach_locator}, height=64)
    maps = explorer.maps_for("STA")
    a = maps.maps["A"]
    span = float(a.max() - a.min())
    explorer.module.value = "A"
    assert ("nearly flat" in explorer.label.value) == (span < 0.05)
    maps.maps["A"] = np.full_like(a, 0.5) + np.linspace(0, 0.01, a.size, dtype=a.dtype).reshape(a.shape)
    explorer.frame.value = 0 if explorer.frame.value else 1  # redraw
    assert "nearly flat: range 0.010 &lt; 0.05 over this cine" in explorer.label.value
    explorer.module.value = "X"  # an unbounded response is never called flat
    assert "nearly flat" not in explorer.label.value
