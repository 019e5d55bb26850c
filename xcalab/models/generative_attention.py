"""GAF: generative frame attention in front of the detector (Wang et al., seed paper 002, and its released code).

GAF learns a soft mask lambda over the features and asks two things of it. Eq. 2-4 of the paper:

    max over lambda in [0, 1]   log p(lambda | F, C, I)  ~  log p(C | F, lambda) + log p(I | F, lambda)
                                                            + log p(F | lambda)

(Bayes' rule; log p(F, C, I) is a constant and p(lambda) is uniform.) F are the features, C the class
labels, I the boundaries.

- log p(F | lambda), the *frame-level* attention (eqs. 5-9, 15): the features must be predictable from
  lambda. A conditional VAE models p(f_t | lambda_t) per step -- ``ConditionalVAE`` and ``cvae_loss``
  here. Through its frozen decoder, ``reconstruct_from_attention`` (z = lambda + eps, eq. 15 with L = 1)
  gives lambda the gradient of L_recon = mean((F_hat - F)^2).
- log p(C | F, lambda) + log p(I | F, lambda), the *segment-level* attention (eqs. 11-14): the detector
  reads the attended features. Its usual losses (classification and boundaries) on the foreground
  F * lambda / sum(lambda) with the ground truth, plus, on the background F * (1 - lambda) / sum(1 - lambda),
  the same losses with the complement targets (the gaps between ground-truth segments, all background),
  so whatever lambda leaves out must look like background. The detector's loss module implements that;
  this module only supplies the two feature sets (``attended_features``).

In xcalab the features are the vessel maps X (B, 4096, T), one row-major 64 x 64 map per step, so lambda
has their shape: one 64 x 64 map in (0, 1) per step, drawn like STA-IPCon's attention map A. GAF sits on
X in front of the detector, as it sits on the backbone features in front of AFSD's head.

    X (B, D, T) --FrameAttention--> lambda (B, D, T) in (0, 1)
      |                               |
      +---------attended_features-----+--> foreground X * lambda / s_fg, background X * (1 - lambda) / s_bg
      |                               |                         (the detector reads the foreground)
      +--ConditionalVAE (x, lambda)---+--> X_hat, mu, log sigma^2    (CVAE phase: cvae_loss)
                   decoder (lambda + eps, lambda) --> X_hat          (detector phase: L_recon)

Training alternates within every epoch (the released code's ``run_one_epoch``):

1. CVAE phase: one pass over the training set that optimises only the CVAE (``cvae_parameters()``) with
   L_cvae = mean((X - X_hat)^2) + 0.1 KL(N(mu, sigma^2) || N(lambda, I)) (``cvae_step_loss``; lambda is
   detached). Released code: Adam lr 1e-3, betas (0.8, 0.999).
2. Detector phase: the CVAE frozen, a second pass that optimises the lambda head
   (``attention_parameters()``) and the detector with the segment-level losses + w * L_recon, where
   w = epoch / max_epoch * 0.5 ramps up over training (``reconstruction_weight``). Released code also
   weighs the background losses by 35 and adds AFSD's consistency loss; those belong to the loss module.

Departures from the released code (``GAF/thumos14/BDNet.py``), each because xcalab's input differs:

- The lambda head. The released head ends in a Linear over a fixed-length (interpolated) time axis, which
  cannot take cines of any length, and it normalises with GroupNorm over channels *and* time, which would
  mix padded steps into valid ones. ``FrameAttention`` keeps what matters -- lambda_t sees the whole cine,
  is a per-channel, per-step soft mask, ends in a sigmoid -- with masked temporal convolutions, a per-step
  LayerNorm and a context term averaged over the valid steps. See its docstring.
- The CVAE works on the D-vector of each step directly: there is no spatial axis to collapse (Conv3d
  [1, s, s]) or restore (ConvTranspose3d, GroupNorm, ReLU), so the decoder ends in a plain Linear (the
  mean of a Gaussian likelihood, matching the squared-error loss). The MLPs are 2D -> hidden -> hidden ->
  2D (encoder) and 2D -> hidden -> hidden -> D (decoder) with a small hidden width instead of D -> D.
  The latent keeps D dimensions so that the prior N(lambda, I) is the paper's.
- One level instead of two (the released code sums the losses of I3D's Mixed_4f and Mixed_5c).
- Means over valid elements only: every loss and normaliser skips padded steps (the released clips
  have a fixed length and no padding). The means are pooled over the batch, as the released
  mean over the whole tensor is.
- The normaliser of the attended features: the released code divides by ONE scalar sum over the whole
  batch tensor, so the scale of the features depends on the batch size (8 in training, 1 at test) and on
  the length of the cines. ``normalise="batch"`` keeps that (summing over valid elements only);
  ``"video"``, the default, divides by the mean of lambda (resp. 1 - lambda) over the video's valid
  elements, which is batch-independent and keeps the features on the scale of X; ``"none"`` does not divide.
- The reconstruction target in the detector phase is the raw X. (The released code reuses a dictionary
  that by then holds masked features, so its target ends up being the background or SSL features.)
- Random draws take a ``torch.Generator`` and are made for the valid steps only, so padding never changes
  them.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcalab.models.maps import UNIT_RANGE, MapKind
from xcalab.models.short_term import ChannelLayerNorm, MaskedConv1d

Normalise = Literal["batch", "video", "none"]
NORMALISE_MODES = ("batch", "video", "none")

# Floor of the attended features' normalisers: a video whose lambda is exactly 0 everywhere (possible for
# a hand-made lambda, never for a sigmoid) gives zero features instead of 0 / 0.
_NORMALISER_FLOOR = 1e-12


# --------------------------------------------------------------------------------------------------
# Input checks and masked reductions
# --------------------------------------------------------------------------------------------------


def _check_sequence(name: str, x: Tensor, feature_dim: int | None = None) -> None:
    """Raise a clear ValueError unless x is a (B, D, T) tensor (with D = feature_dim when given)."""
    if x.dim() != 3:
        raise ValueError(f"{name} must be (B, D, T), got shape {tuple(x.shape)}")
    if feature_dim is not None and x.shape[1] != feature_dim:
        raise ValueError(f"{name} must have {feature_dim} features per step, got shape {tuple(x.shape)}")


def _check_mask(mask: Tensor, x: Tensor, name: str = "x") -> None:
    """Raise a clear ValueError unless mask is a bool (B, T) matching x (B, D, T)."""
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True at valid steps), got {mask.dtype}")
    if mask.dim() != 2 or mask.shape != (x.shape[0], x.shape[2]):
        raise ValueError(
            f"mask must be (B, T) = {(x.shape[0], x.shape[2])} to match {name} {tuple(x.shape)}, "
            f"got {tuple(mask.shape)}"
        )


def _check_same_shape(names: tuple[str, ...], tensors: tuple[Tensor, ...]) -> None:
    """Raise a clear ValueError unless every tensor has the first one's shape."""
    for name, t in zip(names[1:], tensors[1:]):
        if t.shape != tensors[0].shape:
            raise ValueError(f"{name} must have the shape of {names[0]} {tuple(tensors[0].shape)}, got {tuple(t.shape)}")


