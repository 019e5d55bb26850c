"""Vessel features: what the keyframe detector sees of a cine, one 64 x 64 map per 4-frame window.

One module per idea, in the order the data flow:

- ``svsnet``     SVS-Net (Hao et al. 2020): a 3-D residual encoder over 4 frames, a (4,1,1) temporal collapse
                 of every skip, channel attention, a 2-D residual decoder -> the vessel map of the third frame
- ``train``      training it on XCA-Synth's opacified-vessel maps (Dice + BCE, front/washout oversampling,
                 domain randomisation), checkpoints and resume
- ``weights``    the ``Extractor`` as shipped (weights + metadata JSON) and ``load_extractor``
- ``classical``  the baselines with the same contract: Frangi vesselness, raw intensity, the oracle
- ``extract``    cines -> (T, 4096) float32 arrays on the feature grid (stride 1, 2 or 4), cached, exported

    >>> from xcalab.features import extract_features, load_extractor
    >>> feats = extract_features(seq, source="learned", stride=4)      # (T, 4096), T = (N - 4) // 4 + 1
"""

import importlib

# Names are imported on first use (PEP 562), so `python -m xcalab.features.train` and
# `python -m xcalab.features.extract` run their module once, as __main__, without importing it twice.
_WHERE = {
    "classical": ("frangi", "frangi_maps", "oracle_maps", "raw_maps"),
    "extract": ("SOURCES", "FeatureCache", "export_features", "extract_features", "feature_times", "pool_to_grid", "resize",
                "window_centres", "window_maps", "window_starts"),
    "svsnet": ("SIZES", "SVSNet", "SVSNetConfig"),
    "train": ("ExtractorTrainConfig", "load_or_train", "segmentation_scores", "train_extractor"),
    "weights": ("DEFAULT_WEIGHTS", "Extractor", "load_extractor", "save_extractor"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'xcalab.features' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xcalab.features.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return __all__
