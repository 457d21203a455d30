"""Targets for conditional generators: `--target "AU06=1,AU12=1"` and `--expression joy`.

A target names values in the labels' own units: presence 0/1, intensity 0-5 (OpenFace
`AUxx_r`), categorical class=1. Units the target does not name are 0 (the target is absolute,
not a change). A name without a value means "active": 1 for presence and classes, and
`INTENSITY_ACTIVE` (3 on the 0-5 scale, a clearly visible movement) for intensities.

Expression presets (prototypical Action Units, EMFACS / Ekman & Friesen; joy, sadness,
surprise and contempt are the four combinations the seed report 004 (e8) tracked FID for):

==========  ======================================  ============================================
name        units                                   note
==========  ======================================  ============================================
joy         AU06 + AU12                             cheek raiser + lip corner puller
sadness     AU01 + AU04 + AU15                      inner brow raiser, brow lowerer, lip corner
                                                    depressor
surprise    AU01 + AU02 + AU05 + AU26               raised brows, upper lid raiser, jaw drop
contempt    AU12 + AU14                             (unilateral) lip corner puller + dimpler
anger       AU04 + AU05 + AU07 + AU23               brow lowerer, upper lid raiser, lid
                                                    tightener, lip tightener
fear        AU01 + AU02 + AU04 + AU05 + AU07 +      the report's own example (introduction)
            AU20 + AU26
disgust     AU09 + AU15 + AU16                      nose wrinkler, lip corner depressor, lower
                                                    lip depressor
neutral     (none)                                  every unit 0
==========  ======================================  ============================================

A preset needs all its units among the model's condition columns (an error lists them
otherwise). For a categorical model (one-hot classes) `--expression` picks the class of
that name or of a common spelling (joy = happiness = happy, anger = angry, ...).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Sequence

import torch
from torch import nn

from facecycle.data.labels import VALUE_MAX
from facecycle.errors import ConfigError
from facecycle.inference.generator import LoadedGenerator

EXPRESSION_TARGETS: dict[str, tuple[str, ...]] = {
    "joy": ("AU06", "AU12"),
    "sadness": ("AU01", "AU04", "AU15"),
    "surprise": ("AU01", "AU02", "AU05", "AU26"),
    "contempt": ("AU12", "AU14"),
    "anger": ("AU04", "AU05", "AU07", "AU23"),
    "fear": ("AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"),
    "disgust": ("AU09", "AU15", "AU16"),
    "neutral": (),
}
EXPRESSION_ALIASES: dict[str, tuple[str, ...]] = {
    "joy": ("happiness", "happy", "smile"),
    "sadness": ("sad",),
    "surprise": ("surprised",),
    "anger": ("angry",),
    "fear": ("scared", "afraid", "fearful"),
    "disgust": ("disgusted",),
    "neutral": ("calm",),
    "contempt": (),
}
INTENSITY_ACTIVE = 3.0
_UNIT = re.compile(r"^AU0*(\d+)(?:_[CR])?$", re.IGNORECASE)


def canonical_expression(name: str) -> str:
    key = name.strip().lower()
    for canon, aliases in EXPRESSION_ALIASES.items():
        if key == canon or key in aliases:
            return canon
    raise ConfigError(f"unknown expression {name!r}; choose one of: {', '.join(EXPRESSION_TARGETS)} "
                      f"(aliases: {', '.join(a for al in EXPRESSION_ALIASES.values() for a in al)})")


def _unit_key(name: str) -> str:
    m = _UNIT.match(name.strip())
    return f"AU{int(m.group(1)):02d}" if m else name.strip()


def target_vector(columns: Sequence[str], kind: str, target: str | None = None,
                  expression: str | None = None) -> torch.Tensor:
    """`(K,)` float in [0, 1] (network units) for a `--target` string and/or an `--expression`.

    Both may be given: the expression's units first, then the explicit values override.
    """
    if not target and not expression:
        raise ConfigError(f"this is a conditional model: pass --target (e.g. \"{columns[0]}=1\") or --expression "
                          f"({', '.join(EXPRESSION_TARGETS)}); its conditions are: {', '.join(columns)}")
    value_max = VALUE_MAX[kind]
    active = INTENSITY_ACTIVE if kind == "intensity" else 1.0
    keys = [_unit_key(c) if kind != "categorical" else c for c in columns]
    lookup = {k.lower(): i for i, k in enumerate(keys)}
    vector = torch.zeros(len(columns))
    if expression:
        if kind == "categorical":
            vector[_class_index(expression, columns)] = 1.0
        else:
            canon = canonical_expression(expression)
            missing = [u for u in EXPRESSION_TARGETS[canon] if u.lower() not in lookup]
            if missing:
                raise ConfigError(f"expression {canon!r} needs {', '.join(EXPRESSION_TARGETS[canon])}, but the model "
                                  f"has no {', '.join(missing)}; its units are: {', '.join(keys)}")
            for unit in EXPRESSION_TARGETS[canon]:
                vector[lookup[unit.lower()]] = active / value_max
    if target:
        for item in (s.strip() for s in target.split(",")):
            if not item:
                continue
            name, _, value_text = item.partition("=")
            key = (_unit_key(name) if kind != "categorical" else name.strip()).lower()
            if key not in lookup:
                raise ConfigError(f"{name.strip()!r} is not a condition of this model; its "
                                  f"{'classes' if kind == 'categorical' else 'units'} are: {', '.join(keys)}")
            try:
                value = float(value_text) if value_text.strip() else active
            except ValueError:
                raise ConfigError(f"--target {item!r}: {value_text!r} is not a number") from None
            if not 0.0 <= value <= value_max:
                raise ConfigError(f"--target {item!r}: {kind} values lie in [0, {value_max:g}]")
            vector[lookup[key]] = value / value_max
    return vector


def _class_index(expression: str, columns: Sequence[str]) -> int:
    lowered = [c.lower() for c in columns]
    key = expression.strip().lower()
    if key in lowered:
        return lowered.index(key)
    try:
        canon = canonical_expression(key)
    except ConfigError:
        canon = None
    if canon is not None:
        for name in (canon, *EXPRESSION_ALIASES[canon]):
            if name in lowered:
                return lowered.index(name)
    raise ConfigError(f"the model has no class {expression!r}; its classes are: {', '.join(columns)}")


def describe_target(vector: torch.Tensor, columns: Sequence[str], kind: str) -> str:
    """"AU06=1,AU12=1" (labels' units) for messages; "neutral (all 0)" for an all-zero vector."""
    value_max = VALUE_MAX[kind]
    items = [f"{c}={float(v) * value_max:g}" for c, v in zip(columns, vector) if float(v) > 0]
    return ",".join(items) if items else "all 0"


def available_expressions(columns: Sequence[str], kind: str) -> list[str]:
    """The `expression=` names this model can take: its classes (categorical), or the presets
    whose units are all among its condition columns (AU models), in the table's order."""
    if kind == "categorical":
        return list(columns)
    keys = {_unit_key(c).lower() for c in columns}
    return [name for name, units in EXPRESSION_TARGETS.items() if all(u.lower() in keys for u in units)]


def expression_values(columns: Sequence[str], kind: str) -> dict[str, list[float]]:
    """Each available expression's target in the labels' own units (presence 0/1, intensity 0-5,
    class 1), one value per column: what `facecycle serve`'s page sets its sliders to."""
    value_max = VALUE_MAX[kind]
    return {name: [round(float(v) * value_max, 4) for v in target_vector(columns, kind, expression=name)]
            for name in available_expressions(columns, kind)}


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
