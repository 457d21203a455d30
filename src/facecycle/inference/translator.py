"""`Translator`: the Python API for translating images with a trained or exported generator.

    >>> from facecycle import Translator
    >>> t = Translator.load("runs/demo")               # run dir, checkpoint or exported file
    >>> out = t.translate("face.jpg")                  # PIL image, same size as the input
    >>> back = t.translate(out, direction="b2a")       # checkpoints hold both directions
    >>> outs = t.translate_batch([img1, array2, "x.png"])

Inputs may be a PIL image (any mode), a path, or a numpy array ``(H, W)`` / ``(H, W, C)``
with C in {1, 3, 4} (channels last), either ``uint8`` in [0, 255] or float in [0, 1].
Results are PIL images of the input's pixel size, mode ``"RGB"`` (or ``"L"`` for a
one-channel model). Transparent pixels are composited on white first.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
from PIL import Image

from facecycle.data.images import load_image, pil_to_tensor, tensor_to_pil, to_mode
from facecycle.errors import CheckpointError, ConfigError, DataError
from facecycle.inference.loading import (DIRECTIONS, LoadedGenerator, check_direction, generator_from_state,
                                         load_generator)
from facecycle.inference.formats import MIN_SIDE, SUFFIX_TO_FORMAT
from facecycle.inference.translate import translate_image, translate_tensor

ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike]


class Translator:
    """One or two loaded generators (a2b and/or b2a) behind a small image-in, image-out API.

    A training checkpoint or run directory gives both directions (when present); an exported
    file gives the one direction it was exported for.
    """

    def __init__(self, generators: Mapping[str, LoadedGenerator], direction: str | None = None) -> None:
        if not generators:
            raise ConfigError("a Translator needs at least one generator")
        self.generators: dict[str, LoadedGenerator] = dict(generators)
        self.direction = direction or ("a2b" if "a2b" in self.generators else next(iter(self.generators)))
        self._get(self.direction)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             direction: str | None = None, trust_torchscript: bool = False, backend: str = "torch") -> "Translator":
        """Load from a run directory (newest checkpoint), a checkpoint file, an exported file, or
        the name of a built-in model ("smile": a2b = neutral -> happy, b2a = happy -> neutral).

        `device`: None/"auto" picks CUDA when present. `direction` is the default direction of
        `translate`; None means "a2b" for checkpoints (the one direction a one-generator
        checkpoint holds) and the exported direction for exports.
        `trust_torchscript`: load a TorchScript file this installation did not export (TorchScript
        is code; see facecycle.inference.trust).
        `backend`: "torch" (default), "onnxruntime" (CPU, fp32; the generator is exported to ONNX
        once and cached) or "auto" (ONNX Runtime where it runs this generator, else PyTorch); see
        facecycle.inference.backends.
        Errors (`CheckpointError`, `ConfigError`) are the same as for `facecycle translate`.
        """
        from facecycle.inference.trust import trusting_torchscript

        from facecycle.inference.backends import with_backend

        with trusting_torchscript(trust_torchscript):
            loaded = cls._load(path, device, direction)
        if backend != "torch":
            loaded.generators = {d: with_backend(g, backend) for d, g in loaded.generators.items()}
        return loaded

    @classmethod
    def _load(cls, path: str | Path, device: str | torch.device | None, direction: str | None) -> "Translator":
        from facecycle.runtime.checkpoints import load_file, resolve_checkpoint
        from facecycle.runtime.device import resolve_device

        if direction is not None:
            check_direction(direction)
        dev = resolve_device("auto" if device is None else str(device))
        from facecycle.zoo import builtin

        model = builtin(path)
        if model is not None:  # a built-in model: one export per direction
            generators = {d: load_generator(path, d, dev) for d in model.files}
            return cls(generators, direction or "a2b")
        file = resolve_checkpoint(path)
        if file.suffix.lower() in SUFFIX_TO_FORMAT:
            from facecycle.inference.exported import read_metadata

            exported_direction = read_metadata(file)["direction"]
            generator = load_generator(file, direction or exported_direction, dev)
            return cls({generator.direction: generator}, generator.direction)
        # A training checkpoint: read it once and build every generator it holds; the requested
        # (default a2b) direction must be among them, as in `load_generator`.
        state = load_file(file, map_location="cpu")
        # Default: a2b, or the only direction a one-generator checkpoint (an import) holds.
        first = direction or next((d for d, name in DIRECTIONS.items() if name in state["nets"]), "a2b")
        if DIRECTIONS[first] not in state["nets"]:
            raise CheckpointError(f"{file} has no {DIRECTIONS[first]} generator (it has: {', '.join(state['nets'])})")
        step = state.get("counters", {}).get("step")
        generators = {d: generator_from_state(state["config"], state["nets"][name], d, file, step, dev)
                      for d, name in DIRECTIONS.items() if name in state["nets"]}
        return cls(generators, first)

    # ---- description -----------------------------------------------------------------------
    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this translator can run, e.g. ("a2b", "b2a")."""
        return tuple(d for d in DIRECTIONS if d in self.generators)

    @property
    def channels(self) -> int:
        return self._get(self.direction).channels

    @property
    def crop_size(self) -> int:
        return self._get(self.direction).crop_size

    @property
    def size_multiple(self) -> int:
        return self._get(self.direction).size_multiple

    @property
    def config(self) -> dict[str, Any]:
        return self._get(self.direction).config

    @property
    def source(self) -> Path:
        return self._get(self.direction).source

    @property
    def step(self) -> int | None:
        return self._get(self.direction).step

    def info(self) -> dict[str, Any]:
        """A JSON-ready description (used by `facecycle serve`'s /api/info)."""
        model = self.config.get("model", {})
        return {
            "directions": list(self.directions),
            "default_direction": self.direction,
            "channels": self.channels,
            "crop_size": self.crop_size,
            "size_multiple": self.size_multiple,
            "min_side": MIN_SIDE,
            "source": self.source.name,
            "step": self.step,
            "model": {key: model.get(key) for key in ("generator", "gen_width", "gen_blocks", "gen_depth",
                                                      "gen_attention", "norm") if key in model},
        }

    def __repr__(self) -> str:
        return f"Translator(source={str(self.source)!r}, directions={self.directions}, channels={self.channels})"

    # ---- translation -----------------------------------------------------------------------
    def translate(self, image: ImageInput, direction: str | None = None, max_size: int | None = None) -> Image.Image:
        """Translate one image; returns a PIL image with the input's width and height.

        `max_size`: process images whose longer side exceeds it at that size, then resize back.
        """
        generator = self._get(direction or self.direction)
        pil = self._prepare(image, generator.channels)
        return translate_image(generator, pil, max_size=max_size)

    __call__ = translate

    def translate_batch(self, images: Sequence[ImageInput], direction: str | None = None,
                        max_size: int | None = None, batch_size: int = 8) -> list[Image.Image]:
        """Translate several images; images of equal size run together in batches of `batch_size`.

        Returns the results in input order, each the size of its input.
        """
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            raise DataError("translate_batch expects a list of images; use translate() for a single image")
        generator = self._get(direction or self.direction)
        from facecycle.inference.translate import _limit

        prepared = [self._prepare(img, generator.channels) for img in images]
        results: list[Image.Image | None] = [None] * len(prepared)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        work = [_limit(img, max_size) for img in prepared]
        for index, img in enumerate(work):
            groups[img.size].append(index)
        for indices in groups.values():
            for start in range(0, len(indices), max(1, batch_size)):
                chunk = indices[start:start + max(1, batch_size)]
                batch = torch.stack([pil_to_tensor(work[i]) for i in chunk])
                for i, out in zip(chunk, translate_tensor(generator, batch)):
                    result = tensor_to_pil(out)
                    results[i] = result if result.size == prepared[i].size else result.resize(prepared[i].size,
                                                                                            Image.BICUBIC)
        return [r for r in results if r is not None]

    # ---- helpers ---------------------------------------------------------------------------
    def _get(self, direction: str) -> LoadedGenerator:
        check_direction(direction)
        if direction not in self.generators:
            raise ConfigError(
                f"this model has no {direction} generator (it has: {', '.join(self.directions)}); "
                f"load a training checkpoint for both directions or export {direction} with "
                f"`facecycle export --direction {direction}`"
            )
        return self.generators[direction]

    def _prepare(self, image: ImageInput, channels: int) -> Image.Image:
        pil = as_pil(image, channels)
        if min(pil.size) < MIN_SIDE:
            raise DataError(f"image is {pil.width}x{pil.height} px; facecycle needs at least {MIN_SIDE} px per side")
        return pil


