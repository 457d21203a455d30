"""Differentiable SSIM, MS-SSIM and PSNR for image batches.

Used twice: as a cycle-consistency loss term (`1 - ssim(rec, real)`) by `facecycle.losses`, and as a
reconstruction metric by `facecycle.evaluation`, which is why it lives below both. All functions take `(N, C, H, W)` float
tensors (any float dtype; computed in float32) in `[-1, 1]` by default, so the default
`data_range` is 2.0, and return one value per image, shape `(N,)`.

Conventions follow Wang et al. 2004 / 2003 as implemented by the reference MATLAB code and
`skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`: an 11x11 Gaussian window with sigma 1.5, K1=0.01, K2=0.03,
statistics over the *valid* region only (no padding: padded borders would inflate the score
of flat borders), averaged over channels and positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

K1 = 0.01
K2 = 0.03
#: Standard MS-SSIM scale weights (Wang, Simoncelli & Bovik 2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(f"expected two (N, C, H, W) tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def effective_window(window: int, height: int, width: int) -> int:
    """The window actually used: `window`, or the largest odd size that fits a small image.

    A window larger than the image would leave no valid position; shrinking it keeps SSIM
    defined for tiny test images (e.g. 8x8) at the cost of comparability with 11x11 scores.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    side = min(height, width)
    if side >= window:
        return window
    return side if side % 2 == 1 else side - 1


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian, shape `(size,)`, summing to 1."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable depthwise Gaussian filter, valid region only: (N,C,H,W) -> (N,C,H-k+1,W-k+1)."""
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and mean contrast-structure term, each `(N,)`."""
    size = effective_window(window, x.shape[-2], x.shape[-1])
    # Shrink sigma with the window so the Gaussian keeps the same shape relative to its support.
    g = gaussian_window(size, sigma * size / window, dtype=x.dtype, device=x.device)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    # Biased (population) variances, as in the reference implementation.
    var_x = _filter(x * x, g) - mu_xx
    var_y = _filter(y * y, g) - mu_yy
    cov = _filter(x * y, g) - mu_xy
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = ((2 * mu_xy + c1) / (mu_xx + mu_yy + c1)) * cs_map
    return ssim_map.flatten(1).mean(1), cs_map.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, data_range: float = 2.0, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image.

    Args:
        x, y: `(N, C, H, W)` float tensors, values in a range of width `data_range`
            (`[-1, 1]` -> 2.0, `[0, 1]` -> 1.0, `[0, 255]` -> 255).
        window: odd Gaussian window size; reduced to the largest odd size that fits when an
            image side is smaller (see `effective_window`).
        sigma: Gaussian standard deviation for an 11-pixel window.

    Returns:
        `(N,)` float32, 1.0 for identical images, lower when less similar (can be negative).
        Differentiable with respect to both inputs; use `1 - ssim(...)` as a loss.
    """
    _check_pair(x, y)
    s, _ = _ssim_and_cs(x.float(), y.float(), window, sigma, data_range)
    return s


def ms_ssim_scales(height: int, width: int, window: int = 11, max_scales: int = 5) -> int:
    """Number of MS-SSIM scales for an image size.

    Rule: the most scales (up to `max_scales`) such that the coarsest scale, which is
    `min(H, W) / 2**(scales-1)` pixels on its short side, still holds a full `window`.
    So 256x256 -> 5 scales, 128 -> 4, 64 -> 3, 32 -> 2, anything smaller -> 1 (plain SSIM,
    with the window shrunk if needed).
    """
    side = min(height, width)
    scales = max_scales
    while scales > 1 and side / 2 ** (scales - 1) < window:
        scales -= 1
    return scales


def _downsample(x: torch.Tensor) -> torch.Tensor:
    # Replicate-pad odd sides so the 2x2 average never mixes in zeros.
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    window: int = 11,
    data_range: float = 2.0,
    sigma: float = 1.5,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """Multi-scale SSIM per image.

    Args:
        x, y: `(N, C, H, W)` float tensors, value range of width `data_range` (2.0 for [-1, 1]).
        weights: per-scale exponents, finest first (the standard 5 by default).

    Returns:
        `(N,)` float32 in `[0, 1]`, 1.0 for identical images; differentiable.

    Images too small for all scales use the first `ms_ssim_scales(H, W, window)` weights,
    renormalised to sum to 1, so the score stays on the same 0..1 scale (but is only
    comparable between images of the same size). Negative contrast-structure values are
    clamped to a small positive number before the fractional powers (as pytorch-msssim
    does with relu) so the result is never NaN.
    """
    _check_pair(x, y)
    x, y = x.float(), y.float()
    scales = ms_ssim_scales(x.shape[-2], x.shape[-1], window, len(weights))
    w = torch.tensor(weights[:scales], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    terms = []
    for i in range(scales):
        s, cs = _ssim_and_cs(x, y, window, sigma, data_range)
        if i < scales - 1:
            terms.append(cs)
            x, y = _downsample(x), _downsample(y)
        else:
            terms.append(s)
    stacked = torch.stack(terms, dim=1).clamp(min=1e-6)  # (N, scales)
    return torch.prod(stacked ** w.view(1, -1), dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image.

    Args:
        x, y: `(N, C, H, W)` float tensors, value range of width `data_range`.

    Returns:
        `(N,)` float32. Identical images give 100 dB rather than infinity (the MSE is
        floored at `data_range**2 * 1e-10`) so that means over a set stay finite.
    """
    _check_pair(x, y)
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    mse = mse.clamp(min=data_range**2 * 1e-10)
    return 10.0 * torch.log10(data_range**2 / mse)
