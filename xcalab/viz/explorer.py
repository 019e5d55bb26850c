"""Interactive explorers (ipywidgets) for the notebooks, written so that tests can drive them without a kernel.

Each explorer keeps its state on itself, puts its results in widget *traits* (``Image.value`` holds PNG
bytes, ``HTML.value`` a readout) and recomputes everything in one ``_update()`` that reads only ``self``:
no callback ever reads a notebook global, so moving a slider after later cells ran still works. A test sets
``explorer.value.value = 0.25`` and checks the traits, exactly as a student's click would.

Displayed in a notebook, an explorer gives a mime bundle with two views of itself: the live widget
(``application/vnd.jupyter.widget-view+json``, which JupyterLab's widget manager renders first) and a still
``image/png`` of its current view, composed from the very pictures and readouts the widget shows
(``widget_still``). A copy read without a kernel (GitHub, nbviewer, an untrusted notebook, an HTML export
without widget state) shows the still; ``text/plain`` says in one line what it is.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import re
import textwrap

import ipywidgets as widgets
import numpy as np
from PIL import Image as PILImage

from xcalab.data.io import Cine
from xcalab.models.maps import UNIT_RANGE


def grey_row(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    """Grey images in [0, 1] (each [H, W], same H) side by side, white gaps between them: (H, W_total) uint8,
    values clipped to the fixed range [0, 1] (never stretched to an image's own minimum and maximum)."""
    if not images:
        raise ValueError("give at least one image")
    h = images[0].shape[0]
    if any(im.ndim != 2 or im.shape[0] != h for im in images):
        raise ValueError(f"images must be 2-D with the same height, got {[im.shape for im in images]}")
    spacer = np.ones((h, gap), dtype=np.float32)
    row = np.concatenate([part for im in images for part in (np.clip(im, 0, 1), spacer)][:-1], axis=1)
    return np.round(row * 255).astype(np.uint8)


def frames_to_png(*images: np.ndarray, gap: int = 4) -> bytes:
    """Grey images in [0, 1] (each [H, W], same H) side by side as one PNG (white gaps between them)."""
    buffer = io.BytesIO()
    PILImage.fromarray(grey_row(*images, gap=gap)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# The still: what a copy without a kernel shows in place of the live widget
# --------------------------------------------------------------------------------------------------

#: The mime type of a live widget view; JupyterLab's widget manager renders it before any other.
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: The first line of every still: a reader of a static copy learns why nothing moves.
STILL_TITLE = "A still of the explorer's view (this copy has no kernel): run the notebook to move its controls."
#: Text of a still: font size (points at 100 dpi) and line height (pixels).
STILL_FONTSIZE, STILL_LINE_PX = 9.0, 15


def png_to_rgb(png: bytes) -> np.ndarray:
    """PNG (or any image file) bytes -> (H, W, 3) uint8."""
    return np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB"))


def html_to_lines(text: str) -> list[str]:
    """A readout's HTML as plain lines: ``<br>`` ends a line, other tags are dropped, entities decoded."""
    return [html.unescape(re.sub(r"<[^>]+>", "", line)).strip()
            for line in re.split(r"<br\s*/?>|\n", text, flags=re.IGNORECASE)]


def text_rgb(lines: list[str], width: int, bold_first: bool = False) -> np.ndarray:
    """Lines of text wrapped to ``width`` pixels, dark on white: (n_lines_after_wrapping * 15 + 8, width, 3) uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chars = max(int(width / (0.56 * STILL_FONTSIZE * 100 / 72)), 20)  # DejaVu Sans: about 0.56 em per character
    wrapped: list[tuple[str, bool]] = []
    for i, line in enumerate(lines):
        bold = bold_first and i == 0
        wrapped += [(part, bold) for part in (textwrap.wrap(line, chars) or [""])]
    height = len(wrapped) * STILL_LINE_PX + 8
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)  # no pyplot: nothing leaks into the cell's figures
    canvas = FigureCanvasAgg(fig)
    for i, (line, bold) in enumerate(wrapped):
        fig.text(4 / width, 1 - (4 + (i + 0.78) * STILL_LINE_PX) / height, line, fontsize=STILL_FONTSIZE,
                 color="0.1", weight="bold" if bold else "normal", va="baseline", parse_math=False)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _hidden(widget) -> bool:
    return getattr(getattr(widget, "layout", None), "display", None) == "none"


def _control_text(widget) -> str | None:
    """"description: value" of a control (a dropdown's label, a slider's number); None for anything else."""
    if isinstance(widget, (widgets.Image, widgets.HTML, widgets.Label)) or not isinstance(widget, widgets.ValueWidget):
        return None
    value = widget.label if hasattr(widget, "label") else widget.value
    value = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{widget.description}: {value}" if getattr(widget, "description", "") else value


def _still_parts(widget) -> list[np.ndarray | list[str]]:
    """What ``widget`` shows, top to bottom: pictures as (H, W, 3) uint8, text as a list of lines.
    A box of controls becomes one line ("cine: … · frame: 12"); hidden widgets show nothing."""
    if _hidden(widget):
        return []
    if isinstance(widget, widgets.Image):
        return [png_to_rgb(widget.value)] if widget.value else []
    if isinstance(widget, (widgets.HTML, widgets.Label)):
        return [html_to_lines(widget.value)] if widget.value else []
    if isinstance(widget, widgets.Box):
        shown = [child for child in widget.children if not _hidden(child)]
        controls = [_control_text(child) for child in shown]
        if shown and all(text is not None for text in controls):
            return [[" · ".join(controls)]]
        return [part for child in shown for part in _still_parts(child)]
    text = _control_text(widget)
    return [[text]] if text is not None else []


def widget_still(widget, title: str = STILL_TITLE, gap: int = 6, min_width: int = 640) -> bytes:
    """A still of what ``widget`` shows now, as PNG bytes: ``title``, then every part of the widget top to bottom
    (controls as "description: value" lines, ``Image`` pictures pixel for pixel, ``HTML`` readouts as text),
    left-aligned on white with ``gap`` pixels between parts, at least ``min_width`` pixels wide.

    It draws no picture of its own: the pictures are the widget's own PNG bytes, so the still shows exactly
    the maps, colour limits and colour bars the live widget shows."""
    parts = ([[title]] if title else []) + _still_parts(widget)
    pictures = [p for p in parts if isinstance(p, np.ndarray)]
    if not pictures and not any(isinstance(p, list) and any(p) for p in parts[1 if title else 0:]):
        raise ValueError(f"{type(widget).__name__} shows nothing to draw a still of")
    width = max([min_width] + [p.shape[1] for p in pictures])
    blocks = [p if isinstance(p, np.ndarray) else text_rgb(p, width, bold_first=title != "" and i == 0)
              for i, p in enumerate(parts)]
    height = sum(b.shape[0] for b in blocks) + gap * (len(blocks) + 1)
    still = np.full((height, width + 2 * gap, 3), 255, dtype=np.uint8)
    top = gap
    for block in blocks:
        still[top:top + block.shape[0], gap:gap + block.shape[1]] = block
        top += block.shape[0] + gap
    buffer = io.BytesIO()
    PILImage.fromarray(still).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class _WithStill:
    """Display an explorer as its live widget plus a still of its current view (``widget_still``).

    Subclasses set ``self.widget`` (the box the notebook shows) and give ``summary()``, the one-line
    ``text/plain`` a terminal or a text-only reader shows.
    """

    widget: widgets.Box

    def summary(self) -> str:
        raise NotImplementedError

    def still(self) -> bytes:
        """PNG bytes of what the widget shows now."""
        return widget_still(self.widget)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """{widget view (when the widget is open), image/png (base64, as IPython sends PNGs), text/plain}."""
        live = getattr(self.widget, "_repr_mimebundle_", None)  # None once the widget is closed
        bundle = dict((live(include=include, exclude=exclude) or {}) if callable(live) else {})
        bundle["image/png"] = base64.b64encode(self.still()).decode("ascii")
        bundle["text/plain"] = self.summary()
        return bundle


class KnobExplorer(_WithStill):
    """Turn one XCA-Synth difficulty knob and watch a frame (left) and its true vessel map (right) change.

    The same seed is re-rendered with ``Knobs(**{knob: value})``, so only the knob's effect changes. Both
    images are grey on the fixed range [0, 1], with its colour bar on the right.

        explorer = KnobExplorer(seed=0, image_size=128, n_frames=48)
        explorer            # in a notebook cell: the controls and the picture (a still without a kernel)
    """

    #: (min, max, step) of each knob's slider; 1.0 is always the validated default.
    KNOBS = {
        "dose": (0.05, 4.0, 0.05),
        "vessel_contrast": (0.25, 2.0, 0.05),
        "motion": (0.0, 2.0, 0.1),
        "onset_sharpness": (0.5, 3.0, 0.1),
        "blush": (0.0, 3.0, 0.1),
    }

    def __init__(self, seed: int = 0, image_size: int = 128, n_frames: int = 48, fps: float = 15.0, tree: str = "left"):
        self.seed, self.image_size, self.n_frames, self.fps, self.tree = seed, image_size, n_frames, fps, tree
        self._cache: dict[tuple[str, float], Cine] = {}
        lo, hi, step = self.KNOBS["dose"]
        self.knob = widgets.Dropdown(options=list(self.KNOBS), value="dose", description="knob")
        self.value = widgets.FloatSlider(value=1.0, min=lo, max=hi, step=step, description="value",
                                         continuous_update=False)
        first = self.render()
        self.frame = widgets.IntSlider(value=int(first.truth.keyframes[1]), min=0, max=first.n_frames - 1,
                                       description="frame", continuous_update=False)
        self.image = widgets.Image(format="png")
        self.label = widgets.HTML()
        self.knob.observe(self._on_knob, names="value")
        self.value.observe(self._update, names="value")
        self.frame.observe(self._update, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.knob, self.value, self.frame]), self.image, self.label])
        self._update()

    def render(self) -> Cine:
        """The cine for the current knob setting (cached: moving the frame slider re-renders nothing)."""
        from xcalab.data.synth import Knobs, simulate_sequence

        key = (self.knob.value, round(float(self.value.value), 6))
        if key not in self._cache:
            self._cache[key] = simulate_sequence(
                self.seed, image_size=self.image_size, n_frames=self.n_frames, fps=self.fps, tree=self.tree,
                knobs=Knobs(**{key[0]: key[1]}),
            )
        return self._cache[key]

    def _on_knob(self, change=None) -> None:
        lo, hi, step = self.KNOBS[self.knob.value]
        with self.value.hold_trait_notifications():
            self.value.min, self.value.max, self.value.step = lo, hi, step
            self.value.value = 1.0
        self._update()

    def _update(self, change=None) -> None:
        from xcalab.data.synth import PHASES

        seq = self.render()
        i = min(int(self.frame.value), seq.n_frames - 1)
        grey = grey_row(seq.frames[i], seq.truth.vessel_maps[i])
        bar = _colour_bar((0.0, 1.0), "gray", grey.shape[0], fixed=True)
        spacer = np.full((grey.shape[0], 4, 3), 255, dtype=np.uint8)
        self.image.value = _png(np.concatenate([np.repeat(grey[..., None], 3, axis=2), spacer, bar], axis=1))
        start, apex, end = seq.truth.keyframes
        self.label.value = (
            f"<b>{self.knob.value} = {self.value.value:g}</b> · frame {i} ({PHASES[int(seq.truth.phases[i])]}) · "
            f"keyframes start {start}, apex {apex}, end {end} · left: the frame, right: its true vessel map"
        )

    def summary(self) -> str:
        """One line for text-only readers: what this is and what it shows now."""
        return (f"KnobExplorer (XCA-Synth seed {self.seed}, an interactive widget; without a kernel, a still of its "
                f"view): {self.knob.value} = {self.value.value:g}, frame {self.frame.value} of {self.frame.max + 1}")


# --------------------------------------------------------------------------------------------------
# AttentionExplorer: every map the detector captures, frame by frame
# --------------------------------------------------------------------------------------------------

#: Colour maps by range: signed maps (TA) diverge around 0, everything else runs dark -> bright.
SIGNED_CMAP, UNSIGNED_CMAP = "RdBu_r", "magma"
#: The transformer's bands share one module entry; level and head have their own selectors.
TRANSFORMER = "transformer"


@functools.lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 colour table of a matplotlib colour map (built once per map: every redraw uses it)."""
    import matplotlib

    return np.round(matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def colour_map_array(values: np.ndarray, value_range: tuple[float, float], cmap: str) -> np.ndarray:
    """values (H, W) -> (H, W, 3) uint8 through ``cmap`` with fixed limits (values outside are clipped)."""
    lo, hi = value_range
    scaled = np.clip((np.asarray(values, dtype=np.float32) - lo) / max(hi - lo, 1e-12), 0, 1)
    return _lut(cmap)[np.round(scaled * 255).astype(np.uint8)]


def _resize(image: np.ndarray, height: int, width: int, smooth: bool) -> np.ndarray:
    """(h, w) float or (h, w, 3) uint8 -> (height, width), bilinear (frames) or nearest (maps, cells)."""
    resample = PILImage.BILINEAR if smooth else PILImage.NEAREST
    if image.ndim == 2:
        pil = PILImage.fromarray(np.asarray(image, dtype=np.float32), mode="F")
        return np.asarray(pil.resize((width, height), resample), dtype=np.float32)
    return np.asarray(PILImage.fromarray(image).resize((width, height), resample))


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG", compress_level=1)  # fast: the widget redraws often
    return buffer.getvalue()


def _figure_rgb(fig) -> np.ndarray:
    """A matplotlib Figure as (H, W, 3) uint8 (and closed)."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


class _StaticPlot:
    """A figure drawn once, with the pixel column of every x value, so a marker costs one array write."""

    def __init__(self, fig, ax):
        fig.canvas.draw()
        (x0, y0), (x1, y1) = ax.transData.transform([(ax.get_xlim()[0], ax.get_ylim()[0]),
                                                      (ax.get_xlim()[1], ax.get_ylim()[1])])
        height = fig.canvas.get_width_height()[1]
        self.xlim = ax.get_xlim()
        self.px = (x0, x1)
        self.rows = (int(round(height - max(y0, y1))), int(round(height - min(y0, y1))))
        self.rgb = _figure_rgb(fig)

    def with_marker(self, x: float, colour=(0, 0, 0), width: int = 2) -> np.ndarray:
        rgb = self.rgb.copy()
        (a, b), (p0, p1) = self.xlim, self.px
        col = int(round(p0 + (x - a) / (b - a) * (p1 - p0)))
        lo, hi = max(col - width // 2, 0), min(col + (width + 1) // 2, rgb.shape[1])
        rgb[self.rows[0]:self.rows[1], lo:hi] = colour
        return rgb


@functools.lru_cache(maxsize=32)
def _colour_bar(value_range: tuple[float, float], cmap: str, height: int, fixed: bool) -> np.ndarray:
    """A labelled vertical colour bar, (height, w, 3) uint8 (cached: read it, never write into it)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    dpi = 100
    fig = plt.figure(figsize=(0.95, height / dpi), dpi=dpi)
    ax = fig.add_axes((0.12, 0.06, 0.22, 0.88))
    fig.colorbar(plt.cm.ScalarMappable(Normalize(*value_range), cmap=cmap), cax=ax)
    ax.tick_params(labelsize=7)
    ax.set_title("fixed" if fixed else "observed", fontsize=6, loc="left")
    rgb = _figure_rgb(fig)
    return _resize(rgb, height, rgb.shape[1], smooth=True) if rgb.shape[0] != height else rgb


class AttentionExplorer(_WithStill):
    """Move through a cine and see every map the detector captures, frame by frame (ipywidgets).

        from xcalab.locator import load_locator
        explorer = AttentionExplorer({"synthetic test cine": seq}, {"STA": load_locator(teach_weights)})
        explorer            # in a notebook cell

    cines     name -> ``Cine`` (an XCA-Synth cine, a cine read from disk) or ``LocateResult`` (a
              ``locate`` answer that kept its frames); a single ``Cine`` is named by its video id
    locators  name -> ``xcalab.locator.Locator``; with several (say "STA" and "SA"), maps of a module both
              capture are drawn side by side
    truth     cine name -> true (start, apex, end) frames (XCA-Synth cines carry their own)
    height    pixel height of each panel (default: the cine's own, within 256..512)

    Controls: cine, frame (in the cine's own frames), module (every captured map, grouped for the
    transformer), level and head (transformer bands), opacity (step maps over the frame). The panel row
    is ``image.value`` (PNG bytes), the timeline ``timeline.value``, the readout ``label.value``. Maps are
    computed once per (model, cine) and cached; callbacks read only ``self``. Displayed, it also carries a
    still of its current view (``still()``), which copies without a kernel show.
    """

    def __init__(self, cines, locators, truth=None, height: int | None = None, opacity: float = 0.6):
        if isinstance(cines, Cine):
            cines = {cines.video_id: cines}
        if not cines:
            raise ValueError("give at least one cine")
        if not locators:
            raise ValueError("give at least one model (an xcalab.locator.Locator)")
        self.cines = dict(cines)
        self.locators = dict(locators)
        self.truth = dict(truth or {})
        self.height = height
        self._maps: dict[tuple[str, str], object] = {}
        self._quiet = False
        self._plots: dict[tuple, _StaticPlot] = {}
        self._bars: dict[tuple, np.ndarray] = {}

        def styled(widget, name):
            widget.add_class(f"xcalab-explorer-{name}")
            return widget

        self.cine = styled(widgets.Dropdown(options=list(self.cines), description="cine",
                                            layout=widgets.Layout(width="26em")), "cine")
        self.frame = styled(widgets.IntSlider(0, min=0, max=1, description="frame", continuous_update=False), "frame")
        self.module = styled(widgets.Dropdown(description="module"), "module")
        self.level = styled(widgets.Dropdown(description="level"), "level")
        self.head = styled(widgets.Dropdown(description="head"), "head")
        self.opacity = styled(widgets.FloatSlider(opacity, min=0.0, max=1.0, step=0.05, description="opacity",
                                                  continuous_update=False), "opacity")
        self.image = styled(widgets.Image(format="png"), "image")
        self.timeline = styled(widgets.Image(format="png"), "timeline")
        self.label = styled(widgets.HTML(), "readout")
        self.widget = widgets.VBox([
            widgets.HBox([self.cine, self.module, self.level, self.head]),
            widgets.HBox([self.frame, self.opacity]),
            self.image, self.label, self.timeline,
        ])
        self.widget.add_class("xcalab-explorer")
        self._on_cine()
        self.cine.observe(self._on_cine, names="value")
        self.module.observe(self._on_module, names="value")
        for control in (self.frame, self.level, self.head, self.opacity):
            control.observe(self._update, names="value")

    # What is loaded -------------------------------------------------------------------------------

    def sequence(self, cine: str | None = None) -> Cine:
        item = self.cines[cine or self.cine.value]
        return item.sequence if hasattr(item, "record") else item

    def maps_for(self, model: str, cine: str | None = None):
        """``SequenceMaps`` of ``cine`` under ``model``, computed on first use and cached."""
        from xcalab.attention_maps import sequence_maps

        cine = cine or self.cine.value
        key = (model, cine)
        if key not in self._maps:
            item, locator = self.cines[cine], self.locators[model]
            reuse = item if hasattr(item, "record") and item.record["weights"]["sha256"] == locator.sha256 else None
            self._maps[key] = sequence_maps(self.sequence(cine), locator, result=reuse)
        return self._maps[key]

    def true_keyframes(self, cine: str | None = None):
        from xcalab.viz.locate import true_keyframes

        cine = cine or self.cine.value
        return self.truth.get(cine) or true_keyframes(self.sequence(cine))

    def modules(self) -> list[str]:
        """Module names over every loaded model, in capture order; the transformer's bands are one entry."""
        out: list[str] = []
        for model in self.locators:
            maps = self.maps_for(model)
            for name in maps.names():
                entry = TRANSFORMER if maps.kinds[name].kind == "band" else name
                if entry not in out:
                    out.append(entry)
        return out

    def _band_names(self) -> list[str]:
        names: list[str] = []
        for model in self.locators:
            names += [n for n in self.maps_for(model).names("band") if n not in names]
        return names

    # Callbacks --------------------------------------------------------------------------------------

    def _on_cine(self, change=None) -> None:
        seq = self.sequence()
        modules = self.modules()
        record = self.maps_for(next(iter(self.locators))).result.record
        apex = record["apex"]["frame"] if record.get("apex") else seq.n_frames // 2
        self._quiet = True  # set several controls, draw once
        try:
            self.frame.max = seq.n_frames - 1
            self.frame.value = min(apex, seq.n_frames - 1)
            current = self.module.value
            self.module.options = modules
            self.module.value = current if current in modules else ("A" if "A" in modules else modules[0])
        finally:
            self._quiet = False
        self._on_module()

    def _on_module(self, change=None) -> None:
        if getattr(self, "_quiet", False):
            return
        band = self.module.value == TRANSFORMER
        self.level.layout.display = self.head.layout.display = None if band else "none"
        if band:
            names = self._band_names()
            self._quiet = True
            try:
                if self.level.value not in names:
                    self.level.options = [(n.split("/", 1)[1], n) for n in names]
                    self.level.value = names[0]
                heads = self._band_heads()
                if list(self.head.options) != list(range(heads)):
                    self.head.options = list(range(heads))
                    self.head.value = 0
            finally:
                self._quiet = False
        self._update()

    def _band_heads(self) -> int:
        for model in self.locators:
            maps = self.maps_for(model)
            if self.level.value in maps.maps:
                return int(maps.maps[self.level.value].shape[0])
        return 1

    # Drawing ----------------------------------------------------------------------------------------

    def _panel_height(self, seq: Cine) -> int:
        return int(self.height or min(max(seq.frames.shape[1], 256), 512))

    def _frame_rgb(self, seq: Cine, k: int, height: int) -> np.ndarray:
        frame = seq.frames[k].astype(np.float32)
        if np.issubdtype(seq.frames.dtype, np.integer):  # 8-bit as is; deeper integers by the cine's maximum
            frame = frame / (255.0 if seq.frames.dtype == np.uint8 else max(float(seq.frames.max()), 1.0))
        width = int(round(frame.shape[1] * height / frame.shape[0]))
        grey = np.round(np.clip(_resize(frame, height, width, smooth=True), 0, 1) * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)

    def _bar(self, value_range, cmap, height, fixed) -> np.ndarray:
        key = (tuple(round(v, 6) for v in value_range), cmap, height, fixed)
        if key not in self._bars:
            self._bars[key] = _colour_bar(value_range, cmap, height, fixed)
        return self._bars[key]

    def _curve_plot(self, model: str, name: str, height: int) -> _StaticPlot:
        key = ("curve", model, self.cine.value, name, height)
        if key not in self._plots:
            import matplotlib.pyplot as plt

            maps = self.maps_for(model)
            fig, ax = plt.subplots(figsize=(4.0, max(height, 240) / 100), dpi=100)  # drawn legibly, then resized
            ax.plot(np.arange(maps.n_steps), maps.maps[name], color="0.2", lw=1.5)
            if maps.range_is_fixed(name):
                ax.set_ylim(*maps.value_range(name))
            ax.set_xlim(-0.5, maps.n_steps - 0.5)
            ax.set_xlabel("feature step", fontsize=8)
            ax.set_title(f"{model}: {name}", fontsize=8)
            ax.tick_params(labelsize=7)
            fig.tight_layout()
            self._plots[key] = _StaticPlot(fig, ax)
        return self._plots[key]

    def panel(self, model: str, k: int) -> np.ndarray | None:
        """The picture of the current module under ``model`` at frame ``k``, (H, W, 3) uint8 (None: the model
        does not capture this module)."""
        maps, seq = self.maps_for(model), self.sequence()
        height = self._panel_height(seq)
        frame = self._frame_rgb(seq, k, height)
        step = maps.step_of_frame(k)
        name = self.level.value if self.module.value == TRANSFORMER else self.module.value
        if name not in maps.kinds:
            return None
        kind = maps.kinds[name]
        lo, hi = maps.value_range(name)
        cmap = SIGNED_CMAP if lo < 0 < hi and kind.value_range is not None else UNSIGNED_CMAP
        bar = self._bar((lo, hi), cmap, height, maps.range_is_fixed(name))
        if kind.kind == "step":
            if step is None:
                return np.concatenate([frame, np.full_like(bar, 255)], axis=1)
            overlay = colour_map_array(_resize(maps.maps[name][step], height, frame.shape[1], smooth=False), (lo, hi), cmap)
            alpha = float(self.opacity.value)
            mixed = np.round((1 - alpha) * frame + alpha * overlay).astype(np.uint8)
            return np.concatenate([mixed, bar], axis=1)
        if kind.kind == "band":
            band = maps.band(name, int(self.head.value or 0))
            cells = colour_map_array(band, (lo, hi), cmap)
            width = max(height * band.shape[1] // max(band.shape[0], band.shape[1]), 8 * band.shape[1])
            picture = _resize(cells, height, width, smooth=False).copy()
            if step is not None:  # outline the row of the level's point that covers this step
                row = min(step // 2 ** (kind.level or 0), band.shape[0] - 1)
                top, bottom = row * height // band.shape[0], (row + 1) * height // band.shape[0] - 1
                picture[[top, bottom], :] = (0, 255, 0)
                picture[top:bottom + 1, [0, -1]] = (0, 255, 0)
            return np.concatenate([frame, picture, bar], axis=1)
        if kind.kind == "matrix":  # step-to-step weights, the row of this frame's step outlined
            matrix = maps.maps[name]
            picture = _resize(colour_map_array(matrix, (lo, hi), cmap), height, height, smooth=False).copy()
            if step is not None:
                top, bottom = step * height // matrix.shape[0], (step + 1) * height // matrix.shape[0] - 1
                picture[[top, bottom], :] = (0, 255, 0)
                picture[top:bottom + 1, [0, -1]] = (0, 255, 0)
            return np.concatenate([frame, picture, bar], axis=1)
        if kind.kind == "curve":
            plot = self._curve_plot(model, name, height)
            curve = plot.with_marker(step if step is not None else maps.n_steps - 0.5, (220, 30, 30))
            curve = _resize(curve, height, int(round(curve.shape[1] * height / curve.shape[0])), smooth=True)
            return np.concatenate([frame, curve], axis=1)
        if kind.kind == "points":  # a position on the S x S map, outlined on the frame
            size = maps.map_size
            r, c = (float(v) * height / size for v in maps.maps[name])
            half = max(int(round(2.5 * height / size)), 2)  # PCon's 5 x 5 patch
            boxed = frame.copy()
            r0, r1 = int(max(r - half, 0)), int(min(r + half, height - 1))
            c0, c1 = int(max(c - half, 0)), int(min(c + half, frame.shape[1] - 1))
            boxed[[r0, r1], c0:c1 + 1] = (255, 220, 0)
            boxed[r0:r1 + 1, [c0, c1]] = (255, 220, 0)
            return boxed
        raise ValueError(f"map {name!r} has an unknown kind {kind.kind!r}")

    def _timeline_plot(self) -> _StaticPlot:
        key = ("timeline", self.cine.value)
        if key not in self._plots:
            self._plots[key] = _StaticPlot(*draw_explorer_timeline(
                self.maps_for(next(iter(self.locators))), self.true_keyframes()))
        return self._plots[key]

    def _update(self, change=None) -> None:
        if getattr(self, "_quiet", False):
            return
        seq = self.sequence()
        k = int(min(self.frame.value, seq.n_frames - 1))
        panels = [(model, self.panel(model, k)) for model in self.locators]
        shown = [(m, p) for m, p in panels if p is not None]
        height = max(p.shape[0] for _, p in shown)
        gap = np.full((height, 8, 3), 255, dtype=np.uint8)
        row = np.concatenate([part for _, p in shown for part in (p, gap)][:-1], axis=1)
        self.image.value = _png(row)
        self.image.layout.width = f"{row.shape[1]}px"  # drawn at its own size, not stretched to the output
        timeline = self._timeline_plot().with_marker(k)
        self.timeline.value = _png(timeline)
        self.timeline.layout.width = f"{timeline.shape[1]}px"
        self.label.value = self.readout(k, [m for m, _ in shown])

    def readout(self, k: int, models: list[str]) -> str:
        """The text under the picture: frame, step, module, range, keyframes and scores at this step."""
        seq = self.sequence()
        first = self.maps_for(models[0]) if models else self.maps_for(next(iter(self.locators)))
        step = first.step_of_frame(k)
        module = self.module.value
        parts = [f"<b>frame {k} of {seq.n_frames}</b> ({k / seq.fps:.2f} s)"]
        if step is None:
            parts.append(f"past the last feature window (it ends at frame {first.last_window_frame()}): no step")
        else:
            a, b = first.frames_of_step(step)
            parts.append(f"step {step} (window frames {a}–{b})")
        name = self.level.value if module == TRANSFORMER else module
        text = f"<b>module {module}</b>"
        if module == TRANSFORMER:
            text += f" {name.split('/', 1)[1]}, head {self.head.value}"
            if name in first.kinds:
                w = first.maps[name].shape[-1] // 2
                text += (f" (row: a point of level {first.kinds[name].level}, one per {2 ** first.kinds[name].level} "
                         f"steps, outlined at this frame; columns: its neighbours −{w}…+{w})")
        if name in first.kinds:
            kind = first.kinds[name]
            lo, hi = first.value_range(name)
            text += f" · {kind.kind} map, range [{lo:.3g}, {hi:.3g}] " + (
                "(fixed)" if first.range_is_fixed(name) else "(observed on this cine)")
            gate = kind.value_range is not None and tuple(map(float, kind.value_range)) == UNIT_RANGE
            if kind.kind == "step" and gate:  # a gate on its fixed scale: flat looks flat, so say it is
                from xcalab.viz.common import flat_warning

                if warning := flat_warning(first.maps[name]):
                    text += f" · <b>{html.escape(warning)} over this cine</b>"
        parts.append(text)
        if len(models) > 1:
            parts.append("left to right: " + ", ".join(models))
        record = first.result.record
        keys = ", ".join(f"{n} {record[n]['frame']} ({record[n]['score']:.2f})" if record[n] else f"{n} —"
                         for n in ("start", "apex", "end"))
        lines = [" · ".join(parts), f"predicted ({models[0] if models else ''}): {record['status']}, {keys}"]
        truth = self.true_keyframes()
        if truth is not None:
            lines[-1] += " · true: " + ", ".join(f"{n} {'—' if t is None else t}" for n, t in zip(("start", "apex", "end"), truth))
        if step is not None:
            scores = first.result.scores[step]
            lines.append(f"at step {step}: P(filling) {scores[0]:.2f}, P(disappearing) {scores[1]:.2f}")
        return "<br>".join(lines)

    def summary(self) -> str:
        """One line for text-only readers: what this is and what it shows now."""
        module = self.module.value
        if module == TRANSFORMER and self.level.value:
            module += f" {self.level.value.split('/', 1)[-1]} head {self.head.value}"
        return (f"AttentionExplorer ({', '.join(self.locators)}; an interactive widget; without a kernel, a still of "
                f"its view): cine {self.cine.value!r}, module {module}, frame {self.frame.value} of "
                f"{self.frame.max + 1}")


def draw_explorer_timeline(maps, truth=None, width_in: float = 9.0):
    """(Figure, Axes) of the explorer's timeline, in the cine's own frames: the true segments (when known),
    the predicted segments and keyframes, and the per-class score curves. ``maps``: ``SequenceMaps``."""
    import matplotlib.pyplot as plt

    from xcalab.viz.palette import ACTION_COLORS, KEYFRAME_COLORS

    result, seq = maps.result, maps.sequence
    record, fps, n = result.record, seq.fps, seq.n_frames
    fig, ax = plt.subplots(figsize=(width_in, 2.4), dpi=80)
    frames_of_steps = result.step_times * fps
    for c, name in enumerate(("filling", "disappearing")):
        ax.plot(frames_of_steps, result.scores[:, c], color=ACTION_COLORS[name], lw=1.6, label=f"P({name})")
    if record["segments"]:
        for name in ("filling", "disappearing"):
            seg = record["segments"][name]
            ax.barh(1.12, (seg["end_s"] - seg["start_s"]) * fps, left=seg["start_s"] * fps, height=0.1,
                    color=ACTION_COLORS[name], alpha=0.85)
    if truth is not None and truth[0] is not None and truth[1] is not None:
        ax.barh(1.27, truth[1] - truth[0], left=truth[0], height=0.1, color=ACTION_COLORS["filling"], alpha=0.4)
    if truth is not None and truth[1] is not None and truth[2] is not None:
        ax.barh(1.27, truth[2] - truth[1], left=truth[1], height=0.1, color=ACTION_COLORS["disappearing"], alpha=0.4)
    for name in ("start", "apex", "end"):
        if record[name]:
            ax.axvline(record[name]["frame"], color=KEYFRAME_COLORS[name], lw=1.5, label=f"{name} {record[name]['frame']}")
        if truth is not None and truth[("start", "apex", "end").index(name)] is not None:
            ax.axvline(truth[("start", "apex", "end").index(name)], color=KEYFRAME_COLORS[name], lw=1.5, ls=":")
    ax.text(0.005, 1.27, "truth" if truth is not None else "", fontsize=7, va="center", transform=ax.get_yaxis_transform())
    ax.text(0.005, 1.12, "predicted", fontsize=7, va="center", transform=ax.get_yaxis_transform())
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(0, 1.36)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlabel("frame (dotted: true keyframes)", fontsize=8)
    ax.set_ylabel("probability", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    fig.tight_layout()
    return fig, ax


def plot_sequence_maps(maps, names, frames, title: str | None = None):
    """The explorer's view on paper: one row per step map in ``names``, one column per original frame in
    ``frames`` (e.g. the three keyframes), each map over its frame with its fixed (or observed) colour
    limits and a colour bar per row. ``maps``: ``SequenceMaps``. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    names, frames = list(names), [int(f) for f in frames]
    if not names or not frames:
        raise ValueError("give at least one map name and one frame")
    for name in names:
        if maps.kinds.get(name) is None or maps.kinds[name].kind != "step":
            raise ValueError(f"{name!r} is not a step map of this cine; step maps: {', '.join(maps.names('step'))}")
    seq = maps.sequence
    fig, axes = plt.subplots(len(names), len(frames), figsize=(2.3 * len(frames) + 0.8, 2.3 * len(names)),
                             squeeze=False, constrained_layout=True)
    for r, name in enumerate(names):
        lo, hi = maps.value_range(name)
        cmap = SIGNED_CMAP if lo < 0 < hi and maps.range_is_fixed(name) else UNSIGNED_CMAP
        for c, f in enumerate(frames):
            ax = axes[r, c]
            ax.imshow(seq.frames[f], cmap="gray", vmin=0.0, vmax=1.0, extent=(0, 1, 1, 0))  # frames on (0, 1)
            step = maps.step_of_frame(f)
            if step is not None:
                ax.imshow(maps.maps[name][step], cmap=cmap, vmin=lo, vmax=hi, alpha=0.6, extent=(0, 1, 1, 0),
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {f}" + ("" if step is None else f" (step {step})"), fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
        fig.colorbar(plt.cm.ScalarMappable(Normalize(lo, hi), cmap=cmap), ax=list(axes[r]), shrink=0.85,
                     label="fixed range" if maps.range_is_fixed(name) else "observed range")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