def _step_mask(mask: Tensor, like: Tensor) -> Tensor:
    """(B, T) bool -> (B, 1, T) in ``like``'s dtype, to multiply (B, D, T) tensors."""
    return mask.unsqueeze(1).to(like.dtype)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, D, T) values over every valid element of the batch (pooled) -> scalar."""
    n_valid = int(mask.sum())
    if n_valid == 0:
        raise ValueError("the mask has no valid step: a loss over an all-padded batch is undefined")
    return (values * _step_mask(mask, values)).sum() / (n_valid * values.shape[1])


def _mean_over_valid_steps(h: Tensor, mask: Tensor) -> Tensor:
    """(B, C, T) -> (B, C, 1): each video's mean over its valid steps (0 for a video with none)."""
    m = _step_mask(mask, h)
    return (h * m).sum(dim=2, keepdim=True) / m.sum(dim=2, keepdim=True).clamp_min(1.0)


# --------------------------------------------------------------------------------------------------
# The lambda head
# --------------------------------------------------------------------------------------------------


class FrameAttention(nn.Module):
    """The lambda head (as in the released code): a soft mask in (0, 1) per feature and step, seeing the whole cine.

    feature_dim   D, features per step (64 x 64 = 4096)
    hidden        width of the hidden layers (default 256)
    kernel_size   temporal kernel of the two hidden convolutions (odd, default 3)

    x (B, D, T), mask (B, T) -> lambda (B, D, T) in (0, 1), 0 at padded steps:

        h      = ReLU(LN(MaskedConv1d_k(x)))                         D -> hidden, local in time
        h      = ReLU(LN(MaskedConv1d_k(h) + W_c mean_valid(h)))     the cine's summary joins every step
        lambda = sigmoid(Conv1x1(h)) * mask                          hidden -> D

    mean_valid averages over the video's valid steps, so lambda_t depends on every step of the cine (the
    role of the released head's Linear over the time axis, which needs a fixed length) and on none of
    the padded ones; the convolutions read padded steps as zeros and LayerNorm works per step. The
    released head's GroupNorm is not used: it normalises over time as well, padded steps included.
    The output bias starts at 0, so lambda starts near 1/2.

    Parameters at D = 4096, hidden = 256, kernel 3: 4,461,824 (the first convolution has 3,145,728).
    """

    def __init__(self, feature_dim: int = 4096, hidden: int = 256, kernel_size: int = 3):
        super().__init__()
        self.feature_dim = feature_dim
        # No biases before a LayerNorm: its shift does that job.
        self.local = MaskedConv1d(feature_dim, hidden, kernel_size, bias=False)
        self.local_norm = ChannelLayerNorm(hidden)
        self.mix = MaskedConv1d(hidden, hidden, kernel_size, bias=False)
        self.context = nn.Linear(hidden, hidden)
        self.mix_norm = ChannelLayerNorm(hidden)
        self.out = MaskedConv1d(hidden, feature_dim, kernel_size=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, D, T), mask (B, T) bool -> lambda (B, D, T) in (0, 1), 0 at padded steps."""
        _check_sequence("x", x, self.feature_dim)
        _check_mask(mask, x)
        h, _ = self.local(x, mask)
        h = F.relu(self.local_norm(h))
        context = self.context(_mean_over_valid_steps(h, mask).squeeze(2)).unsqueeze(2)  # (B, hidden, 1)
        mixed, _ = self.mix(h, mask)
        h = F.relu(self.mix_norm(mixed + context))
        logits, _ = self.out(h, mask)
        return torch.sigmoid(logits) * _step_mask(mask, logits)


# --------------------------------------------------------------------------------------------------
# The frame-level generative model
# --------------------------------------------------------------------------------------------------


def _mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """in -> hidden -> hidden -> out, ReLU between (the released CVAE's per-step MLPs, narrower)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_features),
    )


