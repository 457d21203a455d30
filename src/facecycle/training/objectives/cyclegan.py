"""CycleGAN objective: G_ab, G_ba, D_a, D_b on two unpaired folders (or `.npy` caches).

GAN math lives in facecycle.losses; this file owns the order of one step: the G step (both
generators, adversarial + cycle + identity (+ attention-mask) losses), then the D step on the
real images and pooled fakes. Data: `--data-a/--data-b` may name `.npy` caches from
`facecycle prepare cache` (no decoding, memory-mapped, same batches as the folders; see
`facecycle.data.cache`).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from facecycle.build import build_discriminator, build_generator
from facecycle.data.cache import CachedBatches, CachedDomain, is_cache
from facecycle.data.images import load_image, make_grid, pil_to_tensor
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.data.unpaired import Domain, UnpairedDataset, UnpairedSampler
from facecycle.errors import DataError
from facecycle.losses import GAN_LOSSES, gradient_penalty
from facecycle.losses.attention import MaskWeights, mask_regularizer
from facecycle.losses.cyclegan import CycleWeights, discriminator_objective, generator_objective
from facecycle.training.objectives.base import Loop, Objective, chained, critic_skipped, set_requires_grad
from facecycle.training.pool import ImagePool


def loader_workers(requested: int, device: torch.device) -> int:
    """DataLoader workers: `requested` when >= 0; auto: none on the CPU (training needs every
    core for compute), up to 4 on CUDA (decode in parallel with the GPU)."""
    if requested >= 0:
        return requested
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


class CycleGANObjective(Objective):
    """Unpaired translation both ways. Batches: {"a", "b": `(N, C, S, S)` in [-1, 1], optional
    "mask_a", "mask_b": `(N, 1, S, S)` in [0, 1]}."""

    mode = "cyclegan"

    def __init__(self, trainer: Loop) -> None:
        super().__init__(trainer)
        config, device, rank, world_size = trainer.config, trainer.device, trainer.rank, trainer.world_size
        t, d = config.train, config.data
        if not d.data_a or not d.data_b:
            raise DataError("both domains are needed: pass --data-a DIR and --data-b DIR")
        self.cached: Optional[CachedBatches] = None
        self.dataset: Optional[UnpairedDataset] = None
        self.domain_a: Domain | CachedDomain
        self.domain_b: Domain | CachedDomain
        if is_cache(d.data_a) or is_cache(d.data_b):
            if not (is_cache(d.data_a) and is_cache(d.data_b)):
                raise DataError("one domain is a cache file and the other is not: pass two .npy caches "
                                "(facecycle prepare cache) or two folders")
            if d.masks_a or d.masks_b:
                raise DataError("with caches, masks come from the cache: build it with "
                                "`facecycle prepare cache --masks DIR` instead of passing --masks-a/--masks-b")
            self.domain_a = CachedDomain(d.data_a, "A")
            self.domain_b = CachedDomain(d.data_b, "B")
            self.cached = CachedBatches(self.domain_a, self.domain_b,
                                        TransformSpec(d.load_size, d.crop_size, d.flip, train=True),
                                        d.channels, device, channels_last=t.channels_last)
        else:
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

        # Construction order is part of the seeded state: G_ab, G_ba, D_a, D_b draw their initial
        # weights from the global RNG in this order.
        self.G_ab = build_generator(config).to(device)
        self.G_ba = build_generator(config).to(device)
        self.D_a = build_discriminator(config).to(device)
        self.D_b = build_discriminator(config).to(device)
        self.gan = GAN_LOSSES.get(config.loss.gan)()
        # Rank 0 keeps the single-process pool seeds; other ranks get their own replay choices.
        self.pool_a = ImagePool(t.pool_size, seed=t.seed * 2 + 1 + 7919 * rank)
        self.pool_b = ImagePool(t.pool_size, seed=t.seed * 2 + 2 + 7919 * rank)
        self.last_bad = torch.zeros((), device=device)  # flag of the last G step (0-d, on the device)
        self._sample_a: Optional[torch.Tensor] = None
        self._sample_b: Optional[torch.Tensor] = None
        self._loader: Optional[DataLoader] = None
        self._loader_sampler: Optional[UnpairedSampler] = None

    # ---- networks and state -------------------------------------------------------------------
    @property
    def nets(self) -> dict[str, nn.Module]:
        return {"G_ab": self.G_ab, "G_ba": self.G_ba, "D_a": self.D_a, "D_b": self.D_b}

    def parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return chained(self.G_ab, self.G_ba), chained(self.D_a, self.D_b)

    def extra_state(self) -> dict[str, Any]:
        return {"pools": {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_a.load_state_dict(state["pools"]["a"], self.device)
        self.pool_b.load_state_dict(state["pools"]["b"], self.device)

    def wrong_mode_message(self, saved_mode: str) -> str:
        if saved_mode == "conditional":
            return ("the checkpoint is from a conditional run (train.mode=conditional); resume it with "
                    "its own settings (`facecycle train --run-dir RUN --resume` reads them from the run)")
        return super().wrong_mode_message(saved_mode)

    # ---- data ------------------------------------------------------------------------------------
    def _sampler(self, epoch: int, start: int) -> UnpairedSampler:
        t = self.trainer
        return UnpairedSampler(len(self.domain_a), len(self.domain_b), self.config.train.seed, epoch,
                               start=start, rank=t.rank, world_size=t.world_size)

    def _folder_epoch(self, sampler: UnpairedSampler) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch from the folder pipeline. The DataLoader (and, on CUDA, its persistent worker
        processes) is built once; only its sampler's (epoch, start) change between epochs, and the
        sampler runs in this process, so the order stays a function of (seed, epoch, position)."""
        t = self.config.train
        if self._loader is None:
            workers = loader_workers(self.config.data.num_workers, self.device)
            cuda = self.device.type == "cuda"
            self._loader_sampler = sampler
            self._loader = DataLoader(self.dataset, batch_size=t.batch_size, sampler=sampler,  # type: ignore[arg-type]
                                      drop_last=True, num_workers=workers, pin_memory=cuda,
                                      # Its own generator: each new iterator draws a base seed, which
                                      # from the global RNG would shift dropout and WGAN-GP draws
                                      # after a resume (the order itself comes from the sampler).
                                      generator=torch.Generator().manual_seed(t.seed + self.trainer.rank),
                                      persistent_workers=workers > 0 and cuda,
                                      prefetch_factor=4 if workers > 0 else None)
        else:
            assert self._loader_sampler is not None
            self._loader_sampler.epoch, self._loader_sampler.start = sampler.epoch, sampler.start
        for batch in self._loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def epoch_batches(self, epoch: int, start: int) -> Iterator[dict[str, torch.Tensor]]:
        sampler = self._sampler(epoch, start)
        if self.cached is not None:
            return self.cached.epoch(sampler, self.config.train.batch_size)
        return self._folder_epoch(sampler)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainer.prepare(x)

    # ---- one update ------------------------------------------------------------------------------
    def cycle_weights(self) -> CycleWeights:
        c, l = self.config, self.config.loss
        decay = 1.0 - (1.0 - l.cycle_decay_to) * self.trainer.step / max(c.train.steps, 1)
        return CycleWeights(cycle_a=l.cycle_a * decay, cycle_b=l.cycle_b * decay,
                            identity_a=c.identity_a, identity_b=c.identity_b, ssim=l.ssim, ms_ssim=l.ms_ssim,
                            mask_weight=l.mask_weight, feature_cycle=l.feature_cycle)

    def mask_weights(self) -> MaskWeights:
        l = self.config.loss
        return MaskWeights(l1=l.mask_l1, tv=l.mask_tv, min_area=l.mask_min_area, floor=l.mask_floor)

    def g_step(self, batch: dict[str, torch.Tensor]) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], dict[str, torch.Tensor]]:
        """One generator update. Returns (fake_a, fake_b, terms); fakes are None when the step was
        skipped (non-finite loss or gradient) and that is known on the host right away
        (`trainer.host_checks`). Otherwise the flag stays on the device in `self.last_bad`."""
        trainer = self.trainer
        real_a, real_b = self._prepare(batch["a"]), self._prepare(batch["b"])
        weights = self.cycle_weights()
        G_ab, G_ba = trainer.train_fwd["G_ab"], trainer.train_fwd["G_ba"]
        D_a, D_b = trainer.frozen_fwd["D_a"], trainer.frozen_fwd["D_b"]
        set_requires_grad([self.D_a, self.D_b], False)
        trainer.opt_G.zero_grad(set_to_none=True)
        attention = self.config.model.attention_mask
        with trainer.autocast():
            if attention:  # the masks of every translation of this step, for their regulariser
                fake_b, mask_fake_b = G_ab(real_a, with_mask=True)
                rec_a, mask_rec_a = G_ba(fake_b, with_mask=True)
                fake_a, mask_fake_a = G_ba(real_b, with_mask=True)
                rec_b, mask_rec_b = G_ab(fake_a, with_mask=True)
            else:
                fake_b = G_ab(real_a)
                rec_a = G_ba(fake_b)
                fake_a = G_ba(real_b)
                rec_b = G_ab(fake_a)
            idt_a = G_ba(real_a) if weights.identity_a > 0 else None
            idt_b = G_ab(real_b) if weights.identity_b > 0 else None
            features = None
            if weights.feature_cycle > 0:
                features = (self.D_a.features(real_a), self.D_a.features(rec_a),
                            self.D_b.features(real_b), self.D_b.features(rec_b))
            total, terms = generator_objective(
                self.gan, weights, D_a(fake_a), D_b(fake_b), self.D_a.branch_weights,
                self.D_b.branch_weights, real_a, real_b, rec_a, rec_b, idt_a, idt_b,
                batch.get("mask_a"), batch.get("mask_b"), features)
            if attention:
                mask_total, mask_terms = mask_regularizer(
                    [mask_fake_b, mask_rec_a, mask_fake_a, mask_rec_b], self.mask_weights())
                total = total + mask_total
                terms.update(mask_terms)
                terms["G"] = total.detach()
        bad = trainer.update(total, trainer.opt_G)
        if bad is None:  # CPU: the backward pass of a step known to be bad was skipped
            self.last_bad = torch.ones((), device=self.device)
            return None, None, terms
        self.last_bad = bad
        if trainer.host_checks and bool(bad):
            trainer.opt_G.zero_grad(set_to_none=True)
            return None, None, terms
        return fake_a.detach(), fake_b.detach(), terms

    def _pool_query(self, pool: ImagePool, fake: torch.Tensor, skip: Optional[torch.Tensor]) -> torch.Tensor:
        """Pool query; with a device-side `skip` flag, pool slots written by a skipped step keep
        their previous images (new slots of a skipped step hold zeros), without a host sync."""
        if skip is None or pool.size == 0:
            return pool.query(fake)
        before = list(pool.images)
        out = pool.query(fake)
        keep = skip.bool()
        for i, image in enumerate(pool.images):
            if i >= len(before) or image is not before[i]:
                old = before[i] if i < len(before) else torch.zeros_like(image)
                pool.images[i] = torch.where(keep, old, image)
        return out

    def d_step(self, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor, fake_b: torch.Tensor,
               skip: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """One update of D_a and D_b on real images and pooled fakes (`(N, C, H, W)` in [-1, 1]).

        `skip`: optional 0-d device flag (the G step's); when set, the update is not applied."""
        trainer = self.trainer
        l = self.config.loss
        D_a, D_b = trainer.train_fwd["D_a"], trainer.train_fwd["D_b"]
        set_requires_grad([self.D_a, self.D_b], True)
        trainer.opt_D.zero_grad(set_to_none=True)
        pooled_a, pooled_b = self._pool_query(self.pool_a, fake_a, skip), self._pool_query(self.pool_b, fake_b, skip)
        with trainer.autocast():
            loss_a = discriminator_objective(self.gan, self.D_a.branch_weights, D_a(real_a), D_a(pooled_a))
            loss_b = discriminator_objective(self.gan, self.D_b.branch_weights, D_b(real_b), D_b(pooled_b))
        terms = {"D_a": loss_a.detach(), "D_b": loss_b.detach()}
        total = loss_a + loss_b
        if self.gan.uses_gradient_penalty and l.gp > 0:
            # Plain modules: the penalty's graph still feeds the one backward below, whose gradient
            # hooks DDP registered per parameter, so they are averaged like the rest.
            gp = (gradient_penalty(self.D_a, self.D_a.branch_weights, real_a, pooled_a)
                  + gradient_penalty(self.D_b, self.D_b.branch_weights, real_b, pooled_b))
            total = total + l.gp * gp
            terms["gp"] = gp.detach()
        bad = trainer.update(total, trainer.opt_D, skip)
        skipped = critic_skipped(bad, skip, trainer.host_checks)
        if skipped is not None:
            terms["D_skipped"] = skipped
        if bad is None:
            return terms
        if self.gan.uses_clipping:
            with torch.no_grad():
                for p in itertools.chain(self.D_a.parameters(), self.D_b.parameters()):
                    p.clamp_(-l.clip, l.clip)
        return terms

    @torch.no_grad()
    def _fakes(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with self.trainer.autocast():
            return self.G_ba(self._prepare(batch["b"])).float(), self.G_ab(self._prepare(batch["a"])).float()

    def critic_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fake_a, fake_b = self._fakes(batch)
        return self.d_step(self._prepare(batch["a"]), self._prepare(batch["b"]), fake_a, fake_b)

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fake_a, fake_b, terms = self.g_step(batch)
        bad = self.last_bad
        if fake_a is not None:
            assert fake_b is not None
            skip = None if self.trainer.host_checks else bad
            terms.update(self.d_step(self._prepare(batch["a"]), self._prepare(batch["b"]), fake_a, fake_b, skip))
        return bad, terms

    # ---- samples and evaluation --------------------------------------------------------------------
    def fixed_samples(self, count: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `count` images of each domain, evaluation transform: `(n, C, S, S)` in [-1, 1]."""
        if self._sample_a is None:
            size = self.config.data.crop_size
            if self.cached is not None:
                self._sample_a = self.cached.samples("a", count, size)
                self._sample_b = self.cached.samples("b", count, size)
                return self._sample_a, self._sample_b
            spec = TransformSpec(crop_size=size, train=False)

            def load(domain: Domain) -> torch.Tensor:
                tensors = []
                for path in domain.files[:count]:
                    image, _ = apply_transform(load_image(path, self.config.data.channels), spec, None)  # type: ignore[arg-type]
                    tensors.append(pil_to_tensor(image))
                return torch.stack(tensors).to(self.device)
            self._sample_a, self._sample_b = load(self.domain_a), load(self.domain_b)  # type: ignore[arg-type]
        return self._sample_a, self._sample_b  # type: ignore[return-value]

    @torch.no_grad()
    def write_samples(self, path: Path) -> None:
        """Grid: per image a row real_a | fake_b | rec_a | idt_a, then rows real_b | fake_a | rec_b | idt_b.

        Attention generators add the mask of the translation (white = changed) after fake_b / fake_a."""
        real_a, real_b = self.fixed_samples()
        for net in self.nets.values():
            net.eval()
        if self.config.model.attention_mask:
            fake_b, mask_b = self.G_ab(real_a, with_mask=True)
            fake_a, mask_a = self.G_ba(real_b, with_mask=True)
        else:
            fake_b, fake_a, mask_a, mask_b = self.G_ab(real_a), self.G_ba(real_b), None, None
        rec_a = self.G_ba(fake_b); idt_a = self.G_ba(real_a)
        rec_b = self.G_ab(fake_a); idt_b = self.G_ab(real_b)
        for net in self.nets.values():
            net.train()

        def shown(mask: Optional[torch.Tensor], i: int) -> list[torch.Tensor]:
            return [] if mask is None else [(mask[i] * 2 - 1).expand_as(real_a[0])]
        rows = [[real_a[i], fake_b[i], *shown(mask_b, i), rec_a[i], idt_a[i]] for i in range(len(real_a))]
        rows += [[real_b[i], fake_a[i], *shown(mask_a, i), rec_b[i], idt_b[i]] for i in range(len(real_b))]
        make_grid(rows).save(path)

    def evaluation_nets(self) -> Optional[tuple[nn.Module, ...]]:
        return self.G_ab, self.G_ba

    def progress_postfix(self, losses: dict[str, Any]) -> dict[str, str]:
        g = losses.get("loss_G", float("nan"))
        da, db = losses.get("loss_D_a", 0), losses.get("loss_D_b", 0)
        return {"G": f"{g:.3f}" if isinstance(g, float) else g,
                "D": f"{da + db:.3f}" if isinstance(da, float) and isinstance(db, float) else "nan"}

