"""Training and evaluation transforms on PIL images (and their masks).

Randomness comes from an explicit `random.Random` seeded per item, so a sample depends only
on (seed, epoch, position): data loader workers and resumed runs see exactly the same crops.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from PIL import Image


@dataclass(frozen=True)
class TransformSpec:
    load_size: int = 286  # resize to load_size x load_size ...
    crop_size: int = 256  # ... then crop crop_size x crop_size
    flip: bool = True
    train: bool = True  # False: deterministic resize to crop_size, no flip


def apply_transform(
    image: Image.Image, spec: TransformSpec, rng: random.Random, mask: Optional[Image.Image] = None
) -> tuple[Image.Image, Optional[Image.Image]]:
    """Resize (+ random crop + flip when training). The mask gets the same geometry."""
    if not spec.train:
        size = (spec.crop_size, spec.crop_size)
        image = image.resize(size, Image.BICUBIC)
        mask = mask.resize(size, Image.BILINEAR) if mask is not None else None
        return image, mask
    size = (spec.load_size, spec.load_size)
    image = image.resize(size, Image.BICUBIC)
    if mask is not None:
        mask = mask.resize(size, Image.BILINEAR)
    if spec.load_size > spec.crop_size:
        x = rng.randint(0, spec.load_size - spec.crop_size)
        y = rng.randint(0, spec.load_size - spec.crop_size)
        box = (x, y, x + spec.crop_size, y + spec.crop_size)
        image = image.crop(box)
        mask = mask.crop(box) if mask is not None else None
    if spec.flip and rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.FLIP_LEFT_RIGHT) if mask is not None else None
    return image, mask
