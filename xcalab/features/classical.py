"""Vessel maps without learning: Frangi vesselness, raw intensity, and the simulator's truth (the oracle).

These are the baselines of the learned extractor, with the same contract: one map per frame, [N, H, W] ->
[N, H, W], larger where there is more opacified vessel.

**Frangi** (Frangi et al., MICCAI 1998). At scale sigma, the Hessian of the Gaussian-smoothed image has
eigenvalues ordered |l1| <= |l2|. A dark tube on a bright background is flat along the tube (l1 ~ 0) and
curved across it (l2 > 0), so

    R_B = |l1| / l2        (blobness: 0 for a line, 1 for a blob)
    S   = sqrt(l1^2 + l2^2)  (structureness: 0 on flat background)
    V_sigma = exp(-R_B^2 / (2 beta^2)) * (1 - exp(-S^2 / (2 c^2))),  0 where l2 <= 0 (a bright ridge)
    V = max over sigma of V_sigma

This module computes it with separable convolutions in torch, batched over frames, on any device. With
``scale_normalised=False`` and ``c=None`` it follows scikit-image's ``frangi(black_ridges=True)`` exactly
(unnormalised Gaussian-derivative Hessian; c = half the largest S of the first scale, per image), which the
unit tests check against scikit-image. ``frangi_maps``, the baseline feature, differs in two places on
purpose: the Hessian is scale-normalised (sigma^2 H, so thick vessels are not penalised), and c is one number
for the whole cine, so a frame without contrast is not stretched to look like an opacified one.

**Raw**: 1 - intensity. Iodine darkens the image (MONOCHROME2), so this is an attenuation-like map that
rises with contrast, like the others; average-pooled to 64 x 64 it is the "no vessel model" baseline.

**Oracle**: the simulator's opacified-vessel maps, the best any extractor could give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Frangi scales (pixels) of the baseline feature, for vessels 2-12 px wide at the extractor's working size.
FRANGI_SIGMAS = (1.0, 1.5, 2.0, 3.0)
#: Frangi's blobness sensitivity (scikit-image and Kroon use 0.5).
FRANGI_BETA = 0.5
#: Kernel half-width of the baseline, in units of sigma / sqrt(2) (scikit-image's 8-100 costs 2-20x more).
FRANGI_TRUNCATE = 4.0

# --------------------------------------------------------------------------------------------------
# Gaussian-derivative kernels and the Hessian
# --------------------------------------------------------------------------------------------------


def _gaussian_kernel(sigma: float, order: int, radius: int) -> np.ndarray:
    """Sampled Gaussian (order 0) or its first derivative (order 1) on [-radius, radius], as a convolution kernel.

    The order-0 kernel sums to one; the derivative kernel is -x / sigma^2 times it (the sampled analytic
    derivative, the way scipy.ndimage builds it).
    """
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    return g if order == 0 else -x / sigma**2 * g


def hessian_kernels(sigma: float, truncate: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D Gaussian (smoothing) and Gaussian-derivative kernels of the Hessian at scale sigma.

    Like scikit-image, each second derivative is two first-order Gaussian filters of width sigma / sqrt(2)
    (together a Gaussian of width sigma). ``truncate`` (kernel half-width in those widths) defaults to
    scikit-image's: 8 if sigma > 1 else 100.
    """
    truncate = (8.0 if sigma > 1 else 100.0) if truncate is None else truncate
    s = sigma / math.sqrt(2.0)
    radius = int(truncate * s + 0.5)
    return _gaussian_kernel(s, 0, radius), _gaussian_kernel(s, 1, radius)


def _reflect_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of [-pad, n + pad) folded into [0, n) the way scipy's 'reflect' does (d c b a | a b c d | d c b a)."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _filter_1d(x: Tensor, kernel: np.ndarray, dim: int) -> Tensor:
    """Convolve (N, H, W) along dim (1 = rows, 2 = columns) with a 1-D kernel, scipy 'reflect' borders."""
    pad = len(kernel) // 2
    index = _reflect_index(x.shape[dim], pad, x.device)
    padded = x.index_select(dim, index).unsqueeze(1)  # (N, 1, H', W')
    # conv2d correlates, so flip the kernel to convolve (it matters for the odd "dg" kernel).
    weight = torch.as_tensor(kernel[::-1].copy(), dtype=x.dtype, device=x.device)
    weight = weight.view(1, 1, -1, 1) if dim == 1 else weight.view(1, 1, 1, -1)
    return F.conv2d(padded, weight).squeeze(1)


def hessian(images: Tensor, sigma: float, truncate: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian-derivative Hessian (H_rr, H_rc, H_cc) of images (N, H, W) at scale sigma, each (N, H, W).

    Filters are applied one axis at a time, each with its own reflected border, in scipy's order (rows,
    then columns): first the gradient (derivative along one axis, smoothing along the other), then the
    same again on each gradient. Composing the kernels first would differ at the borders.
    """
    g, d = hessian_kernels(sigma, truncate)

    def gaussian(x: Tensor, derivative_dim: int) -> Tensor:
        x = _filter_1d(x, d if derivative_dim == 1 else g, 1)
        return _filter_1d(x, d if derivative_dim == 2 else g, 2)

    grad_r, grad_c = gaussian(images, 1), gaussian(images, 2)
    return gaussian(grad_r, 1), gaussian(grad_r, 2), gaussian(grad_c, 2)


def hessian_eigenvalues(h_rr: Tensor, h_rc: Tensor, h_cc: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (l1, l2) of the symmetric 2 x 2 Hessians, ordered |l1| <= |l2|, each (N, H, W)."""
    half_trace = (h_rr + h_cc) / 2
    root = torch.sqrt(((h_rr - h_cc) / 2) ** 2 + h_rc**2)
    big, small = half_trace + root, half_trace - root
    swap = small.abs() > big.abs()
    return torch.where(swap, big, small), torch.where(swap, small, big)


