"""Export one generator as ONNX, TorchScript or safetensors, with metadata that describes it.

Contract of every exported file
-------------------------------
Input ``image``: ``(N, C, H, W)`` float32 in ``[-1, 1]`` (``C`` = ``channels``, 1 or 3), any
batch size. Output ``translated``: the same shape, float32 in ``[-1, 1]``.

The generators themselves need H and W to be multiples of ``size_multiple`` (4 for ResNet,
``2**depth`` for U-Net). ONNX and TorchScript exports wrap the generator in
:class:`PadToMultiple`, which pads the input on the bottom/right by reflection (replication
when the pad would be larger than the image, exactly like ``facecycle translate``) and crops
the result back, so those files accept **any** H and W of at least 8 px (metadata
``pads_input = "true"``). A safetensors export holds the plain generator weights (``pads_input =
"false"``): the caller pads, as facecycle's own loader does.

Metadata (all values are strings; ONNX ``metadata_props``, TorchScript extra file
``facecycle.json``, safetensors ``__metadata__``): ``format``, ``facecycle_version``,
``direction``, ``channels``, ``value_range`` (``[-1, 1]``), ``layout``, ``size_multiple``,
``min_side``, ``pads_input``, ``crop_size``, ``generator``, ``step``, ``input_name``,
``output_name`` and ``config`` (the full training config as JSON).

Conditional generators (train.mode=conditional) are exported with a second input
``condition``: ``(N, K)`` float32 in ``[0, 1]`` (network units: presence 0/1, intensity / 5,
one-hot class), one value per condition column, same N as ``image``. Their metadata adds
``mode = "conditional"``, ``condition_columns`` (JSON list, the order of the K values),
``condition_kind`` (presence, intensity or categorical), ``condition_name`` and
``condition_range``; ``direction`` is ``"conditional"``. A safetensors export holds the
conditional generator's weights; loaders rebuild it from the stored config.

File names: facecycle recognises exports by suffix: ``.onnx``, ``.ts`` / ``.torchscript``
(TorchScript; ``.pt`` stays reserved for training checkpoints) and ``.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from facecycle import __version__
from facecycle.errors import ConfigError, FacecycleError, require
from facecycle.inference.formats import (CONDITION_NAME, EXPORT_FORMAT, FORMATS, INPUT_NAME, METADATA_FILE,
                                         MIN_SIDE, OUTPUT_NAME, SUFFIX_TO_FORMAT, quiet_torchscript)
from facecycle.inference.generator import LoadedGenerator
from facecycle.inference.trust import remember_export

DEFAULT_OPSET = 17


class ExportError(FacecycleError):
    """An export that cannot be written or read back."""


class PadToMultiple(nn.Module):
    """Run `net` on inputs of any size: pad bottom/right to a multiple of `multiple`, crop back.

    Input `(N, C, H, W)` float in [-1, 1] -> output `(N, C_out, H, W)`. Padding mirrors
    `facecycle.inference.translate.pad_to_multiple` (reflect; replicate when a pad is not
    smaller than its side) but is written with `index_select` on computed indices, which keeps H
    and W symbolic in TorchScript and ONNX graphs instead of baking the example's size in.
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = int(multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        y = self.net(_pad_bottom_right(x, self.multiple))
        return y[:, :, :h, :w]


def _pad_bottom_right(x: torch.Tensor, m: int) -> torch.Tensor:
    """`x` `(N, C, H, W)` padded at the bottom and right to multiples of `m`: reflected where the
    padding is shorter than the side, edge-repeated otherwise. Written with index tensors, so ONNX
    and TorchScript keep the sizes dynamic (TorchScript compiles it with its caller)."""
    h, w = x.shape[2], x.shape[3]
    ph = (m - h % m) % m
    pw = (m - w % m) % m
    rows = torch.arange(h + ph, device=x.device)
    cols = torch.arange(w + pw, device=x.device)
    use_reflect = (rows.new_full([1], ph) < h) & (cols.new_full([1], pw) < w)
    rows = torch.where(use_reflect, torch.where(rows < h, rows, 2 * (h - 1) - rows), rows.clamp(max=h - 1))
    cols = torch.where(use_reflect, torch.where(cols < w, cols, 2 * (w - 1) - cols), cols.clamp(max=w - 1))
    return x.index_select(2, rows).index_select(3, cols)


class ConditionalPadToMultiple(nn.Module):
    """`PadToMultiple` for conditional generators: `(x, c)` -> `net(pad(x), c)` cropped back.

    x: `(N, C, H, W)` float in [-1, 1], any H, W >= 8; c: `(N, K)` float in [0, 1].
    Returns `(N, C_out, H, W)` float in [-1, 1].
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = int(multiple)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        y = self.net(_pad_bottom_right(x, self.multiple), c)
        return y[:, :, :h, :w]


def export_metadata(generator: LoadedGenerator, pads_input: bool) -> dict[str, str]:
    """The string map stored in every export (see the module docstring)."""
    config = generator.config
    return {
        "format": EXPORT_FORMAT,
        "facecycle_version": __version__,
        "direction": generator.direction,
        "channels": str(generator.channels),
        "value_range": "[-1, 1]",
        "layout": "NCHW float32",
        "size_multiple": str(generator.size_multiple),
        "min_side": str(MIN_SIDE),
        "pads_input": "true" if pads_input else "false",
        "crop_size": str(generator.crop_size),
        "generator": str(config.get("model", {}).get("generator", "")),
        "step": "" if generator.step is None else str(generator.step),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "config": json.dumps(config, sort_keys=True),
        **({"mode": "conditional", "condition_columns": json.dumps(list(generator.condition_columns)),
            "condition_kind": str(generator.condition_kind), "condition_name": CONDITION_NAME,
            "condition_range": "[0, 1]"} if generator.conditional else {}),
    }


def format_for(output: Path, fmt: str | None) -> str:
    """The export format of `output`: from `fmt` (checked against the suffix) or the suffix alone."""
    suffix = output.suffix.lower()
    if fmt is None:
        if suffix not in SUFFIX_TO_FORMAT:
            raise ConfigError(f"cannot tell the export format from '{output.name}'; pass --format "
                              f"({', '.join(FORMATS)}) or use a suffix: {', '.join(SUFFIX_TO_FORMAT)}")
        return SUFFIX_TO_FORMAT[suffix]
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    if suffix not in FORMATS[fmt]:
        hint = " (.pt is reserved for training checkpoints)" if suffix == ".pt" else ""
        raise ConfigError(f"a {fmt} export must be named *{' or *'.join(FORMATS[fmt])} so that facecycle "
                          f"recognises it{hint}; e.g. --output {output.with_suffix(FORMATS[fmt][0])}")
    return fmt


def export_generator(generator: LoadedGenerator, output: str | Path, fmt: str | None = None,
                     opset: int = DEFAULT_OPSET) -> Path:
    """Write `generator` (a PyTorch generator from a checkpoint) to `output`; returns the path.

    A conditional generator is written with its condition as a second input (see the module
    docstring); a bound one (`load_generator(..., target=...)`) is written unbound, without its target.

    The file is written to a temporary name in the same folder and renamed at the end, so a
    failed export never leaves a partial file under the final name.
    """
    path = Path(output)
    fmt = format_for(path, fmt)
    from facecycle.inference.targets import FixedTargetGenerator

    if isinstance(generator.net, FixedTargetGenerator):  # a bound conditional generator: export it unbound
        generator = dataclasses.replace(generator, net=generator.net.net, target=None)
    if not isinstance(generator.net, nn.Module) or isinstance(generator.net, torch.jit.ScriptModule):
        raise ExportError(f"{generator.source} is already an export; export from a training checkpoint or run directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: Callable[[LoadedGenerator, Path, int], None] = _WRITERS[fmt]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(generator, tmp, opset)
        os.replace(tmp, path)
    except FacecycleError:
        raise
    except Exception as exc:  # noqa: BLE001 - tracer/exporter errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"{fmt} export of {generator.source} failed: {type(exc).__name__}: {first}"
                          + (" (try another --opset)" if fmt == "onnx" else "")) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _cpu_copy(generator: LoadedGenerator) -> nn.Module:
    import copy

    net = copy.deepcopy(generator.net).cpu().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _example(generator: LoadedGenerator) -> torch.Tensor:
    # Odd-sized example so that the padding branch is part of the recorded graph.
    side = max(generator.size_multiple, 16) + 3
    return torch.rand(1, generator.channels, side, side + 2) * 2 - 1


def _condition_example(generator: LoadedGenerator, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, len(generator.condition_columns))


def _write_torchscript(generator: LoadedGenerator, path: Path, opset: int) -> None:
    net = _cpu_copy(generator)
    example = _example(generator)
    padded_example = torch.nn.functional.pad(
        example, (0, (-example.shape[3]) % generator.size_multiple, 0, (-example.shape[2]) % generator.size_multiple))
    metadata = export_metadata(generator, pads_input=True)
    with quiet_torchscript():
        if generator.conditional:
            traced = torch.jit.trace(net, (padded_example, _condition_example(generator)), check_trace=False)
            scripted = torch.jit.script(ConditionalPadToMultiple(traced, generator.size_multiple))
        else:
            traced = torch.jit.trace(net, padded_example, check_trace=False)
            scripted = torch.jit.script(PadToMultiple(traced, generator.size_multiple))
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})
    remember_export(path)  # TorchScript is code: only files written here load without --trust-torchscript


def _write_onnx(generator: LoadedGenerator, path: Path, opset: int) -> None:
    onnx = require("onnx", "export", "ONNX export")
    axes = {0: "batch", 2: "height", 3: "width"}
    if generator.conditional:
        wrapped: nn.Module = ConditionalPadToMultiple(_cpu_copy(generator), generator.size_multiple).eval()
        args: tuple[torch.Tensor, ...] = (_example(generator), _condition_example(generator))
        names, dynamic = [INPUT_NAME, CONDITION_NAME], {INPUT_NAME: axes, CONDITION_NAME: {0: "batch"}, OUTPUT_NAME: axes}
    else:
        wrapped = PadToMultiple(_cpu_copy(generator), generator.size_multiple).eval()
        args, names, dynamic = (_example(generator),), [INPUT_NAME], {INPUT_NAME: axes, OUTPUT_NAME: axes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes; the graph is checked below
        # The TorchScript-based exporter handles the symbolic H/W arithmetic of PadToMultiple
        # without extra packages (the dynamo exporter needs onnxscript).
        torch.onnx.export(wrapped, args, str(path), dynamo=False, opset_version=opset,
                          input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic, do_constant_folding=True)
    model = onnx.load(str(path))
    for key, value in export_metadata(generator, pads_input=True).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "facecycle", __version__
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _write_safetensors(generator: LoadedGenerator, path: Path, opset: int) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in generator.net.state_dict().items()}
    save_file(state, str(path), metadata=export_metadata(generator, pads_input=False))


_WRITERS: dict[str, Callable[[LoadedGenerator, Path, int], None]] = {
    "onnx": _write_onnx,
    "torchscript": _write_torchscript,
    "safetensors": _write_safetensors,
}
