"""Conditional objective: one generator G(x, c) moves a face to any target condition vector
(Action Units or a one-hot expression); one critic judges realness and reads the condition.

Seed report 004 (Action-Unit conditioned CycleGAN): WGAN-GP by default (the AU critic loss
vanished with a vanilla GAN, e2/e3), presence labels (e5/e9), targets drawn from the training
label distribution with U(-0.1, 0.1) noise on active units (e3), preview grids that flip one
unit at a time (e5), and crash recovery by resuming from the last checkpoint (e8, where FID
crashed the run). Everything else (checkpoints, RNG, counters, precision, DDP, the non-finite
policy, stats.jsonl) is the shared loop's (`facecycle.training.loop`).

One step: targets are drawn once per batch from the global torch RNG (saved in every
checkpoint), then the generator update, then one critic update on that batch with the
generator's (detached) fakes.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from facecycle.build import build_conditional_discriminator, build_conditional_generator
from facecycle.config import DEFAULT_BEST_METRIC, Config, with_values
from facecycle.data.images import load_image, make_grid, pil_to_tensor
from facecycle.data.labels import VALUE_MAX, LabelTable, read_labels
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.data.unpaired import item_seed
from facecycle.errors import ConfigError, DataError
from facecycle.losses import GAN_LOSSES, gradient_penalty
from facecycle.losses.stargan import (ConditionalWeights, critic_objective, flipped_targets,
                                          generator_objective, sample_targets)
from facecycle.training.objectives.base import Loop, Objective, chained, critic_skipped, set_requires_grad
from facecycle.training.objectives.cyclegan import loader_workers

MODE = "conditional"
TARGET_NOISE = 0.1  # U(-0.1, 0.1) on active units (seed report 004, e3)
# Beyond loop.ARCHITECTURE_KEYS: what else the conditional weights depend on.
CONDITIONAL_KEYS = (("model", "condition_dim"), ("model", "condition_at"), ("model", "attention_mask"),
                    ("data", "label_kind"), ("data", "label_columns"))
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
    """`(index, item_seed)` for one epoch (a permutation fixed by (seed, epoch)) from local position `start`.

    With `world_size` > 1 rank r takes the global positions r, r + N, r + 2N, ... (the order is
    padded by wrapping so all ranks yield the same count), like `UnpairedSampler`; one process
    sees the plain permutation."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size = rank, world_size

    @property
    def epoch_length(self) -> int:
        """Positions per rank in one epoch."""
        return -(-self.n // self.world_size)

    def __len__(self) -> int:
        return max(self.epoch_length - self.start, 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch, 4]).permutation(self.n)
        order = np.resize(order, self.epoch_length * self.world_size)  # wrap-padding for the last ranks
        for local in range(self.start, self.epoch_length):
            position = local * self.world_size + self.rank
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


