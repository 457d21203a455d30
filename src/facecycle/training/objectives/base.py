"""The contract between `Trainer` (the loop) and a training mode's objective."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import torch
from torch import nn

from facecycle.config import Config

class Loop(Protocol):
    """What an objective uses of the `Trainer` that drives it (training/loop.py), named here so
    the objectives never import the loop that imports them."""

    config: Config  # the current config: a time budget may replan train.steps while training
    device: torch.device
    rank: int
    world_size: int
    step: int
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    train_fwd: dict[str, Callable[..., Any]]  # forward passes that train (DDP-wrapped and/or compiled)
    frozen_fwd: dict[str, Callable[..., Any]]  # forward passes of nets frozen during the other's step

    @property
    def host_checks(self) -> bool: ...

    def autocast(self) -> Any: ...

    def prepare(self, x: torch.Tensor) -> torch.Tensor: ...

    def update(self, total: torch.Tensor, optimizer: torch.optim.Optimizer,
               skip: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]: ...


class Objective:
    """One training mode. Built by `Trainer.__init__` right after the global seed, with the
    trainer as its only argument; it reads the (possibly replanned) config, the step counter,
    the device and the forward callables from there, and applies every update through
    `trainer.update`, so precision, DDP and the non-finite policy are the loop's.

    A subclass sets `mode` (stored in checkpoints), builds its networks (plain modules, listed
    by `nets`) and implements the data stream and the step."""

    mode: str = ""
    # Config settings besides `loop.ARCHITECTURE_KEYS` that the weights depend on.
    architecture_keys: tuple[tuple[str, str], ...] = ()
    # How a refused resume names what differs ("another architecture", ...).
    mismatch_subject: str = "another architecture"

    def __init__(self, trainer: Loop, **prepared: Any) -> None:
        self.trainer = trainer

    @staticmethod
    def prepare(config: Config) -> tuple[Config, dict[str, Any]]:
        """`config` completed with what this mode resolves from its data, before anything is built
        (and before the seed), plus keyword arguments for `__init__` (what was read to resolve it)."""
        return config, {}

    @property
    def config(self) -> Config:
        # Always the trainer's: a time budget may replan train.steps while training.
        return self.trainer.config

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    # ---- networks and state -------------------------------------------------------------------
    @property
    def nets(self) -> dict[str, nn.Module]:
        """The plain networks by checkpoint name."""
        raise NotImplementedError

    def replace_net(self, name: str, net: nn.Module) -> None:
        """Swap a network for a converted one (SyncBatchNorm), before the optimizers are built."""
        setattr(self, name, net)

    def parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(generator parameters, critic parameters), in a fixed order (optimizer state follows it)."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Top-level checkpoint entries of this mode (merged into the trainer's state dict)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` wrote, from a whole checkpoint state."""

    def wrong_mode_message(self, saved_mode: str) -> str:
        return (f"the checkpoint is from a {saved_mode} run, this run trains a {self.mode} model "
                "(train.mode); resume it with the settings it was trained with")

    # ---- data and steps --------------------------------------------------------------------------
    def epoch_batches(self, epoch: int, start: int) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of `epoch` from global-order position `start / world_size` on, on the device."""
        raise NotImplementedError

    def critic_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An extra critic update (n_critic > 1) on fakes of `batch` made without gradients."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator update, then the critic update, on `batch`. Returns (0-d device flag,
        1 = the generator step was skipped as non-finite; loss terms as 0-d tensors)."""
        raise NotImplementedError

    # ---- outputs -----------------------------------------------------------------------------------
    def write_samples(self, path: Path) -> None:
        """Save this mode's preview grid of fixed images to `path`."""
        raise NotImplementedError

    def evaluation_nets(self) -> Optional[tuple[nn.Module, ...]]:
        """The arguments of the in-training evaluator, or None when it cannot score this mode."""
        return None

    def progress_postfix(self, losses: dict[str, Any]) -> dict[str, str]:
        """A few of the window's mean losses for the progress bar."""
        return {k.removeprefix("loss_"): f"{v:.3f}" for k, v in losses.items()
                if k in ("loss_G", "loss_D") and isinstance(v, float)}


def chained(*nets: nn.Module) -> list[nn.Parameter]:
    """The parameters of `nets`, in order."""
    out: list[nn.Parameter] = []
    for net in nets:
        out.extend(net.parameters())
    return out


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def critic_skipped(bad: Optional[torch.Tensor], skip: Optional[torch.Tensor], host_checks: bool) -> Optional[torch.Tensor]:
    """The critic step's "D_skipped" loss term from `Trainer.update`'s flag `bad` (None: skipped
    before the backward pass), or None for no term (host checks and the update was applied).
    A critic step blocked by the generator step's flag `skip` is counted there, not again here."""
    if bad is None:
        return torch.ones(())
    if host_checks:
        return torch.ones(()) if bool(bad) else None
    if skip is None:
        return bad
    return torch.where(skip.bool(), torch.zeros_like(bad), bad)


__all__ = ["Objective", "chained", "critic_skipped", "set_requires_grad"]
