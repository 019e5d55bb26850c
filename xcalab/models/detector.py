"""The keyframe detector: STA-IPCon, and the ActionFormer baseline when every switch is off.

Data flow (seed paper Fig. 2, as the reference code runs it), for a batch of B feature sequences:

    X (B, 4096, T) --long-term attention--> X1 = X * (1 + A)          A from TA (ConvLSTM), SA or STA
         |                                   Y = X + TA(X)
         +--imagewise contrast (training)--> L_con from g(Y * A) vs g(Y * (1 - A)) near the apex
    X1 --patchwise projection--> X2 = ReLU(corr(X1, 5x5 patch of step 0))
    X2 --temporal-conv embedding + local-window transformer pyramid--> 6 levels (B, C, T / 2^l)
       --shared heads--> class logits (B, 2, T_l) and boundary offsets (B, 2, T_l) per level

Every ablation of the paper's Tables IV and V is a ``ModelConfig`` switch; with long_term="none",
imagewise=False and patchwise=False the network is ActionFormer (Table II's baseline).

The other seed papers' modules are switches too, each where its paper puts it:

    generative_attention  GAF in front of everything: X -> foreground X * lambda / s (what the rest reads);
                          in training the background X * (1 - lambda) / s runs through the same network
                          (``background=True``) and must be classified as background
    phase_attention       the phase recogniser on X: X -> X * (1 + A_phase) before the long-term attention,
                          and its per-step phase probabilities (B, 5, T) join the embedding's input
    refinement            TSA + TPP on the embedding, before the transformer stem
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from xcalab.config import Config, ModelConfig, config_from_dict
from xcalab.data.phases import PHASE_NAMES
from xcalab.errors import XcalabInputError
from xcalab.models.contrastive import (
    ContrastOutput,
    ImagewiseContrast,
    PatchwiseProjection,
    foreground_background,
)
from xcalab.models.generative_attention import GenerativeAttention, GenerativeAttentionOutput
from xcalab.models.heads import ClassificationHead, RegressionHead
from xcalab.models.long_term import LongTermAttention
from xcalab.models.maps import UNIT_RANGE, MapKind
from xcalab.models.self_attention_refinement import SelfAttentionRefinement
from xcalab.models.short_term import TransformerPyramid
from xcalab.models.sparse_spatial_attention import PhaseOutput, PhaseRecogniser


class DetectorOutput(NamedTuple):
    """What ``KeyframeDetector`` returns.

    cls_logits   per level l, (B, n_classes, T_l) logits (read through a sigmoid, one per class)
    offsets      per level l, (B, 2, T_l) distances to the left and right boundary, >= 0, in level strides
    masks        per level l, (B, T_l) bool, True at valid steps
    contrast     ``ContrastOutput`` with the ICon loss when it was asked for, else None
    attention    with ``return_attention=True``: every attention map by name (see ``KeyframeDetector``),
                 batch-first and padded; ``attention_of(b)`` cuts one video's maps to its length
    kinds        beside ``attention``: each map's ``MapKind`` (what it is and the range its values live in)
    generative   GAF's ``GenerativeAttentionOutput`` (lambda, the two feature sets, the reconstruction), or None
    background_logits  GAF, with ``background=True``: per level, the class logits of the background features
    refinement   TSA + TPP's ``RefinementOutput`` (its step predictions train with their own loss), or None
    phases       the phase recogniser's ``PhaseOutput``, or None
    """

    cls_logits: list[Tensor]
    offsets: list[Tensor]
    masks: list[Tensor]
    contrast: ContrastOutput | None
    attention: dict[str, Tensor] | None
    kinds: dict[str, MapKind] | None = None
    generative: GenerativeAttentionOutput | None = None
    background_logits: list[Tensor] | None = None
    refinement: Any = None
    phases: PhaseOutput | None = None

    def attention_of(self, b: int) -> dict[str, Tensor]:
        """Video b's attention maps, un-padded: time axes cut to the video's valid length per level."""
        if self.attention is None:
            raise ValueError("no attention was captured: call the model with return_attention=True")
        out, steps = {}, int(self.masks[0][b].sum())
        for name, value in self.attention.items():
            kind = self.kinds[name]
            if kind.kind == "band":
                out[name] = value[b, :, : int(self.masks[kind.level][b].sum())]
            elif kind.kind == "points":
                out[name] = value[b]
            elif kind.kind == "matrix":
                out[name] = value[b, :steps, :steps]
            else:  # step maps (B, T, S, S) and curves (B, T)
                out[name] = value[b, :steps]
        return out


class KeyframeDetector(nn.Module):
    """STA-IPCon (Zhang et al., IEEE TMI 2023) with every ablation as a switch.

    feature_dim  features per step (64 x 64 = 4096)
    map_size     side of each step's map (64)
    n_classes    actions (2: filling, disappearing)
    cfg          ``ModelConfig``

    ``forward(features (B, D, T), mask (B, T), segments=None, labels=None, contrast=False,
    return_attention=False, generator=None, background=False) -> DetectorOutput``. With ``contrast=True``
    (training epochs that use L_con) ``segments`` (B tensors (N_b, 2), ground truth in steps) and ``labels``
    (B tensors (N_b,)) feed the imagewise contrast. ``generator`` seeds the random draws (ICon samples,
    PCon patch, GAF's and the phase recogniser's noise). ``background=True`` (GAF, training) also runs the
    background features through the network.

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
      and every map of the other modules that are on: "GAF.*" (``GenerativeAttention``), "phase.*" and
      "P(<phase>)" (``PhaseRecogniser``), "TSA.*" (T, T) matrices and "TPP.actionness"
      (``SelfAttentionRefinement``)
    """

    def __init__(self, cfg: ModelConfig, feature_dim: int = 4096, map_size: int = 64, n_classes: int = 2):
        super().__init__()
        if map_size * map_size != feature_dim:
            raise ValueError(f"feature_dim {feature_dim} is not map_size^2 = {map_size}^2")
        self.cfg = cfg
        self.map_size = map_size
        reference = cfg.paper_compatible
        self.long_term = LongTermAttention(
            cfg.long_term, map_size, bn_over_padding=reference, checkpoint_steps=cfg.convlstm_checkpoint_steps
        )
        self.imagewise = (
            ImagewiseContrast(feature_dim, cfg.contrast_hidden, cfg.contrast_dim, cfg.temperature)
            if cfg.imagewise else None
        )
        self.patchwise = PatchwiseProjection(map_size=map_size, random_bias=reference) if cfg.patchwise else None
        phase_channels = len(PHASE_NAMES) if cfg.phase_attention else 0  # phase probabilities join the input
        self.pyramid = TransformerPyramid(
            feature_dim + phase_channels, cfg.channels, n_levels=cfg.n_levels, n_heads=cfg.n_heads, half_window=cfg.half_window,
            drop_path=cfg.drop_path, short_term=cfg.short_term, mask_padding=not reference,
        )
        self.cls_head = ClassificationHead(cfg.channels, n_classes, cfg.head_layers, mask_padding=not reference)
        self.reg_head = RegressionHead(cfg.channels, cfg.n_levels, cfg.head_layers, mask_padding=not reference)
        # The other papers' modules are built last, so that everything above starts from the same random
        # draws with or without them (a comparison of "with" and "without" then differs only by the module).
        self.generative = GenerativeAttention(feature_dim, cfg.gaf_hidden) if cfg.generative_attention else None
        self.phase = PhaseRecogniser(map_size=map_size) if cfg.phase_attention else None
        if cfg.refinement:
            self.pyramid.refinement = SelfAttentionRefinement(cfg.channels, n_classes)

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
        background: bool = False,
    ) -> DetectorOutput:
        attention: dict[str, Tensor] = {}
        kinds: dict[str, MapKind] = {}
        x, generative, phases = features, None, None
        if self.generative is not None:  # GAF: the rest of the network reads the attended foreground
            generative = self.generative(features, mask, return_attention=return_attention, generator=generator)
            x = generative.foreground
        if self.phase is not None:  # gate with the recogniser's spatial attention, as A gates X (eq. 6)
            phases = self.phase(x, mask, return_attention=return_attention, generator=generator)
            x = x * (1 + self._as_features(phases.spatial_attention))

        long_term, contrast_out, patch, pyramid, cls_logits, offsets = self._detect(
            x, mask, phases, segments, labels, contrast, return_attention, generator)
        background_logits = None
        if background and generative is not None:  # GAF's segment-level attention on F * (1 - lambda)
            background_logits = self._detect(generative.background, mask, phases, None, None, False, False,
                                             generator)[4]

        if return_attention:
            def add(name: str, value: Tensor, kind: MapKind) -> None:
                attention[name], kinds[name] = value, kind

            maps, step = self._as_maps, MapKind("step", UNIT_RANGE)
            add("X", maps(features), MapKind("step", None))
            for module in (generative, phases):
                for name, value in ((module.attention or {}) if module is not None else {}).items():
                    add(name, value, module.kinds[name])
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
            if pyramid.refinement is not None:
                for name, value in pyramid.refinement.attention.items():
                    add(name, value, pyramid.refinement.kinds[name])
            for name, weights in (pyramid.attention or {}).items():
                level = int(name.split("level")[1].split(".")[0])
                add(f"transformer/{name}", weights.detach(), MapKind("band", UNIT_RANGE, level))
        return DetectorOutput(cls_logits, offsets, pyramid.masks, contrast_out,
                              attention if return_attention else None, kinds if return_attention else None,
                              generative, background_logits, pyramid.refinement, phases)

    def _detect(self, x: Tensor, mask: Tensor, phases: PhaseOutput | None, segments, labels, contrast: bool,
                return_attention: bool, generator: torch.Generator | None):
        """Long-term attention, ICon, PCon, the pyramid and the heads on input x (B, D, T)."""
        long_term = self.long_term(x, mask, return_gates=return_attention)
        contrast_out = None
        if contrast and self.imagewise is not None:
            if segments is None or labels is None:
                raise ValueError("the imagewise contrast needs the ground-truth segments and labels")
            contrast_out = self.imagewise(long_term.residual, long_term.attention, mask, segments, labels, generator)

        x, patch = long_term.features, None
        if self.patchwise is not None:
            patch = self.patchwise(x, generator=generator)
            x = patch.features
        if phases is not None:
            x = torch.cat((x, phases.probabilities), dim=1)

        pyramid = self.pyramid(x, mask, return_attention=return_attention)
        cls_logits = self.cls_head(pyramid.features, pyramid.masks)
        offsets = self.reg_head(pyramid.features, pyramid.masks)
        return long_term, contrast_out, patch, pyramid, cls_logits, offsets

    def _as_features(self, maps: Tensor) -> Tensor:
        """(B, T, S, S) -> (B, S*S, T): a map per step back to the features' layout."""
        return maps.reshape(maps.shape[0], maps.shape[1], -1).transpose(1, 2)

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
