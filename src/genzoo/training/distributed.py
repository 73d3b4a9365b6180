"""torch.distributed set-up for ``genzoo train`` under ``torchrun``: one process group for the run.

The trainer itself reads the group (``dist.is_initialized()``) and shards batches, all-reduces
gradients and evaluation sums, and lets rank 0 alone write; this module only joins and leaves.
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
