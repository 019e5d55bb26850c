"""Probes of the short-term attention: what the transformer pyramid computes, taken apart for looking at.

No figures (``xcalab.viz.short_term`` draws them); pure functions of their inputs:

    band_to_dense(weights, w)                 (..., T, 2w+1) band weights -> (..., T, T) matrices
    dense_attention(q, k, v, qm, km, w)       plain T x T softmax attention, optionally band-masked: the O(T^2) way
    attention_inputs(model, x, mask, block)   the scaled queries, keys and values one attention block computes
    allocated_megabytes(fn)                   what a call allocates (a dispatch-mode counter)
    time_attention(steps, w, ...)             seconds and allocated megabytes of local vs dense attention
    parameter_counts(detector)                trainable parameters per part of a detector

The pyramid (``xcalab.models.short_term``) stores local attention as *band* weights: for block
"level{l}.block{j}" an array (heads, T_l, 2w + 1) whose entry [h, t, j] is the weight query t gives key
t - w + j. ``band_to_dense`` puts them back into the (T_l, T_l) matrix a dense transformer would have.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from xcalab.models.short_term import LocalMultiHeadAttention, local_attention


def band_to_dense(weights, half_window: int):
    """Expand local-attention band weights (..., T, 2w + 1) into dense matrices (..., T, T).

    Entry j of query t's window is key s = t - w + j (as ``xcalab.models.local_attention`` returns them);
    it lands at [..., t, s]. Keys outside [0, T) do not exist and must carry zero weight (ValueError
    otherwise: the array is then not the band of a T-step sequence). Everything outside the band stays 0.
    Accepts a torch Tensor (returns one, same dtype and device) or anything numpy reads (returns numpy).
    """
    as_numpy = not isinstance(weights, Tensor)
    w = torch.as_tensor(np.asarray(weights)) if as_numpy else weights
    size = 2 * half_window + 1
    if half_window < 0 or w.dim() < 2 or w.shape[-1] != size:
        raise ValueError(f"weights must be (..., T, 2w + 1) = (..., T, {size}) for w = {half_window}, "
                         f"got shape {tuple(w.shape)}")
    steps = w.shape[-2]
    query = torch.arange(steps, device=w.device)[:, None].expand(steps, size)
    key = query - half_window + torch.arange(size, device=w.device)[None, :]  # (T, 2w+1)
    inside = (key >= 0) & (key < steps)
    if bool((w[..., ~inside] != 0).any()):
        raise ValueError("weights give mass to keys outside [0, T): not the band weights of a T-step sequence")
    dense = w.new_zeros(*w.shape[:-1], steps)
    dense[..., query[inside], key[inside]] = w[..., inside]
    return dense.numpy() if as_numpy else dense


def dense_attention(
    q: Tensor, k: Tensor, v: Tensor, query_mask: Tensor, key_mask: Tensor, half_window: int | None = None
) -> tuple[Tensor, Tensor]:
    """Plain T x T softmax attention, the O(T^2) way: logits q k^T, masked, softmax over all keys.

    q, k, v      (B, H, T, d), q already scaled by 1 / sqrt(d) (as ``local_attention`` takes them)
    query_mask   (B, T) bool: padded queries get all-zero weights and output
    key_mask     (B, T) bool: padded keys get weight 0
    half_window  None: every query sees every key (dense attention); w: only keys |t - s| <= w, which gives
                 exactly ``local_attention``'s result, but builds the whole T x T matrix to do it

    -> output (B, H, T, d) and weights (B, H, T, T)
    """
    steps = q.shape[2]
    allowed = key_mask[:, None, None, :]  # (B, 1, 1, T)
    if half_window is not None:
        t = torch.arange(steps, device=q.device)
        allowed = allowed & ((t[:, None] - t[None, :]).abs() <= half_window)
    logits = (q @ k.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    # A query with no allowed key has a row of -inf: softmax gives NaN there, which becomes 0.
    weights = logits.softmax(dim=-1).nan_to_num(0.0) * query_mask[:, None, :, None]
    return weights @ v, weights


class AttentionInputs(NamedTuple):
    """What one ``LocalMultiHeadAttention`` block attends with.

    q      (B, H, T', d) queries, already scaled by 1 / sqrt(d)
    k, v   (B, H, T', d) keys and values
    mask   (B, T') bool, True at valid steps (T' = T, or ceil(T / 2) for a downsampling block)
    """

    q: Tensor
    k: Tensor
    v: Tensor
    mask: Tensor


def block_level(name: str) -> tuple[int, int]:
    """"transformer/level2.block0" or "level2.block0" -> (2, 0)."""
    match = re.fullmatch(r"(?:transformer/)?level(\d+)\.block(\d+)", name)
    if not match:
        raise ValueError(f"not an attention block name: {name!r} (expected 'level<l>.block<j>')")
    return int(match.group(1)), int(match.group(2))


def _attention_module(pyramid: nn.Module, block: str) -> LocalMultiHeadAttention:
    level, j = block_level(block)
    blocks = pyramid.stem if level == 0 else pyramid.branch
    index = j if level == 0 else level - 1
    if (level > 0 and j != 0) or index >= len(blocks):
        raise ValueError(f"this pyramid has no block {block!r} ({len(pyramid.stem)} stem blocks, "
                         f"{len(pyramid.branch)} downsampling blocks)")
    return blocks[index].attention


@torch.no_grad()
def attention_inputs(
    model: nn.Module, features: Tensor, mask: Tensor, block: str = "level0.block0",
    generator: torch.Generator | None = None,
) -> AttentionInputs:
    """The queries, keys and values the attention of ``block`` computes when ``model`` reads ``features``.

    model      a ``KeyframeDetector`` (its ``.pyramid`` is used) or a ``TransformerPyramid``
    features   (B, 4096, T); mask (B, T) bool
    block      "level0.block0", "level0.block1" (stem) or "level<l>.block0" (the downsampling block of level l);
               the "transformer/" prefix of the detector's attention names is accepted
    generator  passed to the detector (it seeds PCon's random patch, so use the one the maps came from)

    Runs the model once, catches the block's input with a forward pre-hook, then asks the block for its
    q / k / v (``LocalMultiHeadAttention.queries_keys_values``). Feeding them to ``local_attention``
    reproduces the block's attention weights exactly.
    """
    pyramid = getattr(model, "pyramid", model)
    module = _attention_module(pyramid, block)
    caught: dict[str, Tensor] = {}

    def catch(_module, args):
        caught["x"], caught["mask"] = args[0], args[1]

    handle = module.register_forward_pre_hook(catch)
    try:
        if pyramid is model:
            model(features, mask)
        else:
            model(features, mask, generator=generator)
    finally:
        handle.remove()
    return AttentionInputs(*module.queries_keys_values(caught["x"], caught["mask"]))


class _AllocationCounter(TorchDispatchMode):
    """Adds up the bytes of every new tensor storage the torch operations inside the ``with`` create.

    Views (unfold, transpose) and in-place results share an input's storage and are not counted. The sum
    is the memory one call allocates in total (an upper bound of its peak), measured from the real tensors.
    """

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and t.untyped_storage().data_ptr() not in seen:
                seen.add(t.untyped_storage().data_ptr())
                self.bytes += t.untyped_storage().nbytes()
        return out


def allocated_megabytes(fn: Callable[[], object]) -> float:
    """Megabytes (2^20 bytes) of tensor storage that one call of ``fn()`` allocates, views not counted."""
    counter = _AllocationCounter()
    with counter:
        fn()
    return counter.bytes / 2**20


@torch.no_grad()
def time_attention(
    steps: Sequence[int],
    half_window: int = 2,
    n_heads: int = 4,
    head_dim: int = 32,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict]:
    """Time and memory of the model's ``local_attention`` and of ``dense_attention`` (band-masked, same result).

    For every T in ``steps`` one video of random q, k, v (1, n_heads, T, head_dim) is drawn (seeded); each
    method runs once to warm up, then ``repeats`` times under ``time.perf_counter``. Returns one record per
    (T, method): {"steps": T, "method": "local" | "dense", "seconds": median wall time of a call,
    "megabytes": tensor storage one call allocates (``allocated_megabytes``)}.

    A measurement on the current machine, for a teaching figure: wall times suffer when other programs
    share the CPU, and timings the project quotes belong in ``benchmarks/``, not here.
    """
    if not steps or min(steps) < 1 or repeats < 1:
        raise ValueError(f"need steps >= 1 and repeats >= 1, got steps={list(steps)}, repeats={repeats}")
    generator = torch.Generator().manual_seed(seed)
    results = []
    for n in steps:
        q, k, v = (torch.randn(1, n_heads, n, head_dim, generator=generator) for _ in range(3))
        mask = torch.ones(1, n, dtype=torch.bool)
        inputs = (q / math.sqrt(head_dim), k, v, mask, mask, half_window)
        for method, attend in (("local", local_attention), ("dense", dense_attention)):
            fn = partial(attend, *inputs)
            fn()  # warm-up: first calls pay for allocations and dispatch caches
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                seconds.append(time.perf_counter() - start)
            results.append({"steps": int(n), "method": method, "seconds": statistics.median(seconds),
                            "megabytes": allocated_megabytes(fn)})
    return results


def parameter_counts(detector: nn.Module) -> dict[str, int]:
    """Trainable parameters of each part of a ``KeyframeDetector``, in the order the features flow.

    -> {"long-term attention", "ICon projection", "PCon", "embedding", "stem transformers",
    "downsampling transformers", "level norms", "classification head", "regression head"}: int each
    (0 for a part that is switched off).
    """
    def count(module: nn.Module | None) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters() if p.requires_grad)

    pyramid = detector.pyramid
    return {
        "long-term attention": count(detector.long_term),
        "ICon projection": count(detector.imagewise),
        "PCon": count(detector.patchwise),
        "embedding": count(pyramid.embedding),
        "stem transformers": count(pyramid.stem),
        "downsampling transformers": count(pyramid.branch),
        "level norms": count(pyramid.level_norms),
        "classification head": count(detector.cls_head),
        "regression head": count(detector.reg_head),
    }
