"""Turning what a caller has (paths, a folder, tensors) into one image batch.

Every metric works on `(N, C, H, W)` float32 tensors in `[-1, 1]` with C = 1 or 3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from facecycle.data.images import list_images, load_image, pil_to_tensor
from facecycle.errors import DataError

#: A folder, a list of image paths, one `(N, C, H, W)` tensor or a list of `(C, H, W)` tensors.
Images = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], torch.Tensor, Sequence[torch.Tensor]]


def to_batch(images: Images, channels: int | None = None, size: tuple[int, int] | None = None, what: str = "images") -> torch.Tensor:
    """Load/stack `images` into `(N, C, H, W)` float32 in `[-1, 1]` on the CPU.

    channels: 1 or 3 to convert (grey is repeated to RGB; RGB is reduced with ITU-R 601-2
        luma, as PIL does); None keeps what the data has (files load as RGB).
    size: `(H, W)` to resize every image to (bilinear, antialiased); None requires all
        images to share one size and raises `DataError` otherwise.
    """
    if isinstance(images, (str, os.PathLike)):
        images = list_images(images, what)
    if isinstance(images, torch.Tensor):
        batch = images.detach().float().cpu()
        if batch.ndim == 3:
            batch = batch.unsqueeze(0)
        tensors = list(batch)
    else:
        items = list(images)
        if not items:
            raise DataError(f"no {what} given")
        tensors = [
            it.detach().float().cpu() if isinstance(it, torch.Tensor) else pil_to_tensor(load_image(Path(it), channels or 3))
            for it in items
        ]
    out = []
    for t in tensors:
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise DataError(f"{what}: expected (C, H, W) images with C = 1 or 3, got shape {tuple(t.shape)}")
        if channels is not None:
            t = convert_channels(t.unsqueeze(0), channels)[0]
        if size is not None and tuple(t.shape[-2:]) != tuple(size):
            t = F.interpolate(t.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        out.append(t)
    shapes = {tuple(t.shape) for t in out}
    if len(shapes) > 1:
        raise DataError(f"{what} have different sizes/channels {sorted(shapes)[:4]}; pass size=(H, W) to resize them")
    return torch.stack(out).clamp(-1, 1)


def convert_channels(batch: torch.Tensor, channels: int) -> torch.Tensor:
    """`(N, 1|3, H, W)` -> `(N, channels, H, W)`: grey repeated, RGB -> luma."""
    if batch.shape[1] == channels:
        return batch
    if channels == 3:
        return batch.repeat(1, 3, 1, 1)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch * weights).sum(1, keepdim=True)


def to_uint8_images(batch: torch.Tensor, channels: int = 3) -> list[np.ndarray]:
    """`(N, C, H, W)` in [-1, 1] -> list of `(H, W, channels)` (or `(H, W)` for 1) uint8 arrays."""
    batch = convert_channels(batch.detach().float().cpu().clamp(-1, 1), channels)
    arrays = ((batch + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(a[:, :, 0] if channels == 1 else a) for a in arrays]
