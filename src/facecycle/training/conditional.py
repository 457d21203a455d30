"""Conditional translation trainer: one generator G(x, c) moves a face to any target condition
vector (Action Units or a one-hot expression); one critic judges realness and reads the condition.

Seed report 004 (Action-Unit conditioned CycleGAN): WGAN-GP by default (the AU critic loss
vanished with a vanilla GAN, e2/e3), presence labels (e5/e9), targets drawn from the training
label distribution with U(-0.1, 0.1) noise on active units (e3), preview grids that flip one
unit at a time (e5), and crash recovery by resuming from the last checkpoint (e8, where FID
crashed the run). Checkpoints, RNG, counters, stats.jsonl and samples follow the CycleGAN
trainer (`facecycle.training.trainer`), so `--resume`, `--until-step` and SIGKILL safety
behave the same way.

Per step (`optim.n_critic` = k): k - 1 critic updates on their own batches, then one
generator update on the next batch and one critic update on that batch with the generator's
(detached) fakes. Targets are drawn once per batch from the CPU torch generator, which is
saved in every checkpoint. A non-finite loss skips that update (checked on the host every
step: one sync, simple and cheap next to the forward passes); `train.max_bad_steps` in a
row stop the run before any newer checkpoint is written.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from facecycle import __version__
from facecycle.config import Config, with_values
from facecycle.data.images import load_image, make_grid, pil_to_tensor
from facecycle.data.labels import VALUE_MAX, LabelTable, read_labels
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.data.unpaired import item_seed
from facecycle.errors import CheckpointError, ConfigError, DataError
from facecycle.losses import GAN_LOSSES, gradient_penalty
from facecycle.losses.conditional import (ConditionalWeights, critic_objective, flipped_targets,
                                          generator_objective, sample_targets)
from facecycle.models.build import build_conditional_discriminator, build_conditional_generator
from facecycle.runtime import checkpoints as ckpt
from facecycle.runtime.device import autocast, resolve_device, with_resolved_precision
from facecycle.training.logging import RunLogger, scalars
from facecycle.training.rng import capture_rng, restore_rng
from facecycle.training.schedule import LinearDecaySchedule
from facecycle.training.trainer import StopSignals, TrainingDiverged, architecture_mismatches, set_requires_grad

CHECKPOINT_FORMAT = 1
MODE = "conditional"
TARGET_NOISE = 0.1  # U(-0.1, 0.1) on active units (seed report 004, e3)
# Beyond trainer.ARCHITECTURE_KEYS: what else the conditional weights depend on.
CONDITIONAL_KEYS = [("model", "condition_dim"), ("model", "condition_at"), ("model", "attention_mask"),
                    ("data", "label_kind"), ("data", "label_columns")]
PREVIEW_IMAGES = 4
PREVIEW_UNITS = 16  # columns of flipped units in the preview grid (first ones when there are more)


class LabelledDataset(Dataset):
    """Items `(index, seed)` -> {"x": `(C, S, S)` in [-1, 1], "c": `(K,)` in [0, 1]}."""

    def __init__(self, table: LabelTable, channels: int, spec: TransformSpec) -> None:
        self.table, self.channels, self.spec = table, channels, spec
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        import random

        index, seed = item
        n = len(self.table)
        for attempt in range(n):  # a file that decodes badly is replaced by the next one
            i = (index + attempt) % n
            try:
                image = load_image(self.table.paths[i], self.channels)
                break
            except DataError as exc:
                if self.table.paths[i] not in self._warned:
                    self._warned.add(self.table.paths[i])
                    warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
        else:
            raise DataError(f"none of the {n} labelled images could be decoded")
        image, _ = apply_transform(image, self.spec, random.Random(seed))
        return {"x": pil_to_tensor(image), "c": torch.from_numpy(self.table.values[i])}


class LabelledSampler(Sampler):
    """`(index, item_seed)` for one epoch (a permutation fixed by (seed, epoch)) from position `start`."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def __len__(self) -> int:
        return max(self.n - self.start, 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch, 4]).permutation(self.n)
        for position in range(self.start, self.n):
            yield int(order[position]), item_seed(self.seed, self.epoch, position)


