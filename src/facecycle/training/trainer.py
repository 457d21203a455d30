"""The CycleGAN trainer: one explicit class with `g_step`, `d_step` and `fit`.

GAN math lives in facecycle.losses; this file owns the order of updates, the data position,
checkpoints and logging. Counters: `step` = generator updates done; `epoch` and
`batch_in_epoch` locate the data stream so a resumed run continues with the same batches.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from facecycle import __version__
from facecycle.config import Config
from facecycle.data.images import load_image, make_grid, pil_to_tensor
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.data.unpaired import Domain, UnpairedDataset, UnpairedSampler
from facecycle.errors import CheckpointError, DataError, FacecycleError
from facecycle.losses import GAN_LOSSES, gradient_penalty
from facecycle.losses.cyclegan import CycleWeights, discriminator_objective, generator_objective
from facecycle.models.build import build_discriminator, build_generator
from facecycle.training import checkpoint as ckpt
from facecycle.training.device import autocast, resolve_device
from facecycle.training.logging import RunLogger, scalars
from facecycle.training.pool import ImagePool
from facecycle.training.schedule import LinearDecaySchedule

CHECKPOINT_FORMAT = 1
# Settings a checkpoint's weights depend on: changing any of them on resume is an error.
ARCHITECTURE_KEYS = [("data", "channels")] + [("model", k) for k in (
    "generator", "gen_width", "gen_blocks", "gen_depth", "gen_attention", "norm",
    "discriminator", "disc_width", "disc_layers", "disc_layers_2", "disc_scales", "spectral_norm")]


class TrainingDiverged(FacecycleError):
    """Too many consecutive steps with non-finite losses."""


def architecture_mismatches(saved: dict[str, Any], config: Config) -> list[str]:
    """Human-readable differences between a checkpoint's config dict and `config` that change the weights."""
    current = config.to_dict()
    out = []
    for section, key in ARCHITECTURE_KEYS:
        old = saved.get(section, {}).get(key)
        new = current[section][key]
        if old is not None and old != new:
            out.append(f"{section}.{key}: checkpoint has {old!r}, this run asks for {new!r}")
    return out


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class CycleGANTrainer:
    """Trains G_ab, G_ba, D_a, D_b on two unpaired folders; writes everything under `run_dir`."""

    def __init__(self, config: Config, run_dir: str | Path, rank: int = 0, world_size: int = 1,
                 progress: bool = True) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.progress = progress and self.is_main
        self.device = resolve_device(config.train.device)
        t, d = config.train, config.data
        torch.manual_seed(t.seed + rank)

        if not d.data_a or not d.data_b:
            raise DataError("both domains are needed: pass --data-a DIR and --data-b DIR")
        self.domain_a = Domain(d.data_a, "A", d.masks_a)
        self.domain_b = Domain(d.data_b, "B", d.masks_b)
        self.dataset = UnpairedDataset(self.domain_a, self.domain_b, d.channels,
                                       TransformSpec(d.load_size, d.crop_size, d.flip, train=True))
        per_rank = UnpairedSampler(len(self.domain_a), len(self.domain_b), t.seed, world_size=world_size).epoch_length
        if per_rank < t.batch_size:
            raise DataError(
                f"batch size {t.batch_size} is larger than the images available per process ({per_rank}: "
                f"{len(self.domain_a)} in A, {len(self.domain_b)} in B); lower --batch-size"
            )

        self.G_ab = build_generator(config).to(self.device)
        self.G_ba = build_generator(config).to(self.device)
        self.D_a = build_discriminator(config).to(self.device)
        self.D_b = build_discriminator(config).to(self.device)
        if t.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        self.gan = GAN_LOSSES.get(config.loss.gan)()
        self.opt_G = self._optimizer(itertools.chain(self.G_ab.parameters(), self.G_ba.parameters()), config.optim.lr_g)
        self.opt_D = self._optimizer(itertools.chain(self.D_a.parameters(), self.D_b.parameters()), config.optim.lr_d)
        self.sched_G = LinearDecaySchedule(self.opt_G, t.steps, config.decay_steps)
        self.sched_D = LinearDecaySchedule(self.opt_D, t.steps, config.decay_steps)
        self.pool_a = ImagePool(t.pool_size, seed=t.seed * 2 + 1)
        self.pool_b = ImagePool(t.pool_size, seed=t.seed * 2 + 2)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.bad_steps = 0
        self.best: dict[str, Any] = {}
        self.logger = RunLogger(self.run_dir, enabled=self.is_main)
        self.evaluator: Optional[Callable[[nn.Module, nn.Module], Optional[dict[str, float]]]] = None
        self._sample_a: Optional[torch.Tensor] = None
        self._sample_b: Optional[torch.Tensor] = None

    # ---- construction helpers ------------------------------------------------------------
    @property
    def nets(self) -> dict[str, nn.Module]:
        return {"G_ab": self.G_ab, "G_ba": self.G_ba, "D_a": self.D_a, "D_b": self.D_b}

    def _optimizer(self, params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        o = self.config.optim
        if o.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        return torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2))

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "config": self.config.to_dict(),
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "schedules": {"G": self.sched_G.state_dict(), "D": self.sched_D.state_dict()},
            "pools": {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()},
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.capture_rng(),
            "counters": {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                         "world_size": self.world_size},
            "best": dict(self.best),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mismatches = architecture_mismatches(state.get("config", {}), self.config)
        if mismatches:
            raise CheckpointError("the checkpoint was trained with another architecture:\n  - " + "\n  - ".join(mismatches))
        for name, net in self.nets.items():
            try:
                net.load_state_dict(state["nets"][name])
            except (RuntimeError, KeyError) as exc:
                raise CheckpointError(f"cannot load {name} from the checkpoint: {str(exc).splitlines()[0]}") from None
        self.opt_G.load_state_dict(state["optimizers"]["G"])
        self.opt_D.load_state_dict(state["optimizers"]["D"])
        self.sched_G.load_state_dict(state["schedules"]["G"])
        self.sched_D.load_state_dict(state["schedules"]["D"])
        self.pool_a.load_state_dict(state["pools"]["a"], self.device)
        self.pool_b.load_state_dict(state["pools"]["b"], self.device)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        counters = state["counters"]
        self.step, self.epoch = int(counters["step"]), int(counters["epoch"])
        saved_world = int(counters.get("world_size", 1))
        # Positions are global; a different process count re-divides the remainder of the epoch.
        self.batch_in_epoch = int(counters["batch_in_epoch"]) * saved_world // self.world_size
        self.best = dict(state.get("best", {}))
        ckpt.restore_rng(state["rng"])
        if self.rank:
            torch.manual_seed(self.config.train.seed + self.rank + self.step)

    def save(self) -> Optional[Path]:
        if not self.is_main:
            return None
        return ckpt.save_checkpoint(self.run_dir, self.step, self.state_dict(), self.config.train.keep_checkpoints)

    def resume(self) -> Path:
        path, state = ckpt.load_latest(self.run_dir, map_location=self.device)
        self.load_state_dict(state)
        self.logger.truncate_after(self.step)
        return path

    # ---- data ------------------------------------------------------------------------------------
    def _num_workers(self) -> int:
        n = self.config.data.num_workers
        return (4 if self.device.type == "cuda" else 0) if n < 0 else n

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless batches; advances `epoch`/`batch_in_epoch` as they are consumed."""
        t = self.config.train
        while True:
            sampler = UnpairedSampler(len(self.domain_a), len(self.domain_b), t.seed, self.epoch,
                                      start=self.batch_in_epoch * t.batch_size,
                                      rank=self.rank, world_size=self.world_size)
            loader = DataLoader(self.dataset, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                                num_workers=self._num_workers(), pin_memory=self.device.type == "cuda")
            for batch in loader:
                self.batch_in_epoch += 1
                yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            self.epoch += 1
            self.batch_in_epoch = 0

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.train.channels_last else x

    # ---- one update ------------------------------------------------------------------------------
    def cycle_weights(self) -> CycleWeights:
        c, l = self.config, self.config.loss
        decay = 1.0 - (1.0 - l.cycle_decay_to) * self.step / max(c.train.steps, 1)
        return CycleWeights(cycle_a=l.cycle_a * decay, cycle_b=l.cycle_b * decay,
                            identity_a=c.identity_a, identity_b=c.identity_b, ssim=l.ssim, ms_ssim=l.ms_ssim,
                            mask_weight=l.mask_weight, feature_cycle=l.feature_cycle)

    def g_step(self, batch: dict[str, torch.Tensor]) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], dict[str, torch.Tensor]]:
        """One generator update. Returns (fake_a, fake_b, terms); fakes are None when the step was skipped."""
        real_a, real_b = self._prepare(batch["a"]), self._prepare(batch["b"])
        weights = self.cycle_weights()
        set_requires_grad([self.D_a, self.D_b], False)
        self.opt_G.zero_grad(set_to_none=True)
        with autocast(self.device, self.config.train.precision):
            fake_b = self.G_ab(real_a)
            rec_a = self.G_ba(fake_b)
            fake_a = self.G_ba(real_b)
            rec_b = self.G_ab(fake_a)
            idt_a = self.G_ba(real_a) if weights.identity_a > 0 else None
            idt_b = self.G_ab(real_b) if weights.identity_b > 0 else None
            features = None
            if weights.feature_cycle > 0:
                features = (self.D_a.features(real_a), self.D_a.features(rec_a),
                            self.D_b.features(real_b), self.D_b.features(rec_b))
            total, terms = generator_objective(
                self.gan, weights, self.D_a(fake_a), self.D_b(fake_b), self.D_a.branch_weights,
                self.D_b.branch_weights, real_a, real_b, rec_a, rec_b, idt_a, idt_b,
                batch.get("mask_a"), batch.get("mask_b"), features)
        if not torch.isfinite(total):
            self.opt_G.zero_grad(set_to_none=True)
            return None, None, terms
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_G)
        self.scaler.update()
        return fake_a.detach(), fake_b.detach(), terms

    def d_step(self, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor, fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of D_a and D_b on real images and pooled fakes (`(N, C, H, W)` in [-1, 1])."""
        l = self.config.loss
        set_requires_grad([self.D_a, self.D_b], True)
        self.opt_D.zero_grad(set_to_none=True)
        pooled_a, pooled_b = self.pool_a.query(fake_a), self.pool_b.query(fake_b)
        with autocast(self.device, self.config.train.precision):
            loss_a = discriminator_objective(self.gan, self.D_a.branch_weights, self.D_a(real_a), self.D_a(pooled_a))
            loss_b = discriminator_objective(self.gan, self.D_b.branch_weights, self.D_b(real_b), self.D_b(pooled_b))
        terms = {"D_a": loss_a.detach(), "D_b": loss_b.detach()}
        total = loss_a + loss_b
        if self.gan.uses_gradient_penalty and l.gp > 0:
            gp = (gradient_penalty(self.D_a, self.D_a.branch_weights, real_a, pooled_a)
                  + gradient_penalty(self.D_b, self.D_b.branch_weights, real_b, pooled_b))
            total = total + l.gp * gp
            terms["gp"] = gp.detach()
        if not torch.isfinite(total):
            self.opt_D.zero_grad(set_to_none=True)
            terms["D_skipped"] = torch.ones(())
            return terms
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_D)
        self.scaler.update()
        if self.gan.uses_clipping:
            with torch.no_grad():
                for p in itertools.chain(self.D_a.parameters(), self.D_b.parameters()):
                    p.clamp_(-l.clip, l.clip)
        return terms

    @torch.no_grad()
    def _fakes(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.config.train.precision):
            return self.G_ba(self._prepare(batch["b"])).float(), self.G_ab(self._prepare(batch["a"])).float()

    # ---- samples -----------------------------------------------------------------------------------
    def fixed_samples(self, count: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `count` images of each domain, evaluation transform: `(n, C, S, S)` in [-1, 1]."""
        if self._sample_a is None:
            spec = TransformSpec(crop_size=self.config.data.crop_size, train=False)
            def load(domain: Domain) -> torch.Tensor:
                tensors = []
                for path in domain.files[:count]:
                    image, _ = apply_transform(load_image(path, self.config.data.channels), spec, None)  # type: ignore[arg-type]
                    tensors.append(pil_to_tensor(image))
                return torch.stack(tensors).to(self.device)
            self._sample_a, self._sample_b = load(self.domain_a), load(self.domain_b)
        return self._sample_a, self._sample_b  # type: ignore[return-value]

    @torch.no_grad()
    def write_samples(self) -> Path:
        """Grid: per image a row real_a | fake_b | rec_a | idt_a, then rows real_b | fake_a | rec_b | idt_b."""
        real_a, real_b = self.fixed_samples()
        for net in self.nets.values():
            net.eval()
        fake_b = self.G_ab(real_a); rec_a = self.G_ba(fake_b); idt_a = self.G_ba(real_a)
        fake_a = self.G_ba(real_b); rec_b = self.G_ab(fake_a); idt_b = self.G_ab(real_b)
        for net in self.nets.values():
            net.train()
        rows = [[real_a[i], fake_b[i], rec_a[i], idt_a[i]] for i in range(len(real_a))]
        rows += [[real_b[i], fake_a[i], rec_b[i], idt_b[i]] for i in range(len(real_b))]
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_grid(rows).save(path)
        return path

    # ---- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self) -> Optional[dict[str, float]]:
        if self.evaluator is None:
            return None
        for net in self.nets.values():
            net.eval()
        try:
            return self.evaluator(self.G_ab, self.G_ba)
        finally:
            for net in self.nets.values():
                net.train()

    def _maybe_keep_best(self, metrics: dict[str, float]) -> None:
        name = self.config.train.best_metric
        if name not in metrics or not math.isfinite(metrics[name]):
            return
        higher_is_better = name.endswith("_rate")
        value = metrics[name]
        old = self.best.get("value")
        if old is None or (value > old if higher_is_better else value < old):
            self.best = {"metric": name, "value": value, "step": self.step}
            if self.is_main:
                ckpt.atomic_save(self.state_dict(), self.run_dir / ckpt.CHECKPOINT_DIR / "best.pt")

    # ---- the loop ------------------------------------------------------------------------------------
    def fit(self, until_step: Optional[int] = None) -> dict[str, float]:
        """Train until `train.steps` (or stop early at `until_step`, with a checkpoint, leaving the
        LR schedule untouched, for time-sliced jobs); returns the last logged record.
        Saves a checkpoint on SIGINT/SIGTERM."""
        t = self.config.train
        stop_at = t.steps if until_step is None else min(until_step, t.steps)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for net in self.nets.values():
            net.train()
        stream = self.batches()
        window: dict[str, torch.Tensor] = {}
        window_steps = 0
        window_start = time.perf_counter()
        last: dict[str, float] = {}
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None
        try:
            while self.step < stop_at:
                for _ in range(self.config.optim.n_critic - 1):  # extra critic updates (WGAN)
                    batch = next(stream)
                    fake_a, fake_b = self._fakes(batch)
                    self.d_step(self._prepare(batch["a"]), self._prepare(batch["b"]), fake_a, fake_b)
                batch = next(stream)
                fake_a, fake_b, terms = self.g_step(batch)
                if fake_a is None:
                    self.bad_steps += 1
                    values = {k: v for k, v in scalars(terms).items()}
                    self.logger.log({"step": self.step + 1, "epoch": self.epoch, "skipped": True,
                                     **{f"loss_{k}": (v if math.isfinite(v) else str(v)) for k, v in values.items()}})
                    warnings.warn(f"step {self.step + 1}: non-finite generator loss, update skipped", stacklevel=1)
                    if self.bad_steps >= t.max_bad_steps:
                        raise TrainingDiverged(
                            f"{self.bad_steps} consecutive steps had non-finite losses; training stopped at step "
                            f"{self.step}. The last good checkpoint in {self.run_dir / ckpt.CHECKPOINT_DIR} is intact: "
                            "lower the learning rates or use --set train.precision=fp32, then --resume"
                        )
                else:
                    self.bad_steps = 0
                    terms.update(self.d_step(self._prepare(batch["a"]), self._prepare(batch["b"]), fake_a, fake_b))
                self.step += 1
                self.sched_G.step()
                self.sched_D.step()
                for k, v in terms.items():
                    window[k] = window.get(k, 0) + v.detach().float()
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps * t.batch_size * self.config.optim.n_critic * self.world_size / max(elapsed, 1e-9)
                    losses = {f"loss_{k}": v / window_steps for k, v in scalars(window).items()}
                    last = {"step": self.step, "epoch": self.epoch, "lr_g": self.sched_G.lr, "lr_d": self.sched_D.lr,
                            "images_per_s": rate, **losses}
                    self.logger.log(last)
                    if bar is not None:
                        bar.set_postfix({"G": f"{losses.get('loss_G', float('nan')):.3f}",
                                         "D": f"{losses.get('loss_D_a', 0) + losses.get('loss_D_b', 0):.3f}",
                                         "img/s": f"{rate:.2f}"})
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if self.is_main and (self.step % t.sample_every == 0 or self.step == t.steps):
                    self.write_samples()
                if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.steps):
                    metrics = self._evaluate()
                    if metrics:
                        self.logger.log({"step": self.step, **{f"eval_{k}": v for k, v in metrics.items()}})
                        self._maybe_keep_best(metrics)
                if self.step % t.checkpoint_every == 0 or self.step in (t.steps, stop_at):
                    self.save()
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
                bar = None
            if self.step and self.bad_steps == 0:
                path = self.save()
                if path is not None:
                    print(f"\ninterrupted: saved {path}; continue with --resume")
            raise
        finally:
            if bar is not None:
                bar.close()
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
            self.logger.close()
        return last


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
