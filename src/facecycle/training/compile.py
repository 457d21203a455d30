"""`train.compile`: whether the training forward passes go through torch.compile, and the
eager fallback when compiling fails.

Modes: `off` (default: eager, what every test and the reference equivalence is measured with),
`on` (compile; a failure warns once and runs eagerly) and `auto`, the fastest *safe* choice:

* CUDA: compile when Triton is importable (inductor's GPU code generator); else eager.
* CPU: eager. Measured on the project's benchmark CPU (AMD Zen 5, AVX-512; BENCHMARKS.md,
  "Training step: what was tried"): convolutions (oneDNN, called as-is by inductor) are ~90 % of
  an fp32 step, so compiling fuses only the rest (instance norm, reflection pad, activations)
  and the measured steady-state gain stayed within run-to-run noise, while compiling the
  ResNet-9 + PatchGAN graphs cost minutes on 2 cores. `on` is there for CPUs where it pays;
  it needs a C++ compiler (`$CXX`, g++, c++ or clang++), and without one it warns and runs eagerly
  before trying.

Compiling wraps the forward *callables* only; `trainer.G_ab` etc. stay the plain modules, so
checkpoints hold the same `state_dict` keys (no `_orig_mod.` prefix) with or without compile,
and a run can be resumed with another `train.compile`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from typing import Any, Callable, Optional

import torch

COMPILE_MODES = ("off", "on", "auto")


def cxx_compiler() -> Optional[str]:
    """The C++ compiler inductor's CPU backend would call (`$CXX`, else g++, c++, clang++), or None."""
    for name in ([os.environ["CXX"]] if os.environ.get("CXX") else []) + ["g++", "c++", "clang++"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_decision(mode: str, device: torch.device) -> tuple[bool, str]:
    """(compile the training step?, why) for `train.compile` = `mode` on `device`."""
    if mode == "off":
        return False, "train.compile=off"
    if device.type == "cpu" and cxx_compiler() is None:
        return False, "no C++ compiler found ($CXX, g++, c++, clang++); torch.compile's CPU backend needs one"
    if mode == "on":
        return True, "train.compile=on"
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return False, "auto: Triton is not installed, so inductor cannot generate GPU kernels"
        return True, "auto: CUDA with Triton"
    return False, "auto: eager on the CPU (convolution-bound; compiling measured no faster, see BENCHMARKS.md)"


def resolve_compile(mode: str, device: torch.device, warn: bool = True) -> bool:
    """`compile_decision` that warns when `on` cannot be honoured (no C++ compiler)."""
    use, why = compile_decision(mode, device)
    if mode == "on" and not use and warn:
        warnings.warn(f"train.compile=on: {why}; running eagerly", stacklevel=2)
    return use


def compiled(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """torch.compile(fn) that falls back to `fn` (eager) with one warning when compiling fails,
    e.g. no C++ compiler for the CPU backend, no Triton for CUDA, an unsupported Python.

    Compilation is lazy (first call), so the fallback also covers failures inside that call."""
    try:
        fast = torch.compile(fn)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
        warnings.warn(f"train.compile: cannot compile {name} ({type(exc).__name__}: {exc}); running eagerly",
                      stacklevel=2)
        return fn
    state = {"fn": fast}

    def call(*args: Any, **kwargs: Any) -> Any:
        if state["fn"] is fn:
            return fn(*args, **kwargs)
        try:
            return state["fn"](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - compilation happens lazily, on the first call
            if not is_compile_error(exc):
                raise
            warnings.warn(f"train.compile: compiling {name} failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); running eagerly", stacklevel=2)
            state["fn"] = fn
            return fn(*args, **kwargs)

    return call


def is_compile_error(exc: BaseException) -> bool:
    """True for errors raised by dynamo / inductor / AOTAutograd / FX or a missing toolchain,
    False for ordinary errors of the model itself (those must surface)."""
    module = type(exc).__module__ or ""
    return (module.startswith(("torch._dynamo", "torch._inductor", "torch._functorch", "torch.fx"))
            or "compile" in type(exc).__name__.lower() or isinstance(exc, (ImportError, OSError)))
