"""The CycleGAN trainer: one explicit class with `g_step`, `d_step` and `fit`.

GAN math lives in facecycle.losses; this file owns the order of updates, the data position,
checkpoints and logging. Counters: `step` = generator updates done; `epoch` and
`batch_in_epoch` locate the data stream so a resumed run continues with the same batches.

Speed and scale (issue 7):

* Precision: `train.precision` bf16 (CPU and CUDA autocast) or fp16 (CUDA, with a GradScaler
  whose state is checkpointed); `train.channels_last`; `train.compile` off|on|auto (torch.compile,
  falls back to eager with a warning when the compiler is missing or fails; see
  facecycle.training.compile); fused Adam.
* Non-finite steps never need a host sync on CUDA: every update is computed, then applied
  through the fused optimizer's `found_inf` mask (skipped when the loss or a gradient is not
  finite); the flags are read on the host every `finite_check_every` steps (CUDA: log_every;
  CPU, where a sync costs nothing: every step, which also skips the D step and the pool of a
  bad G step as before). Skipped steps are logged, `max_bad_steps` consecutive ones stop the
  run before any newer checkpoint is written.
* Distributed: under torchrun the four nets are wrapped in DistributedDataParallel (gradients
  are averaged across processes), only rank 0 writes checkpoints, logs, samples and runs the
  evaluator. See `facecycle.training.distributed` for the details and limitations.
* Data: `--data-a/--data-b` may name `.npy` caches from `facecycle prepare cache` (no decoding,
  memory-mapped, same batches as the folders; see `facecycle.data.cache`).
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from facecycle import __version__
from facecycle.config import Config
from facecycle.data.cache import CachedBatches, CachedDomain, is_cache
from facecycle.data.images import load_image, make_grid, pil_to_tensor
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.data.unpaired import Domain, UnpairedDataset, UnpairedSampler
from facecycle.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from facecycle.losses import GAN_LOSSES, gradient_penalty
from facecycle.losses.attention import MaskWeights, mask_regularizer
from facecycle.losses.cyclegan import CycleWeights, discriminator_objective, generator_objective
from facecycle.models.build import build_discriminator, build_generator
from facecycle.runtime import checkpoints as ckpt
from facecycle.runtime.checkpoints import CHECKPOINT_FORMAT
from facecycle.runtime.device import autocast, resolve_device, with_resolved_precision
from facecycle.training import distributed as fdist
from facecycle.training.compile import compiled, resolve_compile
from facecycle.training.logging import RunLogger, scalars
from facecycle.training.pool import ImagePool
from facecycle.training.rng import capture_rng, restore_rng
from facecycle.training.schedule import LinearDecaySchedule

# Settings a checkpoint's weights depend on: changing any of them on resume is an error.
ARCHITECTURE_KEYS = [("data", "channels")] + [("model", k) for k in (
    "generator", "gen_width", "gen_blocks", "gen_depth", "gen_attention", "gen_upsample", "attention_mask", "norm",
    "discriminator", "disc_width", "disc_layers", "disc_layers_2", "disc_scales", "spectral_norm")]


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
    """Trains G_ab, G_ba, D_a, D_b on two unpaired folders; writes everything under `run_dir`.

    `G_ab`, `G_ba`, `D_a`, `D_b` are always the plain modules (what checkpoints, samples and the
    evaluator use); the training forward passes go through their DDP / compiled wrappers.
    """

    def __init__(self, config: Config, run_dir: str | Path, rank: int = 0, world_size: int = 1,
                 progress: bool = True) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.progress = progress and self.is_main
        self.device = resolve_device(config.train.device)
        self.config = config = with_resolved_precision(config, self.device)
        self.distributed = world_size > 1 and dist.is_available() and dist.is_initialized()
        t, d = config.train, config.data
        if t.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs a CUDA device (GradScaler); use bf16 on the CPU")
        # Per-rank seeds; rank 0 draws what a single process draws. DDP broadcasts rank 0's initial
        # weights, so only data-independent randomness (dropout, WGAN-GP mixing) differs per rank.
        torch.manual_seed(t.seed + rank)

        if not d.data_a or not d.data_b:
            raise DataError("both domains are needed: pass --data-a DIR and --data-b DIR")
        self.cached: Optional[CachedBatches] = None
        if is_cache(d.data_a) or is_cache(d.data_b):
            if not (is_cache(d.data_a) and is_cache(d.data_b)):
                raise DataError("one domain is a cache file and the other is not: pass two .npy caches "
                                "(facecycle prepare cache) or two folders")
            if d.masks_a or d.masks_b:
                raise DataError("with caches, masks come from the cache: build it with "
                                "`facecycle prepare cache --masks DIR` instead of passing --masks-a/--masks-b")
            self.domain_a = CachedDomain(d.data_a, "A")  # type: ignore[assignment]
            self.domain_b = CachedDomain(d.data_b, "B")  # type: ignore[assignment]
            self.cached = CachedBatches(self.domain_a, self.domain_b,  # type: ignore[arg-type]
                                        TransformSpec(d.load_size, d.crop_size, d.flip, train=True),
                                        d.channels, self.device, channels_last=t.channels_last)
            self.dataset = None
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

        self.G_ab = build_generator(config).to(self.device)
        self.G_ba = build_generator(config).to(self.device)
        self.D_a = build_discriminator(config).to(self.device)
        self.D_b = build_discriminator(config).to(self.device)
        if config.model.norm == "batch" and self.distributed:
            self._sync_batch_norm()
        if t.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        self.gan = GAN_LOSSES.get(config.loss.gan)()
        self.opt_G = self._optimizer(itertools.chain(self.G_ab.parameters(), self.G_ba.parameters()), config.optim.lr_g)
        self.opt_D = self._optimizer(itertools.chain(self.D_a.parameters(), self.D_b.parameters()), config.optim.lr_d)
        self.sched_G = LinearDecaySchedule(self.opt_G, t.steps, config.decay_steps)
        self.sched_D = LinearDecaySchedule(self.opt_D, t.steps, config.decay_steps)
        # Rank 0 keeps the single-process pool seeds; other ranks get their own replay choices.
        self.pool_a = ImagePool(t.pool_size, seed=t.seed * 2 + 1 + 7919 * rank)
        self.pool_b = ImagePool(t.pool_size, seed=t.seed * 2 + 2 + 7919 * rank)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")

        # Forward callables used by the training step: DDP-wrapped (gradient averaging) and/or
        # compiled. D's plain modules serve the G step (D is frozen there, so DDP must not see it).
        self._train_fwd: dict[str, Callable[..., Any]] = dict(self.nets)
        self._frozen_fwd: dict[str, Callable[..., Any]] = dict(self.nets)
        if self.distributed:
            self._train_fwd = fdist.wrap_ddp(self.nets, self.device)
        # Only the callables are compiled: self.G_ab etc. stay plain modules, so checkpoints keep
        # their keys (no `_orig_mod.`) and resume works across train.compile settings.
        self.compiled = resolve_compile(t.compile, self.device)
        if self.compiled:
            self._train_fwd = {k: compiled(k, f) for k, f in self._train_fwd.items()}
            self._frozen_fwd = {k: compiled(k + " (frozen)", f) for k, f in self._frozen_fwd.items()}

        # Host reads of the non-finite flags: every step on the CPU (free there), every
        # log_every steps on accelerators (each read is a device sync).
        self.finite_check_every = 1 if self.device.type == "cpu" else t.log_every
        self._pending: list[tuple[int, int, torch.Tensor, dict[str, torch.Tensor]]] = []
        self.last_bad = torch.zeros((), device=self.device)  # flag of the last G step (0-d, on the device)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.bad_steps = 0
        self.best: dict[str, Any] = {}
        self.logger = RunLogger(self.run_dir, enabled=self.is_main)
        self.evaluator: Optional[Callable[[nn.Module, nn.Module], Optional[dict[str, float]]]] = None
        # Direction of the evaluator's scores for best.pt; whoever sets `evaluator` sets this too
        # (training sits below evaluation and does not import it).
        self.score_higher_is_better: Callable[[str], bool] = lambda name: False
        self._sample_a: Optional[torch.Tensor] = None
        self._sample_b: Optional[torch.Tensor] = None
        self._loader: Optional[DataLoader] = None
        self._loader_sampler: Optional[UnpairedSampler] = None

    # ---- construction helpers ------------------------------------------------------------
    @property
    def nets(self) -> dict[str, nn.Module]:
        return {"G_ab": self.G_ab, "G_ba": self.G_ba, "D_a": self.D_a, "D_b": self.D_b}

    def _sync_batch_norm(self) -> None:
        if self.device.type != "cuda":
            if self.is_main:
                warnings.warn("model.norm=batch with several CPU processes: batch statistics are per process "
                              "(SyncBatchNorm needs CUDA); running statistics follow rank 0", stacklevel=2)
            return
        for name in ("G_ab", "G_ba", "D_a", "D_b"):
            setattr(self, name, nn.SyncBatchNorm.convert_sync_batchnorm(getattr(self, name)))

    def _optimizer(self, params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        o = self.config.optim
        if o.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, foreach=True)
        params = list(params)
        if self.device.type in ("cpu", "cuda"):
            # Fused: one kernel for all parameters, and it can skip a step on a device-side
            # found_inf flag (see _apply_update) without a host sync.
            try:
                return torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2), fused=True)
            except (RuntimeError, TypeError, ValueError):
                pass
        return torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2), foreach=True)

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        t = self.config.train
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "config": self.config.to_dict(),
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "schedules": {"G": self.sched_G.state_dict(), "D": self.sched_D.state_dict()},
            "pools": {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()},
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "counters": {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                         "world_size": self.world_size,
                         # global data positions consumed in this epoch (all ranks together)
                         "positions_in_epoch": self.batch_in_epoch * t.batch_size * self.world_size},
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
        if n >= 0:
            return n
        # CPU training needs every core for compute; on CUDA, decode in parallel with the GPU.
        return min(4, os.cpu_count() or 1) if self.device.type == "cuda" else 0

    def _sampler(self) -> UnpairedSampler:
        t = self.config.train
        return UnpairedSampler(len(self.domain_a), len(self.domain_b), t.seed, self.epoch,
                               start=self.batch_in_epoch * t.batch_size, rank=self.rank, world_size=self.world_size)

    def _folder_epoch(self) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch from the folder pipeline. The DataLoader (and, on CUDA, its persistent worker
        processes) is built once; only its sampler's (epoch, start) change between epochs, and the
        sampler runs in this process, so the order stays a function of (seed, epoch, position)."""
        t = self.config.train
        sampler = self._sampler()
        if self._loader is None:
            workers = self._num_workers()
            cuda = self.device.type == "cuda"
            self._loader_sampler = sampler
            self._loader = DataLoader(self.dataset, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                                      num_workers=workers, pin_memory=cuda,
                                      # Its own generator: each new iterator draws a base seed, which
                                      # from the global RNG would shift dropout and WGAN-GP draws
                                      # after a resume (the order itself comes from the sampler).
                                      generator=torch.Generator().manual_seed(t.seed + self.rank),
                                      persistent_workers=workers > 0 and cuda,
                                      prefetch_factor=4 if workers > 0 else None)
        else:
            assert self._loader_sampler is not None
            self._loader_sampler.epoch, self._loader_sampler.start = sampler.epoch, sampler.start
        for batch in self._loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless batches; advances `epoch`/`batch_in_epoch` as they are consumed."""
        t = self.config.train
        while True:
            if self.cached is not None:
                epoch = self.cached.epoch(self._sampler(), t.batch_size)
            else:
                epoch = self._folder_epoch()
            for batch in epoch:
                self.batch_in_epoch += 1
                yield batch
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

    def mask_weights(self) -> MaskWeights:
        l = self.config.loss
        return MaskWeights(l1=l.mask_l1, tv=l.mask_tv, min_area=l.mask_min_area, floor=l.mask_floor)

    def _found_bad(self, total: torch.Tensor, optimizer: torch.optim.Optimizer,
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

    def _apply_update(self, optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
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

    def g_step(self, batch: dict[str, torch.Tensor]) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], dict[str, torch.Tensor]]:
        """One generator update. Returns (fake_a, fake_b, terms); fakes are None when the step was
        skipped (non-finite loss or gradient) and that is known on the host right away
        (`finite_check_every == 1`). Otherwise the flag stays on the device in `self.last_bad`."""
        real_a, real_b = self._prepare(batch["a"]), self._prepare(batch["b"])
        weights = self.cycle_weights()
        G_ab, G_ba = self._train_fwd["G_ab"], self._train_fwd["G_ba"]
        D_a, D_b = self._frozen_fwd["D_a"], self._frozen_fwd["D_b"]
        set_requires_grad([self.D_a, self.D_b], False)
        self.opt_G.zero_grad(set_to_none=True)
        attention = self.config.model.attention_mask
        with autocast(self.device, self.config.train.precision):
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
        if self.finite_check_every == 1 and not self.distributed and not torch.isfinite(total):
            # CPU: skip the backward pass of a step known to be bad (free to know there).
            self.opt_G.zero_grad(set_to_none=True)
            self.last_bad = torch.ones((), device=self.device)
            return None, None, terms
        self.scaler.scale(total).backward()
        bad = self._found_bad(total, self.opt_G)
        self._apply_update(self.opt_G, bad)
        self.last_bad = bad
        if self.finite_check_every == 1 and bool(bad):
            self.opt_G.zero_grad(set_to_none=True)
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
        l = self.config.loss
        D_a, D_b = self._train_fwd["D_a"], self._train_fwd["D_b"]
        set_requires_grad([self.D_a, self.D_b], True)
        self.opt_D.zero_grad(set_to_none=True)
        pooled_a, pooled_b = self._pool_query(self.pool_a, fake_a, skip), self._pool_query(self.pool_b, fake_b, skip)
        with autocast(self.device, self.config.train.precision):
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
        if self.finite_check_every == 1 and not self.distributed and not torch.isfinite(total):
            self.opt_D.zero_grad(set_to_none=True)
            terms["D_skipped"] = torch.ones(())
            return terms
        self.scaler.scale(total).backward()
        bad = self._found_bad(total, self.opt_D, skip)
        self._apply_update(self.opt_D, bad)
        if self.finite_check_every == 1:
            if bool(bad):
                terms["D_skipped"] = torch.ones(())
        elif skip is None:
            terms["D_skipped"] = bad
        else:  # skipped because of the G step: already counted there
            terms["D_skipped"] = torch.where(skip.bool(), torch.zeros_like(bad), bad)
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
            self._sample_a, self._sample_b = load(self.domain_a), load(self.domain_b)
        return self._sample_a, self._sample_b  # type: ignore[return-value]

    @torch.no_grad()
    def write_samples(self) -> Path:
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
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_grid(rows).save(path)
        return path

    # ---- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self) -> Optional[dict[str, float]]:
        if self.evaluator is None or not self.is_main:  # rank 0 evaluates, the others go on
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
        window_good: torch.Tensor | float = 0.0
        window_steps = 0
        window_start = time.perf_counter()
        last: dict[str, float] = {}
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        stop = StopSignals(defer=not self.distributed)
        stop.__enter__()
        try:
            while self.step < stop_at:
                for _ in range(self.config.optim.n_critic - 1):  # extra critic updates (WGAN)
                    batch = next(stream)
                    fake_a, fake_b = self._fakes(batch)
                    self.d_step(self._prepare(batch["a"]), self._prepare(batch["b"]), fake_a, fake_b)
                batch = next(stream)
                fake_a, fake_b, terms = self.g_step(batch)
                bad = self.last_bad
                if fake_a is not None:
                    skip = None if self.finite_check_every == 1 else bad
                    terms.update(self.d_step(self._prepare(batch["a"]), self._prepare(batch["b"]), fake_a, fake_b, skip))
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
                        g = losses.get("loss_G", float("nan"))
                        da, db = losses.get("loss_D_a", 0), losses.get("loss_D_b", 0)
                        bar.set_postfix({"G": f"{g:.3f}" if isinstance(g, float) else g,
                                         "D": f"{da + db:.3f}" if isinstance(da, float) and isinstance(db, float) else "nan",
                                         "img/s": f"{rate:.2f}"})
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
