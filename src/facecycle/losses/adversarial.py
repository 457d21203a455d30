"""Adversarial objectives.

Each loss works on one discriminator output (logits of any shape; no sigmoid is applied by
the networks). Discriminators with several branches are combined by `weighted` with the
branch weights (face-off eq. 7 for the dual discriminator).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from facecycle.registry import Registry


class GanLoss:
    """Interface: `d_loss(real_logits, fake_logits)` and `g_loss(fake_logits)` -> scalar tensors.

    `clip` > 0 means the trainer clips critic weights to [-clip, clip] after each D step (WGAN);
    `gradient_penalty` means it adds the WGAN-GP term.
    """

    uses_clipping = False
    uses_gradient_penalty = False

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


GAN_LOSSES: Registry[type[GanLoss]] = Registry("adversarial loss")


@GAN_LOSSES.register("lsgan")
class LSGAN(GanLoss):
    """Least squares (CycleGAN default). D: 0.5 * [(D(real) - 1)^2 + D(fake)^2] — halved as in the
    paper so D learns at half G's rate; G: (D(fake) - 1)^2."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real.float() - 1).pow(2).mean() + fake.float().pow(2).mean())

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return (fake.float() - 1).pow(2).mean()


@GAN_LOSSES.register("vanilla")
class Vanilla(GanLoss):
    """Original GAN with BCE on logits (numerically stable); D halved like LSGAN; non-saturating G."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real, fake = real.float(), fake.float()
        return 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        )

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        fake = fake.float()
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


@GAN_LOSSES.register("hinge")
class Hinge(GanLoss):
    """Hinge loss (SAGAN): D: 0.5 * [relu(1 - D(real)) + relu(1 + D(fake))]; G: -D(fake)."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.relu(1 - real.float()).mean() + F.relu(1 + fake.float()).mean())

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.float().mean()


@GAN_LOSSES.register("wgan")
class WGAN(GanLoss):
    """Wasserstein critic (no sigmoid, no log): D: D(fake) - D(real); G: -D(fake).
    Lipschitz by weight clipping (loss.clip); the face-off report pairs it with RMSProp, lr 5e-5
    and several critic steps per generator step (see configs/faceoff_wgan.yaml)."""

    uses_clipping = True

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.float().mean() - real.float().mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.float().mean()


@GAN_LOSSES.register("wgan-gp")
class WGANGP(WGAN):
    """WGAN with a gradient penalty on random interpolates instead of clipping (Gulrajani et al.)."""

    uses_clipping = False
    uses_gradient_penalty = True


def weighted(
    fn: Callable[..., torch.Tensor], weights: Sequence[float], *outputs: Sequence[torch.Tensor]
) -> torch.Tensor:
    """sum_k weights[k] * fn(outputs[0][k], outputs[1][k], ...) over discriminator branches."""
    return sum(w * fn(*(o[k] for o in outputs)) for k, w in enumerate(weights))  # type: ignore[return-value]


def gradient_penalty(
    discriminator: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    weights: Sequence[float],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP term E[(||grad_x D(x_hat)||_2 - 1)^2] on x_hat = e*real + (1-e)*fake, e ~ U(0,1) per sample.

    `real`, `fake`: `(N, C, H, W)`; the graph is kept (create_graph) so the penalty trains D.
    Returns the (unweighted by loss.gp) penalty summed over branches with their weights.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    outputs = discriminator(x_hat)
    total = real.new_zeros((), dtype=torch.float32)
    for w, out in zip(weights, outputs):
        (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
        norms = grad.flatten(1).norm(2, dim=1)
        total = total + w * (norms - 1).pow(2).mean()
    return total
