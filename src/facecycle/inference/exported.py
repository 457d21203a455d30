"""Load exported generators (ONNX, TorchScript, safetensors) as `LoadedGenerator`s.

Exports of conditional generators (metadata ``mode = "conditional"``) load *unbound*: their
`net` is called as `(image, condition)`; `load_generator` binds a target, `Translator` binds one
per call.

`LOADERS` maps each export suffix (``.onnx``, ``.ts``, ``.torchscript``, ``.safetensors``) to its
loader; `facecycle.inference.loading.load_generator` looks files up there, so ``facecycle translate``,
``facecycle serve`` and ``Translator`` accept an exported file wherever they accept a checkpoint.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from facecycle.errors import CheckpointError, ConfigError, require
from facecycle.inference.formats import (CONDITION_NAME, EXPORT_FORMAT, METADATA_FILE, SUFFIX_TO_FORMAT,
                                         quiet_torchscript)
from facecycle.inference.generator import LoadedGenerator, conditional_from_weights, generator_from_state
from facecycle.inference.trust import refusal, torchscript_trusted

_REQUIRED = ("format", "direction", "channels", "size_multiple", "crop_size", "config")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The facecycle metadata of an exported file, without building the model.

    Raises CheckpointError when the file is missing, is not of a known export suffix, or
    carries no facecycle metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported model not found: {path}")
    fmt = SUFFIX_TO_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise CheckpointError(f"{path} is not an export facecycle knows ({', '.join(SUFFIX_TO_FORMAT)})")
    try:
        meta = _READERS[fmt](path)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnx/zip/safetensors raise many types for foreign files
        raise CheckpointError(f"cannot read {fmt} file {path}: {type(exc).__name__}: {exc}") from None
    missing = [key for key in _REQUIRED if key not in meta]
    if meta.get("format") != EXPORT_FORMAT or missing:
        raise CheckpointError(
            f"{path} carries no facecycle export metadata (missing: {', '.join(missing) or 'format'}); "
            "create exports with `facecycle export`"
        )
    return meta


def parse_config(meta: dict[str, str]) -> dict[str, Any]:
    """The training config stored in an export, as a plain dict."""
    return json.loads(meta["config"])


def _onnx_metadata(path: Path) -> dict[str, str]:
    onnx = require("onnx", "export", "reading ONNX files")
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _torchscript_metadata(path: Path) -> dict[str, str]:
    # A TorchScript file is a zip archive; extra files live at <archive>/extra/<name>.
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
        if not names:
            return {}
        return json.loads(archive.read(names[0]).decode("utf-8"))


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


_READERS = {"onnx": _onnx_metadata, "torchscript": _torchscript_metadata, "safetensors": _safetensors_metadata}


def is_conditional(meta: dict[str, str]) -> bool:
    """True for the export of a conditional generator (a second input: the condition vector)."""
    return meta.get("mode") == "conditional"


def _check_direction(path: Path, meta: dict[str, str], direction: str) -> None:
    if is_conditional(meta):
        return  # one generator for every target: the direction does not apply
    if meta["direction"] != direction:
        raise CheckpointError(
            f"{path} holds only the {meta['direction']} generator; pass --direction {meta['direction']} "
            f"(or export {direction} with `facecycle export --direction {direction}`)"
        )


def condition_of(meta: dict[str, str], path: Path) -> tuple[tuple[str, ...], str]:
    """(columns, kind) of a conditional export's condition input."""
    try:
        columns = tuple(str(c) for c in json.loads(meta["condition_columns"]))
        kind = meta["condition_kind"]
    except (KeyError, ValueError, TypeError):
        raise CheckpointError(f"{path} is a conditional export without readable condition_columns/condition_kind "
                              "metadata; export it again with `facecycle export`") from None
    if not columns or kind not in ("presence", "intensity", "categorical"):
        raise CheckpointError(f"{path}: bad condition metadata (columns {list(columns)}, kind {kind!r})")
    return columns, kind


def _loaded(net: Any, meta: dict[str, str], path: Path) -> LoadedGenerator:
    step = int(meta["step"]) if meta.get("step") else None
    columns, kind = condition_of(meta, path) if is_conditional(meta) else ((), None)
    return LoadedGenerator(net, meta["direction"], int(meta["channels"]), int(meta["size_multiple"]),
                           int(meta["crop_size"]), parse_config(meta), path, step, columns, kind, None)


class OnnxGenerator:
    """Calls an ONNX Runtime session like a generator: `(N, C, H, W)` float32 tensor in [-1, 1] ->
    translated tensor of the same shape (on the CPU). With `condition_name` (conditional exports)
    it is called as `(x, c)`, `c` the `(N, K)` float32 condition in [0, 1]."""

    def __init__(self, session: Any, input_name: str, output_name: str, condition_name: str | None = None) -> None:
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.condition_name = condition_name

    def __call__(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        feed = {self.input_name: x.detach().to("cpu", torch.float32).contiguous().numpy()}
        if self.condition_name is not None:
            if c is None:
                raise ConfigError("this ONNX generator is conditional: call it with (image, condition)")
            feed[self.condition_name] = c.detach().to("cpu", torch.float32).contiguous().numpy()
        elif c is not None:
            raise ConfigError("this ONNX generator takes no condition")
        return torch.from_numpy(self.session.run([self.output_name], feed)[0])


def load_onnx(path: Path, direction: str, device: torch.device) -> LoadedGenerator:
    """An ONNX export run by ONNX Runtime (CUDA provider when `device` is CUDA and it is available)."""
    meta = read_metadata(path)
    _check_direction(path, meta, direction)
    ort = require("onnxruntime", "export", "ONNX inference")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CheckpointError(f"ONNX Runtime cannot load {path}: {exc}") from None
    net = OnnxGenerator(session, meta.get("input_name", session.get_inputs()[0].name),
                        meta.get("output_name", session.get_outputs()[0].name),
                        meta.get("condition_name", CONDITION_NAME) if is_conditional(meta) else None)
    return _loaded(net, meta, path)


def load_torchscript(path: Path, direction: str, device: torch.device) -> LoadedGenerator:
    """A TorchScript export (`.ts` / `.torchscript`) on `device`."""
    meta = read_metadata(path)
    _check_direction(path, meta, direction)
    if not torchscript_trusted(path):
        raise CheckpointError(refusal(path))
    try:
        with quiet_torchscript():
            net = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 - torch.jit raises RuntimeError subclasses with long messages
        raise CheckpointError(f"cannot load TorchScript file {path}: {str(exc).splitlines()[0]}") from None
    net.eval()
    return _loaded(net, meta, path)


def load_safetensors(path: Path, direction: str, device: torch.device) -> LoadedGenerator:
    """A safetensors export: weights + config, rebuilt as the PyTorch generator."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    _check_direction(path, meta, direction)
    state = load_file(str(path), device="cpu")
    step = int(meta["step"]) if meta.get("step") else None
    if is_conditional(meta):
        columns, kind = condition_of(meta, path)
        return conditional_from_weights(parse_config(meta), state, columns, kind, path, step, device)
    return generator_from_state(parse_config(meta), state, direction, path, step, device)


# Export loaders by file suffix: (path, direction, device) -> LoadedGenerator.
LOADERS: dict[str, Callable[[Path, str, torch.device], LoadedGenerator]] = {
    ".onnx": load_onnx, ".ts": load_torchscript, ".torchscript": load_torchscript, ".safetensors": load_safetensors,
}
