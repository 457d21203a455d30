"""The one training loop: `Trainer` owns everything every mode shares; an objective owns the GAN.

`Trainer` (this file): step counters and the data position, the optimizers (fused Adam where
the device has it) and their LR schedules, precision (bf16 / fp16 + GradScaler), DDP wrappers
and torch.compile of the forward callables, the non-finite policy (device-side flags, read on
the host every `finite_check_every` steps), logging, checkpoints (one CHECKPOINT_FORMAT, a
`mode` key in each), stop signals, sample grids on schedule, and the evaluator hook + best.pt.

An objective (`facecycle.training.objectives`) owns the networks, the losses, its data stream,
what one step computes, its sample grid and any extra checkpoint state (image pools, condition
columns). It calls back into the trainer for the update itself (`Trainer.update`), so the
non-finite, precision and DDP handling is written once.

Counters: `step` = generator updates done; `epoch` and `batch_in_epoch` locate the data stream
so a resumed run continues with the same batches.

Speed and scale (issue 7):

* Precision: `train.precision` bf16 (CPU and CUDA autocast) or fp16 (CUDA, with a GradScaler
  whose state is checkpointed); `train.channels_last`; `train.compile` off|on|auto (torch.compile,
  falls back to eager with a warning when the compiler is missing or fails; see
  facecycle.training.compile); `train.conv` (Winograd 3×3 convolutions for fp32 on the CPU, see
  facecycle.ops.winograd); fused Adam.
* Non-finite steps never need a host sync on CUDA: every update is computed, then applied
  through the fused optimizer's `found_inf` mask (skipped when the loss or a gradient is not
  finite); the flags are read on the host every `finite_check_every` steps (CUDA: log_every;
  CPU, where a sync costs nothing: every step, which also skips the critic step of a bad
  generator step). Skipped steps are logged, `max_bad_steps` consecutive ones stop the run
  before any newer checkpoint is written.
* Distributed: under torchrun the nets are wrapped in DistributedDataParallel (gradients are
  averaged across processes), only rank 0 writes checkpoints, logs, samples and runs the
  evaluator. See `facecycle.training.distributed` for the details and limitations.
"""

from __future__ import annotations

import math
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from facecycle import __version__
from facecycle.config import Config, with_values
from facecycle.errors import CheckpointError, ConfigError, TrainingDiverged
from facecycle.ops.winograd import set_conv_algorithm
from facecycle.runtime import checkpoints as ckpt
from facecycle.runtime.checkpoints import CHECKPOINT_FORMAT
from facecycle.runtime.device import autocast, resolve_device
from facecycle.training import distributed as fdist
from facecycle.training.compile import compiled, resolve_compile
from facecycle.training.logging import RunLogger, scalars
from facecycle.training.objectives.base import Objective, set_requires_grad  # noqa: F401  (re-exported)
from facecycle.training.rng import capture_rng, restore_rng
from facecycle.training.schedule import LinearDecaySchedule

# Settings a checkpoint's weights depend on in every mode: changing any of them on resume is an
# error. Objectives add their own (`Objective.architecture_keys`).
ARCHITECTURE_KEYS = [("data", "channels")] + [("model", k) for k in (
    "generator", "gen_width", "gen_blocks", "gen_depth", "gen_attention", "gen_upsample", "attention_mask", "norm",
    "discriminator", "disc_width", "disc_layers", "disc_layers_2", "disc_scales", "spectral_norm")]

# Checkpoints written before the `mode` key existed are CycleGAN ones (conditional ones always had it).
DEFAULT_MODE = "cyclegan"


def architecture_mismatches(saved: dict[str, Any], config: Config,
                            keys: Iterable[tuple[str, str]] = ARCHITECTURE_KEYS) -> list[str]:
    """Human-readable differences between a checkpoint's config dict and `config` that change the weights."""
    current = config.to_dict()
    out = []
    for section, key in keys:
        old = saved.get(section, {}).get(key)
        new = current[section][key]
        if old is not None and old != new:
            out.append(f"{section}.{key}: checkpoint has {old!r}, this run asks for {new!r}")
    return out


