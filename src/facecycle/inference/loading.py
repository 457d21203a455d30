"""Load one generator (a2b or b2a) for inference from a run directory, a checkpoint or an export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facecycle.config import Config
from facecycle.errors import CheckpointError, ConfigError
from facecycle.inference.exported import LOADERS
from facecycle.inference.generator import (DIRECTIONS, LoadedGenerator, check_direction, generator_from_state,
                                           size_multiple_of)

__all__ = ["DIRECTIONS", "LoadedGenerator", "check_direction", "conditional_from_state", "generator_from_state",
           "load_generator", "resolve_model_file", "size_multiple_of"]

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
    from facecycle.models.build import build_conditional_generator

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