class ConditionalObjective(Objective):
    """G(x, c) and a critic D(x) -> (realness, condition logits). Batches: {"x": `(N, C, S, S)` in
    [-1, 1], "c": `(N, K)` source labels in [0, 1]}."""

    mode = MODE
    architecture_keys = CONDITIONAL_KEYS
    mismatch_subject = "another architecture or other labels"

    @staticmethod
    def prepare(config: Config) -> tuple[Config, dict[str, Any]]:
        config, table = resolve_labels(config)
        if config.train.best_metric == DEFAULT_BEST_METRIC:  # a CycleGAN score name: the conditional equivalent
            config = with_values(config, train={"best_metric": "mean/" + DEFAULT_BEST_METRIC.split("/", 1)[1]}).validate()
        return config, {"table": table}

    def __init__(self, trainer: Loop, table: LabelTable) -> None:
        """`table`: the labels `prepare` read (the trainer's config records their columns)."""
        super().__init__(trainer)
        config, device = trainer.config, trainer.device
        d, l, t = config.data, config.loss, config.train
        self.table = table
        per_rank = LabelledSampler(len(self.table), t.seed, world_size=trainer.world_size).epoch_length
        if per_rank < t.batch_size:
            raise DataError(f"batch size {t.batch_size} is larger than the labelled images available per process "
                            f"({per_rank} of {len(self.table)}); lower --batch-size")
        self.kind = d.label_kind
        self.columns = list(self.table.columns)
        self.dataset = LabelledDataset(self.table, d.channels, TransformSpec(d.load_size, d.crop_size, d.flip, train=True))
        self.labels = torch.from_numpy(self.table.values).to(device)

        self.G = build_conditional_generator(config).to(device)
        self.D = build_conditional_discriminator(config).to(device)
        self.gan = GAN_LOSSES.get(l.gan)()
        self.weights = ConditionalWeights(condition=l.condition, cycle=l.cycle_a, identity=config.identity_a,
                                          mask_l1=l.mask_l1, mask_tv=l.mask_tv)
        self.last_bad = torch.zeros((), device=device)  # flag of the last G step (0-d, on the device)
        self._loader: Optional[DataLoader] = None
        self._loader_sampler: Optional[LabelledSampler] = None
        self._samples: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    # ---- networks and state -------------------------------------------------------------------
    @property
    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return chained(self.G), chained(self.D)

    def extra_state(self) -> dict[str, Any]:
        return {"condition": {"kind": self.kind, "columns": list(self.columns), "value_max": VALUE_MAX[self.kind]}}

    def wrong_mode_message(self, saved_mode: str) -> str:
        return ("the checkpoint is not from a conditional run (train.mode=conditional); "
                "resume it without the conditional settings")

    # ---- data ------------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int, start: int) -> Iterator[dict[str, torch.Tensor]]:
        t, trainer = self.config.train, self.trainer
        sampler = LabelledSampler(len(self.table), t.seed, epoch, start, trainer.rank, trainer.world_size)
        if self._loader is None:
            self._loader_sampler = sampler
            # Its own generator: a new epoch's iterator must not draw from the global torch RNG, whose
            # state (targets, GP mixing) a checkpoint restores. Item randomness comes from the sampler.
            self._loader = DataLoader(self.dataset, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                                      num_workers=loader_workers(self.config.data.num_workers, self.device),
                                      pin_memory=self.device.type == "cuda",
                                      generator=torch.Generator().manual_seed(t.seed + trainer.rank))
        else:
            assert self._loader_sampler is not None
            self._loader_sampler.epoch, self._loader_sampler.start = sampler.epoch, sampler.start
        for batch in self._loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def sample_targets(self, batch: int) -> torch.Tensor:
        """`(batch, K)` target conditions drawn from the training labels (global torch RNG)."""
        return sample_targets(self.labels, batch, TARGET_NOISE, categorical=self.kind == "categorical")

    # ---- updates -----------------------------------------------------------------------------------
    def d_step(self, x: torch.Tensor, source: torch.Tensor, fake: torch.Tensor,
               skip: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """One critic update on real `x` `(N, C, S, S)` (labels `source` `(N, K)`) and detached fakes
        `(N, C, S, S)`, all on the device. `skip`: optional 0-d device flag (the G step's)."""
        trainer, l = self.trainer, self.config.loss
        D = trainer.train_fwd["D"]
        set_requires_grad([self.D], True)
        trainer.opt_D.zero_grad(set_to_none=True)
        with trainer.autocast():
            real_logits, real_cond = D(x)
            fake_logits, _ = D(fake)
        gp = None
        if self.gan.uses_gradient_penalty and l.gp > 0:
            # Outside autocast, as in CycleGAN mode: a double backward in fp16 overflows easily. The
            # plain module: its graph still ends in the one backward whose DDP hooks average it.
            gp = gradient_penalty(self.D.realness, self.D.branch_weights, x, fake)
        with trainer.autocast():
            total, terms = critic_objective(self.gan, self.D.branch_weights, real_logits, fake_logits, real_cond,
                                            source, self.kind, self.weights, gp, l.gp)
        bad = trainer.update(total, trainer.opt_D, skip)
        skipped = critic_skipped(bad, skip, trainer.host_checks)
        if skipped is not None:
            terms["D_skipped"] = skipped
        if bad is not None and self.gan.uses_clipping:
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-l.clip, l.clip)
        return terms

    def g_step(self, x: torch.Tensor, source: torch.Tensor,
               target: torch.Tensor) -> tuple[Optional[torch.Tensor], dict[str, torch.Tensor]]:
        """One generator update from `x` `(N, C, S, S)` with labels `source` toward `target` (both
        `(N, K)`); returns (detached fake, or None when the step is known on the host to be skipped,
        terms). The device-side flag is in `self.last_bad`."""
        trainer = self.trainer
        G, D = trainer.train_fwd["G"], trainer.frozen_fwd["D"]
        set_requires_grad([self.D], False)
        trainer.opt_G.zero_grad(set_to_none=True)
        with trainer.autocast():
            # Through forward(with_mask=True): DDP hooks only a module's forward, not `generate`.
            fake, mask_fake = G(x, target, with_mask=True)
            rec, mask_rec = G(fake, source, with_mask=True)
            idt = G(x, source) if self.weights.identity > 0 else None
            fake_logits, fake_cond = D(fake)
            total, terms = generator_objective(self.gan, self.D.branch_weights, fake_logits, fake_cond, target,
                                               self.kind, self.weights, x, rec, idt, mask_fake, mask_rec)
        bad = trainer.update(total, trainer.opt_G)
        if bad is None:
            self.last_bad = torch.ones((), device=self.device)
            return None, terms
        self.last_bad = bad
        if trainer.host_checks and bool(bad):
            trainer.opt_G.zero_grad(set_to_none=True)
            return None, terms
        return fake.detach().float(), terms

    @torch.no_grad()
    def _fake(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with self.trainer.autocast():
            return self.G(x, target).float()

    def critic_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.trainer.prepare(batch["x"])
        target = self.sample_targets(x.shape[0])
        return self.d_step(x, batch["c"], self._fake(x, target))

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.trainer.prepare(batch["x"])
        target = self.sample_targets(x.shape[0])
        fake, terms = self.g_step(x, batch["c"], target)
        bad = self.last_bad
        if fake is not None:
            skip = None if self.trainer.host_checks else bad
            terms.update(self.d_step(x, batch["c"], fake, skip))
        return bad, terms

    # ---- samples -----------------------------------------------------------------------------------
    def fixed_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first labelled images at the evaluation transform `(n, C, S, S)` in [-1, 1] and their labels `(n, K)`."""
        if self._samples is None:
            spec = TransformSpec(crop_size=self.config.data.crop_size, train=False)
            count = min(PREVIEW_IMAGES, len(self.table))
            images = [pil_to_tensor(apply_transform(load_image(p, self.config.data.channels), spec, None)[0])  # type: ignore[arg-type]
                      for p in self.table.paths[:count]]
            self._samples = (torch.stack(images).to(self.device), self.labels[:count].clone())
        return self._samples

    @torch.no_grad()
    def write_samples(self, path: Path) -> None:
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
        make_grid(rows).save(path)
        (path.parent / "columns.txt").write_text(
            "real | G(x, own labels) | " + " | ".join(f"flip {u}" if self.kind != "categorical" else u
                                                     for u in self.columns[:units]) + "\n")

    def evaluation_nets(self) -> Optional[tuple[nn.Module, ...]]:
        """(G,): the in-training evaluator (`evaluation.periodic_conditional`) translates its held-out
        sample with G(x, c) to each target; the loop puts G in eval mode around the call."""
        return (self.G,)

    def progress_postfix(self, losses: dict[str, Any]) -> dict[str, str]:
        return {k.removeprefix("loss_"): f"{v:.3f}" for k, v in losses.items()
                if k in ("loss_G", "loss_D", "loss_G_cond") and isinstance(v, float)}
