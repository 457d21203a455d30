"""Learning-rate schedule: constant, then linear decay to zero (CycleGAN)."""

from __future__ import annotations

from typing import Any

import torch


def linear_decay_factor(step: int, total_steps: int, decay_steps: int) -> float:
    """LR multiplier for the update at 0-based `step`: 1 until `total - decay`, then
    (total - step) / decay, reaching 0 at `step == total`."""
    if decay_steps <= 0:
        return 1.0
    return max(0.0, min(1.0, (total_steps - step) / decay_steps))


class LinearDecaySchedule:
    """Sets `lr = base_lr * linear_decay_factor(step)` on an optimizer; state is just the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, decay_steps: int) -> None:
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.decay_steps = decay_steps
        # Like torch's schedulers, remember the undecayed LR in the param group so a second
        # schedule on the same optimizer does not take an already-decayed LR as its base.
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        factor = linear_decay_factor(self.step_count, self.total_steps, self.decay_steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def set_plan(self, total_steps: int, decay_steps: int) -> None:
        """Re-plan a live run (a wall-clock budget): the next update already uses the new plan."""
        self.total_steps, self.decay_steps = total_steps, decay_steps
        self._apply()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs),
                "total_steps": self.total_steps, "decay_steps": self.decay_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # total/decay come from the (possibly extended) current config, so `--steps` can lengthen a run.
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self._apply()
