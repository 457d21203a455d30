"""Fixed held-out image samples for evaluation (deterministic: sorted files, evenly spaced)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from facecycle.data.images import load_image, pil_to_tensor, usable_images
from facecycle.data.transforms import TransformSpec, apply_transform


def pick_evenly(files: Sequence[Path], count: int) -> list[Path]:
    """`count` files spread evenly over the sorted list (all of them when there are fewer)."""
    if count <= 0 or count >= len(files):
        return list(files)
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def load_sample(folder: str | Path, count: int, size: int, channels: int, what: str) -> tuple[torch.Tensor, list[Path]]:
    """Up to `count` images of `folder`, resized to `size` x `size`: `(N, C, size, size)` in [-1, 1]."""
    files = pick_evenly(usable_images(folder, what), count)
    spec = TransformSpec(crop_size=size, train=False)
    tensors = [pil_to_tensor(apply_transform(load_image(p, channels), spec, None)[0]) for p in files]  # type: ignore[arg-type]
    return torch.stack(tensors), files
