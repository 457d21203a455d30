"""`Translator`: the Python API for translating images with a trained or exported generator.

    >>> from facecycle import Translator
    >>> t = Translator.load("runs/demo")               # run dir, checkpoint or exported file
    >>> out = t.translate("face.jpg")                  # PIL image, same size as the input
    >>> back = t.translate(out, direction="b2a")       # checkpoints hold both directions
    >>> outs = t.translate_batch([img1, array2, "x.png"])

Conditional models (train.mode=conditional: Action Units or expression classes; their
checkpoints and exports) take a target per call instead of a direction:

    >>> t = Translator.load("runs/au")                    # or an .onnx/.ts/.safetensors export
    >>> t.info()["condition"]["expressions"]              # {"joy": [0, 0, 0, 0, 1, 0, 1, ...], ...}
    >>> happy = t.translate("face.jpg", expression="joy")
    >>> custom = t.translate("face.jpg", target="AU01=1,AU12=1")   # as `--target`; unnamed units 0

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
from facecycle.inference.loading import (DIRECTIONS, LoadedGenerator, check_direction, conditional_from_state,
                                         generator_from_state, load_generator, load_model)
from facecycle.inference.formats import MIN_SIDE, SUFFIX_TO_FORMAT
from facecycle.inference.translate import translate_image, translate_tensor

ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike]
Target = Union[str, torch.Tensor]
CONDITIONAL = "conditional"  # the key (and `direction`) of a conditional model's one generator


def _no_direction(direction: str | None, source: Path) -> None:
    if direction is not None:
        raise ConfigError(f"{source} is a conditional model: it has no a2b/b2a directions; leave direction out "
                          "and pass target=\"AU06=1,AU12=1\" or expression=\"joy\" to translate()")


class Translator:
    """One or two loaded generators (a2b and/or b2a) behind a small image-in, image-out API.

    A training checkpoint or run directory gives both directions (when present); an exported
    file gives the one direction it was exported for. A conditional model gives one unbound
    generator under the key "conditional"; each call names its target.
    """

    def __init__(self, generators: Mapping[str, LoadedGenerator], direction: str | None = None) -> None:
        if not generators:
            raise ConfigError("a Translator needs at least one generator")
        if any(g.conditional for g in generators.values()) and (
                list(generators) != [CONDITIONAL] or not generators[CONDITIONAL].needs_target):
            raise ConfigError("a conditional Translator holds exactly one unbound conditional generator, "
                              f"under the key {CONDITIONAL!r} (load it with facecycle.inference.loading.load_model)")
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
        `backend`: "torch" (default), "winograd" (PyTorch with Winograd 3×3 convolutions; CPU,
        fp32), "onnxruntime" (CPU, fp32; the generator is exported to ONNX once and cached) or
        "auto" (ONNX Runtime where it runs this generator, else winograd on the CPU in fp32, else
        PyTorch); see facecycle.inference.backends.
        A conditional model (checkpoint or export) loads as one generator that takes its target
        per call (`translate(..., target=/expression=)`); `direction` must then be None.
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
            from facecycle.inference.exported import is_conditional, read_metadata

            meta = read_metadata(file)
            if is_conditional(meta):
                _no_direction(direction, file)
                return cls({CONDITIONAL: load_model(file, "a2b", dev)}, CONDITIONAL)
            generator = load_generator(file, direction or meta["direction"], dev)
            return cls({generator.direction: generator}, generator.direction)
        # A training checkpoint: read it once and build every generator it holds; the requested
        # (default a2b) direction must be among them, as in `load_generator`.
        state = load_file(file, map_location="cpu")
        if state.get("mode") == "conditional":
            _no_direction(direction, file)
            return cls({CONDITIONAL: conditional_from_state(state, file, dev)}, CONDITIONAL)
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
        """The directions this translator can run, e.g. ("a2b", "b2a"); ("conditional",) for a conditional model."""
        if self.conditional:
            return (CONDITIONAL,)
        return tuple(d for d in DIRECTIONS if d in self.generators)

    @property
    def conditional(self) -> bool:
        """True for a conditional model (translate takes target=/expression=, not a direction)."""
        return CONDITIONAL in self.generators

    @property
    def condition_columns(self) -> tuple[str, ...]:
        """The conditions of a conditional model (Action Units or classes) in vector order; () otherwise."""
        return self._get(self.direction).condition_columns

    @property
    def condition_kind(self) -> str | None:
        """presence, intensity or categorical for a conditional model; None otherwise."""
        return self._get(self.direction).condition_kind

    @property
    def expressions(self) -> list[str]:
        """The `expression=` names a conditional model accepts (its classes or the presets its units
        cover); [] for a CycleGAN."""
        if not self.conditional:
            return []
        from facecycle.data.expressions import available_expressions

        return available_expressions(self.condition_columns, self.condition_kind or "presence")

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
        """A JSON-ready description (used by `facecycle serve`'s /api/info).

        `mode`: "cyclegan" or "conditional"; `condition` (conditional models, else None):
        `columns` (the K conditions in vector order), `kind` (presence, intensity, categorical),
        `value_max` (1 or 5: the labels' units) and `expressions` (name -> K target values in
        the labels' units, for every expression this model takes).
        """
        model = self.config.get("model", {})
        condition = None
        if self.conditional:
            from facecycle.inference.targets import condition_info

            condition = condition_info(self._get(self.direction))
        return {
            "mode": "conditional" if self.conditional else "cyclegan",
            "condition": condition,
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
        if self.conditional:
            return (f"Translator(source={str(self.source)!r}, conditional on {len(self.condition_columns)} "
                    f"{self.condition_kind} condition(s), channels={self.channels})")
        return f"Translator(source={str(self.source)!r}, directions={self.directions}, channels={self.channels})"

    # ---- translation -----------------------------------------------------------------------
    def generator_for(self, direction: str | None = None, target: Target | None = None,
                      expression: str | None = None) -> LoadedGenerator:
        """The ready-to-run generator (`net(x)`) for `direction`, or for a conditional model the
        one bound to `target`/`expression`.

        Raises ConfigError when a conditional model gets no target (or an invalid one) and when a
        CycleGAN model gets one.
        """
        generator = self._get(direction or self.direction)
        if generator.needs_target:
            if target is None and not expression:
                from facecycle.data.expressions import EXPRESSION_TARGETS

                columns = generator.condition_columns
                raise ConfigError(
                    f"this is a conditional model: pass target= (e.g. \"{columns[0]}=1\"; its conditions are "
                    f"{', '.join(columns)}) or expression= ({', '.join(self.expressions or list(EXPRESSION_TARGETS))})")
            from facecycle.inference.targets import bind_target

            return bind_target(generator, target, expression)
        if target is not None or expression:
            raise ConfigError(f"{generator.source} is a two-domain CycleGAN model: target=/expression= apply to "
                              "conditional models only (train.mode=conditional); choose direction=\"a2b\" or \"b2a\"")
        return generator

    def translate(self, image: ImageInput, direction: str | None = None, max_size: int | None = None, *,
                  target: Target | None = None, expression: str | None = None) -> Image.Image:
        """Translate one image; returns a PIL image with the input's width and height.

        `max_size`: process images whose longer side exceeds it at that size, then resize back.
        Conditional models need `target` (an AU spec as `--target` takes it, "AU06=1,AU12=1" in the
        labels' units, unnamed units 0; or a `(K,)` tensor in [0, 1]) and/or `expression` (a
        preset such as "joy", or a class of a categorical model); the expression's units come
        first and `target` values override them.
        """
        generator = self.generator_for(direction, target, expression)
        pil = self._prepare(image, generator.channels)
        return translate_image(generator, pil, max_size=max_size)

    __call__ = translate

    def translate_batch(self, images: Sequence[ImageInput], direction: str | None = None,
                        max_size: int | None = None, batch_size: int = 8, *, target: Target | None = None,
                        expression: str | None = None) -> list[Image.Image]:
        """Translate several images; images of equal size run together in batches of `batch_size`.

        Returns the results in input order, each the size of its input. `target`/`expression`:
        as in `translate`, one target for every image.
        """
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            raise DataError("translate_batch expects a list of images; use translate() for a single image")
        generator = self.generator_for(direction, target, expression)
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
        if self.conditional:
            if direction != CONDITIONAL:
                raise ConfigError(f"{self.generators[CONDITIONAL].source} is a conditional model: it has no "
                                  f"{direction!r} direction; leave direction out and pass target= or expression=")
            return self.generators[CONDITIONAL]
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