def _valid_step_noise(mask: Tensor, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise (B, D, T) like ``like`` at valid steps, 0 at padded ones.

    One draw of (number of valid steps, D), placed at the valid steps in (video, step) order: padding
    never changes the noise a valid step gets, whatever the padded length.
    """
    batch, dim, steps = like.shape
    device = generator.device if generator is not None else like.device
    draws = torch.randn(int(mask.sum()), dim, generator=generator, device=device, dtype=like.dtype)
    noise = like.new_zeros(batch, steps, dim)
    noise[mask] = draws.to(like.device)
    return noise.transpose(1, 2)


class ConditionalVAE(nn.Module):
    """The frame-level generative model p(f_t | lambda_t) of eqs. 5-9 (the released code's CVAE), per step.

    feature_dim   D, features per step (the latent has D dimensions too: prior N(lambda_t, I))
    hidden        width of the hidden layers (default 256)

    encoder  [x_t ; lambda_t] (2D) -> hidden -> hidden -> 2D, split into mu_t and log sigma^2_t (D each)
    decoder  [z_t ; lambda_t] (2D) -> hidden -> hidden -> x_hat_t (D), a linear output

    Every step is encoded and decoded on its own; outputs are 0 at padded steps.
    Parameters at D = 4096, hidden = 256: 7,484,416 (encoder 4,268,544, decoder 3,215,872).
    """

    def __init__(self, feature_dim: int = 4096, hidden: int = 256):
        super().__init__()
        self.feature_dim = feature_dim
        self.encoder = _mlp(2 * feature_dim, hidden, 2 * feature_dim)
        self.decoder = _mlp(2 * feature_dim, hidden, feature_dim)

    def _check(self, mask: Tensor, **sequences: Tensor) -> None:
        names, tensors = tuple(sequences), tuple(sequences.values())
        for name, t in sequences.items():
            _check_sequence(name, t, self.feature_dim)
        _check_same_shape(names, tensors)
        _check_mask(mask, tensors[0], names[0])

    def encode(self, x: Tensor, lam: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x, lambda (B, D, T), mask (B, T) -> mu, log sigma^2, each (B, D, T), 0 at padded steps."""
        self._check(mask, x=x, lam=lam)
        out = self.encoder(torch.cat([x, lam], dim=1).transpose(1, 2)).transpose(1, 2)  # (B, 2D, T)
        out = out * _step_mask(mask, out)
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: Tensor, lam: Tensor, mask: Tensor) -> Tensor:
        """z, lambda (B, D, T), mask (B, T) -> x_hat (B, D, T), 0 at padded steps."""
        self._check(mask, z=z, lam=lam)
        recon = self.decoder(torch.cat([z, lam], dim=1).transpose(1, 2)).transpose(1, 2)
        return recon * _step_mask(mask, recon)

    def forward(
        self, x: Tensor, lam: Tensor, mask: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode, sample z = mu + sigma * eps (reparameterised), decode.

        x, lam (B, D, T), mask (B, T) bool, generator for eps (None: torch's global one)
        -> (x_hat, mu, log sigma^2), each (B, D, T), 0 at padded steps.
        """
        mu, logvar = self.encode(x, lam, mask)
        z = mu + torch.exp(0.5 * logvar) * _valid_step_noise(mask, mu, generator)
        return self.decode(z, lam, mask), mu, logvar

    def reconstruct_from_attention(
        self, lam: Tensor, mask: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The released code's "inference mode" (eq. 15): z = lambda + eps, from the prior; x_hat = Dec(z, lambda).

        lam (B, D, T), mask (B, T) -> x_hat (B, D, T), 0 at padded steps. The gradient reaches lambda
        through z and the condition: this is what trains the lambda head in the detector phase.
        """
        _check_sequence("lam", lam, self.feature_dim)
        _check_mask(mask, lam, "lam")
        z = lam + _valid_step_noise(mask, lam, generator)
        return self.decode(z, lam, mask)


# --------------------------------------------------------------------------------------------------
# Losses (pure functions; means over the valid elements of the batch)
# --------------------------------------------------------------------------------------------------


def reconstruction_loss(x: Tensor, recon: Tensor, mask: Tensor) -> Tensor:
    """L_recon = mean((x_hat - x)^2) over the valid elements (eq. 15 up to scale) -> scalar.

    x, recon (B, D, T), mask (B, T) bool. The mean is pooled: sum of squares / (D * valid steps in the batch).
    """
    _check_sequence("x", x)
    _check_same_shape(("x", "recon"), (x, recon))
    _check_mask(mask, x)
    return _masked_mean((recon - x) ** 2, mask)


def cvae_loss(
    x: Tensor,
    recon: Tensor,
    mu: Tensor,
    logvar: Tensor,
    lam: Tensor,
    mask: Tensor,
    kl_weight: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_cvae of eq. 7 as the released code computes it: recon + kl_weight * KL.

    x, recon, mu, logvar, lam   (B, D, T): features, x_hat, mu, log sigma^2 and lambda
    mask                        (B, T) bool; padded steps never count
    kl_weight                   beta of eq. 7 (released 0.1)

        recon = mean((x - x_hat)^2)
        KL    = -1/2 mean(1 + log sigma^2 - (mu - lambda)^2 - sigma^2)   KL(N(mu, sigma^2) || N(lambda, I))

    Both are means over the valid elements of the batch (the released code: over every element).
    -> (total, {"recon": ..., "kl": ...}); the terms are detached scalars for the log.
    """
    _check_sequence("x", x)
    _check_same_shape(("x", "recon", "mu", "logvar", "lam"), (x, recon, mu, logvar, lam))
    _check_mask(mask, x)
    recon_term = _masked_mean((x - recon) ** 2, mask)
    kl = -0.5 * _masked_mean(1 + logvar - (mu - lam) ** 2 - logvar.exp(), mask)
    total = recon_term + kl_weight * kl
    return total, {"recon": recon_term.detach(), "kl": kl.detach()}


def reconstruction_weight(epoch: int, max_epoch: int, final: float = 0.5) -> float:
    """The weight of L_recon in the detector phase, ramped with training: epoch / max_epoch * final.

    Released code: final 0.5, epochs counted from 0, so the first epoch adds no L_recon.
    """
    if max_epoch <= 0:
        raise ValueError(f"max_epoch must be positive, got {max_epoch}")
    if not 0 <= epoch <= max_epoch:
        raise ValueError(f"epoch must lie in [0, max_epoch = {max_epoch}], got {epoch}")
    return epoch / max_epoch * final


# --------------------------------------------------------------------------------------------------
# Attended features (eq. 11, applied per step)
# --------------------------------------------------------------------------------------------------


def attended_features(
    x: Tensor, lam: Tensor, mask: Tensor, normalise: Normalise = "video"
) -> tuple[Tensor, Tensor]:
    """Foreground x * lambda / s_fg and background x * (1 - lambda) / s_bg: the paper's F * lambda / sum(lambda).

    x, lam     (B, D, T) features and lambda
    mask       (B, T) bool; both outputs are 0 at padded steps, and padded steps never enter s
    normalise  "batch"  s_fg = sum of lambda, s_bg = sum of 1 - lambda, ONE scalar each over every valid
                        element of the batch, as the released code. Hazard: the features'
                        scale then depends on how many videos and steps the batch holds.
               "video"  (default) s_fg = mean of lambda, s_bg = mean of 1 - lambda over the video's valid
                        elements, per video: batch-independent, and the features stay on x's scale
                        (a constant lambda gives foreground = background = x)
               "none"   s = 1

    -> (foreground, background), each (B, D, T). The normalisers carry gradient, as in the released code.
    """
    if normalise not in NORMALISE_MODES:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISE_MODES)}, got {normalise!r}")
    _check_sequence("x", x)
    _check_same_shape(("x", "lam"), (x, lam))
    _check_mask(mask, x)
    m = _step_mask(mask, lam)
    fg_weight, bg_weight = lam * m, (1 - lam) * m  # padded steps: weight 0, also in the sums below
    if normalise == "batch":
        s_fg, s_bg = fg_weight.sum(), bg_weight.sum()
    elif normalise == "video":
        n_valid = (m.sum(dim=(1, 2), keepdim=True) * x.shape[1]).clamp_min(1.0)  # (B, 1, 1) elements
        s_fg = fg_weight.sum(dim=(1, 2), keepdim=True) / n_valid
        s_bg = bg_weight.sum(dim=(1, 2), keepdim=True) / n_valid
    else:
        return x * fg_weight, x * bg_weight
    return x * fg_weight / s_fg.clamp_min(_NORMALISER_FLOOR), x * bg_weight / s_bg.clamp_min(_NORMALISER_FLOOR)


# --------------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------------


class GenerativeAttentionOutput(NamedTuple):
    """What ``GenerativeAttention`` returns; every tensor is (B, D, T) and 0 at padded steps.

    foreground   x * lambda / s_fg: what the detector reads (the ground-truth losses)
    background   x * (1 - lambda) / s_bg: what must look like background (the complement-target losses)
    lam          lambda in (0, 1)
    recon        x_hat = reconstruct_from_attention(lambda), the target of L_recon is x
    attention    with ``return_attention=True``: the captured maps by name (see ``GenerativeAttention``)
    kinds        beside ``attention``: each map's ``MapKind``
    """

    foreground: Tensor
    background: Tensor
    lam: Tensor
    recon: Tensor
    attention: dict[str, Tensor] | None
    kinds: dict[str, MapKind] | None


class GenerativeAttention(nn.Module):
    """GAF in front of the detector: the lambda head, the CVAE and the attended features (module docstring).

    feature_dim   D, features per step; must be a square (map_size^2), 4096 = 64^2
    hidden        hidden width of the lambda head and of the CVAE (default 256)
    kl_weight     beta of L_cvae (released 0.1)
    normalise     how the attended features are normalised: "video" (default), "batch", "none"
                  (see ``attended_features``)

    ``forward(x (B, D, T), mask (B, T), return_attention=False, generator=None)`` ->
    ``GenerativeAttentionOutput``. ``generator`` seeds the reconstruction's eps.

    Parameters at D = 4096, hidden = 256: 11,946,240 (lambda head 4,461,824, CVAE 7,484,416).

    Captured maps (``return_attention=True``), (B, T, S, S) and detached unless said otherwise:
      "GAF.lambda"          lambda, MapKind("step", (0, 1))
      "GAF.foreground", "GAF.background", "GAF.reconstruction"   MapKind("step", None)
      "GAF.lambda_mean"     (B, T): lambda averaged over each step's map, MapKind("curve", (0, 1))
    """

    def __init__(self, feature_dim: int = 4096, hidden: int = 256, kl_weight: float = 0.1,
                 normalise: Normalise = "video"):
        super().__init__()
        map_size = math.isqrt(feature_dim)
        if map_size * map_size != feature_dim:
            raise ValueError(f"feature_dim must be a square (one S x S map per step), got {feature_dim}")
        if normalise not in NORMALISE_MODES:
            raise ValueError(f"normalise must be one of {', '.join(NORMALISE_MODES)}, got {normalise!r}")
        self.map_size = map_size
        self.kl_weight = kl_weight
        self.normalise = normalise
        self.lambda_head = FrameAttention(feature_dim, hidden)
        self.cvae = ConditionalVAE(feature_dim, hidden)

    def attention_parameters(self) -> list[nn.Parameter]:
        """The lambda head's parameters: trained in the detector phase, frozen in the CVAE phase."""
        return list(self.lambda_head.parameters())

    def cvae_parameters(self) -> list[nn.Parameter]:
        """The CVAE's parameters: trained in the CVAE phase, frozen in the detector phase."""
        return list(self.cvae.parameters())

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        return_attention: bool = False,
        generator: torch.Generator | None = None,
    ) -> GenerativeAttentionOutput:
        """x (B, D, T), mask (B, T) bool -> ``GenerativeAttentionOutput`` (detector phase and inference)."""
        lam = self.lambda_head(x, mask)
        foreground, background = attended_features(x, lam, mask, self.normalise)
        recon = self.cvae.reconstruct_from_attention(lam, mask, generator)
        attention = kinds = None
        if return_attention:
            attention, kinds = self._captured_maps(lam, foreground, background, recon)
        return GenerativeAttentionOutput(foreground, background, lam, recon, attention, kinds)

    def cvae_step_loss(
        self, x: Tensor, mask: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """L_cvae of one batch in the CVAE phase: x (B, D, T), mask (B, T) -> (loss, {"recon", "kl"}).

        lambda is computed without gradient: in this phase only the CVAE learns (the released code's first pass).
        """
        with torch.no_grad():
            lam = self.lambda_head(x, mask)
        recon, mu, logvar = self.cvae(x, lam, mask, generator)
        return cvae_loss(x, recon, mu, logvar, lam, mask, self.kl_weight)

    def _captured_maps(
        self, lam: Tensor, foreground: Tensor, background: Tensor, recon: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, MapKind]]:
        """The maps of ``forward(return_attention=True)`` and their kinds (see the class docstring)."""
        def maps(t: Tensor) -> Tensor:  # (B, S*S, T) -> (B, T, S, S), detached
            return t.detach().transpose(1, 2).reshape(t.shape[0], t.shape[2], self.map_size, self.map_size)

        unbounded = MapKind("step", None)
        attention = {
            "GAF.lambda": maps(lam),
            "GAF.foreground": maps(foreground),
            "GAF.background": maps(background),
            "GAF.reconstruction": maps(recon),
            "GAF.lambda_mean": lam.detach().mean(dim=1),
        }
        kinds = {
            "GAF.lambda": MapKind("step", UNIT_RANGE),
            "GAF.foreground": unbounded,
            "GAF.background": unbounded,
            "GAF.reconstruction": unbounded,
            "GAF.lambda_mean": MapKind("curve", UNIT_RANGE),
        }
        return attention, kinds
