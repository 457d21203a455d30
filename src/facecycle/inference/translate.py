"""Translate tensors, PIL images and folders with a loaded generator, at the input's own size."""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from PIL import Image

from facecycle.data.images import list_images, load_image, pil_to_tensor, tensor_to_pil
from facecycle.errors import DataError
from facecycle.inference.loading import LoadedGenerator


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad `(N, C, H, W)` on the bottom/right to multiples of `multiple`; returns (padded, (H, W)).

    Reflection padding continues the image content, so the network sees no artificial border;
    when the pad is larger than the image (tiny inputs, deep U-Nets), replicate padding is used.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def bf16_net(generator: LoadedGenerator) -> Optional[torch.nn.Module]:
    """A bfloat16 copy of a plain generator's weights, made once per LoadedGenerator.

    Running the network in bf16 end to end is ~20 % faster on the CPU than autocast, which
    casts every weight on every call. Other networks (conditional wrappers, exported
    graphs) return None and run under autocast instead.
    """
    from facecycle.models.generators import ResnetGenerator, UnetGenerator

    if type(generator.net) not in (ResnetGenerator, UnetGenerator):
        return None
    cached = generator.__dict__.get("_bf16_net")
    if cached is None:
        cached = copy.deepcopy(generator.net).to(torch.bfloat16).eval()
        generator.__dict__["_bf16_net"] = cached
    return cached


@torch.inference_mode()
def translate_tensor(generator: LoadedGenerator, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """`(N, C, H, W)` in [-1, 1], any H, W -> translated `(N, C, H, W)` in [-1, 1] on the CPU, float32."""
    device = next(iter(generator.net.parameters())).device if isinstance(generator.net, torch.nn.Module) else torch.device("cpu")
    padded, (h, w) = pad_to_multiple(x.to(device, torch.float32), generator.size_multiple)
    if precision == "bf16":
        low = bf16_net(generator)
        if low is not None:
            out = low(padded.to(torch.bfloat16))
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = generator.net(padded)
    else:
        out = generator.net(padded)
    return out[..., :h, :w].float().clamp(-1, 1).cpu()


def translate_image(generator: LoadedGenerator, image: Image.Image, max_size: Optional[int] = None,
                    precision: str = "fp32") -> Image.Image:
    """A PIL image (any mode, any size) -> translated PIL image of the same pixel size.

    With `max_size`, an image whose longer side exceeds it is processed at that size and the
    result resized back (a model trained on 256-px faces sees faces at a familiar scale).
    """
    from facecycle.data.images import to_mode

    original_size = image.size
    image = to_mode(image, generator.channels)
    work = _limit(image, max_size)
    out = tensor_to_pil(translate_tensor(generator, pil_to_tensor(work).unsqueeze(0), precision)[0])
    return out.resize(original_size, Image.BICUBIC) if out.size != original_size else out


def _limit(image: Image.Image, max_size: Optional[int]) -> Image.Image:
    if not max_size or max(image.size) <= max_size:
        return image
    scale = max_size / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)


def output_path(source: Path, input_root: Path, output_dir: Path, suffix: str = ".png") -> Path:
    """Same relative path and stem as the input, under `output_dir`, with `suffix`."""
    relative = source.relative_to(input_root) if input_root.is_dir() else Path(source.name)
    return (output_dir / relative).with_suffix(suffix)


def translate_folder(generator: LoadedGenerator, input_path: str | Path, output_dir: str | Path,
                     batch_size: int = 8, max_size: Optional[int] = None, precision: str = "fp32",
                     suffix: str = ".png", on_item: Optional[Callable[[Path, Path], None]] = None) -> dict[str, list]:
    """Translate a file or every image below a folder; images of equal size are batched together.

    Returns {"written": [...], "failed": [(path, reason), ...]}; unreadable files are reported,
    not fatal.
    """
    root = Path(input_path)
    files = list_images(root, "input")
    if not files:
        raise DataError(f"no image found in {root}")
    out_root = Path(output_dir)
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    groups: dict[tuple[int, int], list[tuple[Path, Image.Image, tuple[int, int]]]] = defaultdict(list)

    def flush(key: tuple[int, int]) -> None:
        items = groups.pop(key, [])
        if not items:
            return
        batch = torch.stack([pil_to_tensor(img) for _, img, _ in items])
        for (src, _, size), result in zip(items, translate_tensor(generator, batch, precision)):
            image = tensor_to_pil(result)
            if image.size != size:
                image = image.resize(size, Image.BICUBIC)
            dst = output_path(src, root, out_root, suffix)
            dst.parent.mkdir(parents=True, exist_ok=True)
            image.save(dst)
            written.append(dst)
            if on_item:
                on_item(src, dst)

    for src in files:
        try:
            image = load_image(src, generator.channels)
        except DataError as exc:
            failed.append((src, str(exc)))
            continue
        work = _limit(image, max_size)
        groups[work.size].append((src, work, image.size))
        if len(groups[work.size]) >= batch_size:
            flush(work.size)
    for key in list(groups):
        flush(key)
    return {"written": written, "failed": failed}
