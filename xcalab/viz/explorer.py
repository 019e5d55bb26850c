"""Interactive explorers (ipywidgets) for the notebooks, written so that tests can drive them without a kernel.

Each explorer keeps its state on itself, puts its results in widget *traits* (``Image.value`` holds PNG
bytes, ``HTML.value`` a readout) and recomputes everything in one ``_update()`` that reads only ``self``:
no callback ever reads a notebook global, so moving a slider after later cells ran still works. A test sets
``explorer.value.value = 0.25`` and checks the traits, exactly as a student's click would.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np
from PIL import Image as PILImage

from xcalab.data.io import Sequence


def frames_to_png(*images: np.ndarray, gap: int = 4) -> bytes:
    """Grey images in [0, 1] (each [H, W], same H) side by side as one PNG (white gaps between them)."""
    if not images:
        raise ValueError("give at least one image")
    h = images[0].shape[0]
    if any(im.ndim != 2 or im.shape[0] != h for im in images):
        raise ValueError(f"images must be 2-D with the same height, got {[im.shape for im in images]}")
    spacer = np.ones((h, gap), dtype=np.float32)
    row = np.concatenate([part for im in images for part in (np.clip(im, 0, 1), spacer)][:-1], axis=1)
    buffer = io.BytesIO()
    PILImage.fromarray(np.round(row * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class KnobExplorer:
    """Turn one XCA-Synth difficulty knob and watch a frame (left) and its true vessel map (right) change.

    The same seed is re-rendered with ``Knobs(**{knob: value})``, so only the knob's effect changes.

        explorer = KnobExplorer(seed=0, image_size=128, n_frames=48)
        explorer            # in a notebook cell: the controls and the picture
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
        self._cache: dict[tuple[str, float], Sequence] = {}
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

    def render(self) -> Sequence:
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
        self.image.value = frames_to_png(seq.frames[i], seq.truth.vessel_maps[i])
        start, apex, end = seq.truth.keyframes
        self.label.value = (
            f"<b>{self.knob.value} = {self.value.value:g}</b> · frame {i} ({PHASES[int(seq.truth.phases[i])]}) · "
            f"keyframes start {start}, apex {apex}, end {end} · left: the frame, right: its true vessel map"
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
