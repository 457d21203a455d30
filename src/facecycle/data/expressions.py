"""Condition targets for conditional models: `--target "AU06=1,AU12=1"` and `--expression joy`,
as `(K,)` vectors in [0, 1] (network units). Pure data and tensor arithmetic: training,
evaluation and inference all use it (`facecycle.inference.targets` binds targets to generators).

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

import re
from typing import Sequence

import torch

from facecycle.data.labels import VALUE_MAX
from facecycle.errors import ConfigError

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


# Our presets -> the class names of the expression classifier that judges them
# (`facecycle.evaluation.expression.EXPRESSIONS`, the `fer` model's classes).
CLASSIFIER_NAMES: dict[str, str] = {"joy": "happy", "sadness": "sad", "surprise": "surprise", "anger": "angry",
                                    "fear": "fear", "disgust": "disgust", "neutral": "neutral"}


def classifier_expression(name: str) -> str | None:
    """The expression classifier's class for a preset or class name ("joy", "happiness" -> "happy"),
    None when it has no such class (contempt, or a class name it does not know)."""
    try:
        return CLASSIFIER_NAMES.get(canonical_expression(name))
    except ConfigError:
        return None


def expression_targets(columns: Sequence[str], kind: str,
                       names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """`{name: (K,) float tensor in [0, 1]}`, the target of each named expression (default: every
    one the model takes, `available_expressions`: its classes, or the presets whose units it has).
    Raises ConfigError for a name the model cannot take, or when none fits."""
    chosen = list(names) if names else available_expressions(columns, kind)
    if not chosen:
        raise ConfigError(f"no expression preset fits this model's conditions ({', '.join(columns)}); "
                          f"name targets it takes (presets: {', '.join(EXPRESSION_TARGETS)})")
    return {name: target_vector(columns, kind, expression=name) for name in chosen}
