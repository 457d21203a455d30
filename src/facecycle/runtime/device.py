"""Device and precision selection."""

from __future__ import annotations

import contextlib

import torch

from facecycle.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU; an explicit CUDA device that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device asks for CUDA but no CUDA GPU is available; use --set train.device=cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{name} does not exist: {torch.cuda.device_count()} CUDA device(s) present")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU/CUDA, fp16 on CUDA, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)
