"""A toy feature set whose maps follow the contrast curve: training tests read it (it is no test module itself).

``toy_feature_set`` writes ``<id>.npy`` features, ``phases/<id>.npy`` contrast phases and annotations.json into a
folder, for a few cines given by their subset, length in steps and keyframes in frames. ``GAUGE`` names the
parameters two correct training runs may disagree on.
"""

import numpy as np

from xcalab.data.annotations import VideoAnnotation, write_annotations
from xcalab.data.phases import phases_path, step_phases

FPS, STRIDE = 15.0, 4

#: Parameters whose true gradient is exactly 0, so that Adam turns float noise into +-lr steps and two
#: correct runs may differ by up to lr per step: a bias right before BatchNorm (BN subtracts any constant),
#: the bias of attention keys and of their LayerNorm (softmax ignores a constant added to every logit of a
#: query), and BN's running mean, which follows the first kind.
GAUGE = ("long_term.spatial.0.bias", "long_term.spatial.3.bias", "attention.key.bias", "attention.key_norm.bias",
         "running_mean")


def _vessels(size: int) -> np.ndarray:
    """A fixed (size, size) pattern of four bright curved lines, ~1.5 pixels wide, in [0, 1]."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    pattern = np.zeros((size, size))
    for _ in range(4):
        a, b, c = rng.uniform(-1, 1, 3)
        distance = np.abs(yy - (0.5 + 0.3 * a * (xx - 0.5) + 0.2 * b * np.sin(3 * xx + c)))
        pattern = np.maximum(pattern, np.exp(-((distance * size / 1.5) ** 2)))
    return pattern


def toy_feature_set(folder, videos, size=64):
    """Write ``<id>.npy``, ``phases/<id>.npy`` and annotations.json for {id: (subset, steps, (start, apex, end)
    frames)}.

    Step k (centred at frame 4k + 2) shows a flat background 0.1 plus the vessel pattern times the
    contrast curve: 0 before start, rising to 1 at the apex, back to 0 at the end. The background is
    flat so that the first step -- PCon's patch -- holds no vessel, whatever patch is drawn. The frames'
    phases: pre-contrast before the start, filling to the apex, a 3-frame plateau, washout to the end, after.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pattern = _vessels(size)
    records = []
    for vid, (subset, steps, keyframes) in videos.items():
        start, apex, end = keyframes
        centre = STRIDE * np.arange(steps) + 2.0
        curve = np.interp(centre, [0, start, apex, end, 1e9], [0, 0, 1, 0, 0])
        maps = 0.1 + curve[:, None, None] * pattern[None]
        np.save(folder / f"{vid}.npy", maps.reshape(steps, -1).astype(np.float32))
        frames = np.full(STRIDE * steps + STRIDE, 4)
        frames[:end + 1] = 3
        frames[:apex + 3] = 2
        frames[:apex] = 1
        frames[:start] = 0
        phases_path(folder / f"{vid}.npy").parent.mkdir(exist_ok=True)
        np.save(phases_path(folder / f"{vid}.npy"), step_phases(frames, steps))
        records.append(VideoAnnotation.from_keyframes(vid, keyframes, FPS, STRIDE * steps, subset))
    return write_annotations(folder / "annotations.json", records)


FOUR_VIDEOS = {
    "a": ("train", 16, (10, 22, 50)),
    "b": ("train", 18, (14, 26, 60)),
    "c": ("train", 16, (8, 20, 46)),
    "d": ("train", 20, (16, 30, 66)),
}
