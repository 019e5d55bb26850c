"""Probes of the image-to-patch contrast (seed paper Sec. III-E, III-F): what the figures of
``xcalab.viz.contrast`` draw, computed.

    pca_2d(embeddings)                 embeddings -> 2-D (principal components), with the explained variance
    cosine_summary(foreground, background)   mean cosine similarities within and between the two groups (what
                                       eq. 10 reads)
    patch_of(step0_map, centre)        the 5 x 5 patch PCon correlates with every step
    contrast_embeddings(detector, dataset)   g(Y * A) and g(Y * (1 - A)) at every step of every true passage
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from xcalab.data.dataset import FeatureDataset, collate
from xcalab.models.contrastive import foreground_background
from xcalab.runtime import as_array


class Projection2D(NamedTuple):
    """Embeddings seen in 2-D: ``points`` (N, 2) and the share of the variance each axis explains (2,)."""

    points: np.ndarray
    explained: np.ndarray


def pca_2d(embeddings, normalise: bool = True) -> Projection2D:
    """(N, E) embeddings -> their first two principal components, ``Projection2D`` with points (N, 2).

    ``normalise`` scales every row to unit length first: eq. 10 compares directions only (cosines), so
    lengths would only blur the picture. Plain SVD of the centred rows (deterministic); each axis's sign is
    fixed so that its largest coordinate is positive.
    """
    x = as_array(embeddings, 2, "embeddings", "(N, E)", np.float64)
    if x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"need at least 2 embeddings of at least 2 dimensions, got {x.shape}")
    if normalise:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    points = x @ vt[:2].T
    if points.shape[1] < 2:  # only one direction of spread
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    flip = np.sign(points[np.abs(points).argmax(axis=0), [0, 1]])
    points = points * np.where(flip == 0, 1.0, flip)
    variance = s**2
    explained = np.pad(variance[:2], (0, max(0, 2 - len(variance)))) / max(float(variance.sum()), 1e-30)
    return Projection2D(points, explained)


def cosine_summary(foreground, background) -> dict[str, float]:
    """Mean cosine similarity within the foreground, within the background and between them.

    foreground (N, E), background (M, E). Pairs of a vector with itself are left out. Eq. 10 wants
    "fg–fg" high and "fg–bg" low; equal values mean the projection does not tell the two apart.
    """
    u = as_array(foreground, 2, "foreground", "(N, E)", np.float64)
    d = as_array(background, 2, "background", "(M, E)", np.float64)
    if u.shape[1] != d.shape[1]:
        raise ValueError(f"foreground and background need one embedding size, got {u.shape} and {d.shape}")
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)

    def mean_off_diagonal(a: np.ndarray) -> float:
        n = len(a)
        return float(((a @ a.T).sum() - n) / (n * (n - 1))) if n > 1 else float("nan")

    return {"fg–fg": mean_off_diagonal(u), "bg–bg": mean_off_diagonal(d), "fg–bg": float((u @ d.T).mean())}


def patch_of(step0_map, centre: Sequence[int], patch_size: int = 5) -> np.ndarray:
    """The (patch_size, patch_size) kernel PCon cuts from a [S, S] step-0 map around ``centre`` (row, col)."""
    m = as_array(step0_map, 2, "step0_map", "[S, S]")
    half = patch_size // 2
    r, c = (int(v) for v in centre)
    if patch_size % 2 != 1 or not (half <= r < m.shape[0] - half and half <= c < m.shape[1] - half):
        raise ValueError(f"a {patch_size} x {patch_size} patch at {(r, c)} does not fit a {m.shape} map (odd sizes only)")
    return m[r - half : r + half + 1, c - half : c + half + 1]


@torch.no_grad()
def contrast_embeddings(detector: nn.Module, dataset: FeatureDataset) -> tuple[Tensor, Tensor]:
    """The imagewise contrast's embeddings of every cine of ``dataset``, as eq. 10 would compare them:
    (g(Y * A), g(Y * (1 - A))), each (N, E) on the CPU, one row per feature step inside the true passage
    [start, end] of each cine (steps between the first and the last segment bound), cine after cine.

    ``detector`` runs as it is (train mode: BatchNorm on the batch's statistics; eval mode: running ones).
    """
    device = next(detector.parameters()).device
    fg, bg = [], []
    for i in range(len(dataset)):
        item = dataset.video(i)
        batch = collate([item]).to(device)
        lt = detector.long_term(batch.features, batch.mask)
        fore, back = foreground_background(lt.residual[0], lt.attention[0])  # (4096, T) each
        first, last = item.segments.min().item(), item.segments.max().item()
        inside = [t for t in range(item.features.shape[1]) if first <= t <= last]
        fg.append(detector.imagewise.projection(fore[:, inside].T))
        bg.append(detector.imagewise.projection(back[:, inside].T))
    return torch.cat(fg).cpu(), torch.cat(bg).cpu()
