"""Exact values of the adversarial and reconstruction losses on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from facecycle.losses import GAN_LOSSES, gradient_penalty
from facecycle.losses.adversarial import weighted
from facecycle.losses.cyclegan import CycleWeights, discriminator_objective, generator_objective
from facecycle.losses.reconstruction import l1, masked_l1

REAL = torch.tensor([1.0, 0.0, 2.0, -1.0])
FAKE = torch.tensor([0.5, -0.5, 0.0, 1.0])


def test_lsgan_values() -> None:
    gan = GAN_LOSSES.get("lsgan")()
    # real: (0, 1, 1, 4) -> 1.5 ; fake: (0.25, 0.25, 0, 1) -> 0.375 ; D = 0.5 * (1.5 + 0.375)
    assert gan.d_loss(REAL, FAKE).item() == pytest.approx(0.9375)
    # G: ((-0.5)^2 + (-1.5)^2 + 1 + 0) / 4 = 0.875
    assert gan.g_loss(FAKE).item() == pytest.approx(0.875)


def test_vanilla_values() -> None:
    gan = GAN_LOSSES.get("vanilla")()
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    real_term = sum(softplus(-v) for v in REAL.tolist()) / 4
    fake_term = sum(softplus(v) for v in FAKE.tolist()) / 4
    assert gan.d_loss(REAL, FAKE).item() == pytest.approx(0.5 * (real_term + fake_term), rel=1e-6)
    assert gan.g_loss(FAKE).item() == pytest.approx(sum(softplus(-v) for v in FAKE.tolist()) / 4, rel=1e-6)


def test_hinge_and_wgan_values() -> None:
    hinge = GAN_LOSSES.get("hinge")()
    # relu(1 - real) = (0, 1, 0, 2) -> 0.75 ; relu(1 + fake) = (1.5, 0.5, 1, 2) -> 1.25
    assert hinge.d_loss(REAL, FAKE).item() == pytest.approx(0.5 * (0.75 + 1.25))
    assert hinge.g_loss(FAKE).item() == pytest.approx(-0.25)
    wgan = GAN_LOSSES.get("wgan")()
    assert wgan.d_loss(REAL, FAKE).item() == pytest.approx(0.25 - 0.5)
    assert wgan.g_loss(FAKE).item() == pytest.approx(-0.25)
    assert wgan.uses_clipping and not wgan.uses_gradient_penalty
    assert GAN_LOSSES.get("wgan-gp").uses_gradient_penalty


def test_unknown_gan_lists_choices() -> None:
    with pytest.raises(Exception, match="hinge, lsgan, vanilla, wgan, wgan-gp"):
        GAN_LOSSES.get("nope")


def test_l1_and_masked_l1_formula() -> None:
    x = torch.zeros(1, 1, 2, 2)
    y = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert l1(x, y).item() == pytest.approx(2.5)
    # weights (w*mask + 1) with w = 3: (4, 1, 1, 4) -> (4*1 + 2 + 3 + 4*4) / 4 = 25 / 4
    assert masked_l1(x, y, mask, 3.0).item() == pytest.approx(6.25)
    assert masked_l1(x, y, mask, 0.0).item() == pytest.approx(2.5)


def test_mask_gives_face_pixels_proportionally_more_gradient() -> None:
    rec = torch.zeros(1, 3, 4, 4, requires_grad=True)
    real = torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1.0
    masked_l1(rec, real, mask, 4.0).backward()
    grad = rec.grad.abs()
    assert torch.allclose(grad[..., 1, 1] / grad[..., 0, 0], torch.tensor(5.0))  # (4 * 1 + 1) / 1


def test_dual_discriminator_weighting_equals_formula() -> None:
    gan = GAN_LOSSES.get("lsgan")()
    real1, fake1 = torch.tensor([1.0, 0.5]), torch.tensor([0.2, 0.0])
    real2, fake2 = torch.tensor([0.0, 2.0]), torch.tensor([1.0, -1.0])
    lam = 0.3
    expected = lam * gan.d_loss(real1, fake1) + (1 - lam) * gan.d_loss(real2, fake2)
    got = discriminator_objective(gan, [lam, 1 - lam], [real1, real2], [fake1, fake2])
    assert got.item() == pytest.approx(expected.item())
    assert weighted(gan.g_loss, [lam, 1 - lam], [fake1, fake2]).item() == pytest.approx(
        (lam * gan.g_loss(fake1) + (1 - lam) * gan.g_loss(fake2)).item())


def test_generator_objective_sums_weighted_terms() -> None:
    gan = GAN_LOSSES.get("lsgan")()
    real_a, real_b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    rec_a, rec_b = torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.75)
    idt_a, idt_b = torch.full((1, 1, 2, 2), 0.1), torch.full((1, 1, 2, 2), 0.8)
    d_a_fake, d_b_fake = [torch.tensor([0.0])], [torch.tensor([2.0])]
    w = CycleWeights(cycle_a=10, cycle_b=4, identity_a=5, identity_b=2)
    total, terms = generator_objective(gan, w, d_a_fake, d_b_fake, [1.0], [1.0], real_a, real_b, rec_a, rec_b, idt_a, idt_b)
    # G_ab gan: (2-1)^2 = 1; G_ba gan: (0-1)^2 = 1; cycle: 10*0.5 + 4*0.25; identity: 5*0.1 + 2*0.2
    assert total.item() == pytest.approx(1 + 1 + 5 + 1 + 0.5 + 0.4, rel=1e-6)
    assert set(terms) >= {"G_ab_gan", "G_ba_gan", "cycle_a", "cycle_b", "idt_a", "idt_b", "G"}
    # a weight of 0 turns a term off (and it is not reported)
    total0, terms0 = generator_objective(gan, CycleWeights(cycle_a=10, cycle_b=4, identity_a=0, identity_b=0),
                                         d_a_fake, d_b_fake, [1.0], [1.0], real_a, real_b, rec_a, rec_b, idt_a, idt_b)
    assert total0.item() == pytest.approx(8.0, rel=1e-6) and "idt_a" not in terms0


class _Linear(nn.Module):
    """D(x) = sum(v * x): gradient v everywhere; 1-Lipschitz when ||v|| = 1."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.v = nn.Parameter(v)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [(x * self.v).flatten(1).sum(1)]


def test_gradient_penalty_zero_for_unit_linear_critic_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    v = torch.full((1, 1, 2, 2), 0.5)  # ||v|| = 1
    assert gradient_penalty(_Linear(v), [1.0], real, fake).item() == pytest.approx(0.0, abs=1e-10)
    critic = _Linear(v * 3)  # ||v|| = 3 -> (3 - 1)^2 = 4
    gp = gradient_penalty(critic, [1.0], real, fake)
    assert gp.item() == pytest.approx(4.0, rel=1e-5)
    gp.backward()  # the penalty trains the critic: d/dv (||v|| - 1)^2 = 2 (||v|| - 1) v / ||v||
    assert torch.allclose(critic.v.grad, 2 * 2 * (v * 3) / 3, atol=1e-5)
