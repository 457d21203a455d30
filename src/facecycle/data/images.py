"""Image files: discovery, robust loading, tensor conversion.

Tensors are `(C, H, W)` or `(N, C, H, W)` float32 in `[-1, 1]`; PIL images are mode "L"
(1 channel) or "RGB" (3 channels).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from facecycle.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

#: Largest image decoded, in pixels (width x height), read from the header before decoding: a
#: 12000x12000 PNG of one colour is 18 KB on disk and 430 MB decoded. 50 MP holds any phone or
#: camera photo (48 MP sensors); raise it with the environment variable FACECYCLE_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 50_000_000


def max_pixels() -> int:
    """The pixel limit in force: FACECYCLE_MAX_PIXELS when set (a positive integer), else 50 MP."""
    raw = os.environ.get("FACECYCLE_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise DataError(f"FACECYCLE_MAX_PIXELS must be a number of pixels, got '{raw}'") from None
    if value <= 0:
        raise DataError(f"FACECYCLE_MAX_PIXELS must be positive, got {value}")
    return value


def list_images(root: str | Path, what: str = "image folder") -> list[Path]:
    """All image files below `root` (any nesting), sorted; a file path gives [that file]."""
    path = Path(root)
    if not path.exists():
        raise DataError(f"{what} does not exist: {path}")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{path} is not an image ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGB, RGBA, I;16, CMYK...) to "L" or "RGB".

    Transparent pixels are composited on white, which is what a viewer shows for a
    transparent PNG (converting RGBA straight to RGB would expose arbitrary hidden colours).
    """
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode.startswith("I;16") or image.mode == "I":
        array = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray((array / scale * 255).clip(0, 255).astype(np.uint8))
    return image.convert("L" if channels == 1 else "RGB")


def load_image(path: str | Path, channels: int = 3, limit: int | None = None) -> Image.Image:
    """The one way facecycle opens an image file: checks the pixel count from the header before
    decoding (`limit`, default `max_pixels()`), decodes fully, applies the EXIF orientation (a
    portrait phone photo is stored sideways with Orientation=6) and converts to "L"/"RGB".

    Raises DataError naming the file and the reason (unreadable, truncated, too many pixels)."""
    limit = max_pixels() if limit is None else limit
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > limit:
                raise DataError(
                    f"image {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), more than the "
                    f"limit of {limit / 1e6:g} megapixels; shrink it, or raise the limit with "
                    f"FACECYCLE_MAX_PIXELS={width * height} if you trust the file")
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_mode(img, channels)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def unreadable_reason(path: Path, limit: int) -> str | None:
    """Cheap check used when indexing a folder: None when the header parses, the data is intact
    and the image is within `limit` pixels, else the reason in a few words.

    `verify()` checks PNG CRCs and JPEG structure without a full decode; a full decode
    failure later is still caught by the dataset, which then substitutes another image.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > limit:
                return f"{width}x{height} is over the {limit / 1e6:g} MP limit (FACECYCLE_MAX_PIXELS)"
            img.verify()
        return None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def usable_images(root: str | Path, what: str) -> list[Path]:
    """`list_images` minus unreadable files (one warning naming them); empty -> DataError."""
    files = list_images(root, what)
    limit = max_pixels()
    reasons = {p: unreadable_reason(p, limit) for p in files}
    bad = [p for p in files if reasons[p] is not None]
    if bad:
        shown = "; ".join(f"{p} ({reasons[p]})" for p in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        warnings.warn(f"skipping {len(bad)} unreadable image(s) in {root}: {shown}", stacklevel=2)
        bad_set = set(bad)
        files = [p for p in files if p not in bad_set]
    if not files:
        raise DataError(
            f"{what} {root} contains no usable image "
            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))} in all subfolders)"
        )
    return files


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL "L"/"RGB" -> `(C, H, W)` float32 in [-1, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float()
    return tensor / 127.5 - 1.0


def tensor_to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """`(C, H, W)` in [-1, 1] -> `(H, W, C)` uint8 (rounded, clamped)."""
    t = tensor.detach().float().cpu().clamp(-1, 1)
    return ((t + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """`(C, H, W)` in [-1, 1] -> PIL "L" or "RGB"."""
    array = tensor_to_uint8(tensor)
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def make_grid(rows: Iterable[Iterable[torch.Tensor]], pad: int = 2) -> Image.Image:
    """Tile rows of `(C, H, W)` tensors in [-1, 1] (all the same size) into one RGB image."""
    rows = [list(r) for r in rows]
    c, h, w = rows[0][0].shape
    ncols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            tile = tensor_to_uint8(t)
            if tile.shape[2] == 1:
                tile = np.repeat(tile, 3, axis=2)
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = tile
    return Image.fromarray(canvas)
