"""SSIM / MS-SSIM / PSNR: reference agreement, identities, monotonicity, small images, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecycle.ops.ssim import effective_window, ms_ssim, ms_ssim_scales, psnr, ssim


def _smooth_images(n: int = 3, c: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Natural-ish images (blurred noise) in [-1, 1]; pure noise would make SSIM trivial."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return (x * 2 - 1).clamp(-1, 1)


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_ssim_matches_skimage_reference() -> None:
    skm = pytest.importorskip("skimage.metrics")
    x = _smooth_images(2, 3, 48)
    y = _noisy(x, 0.2)
    ours = ssim(x, y)
    for i in range(2):
        ref = skm.structural_similarity(x[i].numpy(), y[i].numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=2.0)
        assert ours[i].item() == pytest.approx(float(ref), abs=1e-5)
        assert psnr(x, y)[i].item() == pytest.approx(skm.peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=2.0), abs=1e-3)


@pytest.mark.parametrize("fn", [ssim, ms_ssim])
def test_identical_images_score_one(fn) -> None:
    x = _smooth_images(3, 1, 64)
    out = fn(x, x.clone())
    assert out.shape == (3,)
    assert torch.allclose(out, torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("fn", [ssim, ms_ssim])
def test_score_decreases_monotonically_with_noise(fn) -> None:
    x = _smooth_images(2, 3, 128)
    scores = [fn(x, _noisy(x, s)).mean().item() for s in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] < (0.5 if fn is ssim else 0.9)  # coarse MS-SSIM scales average noise out


def test_psnr_decreases_with_noise_and_is_capped_for_identical_images() -> None:
    x = _smooth_images(2, 3, 32)
    values = [psnr(x, _noisy(x, s)).mean().item() for s in (0.05, 0.1, 0.2)]
    assert values[0] > values[1] > values[2]
    assert torch.allclose(psnr(x, x), torch.full((2,), 100.0))
    # 0.1 std noise on [-1, 1] -> MSE ~0.01 -> 10*log10(4/0.01) ~ 26 dB (clamping lowers MSE a bit)
    assert 25 < values[1] < 28


def test_small_images_reduce_scales_and_window() -> None:
    assert ms_ssim_scales(256, 256) == 5
    assert ms_ssim_scales(128, 128) == 4
    assert ms_ssim_scales(32, 48) == 2
    assert ms_ssim_scales(16, 16) == 1
    assert effective_window(11, 8, 20) == 7
    x = _smooth_images(2, 3, 32)[:, :, :8, :]
    y = _noisy(x, 0.3)
    for fn in (ssim, ms_ssim):
        out = fn(x, y)
        assert torch.isfinite(out).all() and (out < 1).all()
    # With one scale, MS-SSIM is plain SSIM (weights renormalised to 1).
    x16 = _smooth_images(2, 1, 16)
    y16 = _noisy(x16, 0.1)
    assert torch.allclose(ms_ssim(x16, y16), ssim(x16, y16).clamp(min=1e-6), atol=1e-5)


def test_differentiable_as_a_loss() -> None:
    x = _smooth_images(2, 3, 64)
    y = _noisy(x, 0.3).requires_grad_(True)
    loss = (1 - ssim(y, x)).mean() + (1 - ms_ssim(y, x)).mean()
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    # One gradient step on 1 - SSIM moves the noisy image towards the clean one.
    with torch.no_grad():
        stepped = y - 50.0 * y.grad
    assert ssim(stepped, x).mean() > ssim(y.detach(), x).mean()


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))
    with pytest.raises(ValueError, match="odd"):
        ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), window=10)
