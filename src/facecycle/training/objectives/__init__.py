"""What one training mode optimises: its networks, losses, data stream, samples and extra state.

`facecycle.training.loop.Trainer` runs any of them; `objective_for(config)` picks by `train.mode`.
"""

from __future__ import annotations

from facecycle.config import Config
from facecycle.training.objectives.base import Objective


def objective_for(config: Config) -> type[Objective]:
    """The objective class of `config`'s training mode."""
    if config.is_conditional:
        from facecycle.training.objectives.conditional import ConditionalObjective

        return ConditionalObjective
    from facecycle.training.objectives.cyclegan import CycleGANObjective

    return CycleGANObjective


__all__ = ["Objective", "objective_for"]
