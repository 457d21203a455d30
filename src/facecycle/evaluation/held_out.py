"""Fixed held-out image samples for evaluation (deterministic: sorted files, evenly spaced)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch

from facecycle.data.images import load_image, pil_to_tensor, usable_images
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.errors import DataError


def pick_evenly(files: Sequence[Path], count: int) -> list[Path]:
    """`count` files spread evenly over the sorted list (all of them when there are fewer)."""
    if count <= 0 or count >= len(files):
        return list(files)
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def load_sample(folder: str | Path, count: int, size: int, channels: int, what: str) -> tuple[torch.Tensor, list[Path]]:
    """Up to `count` images of `folder`, resized to `size` x `size`: `(N, C, size, size)` in [-1, 1].

    A file that passes the cheap header check but fails to decode (a truncated JPEG) is skipped
    with a warning naming it and the reason, as training and translation do; an unused file of
    the folder takes its place."""
    return load_files(usable_images(folder, what), count, size, channels, what, str(folder))


def load_files(files: Sequence[Path], count: int, size: int, channels: int, what: str,
               source: str = "") -> tuple[torch.Tensor, list[Path]]:
    """Like `load_sample`, from a sorted list of image files (e.g. a labels table's paths):
    `(N, C, size, size)` in [-1, 1] and the files used. `source` names them in messages."""
    usable = list(files)
    if not usable:
        raise DataError(f"{what} {source}: no image files to sample from")
    picked = pick_evenly(usable, count)
    chosen = set(picked)
    spare = [p for p in usable if p not in chosen]
    spec = TransformSpec(crop_size=size, train=False)
    tensors, used, skipped = [], [], []
    queue = list(picked)
    while queue:
        path = queue.pop(0)
        try:
            image = load_image(path, channels)
        except DataError as exc:
            skipped.append(str(exc))
            if spare:
                queue.append(spare.pop(0))
            continue
        tensors.append(pil_to_tensor(apply_transform(image, spec, None)[0]))  # type: ignore[arg-type]
        used.append(path)
    if skipped:
        warnings.warn(f"{what} {source}: skipped {len(skipped)} unreadable image(s): " + "; ".join(skipped[:5]),
                      stacklevel=2)
    if not tensors:
        raise DataError(f"{what} {source} contains no image that can be decoded")
    return torch.stack(tensors), used
