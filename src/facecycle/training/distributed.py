"""Process-group set-up for `torchrun` launches (single process when not launched by torchrun)."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist


@contextlib.contextmanager
def distributed_context() -> Iterator[tuple[int, int]]:
    """Yields (rank, world_size). Under torchrun (WORLD_SIZE > 1) initialises the default process
    group (NCCL on CUDA, gloo otherwise) and tears it down afterwards."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield 0, 1
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()
