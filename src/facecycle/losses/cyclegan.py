"""The CycleGAN generator objective, as one pure function.

    L_G = L_gan(G_ab, D_b) + L_gan(G_ba, D_a)
        + c_a * cyc(rec_a, real_a) + c_b * cyc(rec_b, real_b)
        + i_a * |idt_a - real_a| + i_b * |idt_b - real_b|

cyc = L1 (or the mask-weighted L1 when masks are given) + ssim * (1 - SSIM) + ms_ssim * (1 - MS-SSIM)
(+ feature_cycle * L1 between discriminator features of real and reconstructed images).
Naming: `fake_b = G_ab(real_a)`, `rec_a = G_ba(fake_b)`, `idt_a = G_ba(real_a)` (G_ba should leave
an image that is already in domain A unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from facecycle.losses.adversarial import GanLoss, weighted
from facecycle.losses.reconstruction import feature_l1, l1, masked_l1


@dataclass(frozen=True)
class CycleWeights:
    """Weights of the generator objective for one step (cycle weights may decay over training)."""

    cycle_a: float = 10.0
    cycle_b: float = 10.0
    identity_a: float = 5.0
    identity_b: float = 5.0
    ssim: float = 0.0
    ms_ssim: float = 0.0
    mask_weight: float = 0.0
    feature_cycle: float = 0.0


def cycle_term(
    rec: torch.Tensor, real: torch.Tensor, weights: CycleWeights, mask: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reconstruction error of one cycle direction (before the per-direction cycle weight)."""
    terms: dict[str, torch.Tensor] = {}
    if mask is not None and weights.mask_weight > 0:
        pixel = masked_l1(rec, real, mask, weights.mask_weight)
    else:
        pixel = l1(rec, real)
    total = pixel
    terms["l1"] = pixel.detach()
    if weights.ssim > 0 or weights.ms_ssim > 0:
        from facecycle.ops import ssim as ssim_mod

        if weights.ssim > 0:
            s = ssim_mod.ssim(rec.float(), real.float()).mean()
            total = total + weights.ssim * (1 - s)
            terms["ssim"] = s.detach()
        if weights.ms_ssim > 0:
            s = ssim_mod.ms_ssim(rec.float(), real.float()).mean()
            total = total + weights.ms_ssim * (1 - s)
            terms["ms_ssim"] = s.detach()
    return total, terms


def generator_objective(
    gan: GanLoss,
    weights: CycleWeights,
    d_a_fake: Sequence[torch.Tensor],
    d_b_fake: Sequence[torch.Tensor],
    d_a_weights: Sequence[float],
    d_b_weights: Sequence[float],
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    rec_a: torch.Tensor,
    rec_b: torch.Tensor,
    idt_a: Optional[torch.Tensor] = None,
    idt_b: Optional[torch.Tensor] = None,
    mask_a: Optional[torch.Tensor] = None,
    mask_b: Optional[torch.Tensor] = None,
    features: Optional[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total generator loss and its named terms.

    `d_a_fake` are D_a's logits on fake_a (one per branch), `d_b_fake` D_b's on fake_b.
    `features` = (D_a feats of real_a, of rec_a, D_b feats of real_b, of rec_b) when
    `weights.feature_cycle` > 0.
    """
    gan_ab = weighted(gan.g_loss, d_b_weights, d_b_fake)
    gan_ba = weighted(gan.g_loss, d_a_weights, d_a_fake)
    cyc_a, terms_a = cycle_term(rec_a, real_a, weights, mask_a)
    cyc_b, terms_b = cycle_term(rec_b, real_b, weights, mask_b)
    total = gan_ab + gan_ba + weights.cycle_a * cyc_a + weights.cycle_b * cyc_b
    terms = {"G_ab_gan": gan_ab.detach(), "G_ba_gan": gan_ba.detach(), "cycle_a": cyc_a.detach(), "cycle_b": cyc_b.detach()}
    for name, value in terms_a.items():
        if name != "l1":
            terms[f"cycle_a_{name}"] = value
    for name, value in terms_b.items():
        if name != "l1":
            terms[f"cycle_b_{name}"] = value
    if idt_a is not None and weights.identity_a > 0:
        term = l1(idt_a, real_a)
        total = total + weights.identity_a * term
        terms["idt_a"] = term.detach()
    if idt_b is not None and weights.identity_b > 0:
        term = l1(idt_b, real_b)
        total = total + weights.identity_b * term
        terms["idt_b"] = term.detach()
    if features is not None and weights.feature_cycle > 0:
        fa_real, fa_rec, fb_real, fb_rec = features
        term = feature_l1(fa_rec, [f.detach() for f in fa_real]) + feature_l1(fb_rec, [f.detach() for f in fb_real])
        total = total + weights.feature_cycle * term
        terms["feature_cycle"] = term.detach()
    terms["G"] = total.detach()
    return total, terms


def discriminator_objective(
    gan: GanLoss, weights: Sequence[float], real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Adversarial loss of one (possibly multi-branch) discriminator."""
    return weighted(gan.d_loss, weights, real_logits, fake_logits)
