"""Multi-process training with `torchrun` (DistributedDataParallel).

    torchrun --nproc-per-node N -m facecycle train --data-a A --data-b B --run-dir RUN ...
    python -m torch.distributed.run --nproc-per-node 2 -m facecycle train ...   # same thing

What happens (see also facecycle.training.loop.Trainer; every training mode runs this way):

* One process per device (NCCL on CUDA, `LOCAL_RANK` picks the GPU; gloo on CPU).
* Data: `UnpairedSampler` gives rank r the positions r, r + N, r + 2N, ... of the one global
  (seed, epoch) order, so N processes with batch B see exactly the images one process with
  batch N*B sees, and a batch still depends only on (seed, epoch, position).
* Conditional mode: `LabelledSampler` shards its one order the same way; G and D are wrapped;
  targets are drawn per rank (their seeds differ), so it is not equivalent to one process.
* The nets are wrapped in DistributedDataParallel: gradients are averaged across ranks in
  the backward pass. All CycleGAN losses are batch means, and instance norm works per image,
  so N ranks x batch B compute the same update as one process with batch N*B (checked by
  tests/training/test_distributed.py up to float rounding, with pool_size 0: the image pool draws its
  replays per rank, so with a pool the D batches differ -- by design, each rank keeps its
  own history of fakes).
* Generators run several forward passes before one backward (fake, reconstruction, identity):
  fine for DDP, as each parameter's gradient is accumulated once per backward. The
  discriminators are frozen during the G step; their plain modules are used there, so DDP
  never waits for gradients that do not come (no `find_unused_parameters` needed). The
  WGAN-GP penalty is computed on the plain D modules too: its double-backward graph ends in
  the same single backward, whose per-parameter DDP hooks average it (tested).
* model.norm=batch uses SyncBatchNorm on CUDA. On CPU (gloo) batch statistics stay per
  process (PyTorch's SyncBatchNorm is GPU-only); a warning says so.
* Only rank 0 writes checkpoints, stats.jsonl, samples and runs the evaluator. Every rank
  resumes from the same checkpoint; image pools and RNG states are rank 0's (the other ranks
  re-seed from seed + rank + step). A different process count (or batch size) on resume
  re-divides the remaining positions of the epoch from the global position count stored in
  the checkpoint (rounded down: a few images may be seen twice, none is skipped). Note: the
  global order of an epoch pads to a multiple of N, so when the larger domain's size is not
  divisible by the old and new N the rest of that epoch is in another (still deterministic)
  order.
* The non-finite-step flag is max-reduced over ranks so all ranks skip the same updates.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn


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


def wrap_ddp(nets: dict[str, nn.Module], device: torch.device) -> dict[str, nn.Module]:
    """DDP wrappers of `nets` (same keys). Rank 0's weights and buffers are broadcast to all
    ranks at construction, so every rank starts from identical networks."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return {name: DDP(net, device_ids=device_ids, broadcast_buffers=True, find_unused_parameters=False)
            for name, net in nets.items()}