def resolve_labels(config: Config) -> tuple[Config, LabelTable]:
    """Read the labels the config names and record what they resolved to (columns, condition_dim)."""
    d, m = config.data, config.model
    if not d.labels:
        raise DataError("conditional mode needs a labels file: pass --labels labels.csv (and --data IMAGE_FOLDER)")
    table = read_labels(d.labels, d.label_kind, d.label_columns or None, d.images)
    if m.condition_dim and m.condition_dim != len(table.columns):
        raise ConfigError(f"model.condition_dim is {m.condition_dim} but the labels give {len(table.columns)} "
                          f"condition(s) ({', '.join(table.columns)}); set it to 0 to take it from the labels")
    resolved = with_values(config, data={"label_columns": ",".join(table.columns)},
                           model={"condition_dim": len(table.columns)})
    return resolved.validate(), table


class ConditionalTrainer:
    """Trains G (conditional generator) and D (critic with a condition head) on one labelled folder."""

    def __init__(self, config: Config, run_dir: str | Path, progress: bool = True) -> None:
        if not config.is_conditional:
            raise ConfigError("ConditionalTrainer needs train.mode=conditional")
        self.config, self.table = resolve_labels(config)
        config = self.config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.device = resolve_device(config.train.device)
        self.config = config = with_resolved_precision(config, self.device)
        t, d, l = config.train, config.data, config.loss
        torch.manual_seed(t.seed)
        if len(self.table) < t.batch_size:
            raise DataError(f"batch size {t.batch_size} is larger than the {len(self.table)} labelled images; "
                            "lower --batch-size")
        self.kind = d.label_kind
        self.columns = list(self.table.columns)
        self.dataset = LabelledDataset(self.table, d.channels, TransformSpec(d.load_size, d.crop_size, d.flip, train=True))
        self.labels = torch.from_numpy(self.table.values).to(self.device)

        self.G = build_conditional_generator(config).to(self.device)
        self.D = build_conditional_discriminator(config).to(self.device)
        self.gan = GAN_LOSSES.get(l.gan)()
        self.opt_G = self._optimizer(self.G.parameters(), config.optim.lr_g)
        self.opt_D = self._optimizer(self.D.parameters(), config.optim.lr_d)
        self.sched_G = LinearDecaySchedule(self.opt_G, t.steps, config.decay_steps)
        self.sched_D = LinearDecaySchedule(self.opt_D, t.steps, config.decay_steps)
        self.weights = ConditionalWeights(condition=l.condition, cycle=l.cycle_a, identity=config.identity_a,
                                          mask_l1=l.mask_l1, mask_tv=l.mask_tv)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.bad_steps = 0
        self.logger = RunLogger(self.run_dir)
        self._loader: Optional[DataLoader] = None
        self._loader_sampler: Optional[LabelledSampler] = None
        self._samples: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    @property
    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

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
            "mode": MODE,
            "config": self.config.to_dict(),
            "condition": {"kind": self.kind, "columns": list(self.columns), "value_max": VALUE_MAX[self.kind]},
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "schedules": {"G": self.sched_G.state_dict(), "D": self.sched_D.state_dict()},
            "rng": capture_rng(),
            "counters": {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode") != MODE:
            raise CheckpointError("the checkpoint is not from a conditional run (train.mode=conditional); "
                                  "resume it without the conditional settings")
        saved = state.get("config", {})
        mismatches = architecture_mismatches(saved, self.config)
        current = self.config.to_dict()
        for section, key in CONDITIONAL_KEYS:
            old, new = saved.get(section, {}).get(key), current[section][key]
            if old is not None and old != new:
                mismatches.append(f"{section}.{key}: checkpoint has {old!r}, this run asks for {new!r}")
        if mismatches:
            raise CheckpointError("the checkpoint was trained with another architecture or other labels:\n  - "
                                  + "\n  - ".join(mismatches))
        for name, net in self.nets.items():
            try:
                net.load_state_dict(state["nets"][name])
            except (RuntimeError, KeyError) as exc:
                raise CheckpointError(f"cannot load {name} from the checkpoint: {str(exc).splitlines()[0]}") from None
        self.opt_G.load_state_dict(state["optimizers"]["G"])
        self.opt_D.load_state_dict(state["optimizers"]["D"])
        self.sched_G.load_state_dict(state["schedules"]["G"])
        self.sched_D.load_state_dict(state["schedules"]["D"])
        counters = state["counters"]
        self.step, self.epoch = int(counters["step"]), int(counters["epoch"])
        self.batch_in_epoch = int(counters["batch_in_epoch"])
        restore_rng(state["rng"])

    def save(self) -> Path:
        return ckpt.save_checkpoint(self.run_dir, self.step, self.state_dict(), self.config.train.keep_checkpoints)

    def resume(self) -> Path:
        path, state = ckpt.load_latest(self.run_dir, map_location=self.device)
        self.load_state_dict(state)
        self.logger.truncate_after(self.step)
        return path

    # ---- data ------------------------------------------------------------------------------------
    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless batches (drop_last); advances `epoch`/`batch_in_epoch` as they are consumed."""
        t = self.config.train
        workers = self.config.data.num_workers
        if workers < 0:
            workers = min(4, os.cpu_count() or 1) if self.device.type == "cuda" else 0
        while True:
            sampler = LabelledSampler(len(self.table), t.seed, self.epoch, self.batch_in_epoch * t.batch_size)
            if self._loader is None:
                self._loader_sampler = sampler
                # Its own generator: a new epoch's iterator must not draw from the global torch RNG, whose
                # state (targets, GP mixing) a checkpoint restores. Item randomness comes from the sampler.
                self._loader = DataLoader(self.dataset, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                                          num_workers=workers, pin_memory=self.device.type == "cuda",
                                          generator=torch.Generator().manual_seed(t.seed))
            else:
                assert self._loader_sampler is not None
                self._loader_sampler.epoch, self._loader_sampler.start = sampler.epoch, sampler.start
            for batch in self._loader:
                self.batch_in_epoch += 1
                yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            self.epoch += 1
            self.batch_in_epoch = 0

    def sample_targets(self, batch: int) -> torch.Tensor:
        return sample_targets(self.labels, batch, TARGET_NOISE, categorical=self.kind == "categorical")

    # ---- updates -----------------------------------------------------------------------------------
    def d_step(self, x: torch.Tensor, source: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic update on real `x` (labels `source`) and detached fakes; all `(N, ...)` on the device."""
        l = self.config.loss
        set_requires_grad([self.D], True)
        self.opt_D.zero_grad(set_to_none=True)
        with autocast(self.device, self.config.train.precision):
            real_logits, real_cond = self.D(x)
            fake_logits, _ = self.D(fake)
            gp = None
            if self.gan.uses_gradient_penalty and l.gp > 0:
                gp = gradient_penalty(self.D.realness, self.D.branch_weights, x, fake)
            total, terms = critic_objective(self.gan, self.D.branch_weights, real_logits, fake_logits, real_cond,
                                            source, self.kind, self.weights, gp, l.gp)
        if not torch.isfinite(total):
            terms["D_skipped"] = torch.ones(())
            return terms
        total.backward()
        self.opt_D.step()
        if self.gan.uses_clipping:
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-l.clip, l.clip)
        return terms

    def g_step(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> tuple[Optional[torch.Tensor], dict[str, torch.Tensor]]:
        """One generator update; returns (detached fake or None when the step was skipped, terms)."""
        set_requires_grad([self.D], False)
        self.opt_G.zero_grad(set_to_none=True)
        with autocast(self.device, self.config.train.precision):
            fake, mask_fake = self.G.generate(x, target)
            rec, mask_rec = self.G.generate(fake, source)
            idt = self.G(x, source) if self.weights.identity > 0 else None
            fake_logits, fake_cond = self.D(fake)
            total, terms = generator_objective(self.gan, self.D.branch_weights, fake_logits, fake_cond, target,
                                               self.kind, self.weights, x, rec, idt, mask_fake, mask_rec)
        if not torch.isfinite(total):
            self.opt_G.zero_grad(set_to_none=True)
            return None, terms
        total.backward()
        self.opt_G.step()
        return fake.detach().float(), terms

    @torch.no_grad()
    def _fake(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.config.train.precision):
            return self.G(x, target).float()

    # ---- samples -----------------------------------------------------------------------------------
    def fixed_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first labelled images at the evaluation transform and their labels."""
        if self._samples is None:
            spec = TransformSpec(crop_size=self.config.data.crop_size, train=False)
            count = min(PREVIEW_IMAGES, len(self.table))
            images = [pil_to_tensor(apply_transform(load_image(p, self.config.data.channels), spec, None)[0])  # type: ignore[arg-type]
                      for p in self.table.paths[:count]]
            self._samples = (torch.stack(images).to(self.device), self.labels[:count].clone())
        return self._samples

    @torch.no_grad()
    def write_samples(self) -> Path:
        """Grid: per image a row real | G(x, c_src) | G(x, c_src with unit k flipped) for each unit k."""
        x, c = self.fixed_samples()
        self.G.eval()
        rows = []
        units = min(len(self.columns), PREVIEW_UNITS)
        for i in range(len(x)):
            targets = flipped_targets(c[i])[:units].to(self.device)
            if self.kind == "categorical":  # one-hot: show every class instead of complements
                targets = torch.eye(len(self.columns), device=self.device)[:units]
            xs = x[i : i + 1].expand(len(targets), -1, -1, -1)
            outs = self.G(xs, targets)
            rows.append([x[i], self.G(x[i : i + 1], c[i : i + 1])[0], *outs])
        self.G.train()
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_grid(rows).save(path)
        (self.run_dir / "samples" / "columns.txt").write_text(
            "real | G(x, own labels) | " + " | ".join(f"flip {u}" if self.kind != "categorical" else u
                                                     for u in self.columns[:units]) + "\n")
        return path

    # ---- the loop ------------------------------------------------------------------------------------
    def fit(self, until_step: Optional[int] = None) -> dict[str, Any]:
        """Train until `train.steps` (or `until_step`, with a checkpoint); returns the last logged record.
        Saves a checkpoint on SIGINT/SIGTERM."""
        t = self.config.train
        stop_at = t.steps if until_step is None else min(until_step, t.steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for net in self.nets.values():
            net.train()
        stream = self.batches()
        window: dict[str, float] = {}
        window_good = 0
        window_steps = 0
        window_start = time.perf_counter()
        last: dict[str, Any] = {}
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        stop = StopSignals()
        stop.__enter__()
        try:
            while self.step < stop_at:
                for _ in range(self.config.optim.n_critic - 1):
                    batch = next(stream)
                    target = self.sample_targets(batch["x"].shape[0])
                    self.d_step(batch["x"], batch["c"], self._fake(batch["x"], target))
                batch = next(stream)
                target = self.sample_targets(batch["x"].shape[0])
                fake, terms = self.g_step(batch["x"], batch["c"], target)
                good = fake is not None
                if good:
                    terms.update(self.d_step(batch["x"], batch["c"], fake))
                self.step += 1
                self.sched_G.step()
                self.sched_D.step()
                values = scalars(terms)
                if good and all(math.isfinite(v) for v in values.values()):
                    self.bad_steps = 0
                    window_good += 1
                    for k, v in values.items():
                        window[k] = window.get(k, 0.0) + v
                else:
                    self.bad_steps += 1
                    self.logger.log({"step": self.step, "epoch": self.epoch, "skipped": True,
                                     **{f"loss_{k}": (v if math.isfinite(v) else str(v)) for k, v in values.items()}})
                    warnings.warn(f"step {self.step}: non-finite loss, update skipped", stacklevel=2)
                    if self.bad_steps >= t.max_bad_steps:
                        raise TrainingDiverged(
                            f"{self.bad_steps} consecutive steps had non-finite losses; training stopped at step "
                            f"{self.step}. " + ckpt.recovery_advice(self.run_dir, "lower the learning rates"))
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps * t.batch_size * self.config.optim.n_critic / max(elapsed, 1e-9)
                    losses = {f"loss_{k}": (v / window_good if window_good else "nan") for k, v in window.items()}
                    last = {"step": self.step, "epoch": self.epoch, "lr_g": self.sched_G.lr, "lr_d": self.sched_D.lr,
                            "images_per_s": rate, **losses}
                    self.logger.log(last)
                    if bar is not None:
                        bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in losses.items()
                                         if k in ("loss_G", "loss_D", "loss_G_cond") and isinstance(v, float)})
                    window, window_good, window_steps, window_start = {}, 0, 0, time.perf_counter()
                if self.step % t.sample_every == 0 or self.step == t.steps:
                    self.write_samples()
                if self.step % t.checkpoint_every == 0 or self.step in (t.steps, stop_at):
                    self.save()
                stop.check()
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
                bar = None
            if self.step and self.bad_steps == 0:
                path = self.save()
                print(f"\ninterrupted: saved {path}; continue with --resume")
            raise
        finally:
            if bar is not None:
                bar.close()
            self.logger.close()
            stop.__exit__()  # last: a signal until here still means "stopping", never a traceback
        return last
