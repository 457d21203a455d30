"""Inference backends: run a loaded generator with PyTorch (eager), PyTorch with Winograd
convolutions, or ONNX Runtime (CPU).

    generator = with_backend(load_generator("runs/x"), "auto")   # or "torch" / "winograd" / "onnxruntime"

`winograd` is PyTorch with the wide 3×3 convolutions computed by Winograd F(2×2, 3×3)
(facecycle.ops.winograd; fp32 on the CPU, outputs equal to float rounding): it runs every
generator PyTorch runs and needs no extra; elsewhere (CUDA, bf16) it is plain PyTorch.

ONNX Runtime runs the graph that `facecycle export --format onnx` writes (the generator inside
`PadToMultiple`, fp32, any H and W), exported once per set of weights into facecycle's own folder (`$FACECYCLE_HOME/onnx/`, default
`~/.cache/facecycle/onnx/`, see facecycle.inference.trust.facecycle_home) and reused by later runs. Outputs equal PyTorch's to float rounding (~1e-5 on [-1, 1]).

Why `auto` picks what it picks (see BENCHMARKS.md, "Inference backends"): on the CPU in fp32,
ONNX Runtime was faster than PyTorch eager for the paper's ResNet-9 generator on this project's
benchmark machine, so `auto` uses it there; bf16 (where the CPU runs it natively) is faster
still and is PyTorch-only, so a bf16 request keeps PyTorch, as do CUDA devices. What ONNX
Runtime cannot run as facecycle does (attention generators: their mask and full-resolution
composition need the two network outputs separately), what `auto` does not send to it
(conditional models, where no ONNX Runtime speed-up was measured) and any generator when
onnxruntime is not installed get the `winograd` backend on the CPU in fp32 (1.0–1.4× PyTorch's
speed measured; it never loses much, since narrow convolutions stay direct). Conditional models
run in ONNX Runtime when asked for (`onnxruntime`) with their condition as a second graph input
(unbound: `net(x, c)`; bound: the target is fed per call). `auto` never fails: when the export
fails it warns and uses `winograd`. `onnxruntime` is strict: it raises when it cannot be used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Optional

import torch

from facecycle.errors import ConfigError, require
from facecycle.inference.loading import LoadedGenerator

BACKENDS = ("auto", "torch", "winograd", "onnxruntime")
EXTRA = "export"  # the pip extra that brings onnx + onnxruntime


def cache_dir() -> Path:
    """Folder for cached ONNX exports (created on first use)."""
    from facecycle.inference.trust import facecycle_home

    return facecycle_home() / "onnx"


def fingerprint(generator: LoadedGenerator) -> str:
    """A hex digest of everything the exported graph depends on: facecycle's version (the export
    code), torch's version (the exporter), the direction, the config and every weight's bytes."""
    from facecycle import __version__

    net = generator.net
    assert isinstance(net, torch.nn.Module)
    digest = hashlib.sha256()
    header = {"facecycle": __version__, "torch": torch.__version__, "direction": generator.direction,
              "config": generator.config}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in net.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:32]


def unsupported_reason(generator: LoadedGenerator, device: torch.device, precision: str = "fp32") -> Optional[str]:
    """Why ONNX Runtime cannot run `generator` as facecycle would with PyTorch; None when it can."""
    from facecycle.inference.targets import FixedTargetGenerator
    from facecycle.inference.exported import OnnxGenerator
    from facecycle.models.conditional_nets import ConditionalResnetGenerator
    from facecycle.models.generators import ResnetGenerator, UnetGenerator

    net = generator.net.net if isinstance(generator.net, FixedTargetGenerator) else generator.net
    if isinstance(net, OnnxGenerator):
        return None  # already an ONNX export, run by ONNX Runtime
    if device.type != "cpu":
        return f"the onnxruntime backend runs on the CPU; this generator is on {device.type} (use --backend torch)"
    if precision == "bf16":
        return "the onnxruntime backend runs fp32 only (use --backend torch for bf16)"
    if type(net) not in (ResnetGenerator, UnetGenerator, ConditionalResnetGenerator):
        return ("the onnxruntime backend runs plain and conditional ResNet/U-Net generators (from checkpoints, "
                f"safetensors or ONNX files); this one is a {type(net).__name__} (attention models need PyTorch "
                "for their masks; TorchScript files run in PyTorch): use --backend torch")
    return None


def _resolved_precision(precision: str, device: torch.device) -> str:
    if precision == "fp32":
        return precision
    from facecycle.hardware import resolve_precision

    with warnings.catch_warnings():  # translate itself warns about emulated bf16, once
        warnings.simplefilter("ignore")
        return resolve_precision(precision, device.type)


def with_backend(generator: LoadedGenerator, backend: str = "torch", precision: str = "fp32") -> LoadedGenerator:
    """`generator` to run with `backend` ("auto", "torch", "winograd" or "onnxruntime"; see the module doc).

    `precision` is the one inference will use ("fp32", "bf16" or "auto"; with "onnxruntime",
    "auto" means its fp32, only an explicit "bf16" is refused). Returns the generator
    itself (torch), a copy with Winograd convolutions (winograd), or a copy whose `net` is an
    ONNX Runtime session with the same call contract:
    `(N, C, H, W)` float32 in [-1, 1] -> same shape, float32, on the CPU.
    Raises ConfigError (unknown backend, or onnxruntime where it cannot run) and
    MissingExtraError (onnxruntime asked for but not installed: names the `export` extra).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    if backend == "torch":
        return generator
    if backend == "winograd":
        return winograd_generator(generator)
    from facecycle.inference.targets import FixedTargetGenerator
    from facecycle.inference.exported import OnnxGenerator
    from facecycle.inference.translate import _device

    if isinstance(generator.net, OnnxGenerator):
        return generator
    device = _device(generator)
    # auto precision + auto backend: bf16 where native (faster than ORT's fp32) keeps PyTorch;
    # auto precision + onnxruntime: the user chose the backend, so "auto" settles on its fp32.
    requested = _resolved_precision(precision, device) if backend == "auto" else precision
    if backend == "auto":
        return _auto(generator, device, requested)
    if isinstance(generator.net, FixedTargetGenerator):  # bound conditional: convert the network, keep the target
        inner = dataclasses.replace(generator, net=generator.net.net, target=None)
        converted = with_backend(inner, backend, precision)
        if converted is inner:
            return generator
        return dataclasses.replace(generator, net=FixedTargetGenerator(converted.net, generator.net.target[0],
                                                                       generator.size_multiple))
    reason = unsupported_reason(generator, device, "fp32" if requested == "auto" else requested)
    if reason is not None:
        raise ConfigError(reason)
    return onnxruntime_generator(generator)


