"""Targets for conditional generators: `--target "AU06=1,AU12=1"` and `--expression joy`.

A target names values in the labels' own units: presence 0/1, intensity 0-5 (OpenFace
`AUxx_r`), categorical class=1. Units the target does not name are 0 (the target is absolute,
not a change). A name without a value means "active": 1 for presence and classes, and
`INTENSITY_ACTIVE` (3 on the 0-5 scale, a clearly visible movement) for intensities.

Expression presets (joy AU06+AU12, sadness, surprise, contempt, anger, fear, disgust, neutral;
the table and the target-vector functions are in `facecycle.data.expressions`, where training
and evaluation use them without importing inference). This module binds a target to a loaded
generator (`bind_target`, `FixedTargetGenerator`) and describes a model's conditions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch
from torch import nn

from facecycle.data.expressions import expression_values, target_vector
from facecycle.data.labels import VALUE_MAX
from facecycle.errors import ConfigError
from facecycle.inference.generator import LoadedGenerator


def check_target_tensor(target: torch.Tensor, columns: Sequence[str]) -> torch.Tensor:
    """`target` as a `(K,)` float32 CPU vector; ConfigError unless it holds K values in [0, 1]."""
    vector = target.detach().float().reshape(-1).cpu()
    if vector.numel() != len(columns) or not bool(((vector >= 0) & (vector <= 1)).all()):
        raise ConfigError(f"a target tensor must hold {len(columns)} values in [0, 1] (network units, one per "
                          f"condition: {', '.join(columns)}); got shape {tuple(target.shape)}")
    return vector


def bind_target(generator: LoadedGenerator, target: str | torch.Tensor | None = None,
                expression: str | None = None) -> LoadedGenerator:
    """An unbound conditional generator with its target bound: a copy whose `net(x)` maps
    `(N, C, H, W)` in [-1, 1] to the same shape, like a plain generator.

    `target`: an AU spec as `--target` takes it ("AU06=1,AU12=1", labels' units) or a `(K,)`
    tensor in [0, 1] (network units); `expression`: a preset or class name. Raises ConfigError
    when neither is given or they do not fit the model's conditions.
    """
    if not generator.needs_target:
        raise ConfigError("bind_target needs an unbound conditional generator (from load_model)")
    columns, kind = generator.condition_columns, generator.condition_kind or "presence"
    if isinstance(target, torch.Tensor):
        vector = check_target_tensor(target, columns)
    else:
        vector = target_vector(columns, kind, target, expression)
    from facecycle.inference.translate import _device

    wrapped = FixedTargetGenerator(generator.net, vector, generator.size_multiple).to(_device(generator)).eval()
    return dataclasses.replace(generator, net=wrapped, target=vector)


class FixedTargetGenerator(nn.Module):
    """A conditional generator with its target bound: `(N, C, H, W)` -> `(N, C, H, W)`, like a plain one.

    `net` is any `(x, c) -> y` callable: the PyTorch network, a TorchScript module or an ONNX
    Runtime session wrapper (`OnnxGenerator`); `target` is `(K,)` float in [0, 1].
    """

    def __init__(self, net: nn.Module | Callable[..., torch.Tensor], target: torch.Tensor,
                 size_multiple: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("target", target.detach().float().reshape(1, -1).clone())
        self.size_multiple = int(size_multiple if size_multiple is not None else getattr(net, "size_multiple", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.target.to(x.dtype).expand(x.shape[0], -1))


def condition_info(generator: LoadedGenerator) -> dict[str, Any]:
    """JSON-ready description of a conditional generator's conditions (for `Translator.info`)."""
    kind = generator.condition_kind or "presence"
    return {"columns": list(generator.condition_columns), "kind": kind, "value_max": VALUE_MAX[kind],
            "expressions": expression_values(generator.condition_columns, kind)}
