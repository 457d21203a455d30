"""Pixel reconstruction terms for cycle and identity losses. Images are `(N, C, H, W)` in [-1, 1]."""

from __future__ import annotations

import torch


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.float() - y.float()).abs().mean()


def masked_l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """Mean of (weight * mask + 1) * |x - y| (face-off report, section 5.4.2).

    `mask`: `(N, 1, H, W)` in [0, 1] (1 on the face), broadcast over channels. With weight w the
    face pixels count (w + 1) times as much as background pixels, and the background still counts.
    """
    pixel_weight = weight * mask.float() + 1.0
    return (pixel_weight * (x.float() - y.float()).abs()).mean()


def feature_l1(features_x: list[torch.Tensor], features_y: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between discriminator features (feature-level cycle loss)."""
    return sum(l1(a, b) for a, b in zip(features_x, features_y)) / max(len(features_x), 1)  # type: ignore[return-value]
