"""Training on several processes (DDP under ``torchrun``): where a process stands, collectives that carry
gradients, and BatchNorm over the global batch.

``torchrun --nproc_per_node 2 -m xcalab.cli train ...`` starts W processes (gloo on CPUs, NCCL on GPUs, one
GPU per process). ``batch_size`` stays the *global* batch: each process gets batch_size / W videos. Three
things make W processes compute the gradient of the same loss as one process would (``train.losses`` and
``train.loop`` use them):

- the loss normaliser counts the positive points of the whole global batch (``Distributed.sum``), and each
  process scales its detection loss by W, because DDP averages gradients over processes;
- the imagewise contrast gathers every process's foreground/background embeddings with their gradients
  (``gather_rows``), so every anchor sees every positive and negative of the global batch;
- SA's BatchNorm computes its statistics over the global batch (``GlobalBatchNorm2d``; PyTorch's
  ``SyncBatchNorm`` does not run on CPUs).

One part of the model learns only in some epochs: the ICon projection, in contrast epochs. DDP expects a
gradient for every parameter it holds in every step; ``find_unused_parameters=True`` would let it search the
autograd graph for the missing ones in *every* step (and warn in the steps where none is missing). Instead
DDP is told to leave those parameters alone (``occasional_parameters``), and ``Distributed.average_gradients``
averages their gradients over the processes after backward in the steps that have them, as DDP does for the
rest; in the steps without them they stay ``None``, exactly as in a one-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from xcalab.runtime import resolve_device


@dataclass
class Distributed:
    """Where this process stands: rank, world size, device; ``group`` carries the loss collectives.

    Built by ``Distributed.start`` from torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); a plain
    ``python`` run is rank 0 of 1. Collectives of the loss (positive counts, ICon gather, BatchNorm
    statistics) use their own process group, so they never interleave with DDP's gradient all-reduces.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    group: Any = None
    owns_process_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str = "auto") -> Distributed:
        """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA), or run alone."""
        resolved = resolve_device(device)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1 and not dist.is_initialized():
            return cls(device=resolved)
        owns = False
        if resolved.type == "cuda":
            resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(resolved)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
            owns = True
        group = dist.new_group(backend=dist.get_backend())
        return cls(dist.get_rank(), dist.get_world_size(), resolved, group, owns)

    def sum(self, tensor: Tensor) -> Tensor:
        """Sum of a (detached) tensor over processes; the tensor itself when alone."""
        if self.world_size == 1:
            return tensor.detach()
        total = tensor.detach().clone()
        dist.all_reduce(total, group=self.group)
        return total

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(group=self.group)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (e.g. the best epoch, which only rank 0 evaluates)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (for the RNG states in checkpoints)."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over the processes (sum / W, as DDP averages the others).

        A process without a gradient for them contributes zeros; when no process has one (a step that did not
        use them), they stay None on every process, as in a one-process run. One small all-reduce decides which.
        """
        if self.world_size == 1 or not params:
            return
        used = torch.tensor([float(any(p.grad is not None for p in params))], device=self.device)
        dist.all_reduce(used, group=self.group)
        if used.item() == 0:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat, group=self.group)
        flat /= self.world_size
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def broadcast_parameters(self, params: list[nn.Parameter]) -> None:
        """Rank 0's values of ``params`` on every process (DDP does this for the parameters it holds)."""
        if self.world_size == 1:
            return
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0, group=self.group)

    def close(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


#: Top-level sub-modules of the detector that learn only in some steps: the ICon projection (contrast epochs).
OCCASIONAL_MODULES = ("imagewise",)


def occasional_parameters(core: nn.Module) -> dict[str, nn.Parameter]:
    """name -> parameter of ``core``'s ``OCCASIONAL_MODULES`` (trainable ones): what DDP leaves alone."""
    return {name: p for name, p in core.named_parameters()
            if name.split(".", 1)[0] in OCCASIONAL_MODULES and p.requires_grad}


class _AllReduceSum(torch.autograd.Function):
    """y = sum over processes of x. Backward: every process's loss depends on y, so dL/dx = sum of dL_r/dy."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _AllGather(torch.autograd.Function):
    """(n, E) per process -> (W, n, E) stacked in rank order. Backward: the summed gradient of my slice."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad[dist.get_rank(ctx.group)], None


def gather_rows(x: Tensor, group: Any = None) -> Tensor:
    """Concatenate every process's rows (n_r, E) in rank order -> (sum n_r, E), with gradients.

    Processes may hold different numbers of rows: they are padded to the longest for the all-gather.
    """
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size(group))]
    dist.all_gather(counts, count, group=group)
    counts = [int(c) for c in counts]
    padded = F.pad(x, (0, 0, 0, max(counts) - x.shape[0]))
    stacked = _AllGather.apply(padded, group)
    return torch.cat([stacked[r, :n] for r, n in enumerate(counts)])


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole global batch, over all processes.

    Same parameters, buffers and evaluation as ``nn.BatchNorm2d`` (state dicts are interchangeable).
    In training, with W > 1 processes: mean = sum x / n and var = sum (x - mean)^2 / n over every
    process's maps (two all-reduces that carry gradients), computed in float32.
    """

    group: Any = None

    def forward(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) -> (N, C, H, W)."""
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(x)
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        xf = x.float()
        count = torch.full((1,), xf.numel() / max(xf.shape[1], 1), device=x.device)
        totals = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]), self.group)
        n = totals[-1]
        mean = totals[:-1] / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.group) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * n / (n - 1).clamp(min=1), alpha=m)
        return out.to(x.dtype)


def use_global_batchnorm(module: nn.Module, group: Any = None) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (in place) by a ``GlobalBatchNorm2d`` holding the
    same parameter and buffer tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            glob = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            glob.load_state_dict(child.state_dict())
            if child.affine:
                glob.weight, glob.bias = child.weight, child.bias
            glob.group = group
            glob.train(child.training)
            setattr(module, name, glob)
        else:
            use_global_batchnorm(child, group)
    return module