# --------------------------------------------------------------------------------------------------
# Frangi vesselness
# --------------------------------------------------------------------------------------------------


def frangi(
    images: Tensor,
    sigmas: Sequence[float] = (1, 3, 5, 7, 9),
    beta: float = FRANGI_BETA,
    c: float | None = None,
    scale_normalised: bool = False,
    truncate: float | None = None,
    strict: bool = False,
) -> Tensor:
    """Frangi vesselness of dark tubes, (N, H, W) -> (N, H, W) in [0, 1].

    Args:
        images: frames (N, H, W), dark vessels on a bright background.
        sigmas: Gaussian scales in pixels; the result is the maximum over them.
        beta: blobness sensitivity.
        c: structureness sensitivity. None: half the largest S of the first scale, per image (scikit-image);
            a number is used for every image and scale.
        scale_normalised: multiply the Hessian by sigma^2 (Lindeberg's normalisation; scikit-image does not).
        truncate: kernel half-width in units of sigma / sqrt(2); None follows scikit-image.
        strict: set V to 0 wherever l2 <= 0. scikit-image instead clips l2 to 1e-10 and relies on R_B
            becoming huge, which fails where l1 is (almost) exactly 0, e.g. across a perfectly straight
            bright line, which then answers like a dark vessel.

    With the defaults this matches ``skimage.filters.frangi(image, sigmas, black_ridges=True)``.
    """
    images = images.to(torch.float64 if images.dtype == torch.float64 else torch.float32)
    best = torch.zeros_like(images)
    gamma = None if c is None else torch.full((images.shape[0], 1, 1), float(c), dtype=images.dtype, device=images.device)
    for sigma in sigmas:
        l1, l2 = hessian_eigenvalues(*hessian(images, float(sigma), truncate))
        if scale_normalised:
            l1, l2 = l1 * sigma**2, l2 * sigma**2
        s = torch.sqrt(l1**2 + l2**2)
        if gamma is None:  # scikit-image sets it once, from the first scale, per image
            gamma = s.amax(dim=(1, 2), keepdim=True) / 2
            gamma = torch.where(gamma == 0, torch.ones_like(gamma), gamma)
        # A bright ridge (l2 <= 0) is not a dark vessel: clipping l2 makes R_B huge and V_sigma 0.
        r_b = l1.abs() / l2.clamp_min(1e-10)
        v = torch.exp(-(r_b**2) / (2 * beta**2)) * (1 - torch.exp(-(s**2) / (2 * gamma**2)))
        if strict:
            v = torch.where(l2 > 0, v, torch.zeros_like(v))
        best = torch.maximum(best, v)
    return best


def frangi_structureness_scale(images: Tensor, sigmas: Sequence[float] = FRANGI_SIGMAS) -> float:
    """One c for a whole cine: half the largest scale-normalised S over all its frames (N, H, W) and scales."""
    peak = 0.0
    for sigma in sigmas:
        l1, l2 = hessian_eigenvalues(*hessian(images, float(sigma), FRANGI_TRUNCATE))
        peak = max(peak, float(torch.sqrt(l1**2 + l2**2).amax()) * sigma**2)
    return peak / 2 if peak > 0 else 1.0


def frangi_maps(
    frames: Tensor, sigmas: Sequence[float] = FRANGI_SIGMAS, beta: float = FRANGI_BETA, c: float | None = None
) -> Tensor:
    """The Frangi baseline's vessel maps: (N, H, W) frames in [0, 1] -> (N, H, W) vesselness in [0, 1].

    Scale-normalised Hessian, strict polarity (only dark tubes), kernels truncated at FRANGI_TRUNCATE; ``c`` defaults to ``frangi_structureness_scale`` of these frames (one number
    for the whole cine, so pass all frames of a cine at once, or pass c).
    """
    if c is None:
        c = frangi_structureness_scale(frames, sigmas)
    return frangi(frames, sigmas, beta=beta, c=c, scale_normalised=True, truncate=FRANGI_TRUNCATE, strict=True)


# --------------------------------------------------------------------------------------------------
# Raw intensity and the oracle
# --------------------------------------------------------------------------------------------------


def raw_maps(frames: Tensor) -> Tensor:
    """1 - intensity: (N, H, W) frames in [0, 1] -> (N, H, W) in [0, 1], larger where the image is darker."""
    return 1.0 - frames


def oracle_maps(vessel_maps: np.ndarray, index: Sequence[int] | np.ndarray) -> Tensor:
    """The simulator's true opacified-vessel maps of frames ``index``: [N, H, W] -> (len(index), H, W)."""
    return torch.from_numpy(np.ascontiguousarray(vessel_maps[np.asarray(index)], dtype=np.float32))
