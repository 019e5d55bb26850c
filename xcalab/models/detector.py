"""The keyframe detector: STA-IPCon, and the ActionFormer baseline when every switch is off.

Data flow (seed paper Fig. 2; spec sta-ipcon.md Sec. 3.0), for a batch of B feature sequences:

    X (B, 4096, T) --long-term attention--> X1 = X * (1 + A)          A from TA (ConvLSTM), SA or STA
         |                                   Y = X + TA(X)
         +--imagewise contrast (training)--> L_con from g(Y * A) vs g(Y * (1 - A)) near the apex
    X1 --patchwise projection--> X2 = ReLU(corr(X1, 5x5 patch of step 0))
    X2 --temporal-conv embedding + local-window transformer pyramid--> 6 levels (B, C, T / 2^l)
       --shared heads--> class logits (B, 2, T_l) and boundary offsets (B, 2, T_l) per level

Every ablation of the paper's Tables IV and V is a ``ModelConfig`` switch; with long_term="none",
imagewise=False and patchwise=False the network is ActionFormer (Table II's baseline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from xcalab.config import Config, ModelConfig, config_from_dict
from xcalab.errors import XcalabInputError
from xcalab.models.contrastive import (
    ContrastOutput,
    ImagewiseContrast,
    PatchwiseProjection,
    foreground_background,
)
from xcalab.models.heads import ClassificationHead, RegressionHead
from xcalab.models.long_term import LongTermAttention
from xcalab.models.short_term import TransformerPyramid


class MapKind(NamedTuple):
    """What a captured map is, so a viewer can draw it without knowing the module that made it.

    kind         "step"   (T, S, S): one map per feature step, drawn over the step's frame
                 "band"   (heads, T_l, 2w + 1): local attention weights of pyramid level ``level``, row t =
                          how much step t attends to its neighbours t - w .. t + w
                 "curve"  (T,): one number per step
                 "points" (2,): a position (row, column) on the S x S map
    value_range  the fixed range the values live in -- (0, 1) for sigmoid gates, A and softmax weights,
                 (-1, 1) for a ConvLSTM hidden map -- or None for an unbounded response (a viewer shows
                 the range it observed)
    level        the pyramid level of a "band" (its step is 2**level feature steps), else None
    """

    kind: str
    value_range: tuple[float, float] | None
    level: int | None = None


UNIT_RANGE = (0.0, 1.0)


class DetectorOutput(NamedTuple):
    """What ``KeyframeDetector`` returns.

    cls_logits   per level l, (B, n_classes, T_l) logits (read through a sigmoid, one per class)
    offsets      per level l, (B, 2, T_l) distances to the left and right boundary, >= 0, in level strides
    masks        per level l, (B, T_l) bool, True at valid steps
    contrast     ``ContrastOutput`` with the ICon loss when it was asked for, else None
    attention    with ``return_attention=True``: every attention map by name (see ``KeyframeDetector``),
                 batch-first and padded; ``attention_of(b)`` cuts one video's maps to its length
    kinds        beside ``attention``: each map's ``MapKind`` (what it is and the range its values live in)
    """

    cls_logits: list[Tensor]
    offsets: list[Tensor]
    masks: list[Tensor]
    contrast: ContrastOutput | None
    attention: dict[str, Tensor] | None
    kinds: dict[str, MapKind] | None = None

    def attention_of(self, b: int) -> dict[str, Tensor]:
        """Video b's attention maps, un-padded: time axes cut to the video's valid length per level."""
        if self.attention is None:
            raise ValueError("no attention was captured: call the model with return_attention=True")
        out = {}
        for name, value in self.attention.items():
            if name.startswith("transformer/level"):
                level = int(name.split("level")[1].split(".")[0])
                out[name] = value[b, :, : int(self.masks[level][b].sum())]
            elif name == "patch_centre":
                out[name] = value[b]
            else:  # step maps (B, T, S, S)
                out[name] = value[b, : int(self.masks[0][b].sum())]
        return out


class KeyframeDetector(nn.Module):
    """STA-IPCon (Zhang et al., IEEE TMI 2023) with every ablation as a switch.

    feature_dim  features per step (64 x 64 = 4096)
    map_size     side of each step's map (64)
    n_classes    actions (2: filling, disappearing)
    cfg          ``ModelConfig``

    ``forward(features (B, D, T), mask (B, T), segments=None, labels=None, contrast=False,
    return_attention=False, generator=None) -> DetectorOutput``. With ``contrast=True`` (training
    epochs that use L_con) ``segments`` (B tensors (N_b, 2), ground truth in steps) and ``labels``
    (B tensors (N_b,)) feed the imagewise contrast. ``generator`` seeds the random draws (ICon samples,
    PCon patch).

    Attention maps (``return_attention=True``), each (B, T, S, S) unless said otherwise, with their
    ``MapKind`` in ``DetectorOutput.kinds``:
      "X"             the input vessel features, one map per step
      "TA"            the ConvLSTM output TA(X) in (-1, 1) (modes TA, STA)
      "TA.input_gate", "TA.forget_gate", "TA.output_gate"   the top ConvLSTM layer's gates in (0, 1)
      "A"             the long-term attention map that gates X (modes TA, SA, STA); also under "SA" or "STA"
      "gated"         X * (1 + A), what the rest of the detector reads (eq. 6)
      "foreground"    (X + TA) * A, "background" (X + TA) * (1 - A)   (modes SA, STA: what ICon contrasts)
      "patchwise"     the PCon response, "patch_centre" (B, 2) its patch (when patchwise)
      "transformer/level{l}.block{j}"  (B, heads, T_l, 2w + 1) local attention weights
    """

    def __init__(self, cfg: ModelConfig, feature_dim: int = 4096, map_size: int = 64, n_classes: int = 2):
        super().__init__()
        if map_size * map_size != feature_dim:
            raise ValueError(f"feature_dim {feature_dim} is not map_size^2 = {map_size}^2")
        self.cfg = cfg
        self.map_size = map_size
        reference = cfg.paper_compatible
        self.long_term = LongTermAttention(cfg.long_term, map_size, bn_over_padding=reference)
        self.imagewise = (
            ImagewiseContrast(feature_dim, cfg.contrast_hidden, cfg.contrast_dim, cfg.temperature)
            if cfg.imagewise else None
        )
        self.patchwise = PatchwiseProjection(map_size=map_size, random_bias=reference) if cfg.patchwise else None
        self.pyramid = TransformerPyramid(
            feature_dim, cfg.channels, n_levels=cfg.n_levels, n_heads=cfg.n_heads, half_window=cfg.half_window,
            drop_path=cfg.drop_path, short_term=cfg.short_term, mask_padding=not reference,
        )
        self.cls_head = ClassificationHead(cfg.channels, n_classes, cfg.head_layers, mask_padding=not reference)
        self.reg_head = RegressionHead(cfg.channels, cfg.n_levels, cfg.head_layers, mask_padding=not reference)

    @property
    def strides(self) -> list[int]:
        """Stride of each pyramid level in feature steps: 1, 2, 4, ..."""
        return [2**level for level in range(self.cfg.n_levels)]

    def forward(
        self,
        features: Tensor,
        mask: Tensor,
        segments: list[Tensor] | None = None,
        labels: list[Tensor] | None = None,
        contrast: bool = False,
        return_attention: bool = False,
        generator: torch.Generator | None = None,
    ) -> DetectorOutput:
        attention: dict[str, Tensor] = {}
        kinds: dict[str, MapKind] = {}
        long_term = self.long_term(features, mask, return_gates=return_attention)

        contrast_out = None
        if contrast and self.imagewise is not None:
            if segments is None or labels is None:
                raise ValueError("the imagewise contrast needs the ground-truth segments and labels")
            contrast_out = self.imagewise(long_term.residual, long_term.attention, mask, segments, labels, generator)

        x = long_term.features
        if self.patchwise is not None:
            patch = self.patchwise(x, generator=generator)
            x = patch.features

        pyramid = self.pyramid(x, mask, return_attention=return_attention)
        cls_logits = self.cls_head(pyramid.features, pyramid.masks)
        offsets = self.reg_head(pyramid.features, pyramid.masks)

        if return_attention:
            def add(name: str, value: Tensor, kind: MapKind) -> None:
                attention[name], kinds[name] = value, kind

            maps, step = self._as_maps, MapKind("step", UNIT_RANGE)
            add("X", maps(features), MapKind("step", None))
            if long_term.temporal is not None:
                add("TA", maps(long_term.temporal), MapKind("step", (-1.0, 1.0)))
                for gate, value in (long_term.gates or {}).items():
                    add(f"TA.{gate}_gate", maps(value), step)
            if long_term.attention is not None:
                add("A", maps(long_term.attention), step)
                if self.cfg.long_term not in attention:  # "SA" / "STA" name A; in mode TA, "TA" stays TA(X)
                    add(self.cfg.long_term, attention["A"], step)
                add("gated", maps(long_term.features), MapKind("step", None))
                if self.cfg.long_term in ("SA", "STA"):
                    fg, bg = foreground_background(long_term.residual, long_term.attention)
                    add("foreground", maps(fg), MapKind("step", None))
                    add("background", maps(bg), MapKind("step", None))
            if self.patchwise is not None:
                add("patchwise", maps(patch.features), MapKind("step", None))
                add("patch_centre", patch.centre, MapKind("points", (0.0, float(self.map_size - 1))))
            for name, weights in (pyramid.attention or {}).items():
                level = int(name.split("level")[1].split(".")[0])
                add(f"transformer/{name}", weights.detach(), MapKind("band", UNIT_RANGE, level))
        return DetectorOutput(cls_logits, offsets, pyramid.masks, contrast_out,
                              attention if return_attention else None, kinds if return_attention else None)

    def _as_maps(self, x: Tensor) -> Tensor:
        """(B, S*S, T) -> (B, T, S, S), detached: attention maps are for looking at."""
        return x.detach().transpose(1, 2).reshape(x.shape[0], x.shape[2], self.map_size, self.map_size)


# --------------------------------------------------------------------------------------------------
# The detector of a configuration, and of a weights file (``best.pt``, ``checkpoint.pt`` or shipped weights)
# --------------------------------------------------------------------------------------------------


def build_detector(cfg: Config) -> KeyframeDetector:
    """The detector of a configuration (feature size from ``cfg.features``)."""
    return KeyframeDetector(cfg.model, feature_dim=cfg.features.dim, map_size=cfg.features.map_size)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise XcalabInputError(path, "no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # an unpickling error means code or foreign objects: refuse, and never advise
        # loading it unsafely (torch's message suggests weights_only=False): keep only its first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in first or "Weights only load failed" in first:
            first = "it holds pickled objects or code, which xcalab never loads"
        raise XcalabInputError(path, f"not an xcalab checkpoint (weights) file that loads safely ({first})") from None
    if not isinstance(ckpt, dict) or "ema" not in ckpt or "meta" not in ckpt:
        raise XcalabInputError(path, "not an xcalab checkpoint (needs 'ema' weights and 'meta')")
    return ckpt


def load_detector(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> tuple[KeyframeDetector, Config]:
    """The EMA weights of ``checkpoint.pt`` or ``best.pt`` in a detector (eval mode), and the run's config."""
    ckpt = read_checkpoint(checkpoint_path, map_location="cpu")
    meta = json.loads(ckpt["meta"])
    cfg = config_from_dict(meta["config"], where=checkpoint_path)
    model = build_detector(cfg)
    model.load_state_dict(ckpt["ema"])
    return model.to(device).eval(), cfg