def _auto(generator: LoadedGenerator, device: torch.device, precision: str) -> LoadedGenerator:
    """`--backend auto`: ONNX Runtime for plain ResNet/U-Net generators on the CPU in fp32, else
    Winograd convolutions for what ONNX Runtime cannot run there (attention, conditional
    models; or onnxruntime not installed), else PyTorch as it is (CUDA, bf16). Never fails."""
    if device.type != "cpu" or precision != "fp32":
        return generator
    if generator.conditional or unsupported_reason(generator, device, "fp32") is not None or not _installed():
        return winograd_generator(generator)
    try:
        return onnxruntime_generator(generator)
    except Exception as exc:  # noqa: BLE001 - auto must never be worse than torch
        warnings.warn(f"--backend auto: ONNX Runtime unavailable for this generator ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}); using PyTorch (winograd)", stacklevel=3)
        return winograd_generator(generator)


def winograd_generator(generator: LoadedGenerator) -> LoadedGenerator:
    """A copy of `generator` whose 3×3 stride-1 convolutions run Winograd F(2×2, 3×3) (PyTorch, fp32
    on the CPU; see facecycle.ops.winograd). Any generator PyTorch runs (plain, attention,
    conditional) works; on CUDA, in bf16, or for TorchScript/ONNX networks the convolutions stay
    direct, so this never fails. The caller's generator is left as it was."""
    import copy

    from torch import nn

    from facecycle.ops.winograd import eligible, set_conv_algorithm

    net = generator.net
    if not isinstance(net, nn.Module) or isinstance(net, torch.jit.ScriptModule):
        return generator
    if not any(eligible(m) for m in net.modules()):
        return generator
    fast = copy.deepcopy(net)
    set_conv_algorithm(fast, "winograd")
    return dataclasses.replace(generator, net=fast)


def _installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def onnxruntime_generator(generator: LoadedGenerator, threads: Optional[int] = None) -> LoadedGenerator:
    """Export `generator` to the cache (once per weights) and load it into an ONNX Runtime session.

    `threads`: ONNX Runtime intra-op threads; default torch's current count, so `--threads`
    (and facecycle's busy-core detection) apply to both backends alike."""
    ort = require("onnxruntime", EXTRA, "--backend onnxruntime")
    require("onnx", EXTRA, "--backend onnxruntime (exporting the generator)")
    from facecycle.inference.export import CONDITION_NAME, INPUT_NAME, OUTPUT_NAME, export_generator
    from facecycle.inference.exported import OnnxGenerator

    path = cache_dir() / f"{generator.direction}-{fingerprint(generator)}.onnx"
    if not path.is_file():
        # export_generator writes to a temporary name and renames: concurrent runs never see a
        # partial file, and the last writer of identical content wins.
        export_generator(generator, path, "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    condition = CONDITION_NAME if generator.conditional else None
    return dataclasses.replace(generator, net=OnnxGenerator(session, INPUT_NAME, OUTPUT_NAME, condition))
