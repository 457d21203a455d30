"""Pre-resized uint8 image caches: decode once, then train without PIL.

`facecycle prepare cache --input DIR --output faces_a.npy --size 286` writes

    faces_a.npy          (N, S, S, C) uint8, a plain NumPy .npy file (read as a memory map)
    faces_a.masks.npy    (N, S, S, 1) uint8, only with --masks
    faces_a.json         index: format, version, size, channels, count, source root, relative
                         file names (row i of the array is files[i]), masks file name or null

The index is written last (atomically), so a cache with an index is complete. Training reads
rows straight from the memory map: a 200k-image cache is never loaded into RAM, only the rows
of the current batch are copied (the OS page cache does the rest).

Each image is resized with PIL's bicubic filter to S x S exactly as the folder pipeline resizes
to `data.load_size`, so with `--size` equal to the training `load_size` a batch read from the
cache is *bit-identical* to the batch the folder pipeline produces: the random crop offsets and
flips are drawn from the same per-item `random.Random(item_seed(seed, epoch, position))` in the
same order (see `facecycle.data.transforms.apply_transform`). Exact-resume semantics are thus
the same as for folders: a batch depends only on (seed, epoch, position).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from facecycle.data.images import list_images, load_image
from facecycle.data.transforms import TransformSpec
from facecycle.data.unpaired import MASK_SUFFIX, UnpairedSampler, mask_path_for
from facecycle.errors import DataError

CACHE_FORMAT = "facecycle-image-cache"
CACHE_VERSION = 1


def index_path(array_path: str | Path) -> Path:
    return Path(array_path).with_suffix(".json")


def masks_path(array_path: str | Path) -> Path:
    p = Path(array_path)
    return p.with_name(p.stem + ".masks.npy")


def is_cache(path: str | Path | None) -> bool:
    """True for a `.npy` cache file (or its `.json` index)."""
    if not path:
        return False
    p = Path(path)
    return p.suffix.lower() in (".npy", ".json") and p.is_file()


def _decode(job: tuple[str, Optional[str], int, int]) -> tuple[Optional[np.ndarray], Optional[np.ndarray], str]:
    """Worker: one file -> (H, W, C) uint8 resized image, optional (H, W, 1) mask, error text."""
    path, mask, size, channels = job
    try:
        image = load_image(path, channels).resize((size, size), Image.BICUBIC)
        array = np.asarray(image, dtype=np.uint8).reshape(size, size, channels)
        mask_array = None
        if mask is not None:
            m = load_image(mask, 1).resize((size, size), Image.BILINEAR)
            mask_array = np.asarray(m, dtype=np.uint8).reshape(size, size, 1)
        return array, mask_array, ""
    except DataError as exc:
        return None, None, str(exc)


def build_cache(input_dir: str | Path, output: str | Path, size: int, channels: int = 3,
                masks: str | Path | None = None, workers: int = 0,
                progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """Decode every image below `input_dir`, resize to `size`² (PIL bicubic), store as uint8.

    Unreadable files are left out and listed in the returned index under `skipped`. Memory use
    is constant (rows are written into the memory-mapped output as they are decoded). Returns
    the index dict (also written to `index_path(output)`).
    """
    root = Path(input_dir)
    out = Path(output)
    if out.suffix.lower() != ".npy":
        raise DataError(f"cache output must end in .npy, got {out}")
    if size < 16:
        raise DataError(f"cache size must be >= 16 px, got {size}")
    files = list_images(root, "input folder")
    if not files:
        raise DataError(f"no image found in {root}")
    mask_root = Path(masks) if masks else None
    if mask_root is not None and not mask_root.is_dir():
        raise DataError(f"mask folder does not exist: {mask_root}")
    jobs = []
    for f in files:
        m = mask_path_for(f, root, mask_root) if mask_root is not None and root.is_dir() else None
        if m is not None and not m.is_file():
            raise DataError(f"{f} has no mask {m} ({MASK_SUFFIX} files mirroring the image folder are expected)")
        jobs.append((str(f), str(m) if m is not None else None, size, channels))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_images = out.with_name(f".{out.name}.tmp.npy")
    tmp_masks = masks_path(out).with_name(f".{masks_path(out).name}.tmp.npy")
    images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8, shape=(len(files), size, size, channels))
    mask_rows = (np.lib.format.open_memmap(tmp_masks, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 1))
                 if mask_root is not None else None)
    kept: list[str] = []
    skipped: list[list[str]] = []
    n_workers = workers if workers > 0 else min(os.cpu_count() or 1, 8)
    try:
        results: Iterator = (map(_decode, jobs) if n_workers == 1 else
                             ProcessPoolExecutor(n_workers).map(_decode, jobs, chunksize=16))
        for i, (job, (array, mask_array, error)) in enumerate(zip(jobs, results)):
            if array is None:
                skipped.append([job[0], error])
            else:
                images[len(kept)] = array
                if mask_rows is not None:
                    mask_rows[len(kept)] = mask_array
                kept.append(Path(job[0]).relative_to(root).as_posix() if root.is_dir() else Path(job[0]).name)
            if progress is not None:
                progress(i + 1, len(jobs))
        if not kept:
            raise DataError(f"none of the {len(files)} images in {root} could be decoded")
        images.flush()
        del images
        os.replace(tmp_images, out)
        if mask_rows is not None:
            mask_rows.flush()
            del mask_rows
            os.replace(tmp_masks, masks_path(out))
    except BaseException:
        tmp_images.unlink(missing_ok=True)
        tmp_masks.unlink(missing_ok=True)
        raise
    index = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "size": size, "channels": channels,
             "count": len(kept), "root": str(root.resolve()), "resize": "PIL bicubic (masks: bilinear)",
             "files": kept, "masks": masks_path(out).name if mask_root is not None else None,
             "skipped": skipped}
    fd, tmp = tempfile.mkstemp(prefix=f".{index_path(out).name}.", dir=out.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(index, fh)
    os.replace(tmp, index_path(out))
    return index


def load_rows(path: Path, count: int) -> np.ndarray:
    """The first `count` rows of a cache array, memory-mapped; data only (no pickled objects):
    anything but a uint8 array is refused with a DataError that says to rebuild the cache."""
    try:
        rows = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cache {path} is not a uint8 image array written by `facecycle prepare cache` ({exc}); "
                        "rebuild it") from None
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 4:
        raise DataError(f"cache {path} holds {getattr(rows, 'dtype', type(rows).__name__)} data of shape "
                        f"{getattr(rows, 'shape', '?')}, not (N, S, S, C) uint8 images; rebuild it with "
                        "`facecycle prepare cache`")
    return rows[:count]


class CachedDomain:
    """One domain read from a cache: `images` is an `(N, S, S, C)` uint8 memory map.

    Has the `name`, `root`, `files` and `len()` of `facecycle.data.unpaired.Domain` so the rest
    of the trainer (fixed samples, evaluation) can treat it the same way.
    """

    def __init__(self, path: str | Path, name: str) -> None:
        p = Path(path)
        if p.suffix.lower() == ".json":
            p = p.with_suffix(".npy")
        idx = index_path(p)
        if not p.is_file() or not idx.is_file():
            raise DataError(f"domain {name}: cache {p} (with its index {idx.name}) not found; "
                            "write it with `facecycle prepare cache --input DIR --output FILE.npy --size S`")
        try:
            self.index = json.loads(idx.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"cache index {idx} is not valid JSON: {exc}") from None
        if self.index.get("format") != CACHE_FORMAT or self.index.get("version") != CACHE_VERSION:
            raise DataError(f"{idx} is not a facecycle cache index of version {CACHE_VERSION}; rebuild the cache")
        self.path, self.name = p, name
        self.root = Path(self.index["root"])
        self.size, self.channels = int(self.index["size"]), int(self.index["channels"])
        count = int(self.index["count"])
        self.images = load_rows(p, count)
        if self.images.shape[1:] != (self.size, self.size, self.channels):
            raise DataError(f"cache {p} holds {self.images.shape[1:]} rows, its index says {self.size}x{self.size}x{self.channels}")
        self.masks = load_rows(p.with_name(self.index["masks"]), count) if self.index.get("masks") else None
        self.files = [self.root / f for f in self.index["files"]]
        self.mask_root = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def crop_params(rng: random.Random, spec: TransformSpec) -> tuple[int, int, bool]:
    """(x, y, flip) drawn exactly as `apply_transform` draws them (same calls, same order)."""
    x = y = 0
    if spec.load_size > spec.crop_size:
        x = rng.randint(0, spec.load_size - spec.crop_size)
        y = rng.randint(0, spec.load_size - spec.crop_size)
    flip = bool(spec.flip and rng.random() < 0.5)
    return x, y, flip


def to_float_batch(rows: torch.Tensor, flips: Sequence[bool], device: torch.device,
                   channels_last: bool = False, pin: bool = False) -> torch.Tensor:
    """`(N, H, W, C)` uint8 crops -> `(N, C, H, W)` float in [-1, 1] on `device`, horizontally
    flipped where `flips[i]`, with the same arithmetic as `pil_to_tensor` (bit-identical to the
    folder pipeline). Contiguous NCHW, or channels_last when asked.

    On the CPU one copy per image does layout change, flip and conversion at once (the cheapest
    way found: ~2.5 ms for 16 crops of 256², see BENCHMARKS.md). On accelerators the uint8 batch
    is moved with one non-blocking copy and converted and flipped as a whole batch there."""
    n, h, w, c = rows.shape
    src = rows.permute(0, 3, 1, 2)  # NHWC bytes = a channels_last view
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if device.type == "cpu":
        out = torch.empty((n, c, h, w), memory_format=fmt)
        for k, flip in enumerate(flips):
            out[k].copy_(src[k].flip(-1) if flip else src[k])
        return out.div_(127.5).sub_(1.0)
    if pin:
        rows = rows.pin_memory()
    x = rows.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous(memory_format=fmt).float()
    if any(flips):
        idx = torch.tensor([i for i, f in enumerate(flips) if f], device=device)
        x[idx] = x[idx].flip(-1)
    return x.div_(127.5).sub_(1.0)


class CachedBatches:
    """Batches for the trainer from two `CachedDomain`s, in `UnpairedSampler` order.

    Rows are gathered from the memory maps already cropped (a crop is just which bytes the
    gather copies, so a full-size row is never read or transferred), pinned when the device is
    CUDA, moved with one non-blocking copy per tensor, then re-laid out, flipped, converted and
    normalised for the whole batch on the device (`to_float_batch`). Equal to the folder pipeline's batches when the cache size equals
    `spec.load_size` (see the module docstring); otherwise rows are resized on the device
    (bicubic, antialiased) to `load_size` first, which is close but not bit-identical.
    """

    def __init__(self, domain_a: CachedDomain, domain_b: CachedDomain, spec: TransformSpec, channels: int,
                 device: torch.device, channels_last: bool = False) -> None:
        for d in (domain_a, domain_b):
            if d.channels != channels:
                raise DataError(f"cache {d.path} has {d.channels} channel(s) but data.channels is {channels}; "
                                "rebuild it with --channels or change data.channels")
        self.domains = {"a": domain_a, "b": domain_b}
        self.spec, self.device = spec, device
        self.pin = device.type == "cuda"
        self.channels_last = channels_last

    def _rows(self, key: str, indices: Sequence[int], params: Sequence[tuple[int, int, bool]]) -> dict[str, torch.Tensor]:
        domain = self.domains[key]
        spec = self.spec
        direct = domain.size == spec.load_size
        c = spec.crop_size
        sources = [("", domain.images)] + ([("mask_", domain.masks)] if domain.masks is not None else [])
        out = {}
        flips = [p[2] for p in params]
        for prefix, array in sources:
            if direct:
                # The crop is just which bytes the gather copies: a full-size row is never read.
                rows = np.stack([array[i, y:y + c, x:x + c] for i, (x, y, _) in zip(indices, params)])
                batch = to_float_batch(torch.from_numpy(rows), flips, self.device, self.channels_last, self.pin)
            else:
                t = torch.from_numpy(np.stack([array[i] for i in indices]))
                full = t.to(self.device).permute(0, 3, 1, 2).float()
                full = F.interpolate(full, size=(spec.load_size, spec.load_size), mode="bicubic",
                                     antialias=True, align_corners=False).clamp(0, 255).round()
                crops = torch.stack([full[j, :, y:y + c, x:x + c] for j, (x, y, _) in enumerate(params)])
                batch = to_float_batch(crops.to(torch.uint8).permute(0, 2, 3, 1), flips, self.device,
                                       self.channels_last)
            if prefix:
                batch = (batch + 1.0) / 2.0  # masks in [0, 1], same arithmetic as the folder pipeline
            out[f"{prefix}{key}"] = batch
        return out

    def batch(self, items: Sequence[tuple[int, int, int]]) -> dict[str, torch.Tensor]:
        """`items`: `(index_a, index_b, item_seed)` from `UnpairedSampler` -> the batch dict of the
        folder pipeline (`a`, `b` `(N, C, crop, crop)` in [-1, 1]; `mask_a`/`mask_b` in [0, 1])."""
        params_a, params_b = [], []
        for _, _, seed in items:
            rng = random.Random(seed)  # A draws first, then B: the order of UnpairedDataset.__getitem__
            params_a.append(crop_params(rng, self.spec))
            params_b.append(crop_params(rng, self.spec))
        out = self._rows("a", [i for i, _, _ in items], params_a)
        out.update(self._rows("b", [j for _, j, _ in items], params_b))
        return out

    def epoch(self, sampler: UnpairedSampler, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Full batches of one epoch (the remainder is dropped, like `drop_last=True`)."""
        items: list[tuple[int, int, int]] = []
        for item in sampler:
            items.append(item)
            if len(items) == batch_size:
                yield self.batch(items)
                items = []

    def samples(self, key: str, count: int, size: int) -> torch.Tensor:
        """The first `count` images of a domain resized to `size`² (evaluation view): `(n, C, size, size)`."""
        domain = self.domains[key]
        rows = torch.from_numpy(np.array(domain.images[:count])).permute(0, 3, 1, 2).float()  # a writable copy
        if rows.shape[-1] != size:
            rows = F.interpolate(rows, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        return (rows.clamp(0, 255) / 127.5 - 1.0).contiguous().to(self.device)