# Param-group settings that choose the optimizer's implementation, not its state.
_IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict(state)`, keeping the implementation this run chose.

    A checkpoint's param groups carry the settings of the optimizer that wrote it (conditional
    runs before the shared loop used plain Adam); loading them as is would turn a fused Adam into
    a plain one that rejects the device-side skip flag. The moments and step counts are the same
    in every implementation; fused ones keep their step counts as float32 on the parameter's device."""
    chosen = [{k: group[k] for k in _IMPLEMENTATION_KEYS if k in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, keep in zip(optimizer.param_groups, chosen):
        group.update(keep)
        if keep.get("fused") or keep.get("capturable"):
            for p in group["params"]:
                step = optimizer.state.get(p, {}).get("step")
                if torch.is_tensor(step):
                    optimizer.state[p]["step"] = step.to(device=p.device, dtype=torch.float32)


def with_resolved_auto(config: Config, device: torch.device) -> Config:
    """`config` with `train.precision: auto` resolved for `device` (bf16 where native, else fp32)
    and `train.conv: auto` for that precision, so checkpoints record what ran; other values are
    kept (an emulated bf16 warns)."""
    from facecycle.hardware import resolve_conv, resolve_precision

    precision = resolve_precision(config.train.precision, device.type)
    conv = resolve_conv(config.train.conv, device.type, precision)
    if (precision, conv) == (config.train.precision, config.train.conv):
        return config
    return with_values(config, train={"precision": precision, "conv": conv})


class Trainer:
    """Trains `objective_cls`'s networks from `config`; writes everything under `run_dir`.

    The objective's plain modules (`trainer.nets`) are what checkpoints, samples and the
    evaluator use; the training forward passes go through `train_fwd` (DDP-wrapped and/or
    compiled) and, for networks frozen during the other player's step, `frozen_fwd`
    (compiled only: DDP must not see a network whose gradients do not come).
    """

    def __init__(self, config: Config, run_dir: str | Path, objective_cls: type[Objective], rank: int = 0,
                 world_size: int = 1, progress: bool = True) -> None:
        config, prepared = objective_cls.prepare(config)
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.progress = progress and self.is_main
        self.device = resolve_device(config.train.device)
        self.config = config = with_resolved_auto(config, self.device)
        self.distributed = world_size > 1 and dist.is_available() and dist.is_initialized()
        t = config.train
        if t.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs a CUDA device (GradScaler); use bf16 on the CPU")
        # Per-rank seeds; rank 0 draws what a single process draws. DDP broadcasts rank 0's initial
        # weights, so only data-independent randomness (dropout, WGAN-GP mixing, targets) differs per rank.
        torch.manual_seed(t.seed + rank)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.bad_steps = 0
        self.best: dict[str, Any] = {}
        # Host reads of the non-finite flags: every step on the CPU (free there), every
        # log_every steps on accelerators (each read is a device sync).
        self.finite_check_every = 1 if self.device.type == "cpu" else t.log_every
        self._pending: list[tuple[int, int, torch.Tensor, dict[str, torch.Tensor]]] = []

        # The objective builds its data and networks now: after the seed, in its own fixed order.
        self.objective = objective_cls(self, **prepared)
        if config.model.norm == "batch" and self.distributed:
            self._sync_batch_norm()
        if t.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        for net in self.nets.values():
            set_conv_algorithm(net, t.conv)
        generator_params, critic_params = self.objective.parameters()
        self.opt_G = self._optimizer(generator_params, config.optim.lr_g)
        self.opt_D = self._optimizer(critic_params, config.optim.lr_d)
        self.sched_G = LinearDecaySchedule(self.opt_G, t.steps, config.decay_steps)
        self.sched_D = LinearDecaySchedule(self.opt_D, t.steps, config.decay_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")

        self.train_fwd: dict[str, Callable[..., Any]] = dict(self.nets)
        self.frozen_fwd: dict[str, Callable[..., Any]] = dict(self.nets)
        if self.distributed:
            self.train_fwd = fdist.wrap_ddp(self.nets, self.device)
        # Only the callables are compiled: the plain modules stay, so checkpoints keep their keys
        # (no `_orig_mod.`) and resume works across train.compile settings.
        self.compiled = resolve_compile(t.compile, self.device)
        if self.compiled:
            self.train_fwd = {k: compiled(k, f) for k, f in self.train_fwd.items()}
            self.frozen_fwd = {k: compiled(k + " (frozen)", f) for k, f in self.frozen_fwd.items()}

        self.logger = RunLogger(self.run_dir, enabled=self.is_main)
        # evaluator(*objective.evaluation_nets()) -> {metric: value}; whoever sets it sets the
        # direction of its scores for best.pt too (training sits below evaluation and does not import it).
        self.evaluator: Optional[Callable[..., Optional[dict[str, float]]]] = None
        self.score_higher_is_better: Callable[[str], bool] = lambda name: False
        self._told_no_evaluation = False
        self._told_no_best = False

    # ---- construction helpers ------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.objective.mode

    @property
    def nets(self) -> dict[str, nn.Module]:
        """The objective's plain networks by name (what checkpoints hold)."""
        return self.objective.nets

    @property
    def host_checks(self) -> bool:
        """True when non-finite flags are read on the host at every step (CPU)."""
        return self.finite_check_every == 1

    def _sync_batch_norm(self) -> None:
        if self.device.type != "cuda":
            if self.is_main:
                warnings.warn("model.norm=batch with several CPU processes: batch statistics are per process "
                              "(SyncBatchNorm needs CUDA); running statistics follow rank 0", stacklevel=2)
            return
        for name, net in self.nets.items():
            self.objective.replace_net(name, nn.SyncBatchNorm.convert_sync_batchnorm(net))

    def _optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        o = self.config.optim
        if o.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, foreach=True)
        params = list(params)
        if self.device.type in ("cpu", "cuda"):
            # Fused: one kernel for all parameters, and it can skip a step on a device-side
            # found_inf flag (see apply_update) without a host sync.
            try:
                return torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2), fused=True)
            except (RuntimeError, TypeError, ValueError):
                pass
        return torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2), foreach=True)

    def autocast(self) -> Any:
        """The autocast context of `train.precision` on this device."""
        return autocast(self.device, self.config.train.precision)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch `(N, C, H, W)` in the memory format the networks use."""
        return x.contiguous(memory_format=torch.channels_last) if self.config.train.channels_last else x

    # ---- the update: non-finite policy, precision, DDP ------------------------------------------
    def found_bad(self, total: torch.Tensor, optimizer: torch.optim.Optimizer,
                  extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        """0-d float flag on the device: 1 when the loss or (fp32/bf16) any gradient is not finite.

        With fp16 the GradScaler already skips steps with overflowing gradients (and lowers the
        scale); that is routine, so only a non-finite loss counts as a bad step there. Under DDP
        the flag is max-reduced so every rank takes the same decision (gradients are averaged
        already, the losses are not)."""
        bad = (~torch.isfinite(total.detach())).float()
        if not self.scaler.is_enabled():
            by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
            one = torch.ones((), device=self.device)
            for grads in by_dtype.values():  # the GradScaler's check, with a scale of 1: no sync
                found = torch.zeros((), device=self.device)
                torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
                bad = torch.maximum(bad, found)
        if extra is not None:
            bad = torch.maximum(bad, extra)
        if self.distributed:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return bad

    def apply_update(self, optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
        """optimizer.step() unless `bad`; sync-free for fused Adam (its found_inf mask), a host
        read of the flag otherwise (RMSprop, non-fused Adam)."""
        if self.scaler.is_enabled():
            # A non-finite loss gives non-finite gradients, which the scaler skips by itself.
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        if optimizer.defaults.get("fused"):
            optimizer.grad_scale, optimizer.found_inf = None, bad  # type: ignore[attr-defined]
            try:
                optimizer.step()
            finally:
                del optimizer.grad_scale, optimizer.found_inf  # type: ignore[attr-defined]
        elif not bool(bad):
            optimizer.step()

    def update(self, total: torch.Tensor, optimizer: torch.optim.Optimizer,
               skip: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Backward of the scalar loss `total` and `optimizer`'s step unless it is not finite.

        Returns the 0-d device flag (1 = not applied), or None when the loss was known on the
        host to be non-finite and the backward pass was not even run (CPU, one process; the
        gradients are cleared then). `skip`: a 0-d device flag that also blocks the update."""
        if self.host_checks and not self.distributed and not torch.isfinite(total):
            optimizer.zero_grad(set_to_none=True)
            return None
        self.scaler.scale(total).backward()
        bad = self.found_bad(total, optimizer, skip)
        self.apply_update(optimizer, bad)
        return bad

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        t = self.config.train
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "mode": self.mode,
            "config": self.config.to_dict(),
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "schedules": {"G": self.sched_G.state_dict(), "D": self.sched_D.state_dict()},
            **self.objective.extra_state(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "counters": {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                         "world_size": self.world_size,
                         # global data positions consumed in this epoch (all ranks together)
                         "positions_in_epoch": self.batch_in_epoch * t.batch_size * self.world_size},
            "best": dict(self.best),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint of this mode, including those written before the loop was shared
        (no `mode` key: CycleGAN; no `world_size` / `positions_in_epoch`: one process)."""
        saved_mode = state.get("mode", DEFAULT_MODE)
        if saved_mode != self.mode:
            raise CheckpointError(self.objective.wrong_mode_message(saved_mode))
        saved = state.get("config", {})
        mismatches = architecture_mismatches(saved, self.config,
                                             ARCHITECTURE_KEYS + list(self.objective.architecture_keys))
        if mismatches:
            raise CheckpointError(f"the checkpoint was trained with {self.objective.mismatch_subject}:\n  - "
                                  + "\n  - ".join(mismatches))
        for name, net in self.nets.items():
            try:
                net.load_state_dict(state["nets"][name])
            except (RuntimeError, KeyError) as exc:
                raise CheckpointError(f"cannot load {name} from the checkpoint: {str(exc).splitlines()[0]}") from None
        load_optimizer_state(self.opt_G, state["optimizers"]["G"])
        load_optimizer_state(self.opt_D, state["optimizers"]["D"])
        self.sched_G.load_state_dict(state["schedules"]["G"])
        self.sched_D.load_state_dict(state["schedules"]["D"])
        self.objective.load_extra_state(state)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        counters = state["counters"]
        self.step, self.epoch = int(counters["step"]), int(counters["epoch"])
        saved_world = int(counters.get("world_size", 1))
        # Positions are global; another process count (or batch size) re-divides the rest of the
        # epoch. Rounding down repeats at most a batch's worth of positions, it never skips any.
        positions = counters.get("positions_in_epoch")
        if positions is None:
            self.batch_in_epoch = int(counters["batch_in_epoch"]) * saved_world // self.world_size
        else:
            self.batch_in_epoch = int(positions) // (self.world_size * self.config.train.batch_size)
        self.best = dict(state.get("best", {}))
        restore_rng(state["rng"])
        if self.rank:
            torch.manual_seed(self.config.train.seed + self.rank + self.step)

    def save(self) -> Optional[Path]:
        """Write the checkpoint of this step (rank 0 only; None elsewhere)."""
        if not self.is_main:
            return None
        return ckpt.save_checkpoint(self.run_dir, self.step, self.state_dict(), self.config.train.keep_checkpoints)

    def resume(self) -> Path:
        path, state = ckpt.load_latest(self.run_dir, map_location=self.device)
        self.load_state_dict(state)
        self.logger.truncate_after(self.step)
        return path

    # ---- data ------------------------------------------------------------------------------------
    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless batches of the objective's stream; advances `epoch`/`batch_in_epoch` as they are consumed."""
        t = self.config.train
        while True:
            for batch in self.objective.epoch_batches(self.epoch, self.batch_in_epoch * t.batch_size):
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    # ---- samples and evaluation ------------------------------------------------------------------
    def write_samples(self) -> Path:
        """The objective's preview grid of this step: RUN/samples/step_XXXXXXXX.png."""
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.objective.write_samples(path)
        return path

    def _evaluate(self) -> Optional[dict[str, float]]:
        if not self.is_main:  # rank 0 evaluates, the others go on
            return None
        nets = self.objective.evaluation_nets()
        if nets is None:
            if not self._told_no_evaluation:
                self._told_no_evaluation = True
                print(f"train.eval_every: in-training evaluation is not available for {self.mode} models, "
                      "skipped (no best.pt); evaluate its checkpoints afterwards", file=sys.stderr)
            return None
        if self.evaluator is None:
            return None
        for net in self.nets.values():
            net.eval()
        try:
            return self.evaluator(*nets)
        finally:
            for net in self.nets.values():
                net.train()

    def _maybe_keep_best(self, metrics: dict[str, float]) -> None:
        name = self.config.train.best_metric
        if name not in metrics:
            if not self._told_no_best and self.is_main:
                self._told_no_best = True
                shown = ", ".join(sorted(metrics)[:12]) + (", ..." if len(metrics) > 12 else "")
                print(f"train.best_metric: no score '{name}' among this run's evaluation scores ({shown}), so no "
                      "best.pt; set train.best_metric to one of them (or add its metric to train.eval_metrics)",
                      file=sys.stderr)
            return
        if not math.isfinite(metrics[name]):
            return
        value = metrics[name]
        old = self.best.get("value")
        if old is None or (value > old if self.score_higher_is_better(name) else value < old):
            self.best = {"metric": name, "value": value, "step": self.step}
            if self.is_main:
                ckpt.atomic_save(self.state_dict(), self.run_dir / ckpt.CHECKPOINT_DIR / "best.pt")

    # ---- non-finite bookkeeping ----------------------------------------------------------------------
    def _check_pending(self) -> None:
        """Read the queued per-step flags (one host sync), log skipped steps, count consecutive ones;
        raises TrainingDiverged at `max_bad_steps` in a row."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        flags = torch.stack([flag.reshape(()) for _, _, flag, _ in pending]).cpu().tolist()
        t = self.config.train
        for (step, epoch, _, terms), flag in zip(pending, flags):
            if not flag:
                self.bad_steps = 0
                continue
            self.bad_steps += 1
            values = scalars(terms)
            self.logger.log({"step": step, "epoch": epoch, "skipped": True,
                             **{f"loss_{k}": (v if math.isfinite(v) else str(v)) for k, v in values.items()}})
            warnings.warn(f"step {step}: non-finite generator loss or gradient, update skipped", stacklevel=2)
            if self.bad_steps >= t.max_bad_steps:
                raise TrainingDiverged(
                    f"{self.bad_steps} consecutive steps had non-finite losses; training stopped at step {step}. "
                    + ckpt.recovery_advice(self.run_dir, "lower the learning rates or use --set train.precision=fp32"))

    # ---- the loop ------------------------------------------------------------------------------------
    def fit(self, until_step: Optional[int] = None) -> dict[str, Any]:
        """Train until `train.steps` (or stop early at `until_step`, with a checkpoint, leaving the
        LR schedule untouched, for time-sliced jobs); returns the last logged record.
        Saves a checkpoint on SIGINT/SIGTERM.

        Per step (`optim.n_critic` = k): k - 1 critic updates on their own batches, then the
        objective's step on the next batch (generator update, then the critic on that batch)."""
        t = self.config.train
        stop_at = t.steps if until_step is None else min(until_step, t.steps)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for net in self.nets.values():
            net.train()
        stream = self.batches()
        window: dict[str, torch.Tensor] = {}
        window_good: torch.Tensor | float = 0.0
        window_steps = 0
        window_start = time.perf_counter()
        last: dict[str, Any] = {}
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        stop = StopSignals(defer=not self.distributed)
        stop.__enter__()
        try:
            while self.step < stop_at:
                for _ in range(self.config.optim.n_critic - 1):  # extra critic updates (WGAN)
                    self.objective.critic_step(next(stream))
                bad, terms = self.objective.train_step(next(stream))
                self._pending.append((self.step + 1, self.epoch, bad, terms))
                self.step += 1
                self.sched_G.step()
                self.sched_D.step()
                good = 1.0 - bad.reshape(())
                for k, v in terms.items():  # skipped steps stay out of the averages
                    v = v.detach().float().to(good.device)
                    window[k] = window.get(k, 0) + torch.where(good > 0, v, torch.zeros_like(v))
                window_good = window_good + good
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                checkpoint_now = self.step % t.checkpoint_every == 0 or self.step in (t.steps, stop_at)
                log_now = self.step % t.log_every == 0 or self.step == t.steps
                if checkpoint_now or log_now or self.step % self.finite_check_every == 0:
                    self._check_pending()  # before any checkpoint: a diverged run never saves
                if log_now:
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps * t.batch_size * self.config.optim.n_critic * self.world_size / max(elapsed, 1e-9)
                    n_good = float(window_good)
                    losses = {f"loss_{k}": (v / n_good if n_good else "nan") for k, v in scalars(window).items()}
                    last = {"step": self.step, "epoch": self.epoch, "lr_g": self.sched_G.lr, "lr_d": self.sched_D.lr,
                            "images_per_s": rate, **losses}
                    self.logger.log(last)
                    if bar is not None:
                        bar.set_postfix({**self.objective.progress_postfix(losses), "img/s": f"{rate:.2f}"})
                    window, window_good, window_steps, window_start = {}, 0.0, 0, time.perf_counter()
                if self.is_main and (self.step % t.sample_every == 0 or self.step == t.steps):
                    self.write_samples()
                if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.steps):
                    metrics = self._evaluate()
                    if metrics:
                        self.logger.log({"step": self.step, **{f"eval_{k}": v for k, v in metrics.items()}})
                        self._maybe_keep_best(metrics)
                if checkpoint_now:
                    self.save()
                stop.check()
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
                bar = None
            try:
                self._check_pending()
            except TrainingDiverged:
                pass
            if self.step and self.bad_steps == 0:
                path = self.save()
                if path is not None:
                    print(f"\ninterrupted: saved {path}; continue with --resume")
            raise
        finally:
            if bar is not None:
                bar.close()
            self.logger.close()
            stop.__exit__()  # last: a signal until here still means "stopping", never a traceback
        return last


class ObjectiveView(Trainer):
    """A Trainer whose unknown attributes are the objective's (the names of the per-mode trainers
    these classes replace)."""

    def __getattr__(self, name: str) -> Any:
        # Only called for names the trainer itself lacks; `objective` may not exist yet mid-__init__.
        objective = self.__dict__.get("objective")
        if objective is None:
            raise AttributeError(name)
        return getattr(objective, name)


class StopSignals:
    """SIGTERM (preemption: SLURM, Kubernetes) and SIGINT (Ctrl-C) during `fit`, handled at a step
    boundary: the step in progress finishes, then `requested` is True and the loop raises
    KeyboardInterrupt, whose handler saves a checkpoint of that step. A resumed run is then the
    uninterrupted one, bit for bit. Further signals while stopping are ignored with a note, so a
    second Ctrl-C cannot tear the save.

    `defer=False` (DDP, where ranks must stop at the same step) keeps the immediate
    KeyboardInterrupt of SIGTERM. Off the main thread no handler can be set and nothing changes."""

    def __init__(self, defer: bool = True) -> None:
        self.defer = defer
        self.requested = False
        self.count = 0  # signals received
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if not self.defer or self.count >= 3:  # a third Ctrl-C: the way out of a step that hangs
            raise KeyboardInterrupt
        if self.requested:
            print("\nstopping: finishing the current step and saving a checkpoint, please wait "
                  "(a third Ctrl-C stops at once, without that checkpoint)", file=sys.stderr)
            return
        self.requested = True

    def __enter__(self) -> "StopSignals":
        import threading

        if threading.current_thread() is threading.main_thread():
            kinds = (signal.SIGTERM, signal.SIGINT) if self.defer else (signal.SIGTERM,)
            self._previous = {kind: signal.signal(kind, self._handle) for kind in kinds}
        return self

    def check(self) -> None:
        """Raise KeyboardInterrupt at a step boundary once a stop was asked for."""
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        for kind, handler in self._previous.items():
            signal.signal(kind, handler)
        self._previous = {}
