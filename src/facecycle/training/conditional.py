"""`ConditionalTrainer`: the shared training loop (`facecycle.training.loop.Trainer`) running the
conditional objective (`facecycle.training.objectives.conditional`): one generator G(x, c), one
critic with a condition head, on one labelled folder.

Kept as the public name commands and tests build; it reads through to the objective for
G, D, table, columns, kind, sample_targets, fixed_samples, ...
"""

from __future__ import annotations

from pathlib import Path

from facecycle.config import Config
from facecycle.errors import ConfigError
from facecycle.training.objectives.conditional import (CONDITIONAL_KEYS, MODE, PREVIEW_IMAGES,  # noqa: F401
                                                       PREVIEW_UNITS, TARGET_NOISE, ConditionalObjective,
                                                       LabelledDataset, LabelledSampler, resolve_labels)
from facecycle.training.loop import ObjectiveView


class ConditionalTrainer(ObjectiveView):
    """Trains G (conditional generator) and D (critic with a condition head) on one labelled folder."""

    objective: ConditionalObjective

    def __init__(self, config: Config, run_dir: str | Path, rank: int = 0, world_size: int = 1,
                 progress: bool = True) -> None:
        if not config.is_conditional:
            raise ConfigError("ConditionalTrainer needs train.mode=conditional")
        super().__init__(config, run_dir, ConditionalObjective, rank=rank, world_size=world_size, progress=progress)


__all__ = ["CONDITIONAL_KEYS", "MODE", "PREVIEW_IMAGES", "PREVIEW_UNITS", "TARGET_NOISE", "ConditionalTrainer",
           "LabelledDataset", "LabelledSampler", "resolve_labels"]
