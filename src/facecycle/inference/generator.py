"""A loaded generator (`LoadedGenerator`) and how one is built from a config and its weights.

The common ground of the loaders: `loading` (checkpoints, dispatch by file) and `exported`
(ONNX, TorchScript, safetensors) both build on it, and it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from facecycle.config import Config
from facecycle.errors import CheckpointError, ConfigError

DIRECTIONS = {"a2b": "G_ab", "b2a": "G_ba"}


@dataclass
class LoadedGenerator:
    """A ready-to-run generator: `net` maps `(N, C, H, W)` in [-1, 1] to the same shape.

    `size_multiple`: H and W must be multiples of it (inference pads); `crop_size`: the training
    resolution; `channels`: 1 or 3. A conditional generator is loaded with its target bound
    (`net` closes over it, see `facecycle.inference.conditional`): `condition_columns` and
    `condition_kind` describe its conditions, `target` is the `(K,)` vector in [0, 1].
    """

    net: nn.Module | Callable[[torch.Tensor], torch.Tensor]
    direction: str
    channels: int
    size_multiple: int
    crop_size: int
    config: dict[str, Any]
    source: Path
    step: int | None = None
    condition_columns: tuple[str, ...] = ()
    condition_kind: str | None = None
    target: torch.Tensor | None = None


def check_direction(direction: str) -> str:
    """`direction` itself when it is a2b or b2a, else a ConfigError naming the choices."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"unknown direction '{direction}'; choose one of: {', '.join(DIRECTIONS)}")
    return direction


def size_multiple_of(net: nn.Module) -> int:
    """The H/W multiple a generator needs (1 when it declares none)."""
    return int(getattr(net, "size_multiple", 1))


def generator_from_state(config_dict: dict[str, Any], state_dict: dict[str, torch.Tensor], direction: str,
                         source: Path, step: int | None = None, device: torch.device | str = "cpu") -> LoadedGenerator:
    """Build the generator that `config_dict` describes, load `state_dict` into it, frozen in eval mode on `device`."""
    from facecycle.models.build import build_generator

    config = Config.from_dict(config_dict)
    net = build_generator(config)
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source}: the {DIRECTIONS[direction]} weights do not fit the architecture in its config "
            f"({str(exc).splitlines()[0]})"
        ) from None
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return LoadedGenerator(net, direction, config.data.channels, size_multiple_of(net), config.data.crop_size,
                           config.to_dict(), source, step)