def as_pil(image: ImageInput, channels: int = 3) -> Image.Image:
    """A PIL image, a path or a numpy array -> PIL image in mode "L" (channels=1) or "RGB".

    Raises DataError with a hint when the input has an unsupported type, shape, dtype or range.
    """
    if isinstance(image, Image.Image):
        return to_mode(image, channels)
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, channels)
    if isinstance(image, np.ndarray):
        return to_mode(Image.fromarray(_to_uint8(image)), channels)
    if isinstance(image, torch.Tensor):
        raise DataError("Translator takes PIL images, numpy arrays or paths; for (N, C, H, W) tensors in [-1, 1] "
                        "use facecycle.inference.translate.translate_tensor")
    raise DataError(f"cannot translate an object of type {type(image).__name__}; pass a PIL image, "
                    "a numpy array (H, W[, C]) or a path")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C in {1, 3, 4}) uint8, or float in [0, 1] -> uint8 array Pillow understands."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
            hint = "; it looks channels-first: pass array.transpose(1, 2, 0)"
        raise DataError(f"numpy images must be (H, W) or (H, W, C) with C = 1, 3 or 4; got shape {array.shape}{hint}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not np.isfinite(array).all():
            raise DataError("the float image contains NaN or infinite values")
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if low < 0.0 or high > 1.0:
            raise DataError(f"float images must be in [0, 1]; got values in [{low:.3g}, {high:.3g}] "
                            "(divide 0-255 data by 255, or pass it as uint8)")
        return np.ascontiguousarray((array * 255.0).round().astype(np.uint8))
    raise DataError(f"numpy images must be uint8 (0-255) or float (0-1); got dtype {array.dtype} "
                    "(convert with array.astype(np.uint8) or array / 255.0)")
