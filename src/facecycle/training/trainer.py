"""The public trainers: the shared training loop (`facecycle.training.loop.Trainer`) running one
objective (`facecycle.training.objectives`).

`CycleGANTrainer` (G_ab, G_ba, D_a, D_b on two unpaired folders) and `ConditionalTrainer` (G(x, c)
and a critic with a condition head, on one labelled folder) are what commands, the demo,
face-off, benchmarks and tests build. Besides the loop's own attributes (step, epoch, opt_G,
sched_G, scaler, logger, fit, save, resume, ...) they read through to their objective: G_ab, G_ba,
D_a, D_b, pool_a, g_step, d_step, fixed_samples, ... or G, D, table, columns, kind, sample_targets.
"""

from __future__ import annotations

from pathlib import Path

from facecycle.config import Config
from facecycle.errors import ConfigError, TrainingDiverged  # noqa: F401  (re-exported: tests and callers import it from here)
from facecycle.training.loop import (ARCHITECTURE_KEYS, ObjectiveView, StopSignals,  # noqa: F401  (re-exported)
                                     architecture_mismatches, set_requires_grad)
from facecycle.training.objectives.conditional import ConditionalObjective
from facecycle.training.objectives.cyclegan import CycleGANObjective


class CycleGANTrainer(ObjectiveView):
    """Trains G_ab, G_ba, D_a, D_b on two unpaired folders; writes everything under `run_dir`."""

    objective: CycleGANObjective

    def __init__(self, config: Config, run_dir: str | Path, rank: int = 0, world_size: int = 1,
                 progress: bool = True) -> None:
        super().__init__(config, run_dir, CycleGANObjective, rank=rank, world_size=world_size, progress=progress)



class ConditionalTrainer(ObjectiveView):
    """Trains G (conditional generator) and D (critic with a condition head) on one labelled folder."""

    objective: ConditionalObjective

    def __init__(self, config: Config, run_dir: str | Path, rank: int = 0, world_size: int = 1,
                 progress: bool = True) -> None:
        if not config.is_conditional:
            raise ConfigError("ConditionalTrainer needs train.mode=conditional")
        super().__init__(config, run_dir, ConditionalObjective, rank=rank, world_size=world_size, progress=progress)


__all__ = ["ARCHITECTURE_KEYS", "ConditionalTrainer", "CycleGANTrainer", "StopSignals", "TrainingDiverged",
           "architecture_mismatches", "set_requires_grad"]
