"""Building blocks shared by generators and discriminators."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from facecycle.errors import ConfigError

NORMS = ("instance", "instance_affine", "batch", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Normalisation by name.

    `instance` has no affine parameters and no running statistics (CycleGAN), so train
    and eval modes behave the same and batch size does not change the result per image.
    `instance_affine` adds a learned per-channel scale and shift (still no running statistics):
    the variant many CycleGAN tutorials and packages train, kept so their generators import.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "instance_affine":
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm '{kind}'; choose one of: {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """A conv followed by batch norm needs no bias (BN's shift replaces it); instance norm without
    affine parameters does (the reference CycleGAN makes the same choice)."""
    return norm != "batch"


class SelfAttention(nn.Module):
    """SAGAN self-attention over spatial positions.

    Input and output `(N, C, H, W)`; `gamma` starts at 0 so the block is the identity at
    initialisation and the network learns how much non-local context to mix in.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        k = self.key(x).flatten(2)  # (N, C', HW)
        attention = torch.softmax(q @ k, dim=-1)  # (N, HW, HW)
        v = self.value(x).flatten(2)  # (N, C, HW)
        out = (v @ attention.transpose(1, 2)).view(n, c, h, w)
        return x + self.gamma * out


def raw_weight(m: nn.Module) -> torch.Tensor:
    """The trainable weight tensor of a layer. With spectral norm, `m.weight` is computed from it
    (a fresh tensor each access, so initialising it would change nothing): the parametrization API
    keeps it at `parametrizations.weight.original`, the older hook API at `weight_orig`."""
    if parametrize.is_parametrized(m, "weight"):
        return m.parametrizations.weight.original  # type: ignore[union-attr]
    return getattr(m, "weight_orig", m.weight)


@torch.no_grad()
def refresh_spectral_norm(m: nn.Module) -> None:
    """Re-estimate the spectral norm's singular vectors after the raw weight was re-initialised
    (what `spectral_norm` does once when it is applied: 15 power iterations)."""
    if not parametrize.is_parametrized(m, "weight"):
        return
    for p in m.parametrizations.weight:  # type: ignore[union-attr]
        power = getattr(p, "_power_method", None)
        reshape = getattr(p, "_reshape_weight_to_matrix", None)
        if power is not None and reshape is not None and getattr(p, "ndim", 1) > 1:
            power(reshape(m.parametrizations.weight.original), 15)  # type: ignore[union-attr]


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) for conv/linear weights, N(1, std) for norm scales, zero biases (CycleGAN)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(raw_weight(m), 0.0, std)
            refresh_spectral_norm(m)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
