"""Unpaired two-domain dataset and its deterministic, resumable sampler.

An epoch has max(|A|, |B|) positions. Position i pairs the i-th entry of a shuffled,
repeated list of A with the i-th entry of an independent one of B, so every image of the
smaller domain is seen about equally often and pairs change every epoch. The order depends
only on (seed, epoch): a resumed run skips the positions already consumed and continues with
the very same samples it would have seen.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from facecycle.data.images import load_image, pil_to_tensor, usable_images
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.errors import DataError

MASK_SUFFIX = ".png"


def mask_path_for(image: Path, image_root: Path, mask_root: Path) -> Path:
    """Masks mirror the image tree: masks_root/<same relative folder>/<same stem>.png."""
    return (mask_root / image.relative_to(image_root)).with_suffix(MASK_SUFFIX)


class Domain:
    """The usable images of one folder, with optional masks of the same relative names."""

    def __init__(self, root: str | Path, name: str, mask_root: str | Path | None = None) -> None:
        self.root = Path(root)
        self.name = name
        self.files = usable_images(self.root, f"domain {name} folder")
        self.mask_root = Path(mask_root) if mask_root else None
        if self.mask_root is not None:
            if not self.mask_root.is_dir():
                raise DataError(f"mask folder for domain {name} does not exist: {self.mask_root}")
            missing = [p for p in self.files if not mask_path_for(p, self.root, self.mask_root).is_file()]
            if missing:
                raise DataError(
                    f"{len(missing)} image(s) of domain {name} have no mask in {self.mask_root} "
                    f"(expected e.g. {mask_path_for(missing[0], self.root, self.mask_root)}); "
                    "masks must mirror the image folder with the same stems as .png "
                    "(`facecycle prepare faces --masks` writes them that way)"
                )

    def __len__(self) -> int:
        return len(self.files)

    def mask(self, index: int) -> Optional[Image.Image]:
        if self.mask_root is None:
            return None
        return load_image(mask_path_for(self.files[index], self.root, self.mask_root), channels=1)


def item_seed(seed: int, epoch: int, position: int) -> int:
    return (seed * 1_000_003 + epoch) * 10_000_019 + position


class UnpairedDataset(Dataset):
    """Items are looked up by `(index_a, index_b, seed)` tuples from `UnpairedSampler`.

    Returns a dict with `a`, `b`: `(C, S, S)` float in [-1, 1]; and `mask_a`, `mask_b`:
    `(1, S, S)` in [0, 1] when the domain has masks.
    """

    def __init__(self, domain_a: Domain, domain_b: Domain, channels: int, spec: TransformSpec) -> None:
        self.domains = {"a": domain_a, "b": domain_b}
        self.channels = channels
        self.spec = spec
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return max(len(d) for d in self.domains.values())

    def _load(self, key: str, index: int, rng: random.Random) -> dict[str, torch.Tensor]:
        domain = self.domains[key]
        # A file that passed the header check can still fail to decode; substitute the next one.
        for attempt in range(len(domain)):
            i = (index + attempt) % len(domain)
            try:
                image = load_image(domain.files[i], self.channels)
                mask = domain.mask(i)
                break
            except DataError as exc:
                if domain.files[i] not in self._warned:
                    self._warned.add(domain.files[i])
                    warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
        else:
            raise DataError(f"no image of domain {domain.name} in {domain.root} could be decoded")
        image, mask = apply_transform(image, self.spec, rng, mask)
        out = {key: pil_to_tensor(image)}
        if mask is not None:
            out[f"mask_{key}"] = (pil_to_tensor(mask) + 1.0) / 2.0
        return out

    def __getitem__(self, item: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        index_a, index_b, seed = item
        rng = random.Random(seed)
        out = self._load("a", index_a, rng)
        out.update(self._load("b", index_b, rng))
        return out


def _repeated_permutation(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    reps = -(-length // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:length]


class UnpairedSampler(Sampler):
    """Yields `(index_a, index_b, item_seed)` for one epoch, from position `start` on.

    With `world_size` > 1 each rank takes every world_size-th position of the same global order
    (padded by wrapping so all ranks yield the same count), like DistributedSampler.
    """

    def __init__(self, len_a: int, len_b: int, seed: int, epoch: int = 0, start: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.len_a, self.len_b = len_a, len_b
        self.seed, self.epoch, self.start = seed, epoch, start
        self.rank, self.world_size = rank, world_size

    @property
    def epoch_length(self) -> int:
        """Positions per rank in one epoch."""
        return -(-max(self.len_a, self.len_b) // self.world_size)

    def __len__(self) -> int:
        return max(self.epoch_length - self.start, 0)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        total = self.epoch_length * self.world_size
        rng = np.random.default_rng([self.seed, self.epoch])
        order_a = _repeated_permutation(self.len_a, total, rng)
        order_b = _repeated_permutation(self.len_b, total, rng)
        for local in range(self.start, self.epoch_length):
            position = local * self.world_size + self.rank
            yield int(order_a[position]), int(order_b[position]), item_seed(self.seed, self.epoch, position)
