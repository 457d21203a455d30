"""Load one generator (a2b or b2a) for inference from a run directory, a checkpoint or an export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from facecycle.config import Config
from facecycle.errors import CheckpointError, ConfigError

DIRECTIONS = {"a2b": "G_ab", "b2a": "G_ba"}

# Extra loaders by file suffix (export formats register here: .safetensors, .onnx, .ts ...).
LOADERS: dict[str, Callable[[Path, str, torch.device], "LoadedGenerator"]] = {}


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
    if direction not in DIRECTIONS:
        raise ConfigError(f"unknown direction '{direction}'; choose one of: {', '.join(DIRECTIONS)}")
    return direction


def size_multiple_of(net: nn.Module) -> int:
    return int(getattr(net, "size_multiple", 1))


def generator_from_state(config_dict: dict[str, Any], state_dict: dict[str, torch.Tensor], direction: str,
                         source: Path, step: int | None = None, device: torch.device | str = "cpu") -> LoadedGenerator:
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


def resolve_model_file(path: str | Path, direction: str = "a2b") -> Path:
    """A run directory -> its newest checkpoint; a file -> itself; the name of a built-in model
    (facecycle.zoo, e.g. "smile") -> its export for `direction`."""
    from facecycle.runtime import checkpoints as ckpt
    from facecycle.zoo import BUILTIN_MODELS, builtin

    model = builtin(path)
    if model is not None:
        if not model.available():
            raise CheckpointError(f"the built-in model '{model.name}' is not installed (missing {model.path(direction)}); "
                                  "reinstall facecycle")
        return model.path(direction)
    p = Path(path)
    if not p.exists() and len(p.parts) == 1 and not p.suffix:
        raise CheckpointError(f"no run directory, checkpoint or built-in model called '{path}'; "
                              f"built-in models: {', '.join(BUILTIN_MODELS)}")
    return ckpt.resolve_checkpoint(path)


def load_generator(path: str | Path, direction: str = "a2b", device: torch.device | str | None = None,
                   target: str | torch.Tensor | None = None, expression: str | None = None) -> LoadedGenerator:
    """Run dir (newest checkpoint), a `step_*.pt`/`best.pt` checkpoint, or an exported file.

    Conditional checkpoints (train.mode=conditional) need `target` ("AU06=1,AU12=1" or a `(K,)`
    tensor in [0, 1]) and/or `expression` ("joy"); `direction` does not apply to them.
    """
    from facecycle.runtime import checkpoints as ckpt
    from facecycle.runtime.device import resolve_device

    check_direction(direction)
    dev = resolve_device("auto") if device is None else torch.device(device)
    file = resolve_model_file(path, direction)
    import facecycle.inference.exported  # noqa: F401  (registers the .onnx/.ts/.safetensors loaders)

    loader = LOADERS.get(file.suffix.lower())
    if loader is not None:
        return loader(file, direction, dev)
    state = ckpt.load_file(file, map_location="cpu")
    if state.get("mode") == "conditional":
        return conditional_from_state(state, file, dev, target, expression)
    if target is not None or expression:
        raise ConfigError(f"{file} is a two-domain CycleGAN ({', '.join(state['nets'])}): --target/--expression "
                          "apply to conditional models only; use --direction a2b|b2a")
    name = DIRECTIONS[direction]
    if name not in state["nets"]:
        raise CheckpointError(f"{file} has no {name} generator (it has: {', '.join(state['nets'])})")
    step = state.get("counters", {}).get("step")
    return generator_from_state(state["config"], state["nets"][name], direction, file, step, dev)


def conditional_from_state(state: dict[str, Any], source: Path, device: torch.device | str,
                           target: str | torch.Tensor | None, expression: str | None) -> LoadedGenerator:
    """The conditional generator of a checkpoint, wrapped with its target into a plain image -> image net."""
    from facecycle.inference.conditional import FixedTargetGenerator, target_vector
    from facecycle.models.conditional import build_conditional_generator

    config = Config.from_dict(state["config"])
    columns = tuple(state["condition"]["columns"])
    kind = str(state["condition"]["kind"])
    if isinstance(target, torch.Tensor):
        vector = target.detach().float().reshape(-1).cpu()
        if vector.numel() != len(columns) or not bool(((vector >= 0) & (vector <= 1)).all()):
            raise ConfigError(f"target must hold {len(columns)} values in [0, 1] ({', '.join(columns)})")
    else:
        vector = target_vector(columns, kind, target, expression)
    net = build_conditional_generator(config)
    try:
        net.load_state_dict(state["nets"]["G"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{source}: the conditional generator weights do not fit the architecture in its "
                              f"config ({str(exc).splitlines()[0]})") from None
    wrapped = FixedTargetGenerator(net, vector).to(device).eval()
    for p in wrapped.parameters():
        p.requires_grad_(False)
    step = state.get("counters", {}).get("step")
    return LoadedGenerator(wrapped, "conditional", config.data.channels, wrapped.size_multiple, config.data.crop_size,
                           config.to_dict(), source, step, columns, kind, vector)
