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
    resolution; `channels`: 1 or 3.

    Conditional generators (`direction == "conditional"`, `condition_columns` non-empty) come in
    two states: *unbound* (`target` None): `net(x, c)` takes the image and a `(N, K)` float
    condition in [0, 1] (the loaders' `load_model` returns this); *bound* (`target` the `(K,)`
    vector in [0, 1]): `net(x)` closes over the target like a plain generator (see
    `facecycle.inference.targets.bind_target`). `condition_kind` is presence, intensity or
    categorical.
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

    @property
    def conditional(self) -> bool:
        """True for a conditional generator (bound or not)."""
        return bool(self.condition_columns)

    @property
    def needs_target(self) -> bool:
        """True for an unbound conditional generator: `net(x, c)`, not yet usable as `net(x)`."""
        return self.conditional and self.target is None


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
    from facecycle.build import build_generator

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


def conditional_from_weights(config_dict: dict[str, Any], state_dict: dict[str, torch.Tensor],
                             columns: tuple[str, ...] | list[str], kind: str, source: Path, step: int | None = None,
                             device: torch.device | str = "cpu") -> LoadedGenerator:
    """An *unbound* conditional generator (`net(x, c)`: x `(N, C, H, W)` in [-1, 1], c `(N, K)` in
    [0, 1]) built from its config and weights, frozen in eval mode on `device`."""
    from facecycle.build import build_conditional_generator

    config = Config.from_dict(config_dict)
    net = build_conditional_generator(config)
    try:
        net.load_state_dict(state_dict)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{source}: the conditional generator weights do not fit the architecture in its "
                              f"config ({str(exc).splitlines()[0]})") from None
    if len(columns) != int(getattr(net, "condition_dim", len(columns))):
        raise CheckpointError(f"{source}: {len(columns)} condition columns but the generator expects "
                              f"{getattr(net, 'condition_dim')}")
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return LoadedGenerator(net, "conditional", config.data.channels, size_multiple_of(net), config.data.crop_size,
                           config.to_dict(), source, step, tuple(columns), str(kind), None)
