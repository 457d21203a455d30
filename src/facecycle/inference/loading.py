"""Load one generator (a2b or b2a) for inference from a run directory, a checkpoint or an export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facecycle.errors import CheckpointError, ConfigError
from facecycle.inference.exported import LOADERS
from facecycle.inference.generator import (DIRECTIONS, LoadedGenerator, check_direction, conditional_from_weights,
                                           generator_from_state, size_multiple_of)

__all__ = ["DIRECTIONS", "LoadedGenerator", "check_direction", "conditional_from_state", "generator_from_state",
           "load_generator", "load_model", "model_mode", "resolve_model_file", "size_multiple_of"]

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


def model_mode(path: str | Path) -> str:
    """"conditional" or "cyclegan" for a run directory, checkpoint or export, without building it."""
    from facecycle.runtime import checkpoints as ckpt

    file = resolve_model_file(path)
    if file.suffix.lower() in LOADERS:
        from facecycle.inference.exported import is_conditional, read_metadata

        return "conditional" if is_conditional(read_metadata(file)) else "cyclegan"
    # Mapped, not read: the weights (and optimizer state) of a large checkpoint stay on disk.
    state = ckpt.load_file(file, map_location="cpu", mmap=True)
    return "conditional" if state.get("mode") == "conditional" else "cyclegan"


def load_model(path: str | Path, direction: str = "a2b", device: torch.device | str | None = None) -> LoadedGenerator:
    """Like `load_generator`, but a conditional model (checkpoint or export) comes back *unbound*:
    `net(x, c)` with `c` the `(N, K)` condition in [0, 1] (`needs_target` is True); bind a target with
    `facecycle.inference.targets.bind_target`. `direction` does not apply to conditional models.
    Plain (CycleGAN) models come back as `load_generator` returns them."""
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
        return conditional_from_state(state, file, dev)
    name = DIRECTIONS[direction]
    if name not in state["nets"]:
        raise CheckpointError(f"{file} has no {name} generator (it has: {', '.join(state['nets'])})")
    step = state.get("counters", {}).get("step")
    return generator_from_state(state["config"], state["nets"][name], direction, file, step, dev)


def load_generator(path: str | Path, direction: str = "a2b", device: torch.device | str | None = None,
                   target: str | torch.Tensor | None = None, expression: str | None = None) -> LoadedGenerator:
    """Run dir (newest checkpoint), a `step_*.pt`/`best.pt` checkpoint, or an exported file.

    Conditional models (train.mode=conditional; checkpoints and their exports) need `target`
    ("AU06=1,AU12=1" or a `(K,)` tensor in [0, 1]) and/or `expression` ("joy") and come back with
    it bound (`net(x)`); `direction` does not apply to them. A target for a plain CycleGAN is a
    ConfigError.
    """
    generator = load_model(path, direction, device)
    if generator.needs_target:
        from facecycle.inference.targets import bind_target

        return bind_target(generator, target, expression)
    if target is not None or expression:
        raise ConfigError(f"{generator.source} is a two-domain CycleGAN generator: --target/--expression "
                          "apply to conditional models only; use --direction a2b|b2a")
    return generator


def conditional_from_state(state: dict[str, Any], source: Path, device: torch.device | str,
                           target: str | torch.Tensor | None = None, expression: str | None = None) -> LoadedGenerator:
    """The conditional generator of a checkpoint: unbound (`net(x, c)`) without `target`/`expression`,
    else wrapped with its target into a plain image -> image net."""
    columns = tuple(state["condition"]["columns"])
    kind = str(state["condition"]["kind"])
    generator = conditional_from_weights(state["config"], state["nets"].get("G", {}), columns, kind, source,
                                         state.get("counters", {}).get("step"), device)
    if target is None and not expression:
        return generator
    from facecycle.inference.targets import bind_target

    return bind_target(generator, target, expression)
