"""torch.distributed set-up for ``genzoo train`` under ``torchrun``: one process group for the run.

The trainer itself reads the group (``dist.is_initialized()``) and shards batches, all-reduces
gradients and evaluation sums, and lets rank 0 alone write; this module joins and leaves, and holds the two
collective helpers a step and a checkpoint need beyond DistributedDataParallel.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int, int | None]:
    """Join the torchrun process group, if launched by torchrun. Returns (rank, world, local_rank)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), local


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def finish(world: int) -> None:
    if world > 1:
        dist.destroy_process_group()


def average_gradients(params: list, world: int) -> None:
    """Average the gradients of ``params`` over the ranks, as DistributedDataParallel does for a loss computed
    through it: for an update whose loss a model's ``training_step`` computed itself (a GAN's two players). A
    parameter without a gradient counts as zeros, so that every rank reduces the same buffer."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p)  # views of the one reduced buffer, as DDP's buckets are


def gather_objects(obj, world: int) -> list:
    """Every rank's ``obj`` in rank order, on every rank (``[obj]`` in one process)."""
    if world <= 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module, world: int) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank, as DistributedDataParallel broadcasts them
    before each forward through it: for a model whose training_step computes its losses itself."""
    if world > 1:
        for b in module.buffers():
            dist.broadcast(b, 0)
