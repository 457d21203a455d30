"""Objectives of conditional translation (StarGAN / GANimation family), as pure functions.

Critic:    L_D = L_gan_d(D(x), D(G(x, c_tgt))) + lambda_cl * cond(D_c(x), c_src)  [+ gp * GP]
Generator: L_G = L_gan_g(D(fake)) + lambda_cl * cond(D_c(fake), c_tgt)
               + lambda_cyc * |G(fake, c_src) - x| + lambda_idt * |G(x, c_src) - x|
               + mask_l1 * (mean A_fake + mean A_rec) + mask_tv * (TV(A_fake) + TV(A_rec))

`cond` is BCE-with-logits for presence / one-hot labels and MSE on the raw outputs for
intensities (scaled to [0, 1]); both are means over batch and units. The condition term is
computed on real images only for the critic (it must learn to read real faces) and on fakes
only for the generator (it must produce what the critic reads as the target).
Condition vectors: `(N, K)` float in [0, 1]; images `(N, C, H, W)` in [-1, 1]; masks `(N, 1, H, W)` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from facecycle.losses.adversarial import GanLoss, weighted
from facecycle.losses.reconstruction import l1


@dataclass(frozen=True)
class ConditionalWeights:
    condition: float = 10.0  # lambda_cl
    cycle: float = 10.0  # lambda_cyc
    identity: float = 0.0
    mask_l1: float = 0.1
    mask_tv: float = 0.1


def condition_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean BCE-with-logits (presence, categorical) or mean squared error (intensity), `(N, K)` each."""
    logits, target = logits.float(), target.float()
    if kind == "intensity":
        return F.mse_loss(logits, target)
    if kind in ("presence", "categorical"):
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"unknown label kind {kind!r}")


def condition_prediction(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Critic outputs -> predicted condition in [0, 1] (sigmoid for presence/categorical, clamp for intensity)."""
    return logits.float().clamp(0, 1) if kind == "intensity" else torch.sigmoid(logits.float())


def total_variation(mask: torch.Tensor) -> torch.Tensor:
    """mean |A[i, j+1] - A[i, j]| + mean |A[i+1, j] - A[i, j]| for `(N, 1, H, W)`."""
    mask = mask.float()
    return ((mask[..., :, 1:] - mask[..., :, :-1]).abs().mean() + (mask[..., 1:, :] - mask[..., :-1, :]).abs().mean())


def critic_objective(gan: GanLoss, branch_weights: Sequence[float], real_logits: Sequence[torch.Tensor],
                     fake_logits: Sequence[torch.Tensor], real_condition_logits: torch.Tensor,
                     source: torch.Tensor, kind: str, weights: ConditionalWeights,
                     gp: Optional[torch.Tensor] = None, gp_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Critic loss and its terms (`D_gan`, `D_cond`, `gp`, `D`)."""
    adversarial = weighted(gan.d_loss, branch_weights, real_logits, fake_logits)
    cond = condition_loss(real_condition_logits, source, kind)
    total = adversarial + weights.condition * cond
    terms = {"D_gan": adversarial.detach(), "D_cond": cond.detach()}
    if gp is not None and gp_weight > 0:
        total = total + gp_weight * gp
        terms["gp"] = gp.detach()
    terms["D"] = total.detach()
    return total, terms


def generator_objective(gan: GanLoss, branch_weights: Sequence[float], fake_logits: Sequence[torch.Tensor],
                        fake_condition_logits: torch.Tensor, target: torch.Tensor, kind: str,
                        weights: ConditionalWeights, real: torch.Tensor, rec: torch.Tensor,
                        idt: Optional[torch.Tensor] = None, mask_fake: Optional[torch.Tensor] = None,
                        mask_rec: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generator loss and its terms (`G_gan`, `G_cond`, `cycle`, `idt`, `mask`, `mask_tv`, `G`).

    `rec` = G(G(real, target), source); `idt` = G(real, source) (skipped when None or weight 0);
    masks are the attention masks of the fake and the reconstruction (None without attention output).
    """
    adversarial = weighted(gan.g_loss, branch_weights, fake_logits)
    cond = condition_loss(fake_condition_logits, target, kind)
    cyc = l1(rec, real)
    total = adversarial + weights.condition * cond + weights.cycle * cyc
    terms = {"G_gan": adversarial.detach(), "G_cond": cond.detach(), "cycle": cyc.detach()}
    if idt is not None and weights.identity > 0:
        term = l1(idt, real)
        total = total + weights.identity * term
        terms["idt"] = term.detach()
    masks = [m for m in (mask_fake, mask_rec) if m is not None]
    if masks:
        mean = sum(m.float().mean() for m in masks)
        tv = sum(total_variation(m) for m in masks)
        total = total + weights.mask_l1 * mean + weights.mask_tv * tv  # type: ignore[operator]
        terms["mask"] = mean.detach()  # type: ignore[union-attr]
        terms["mask_tv"] = tv.detach()  # type: ignore[union-attr]
    terms["G"] = total.detach()
    return total, terms


def sample_targets(labels: torch.Tensor, batch: int, noise: float = 0.1, generator: Optional[torch.Generator] = None,
                   categorical: bool = False) -> torch.Tensor:
    """Targets drawn from the training label distribution: the labels of `batch` random training
    images, with U(-noise, noise) added to the active units (value > 0) and clamped to [0, 1]
    (seed report 004, e3). One-hot (categorical) targets get no noise.

    labels: `(M, K)` float in [0, 1] (all training labels, on the device). Returns `(batch, K)`.
    """
    # Drawn on the CPU (the torch CPU generator is part of every checkpoint), then moved.
    index = torch.randint(0, labels.shape[0], (batch,), generator=generator)
    picked = labels[index.to(labels.device)]
    if categorical or noise <= 0:
        return picked.clone()
    jitter = ((torch.rand(tuple(picked.shape), generator=generator) * 2 - 1) * noise).to(labels.device, labels.dtype)
    return torch.where(picked > 0, picked + jitter, picked).clamp(0, 1)


def flipped_targets(source: torch.Tensor) -> torch.Tensor:
    """`(K,)` -> `(K, K)`: row k is `source` with unit k complemented (1 - v), for preview grids (e5)."""
    out = source.float().repeat(source.shape[0], 1)
    idx = torch.arange(source.shape[0])
    out[idx, idx] = 1 - out[idx, idx]
    return out
