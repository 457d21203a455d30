"""Test fixture: networks with the reference CycleGAN code's module layout (key names, layer order).

Written for these tests from the public description of junyanz/pytorch-CycleGAN-and-pix2pix
`models/networks.py` (`define_G`: resnet_9blocks, resnet_6blocks, unet_128, unet_256); nothing
here is imported from facecycle, so the import is checked against an independent definition.
The layout, per the reference:

- ResNet: one `nn.Sequential` named `model`: pad, conv7, norm, ReLU; 2x (conv3 s2, norm, ReLU);
  N residual blocks whose body is `conv_block` (pad, conv3, norm, ReLU, [Dropout], pad, conv3,
  norm); 2x (conv-transpose3 s2, norm, ReLU); pad, conv7, Tanh. Convs carry a bias only with
  instance norm.
- U-Net: `model` is the outermost skip block; every block holds a `model` Sequential with its
  inner block at index 1 (outermost: conv, inner, ReLU, convT, Tanh) or 3 (LeakyReLU, conv, norm,
  inner, ReLU, convT, norm[, Dropout]); the innermost has LeakyReLU, conv, ReLU, convT, norm.
  Channels per level: ngf, 2ngf, 4ngf, 8ngf, then 8ngf.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Norm = Callable[[int], nn.Module]


def norm_factory(kind: str) -> tuple[Norm, bool]:
    """(norm constructor, conv bias) for "instance", "instance_stats" (old reference versions that
    kept running statistics), "batch" and "instance_affine" (the tutorial variant: affine, biases)."""
    if kind == "instance":
        return (lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)), True
    if kind == "instance_stats":
        return (lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=True)), True
    if kind == "instance_affine":
        return (lambda c: nn.InstanceNorm2d(c, affine=True)), True
    if kind == "batch":
        return nn.BatchNorm2d, False
    raise ValueError(kind)


class RefResBlock(nn.Module):
    def __init__(self, dim: int, norm: Norm, bias: bool, dropout: bool, name: str = "conv_block") -> None:
        super().__init__()
        body: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim), nn.ReLU(True)]
        if dropout:
            body.append(nn.Dropout(0.5))
        body += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim)]
        self.name = name
        setattr(self, name, nn.Sequential(*body))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + getattr(self, self.name)(x)


class RefResnet(nn.Module):
    def __init__(self, channels: int, ngf: int, blocks: int, norm_kind: str, dropout: bool = False,
                 block_name: str = "conv_block") -> None:
        super().__init__()
        norm, bias = norm_factory(norm_kind)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7, bias=bias), norm(ngf), nn.ReLU(True)]
        c = ngf
        for _ in range(2):
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), norm(2 * c), nn.ReLU(True)]
            c *= 2
        layers += [RefResBlock(c, norm, bias, dropout, block_name) for _ in range(blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       norm(c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefSkip(nn.Module):
    def __init__(self, outer: int, inner: int, norm: Norm, bias: bool, sub: nn.Module | None = None,
                 in_channels: int | None = None, outermost: bool = False, dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(in_channels or outer, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif sub is None:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias), norm(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, norm(inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias), norm(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, channels: int, ngf: int, num_downs: int, norm_kind: str, dropout: bool = False) -> None:
        super().__init__()
        norm, bias = norm_factory(norm_kind)
        block = RefSkip(ngf * 8, ngf * 8, norm, bias)
        for _ in range(num_downs - 5):
            block = RefSkip(ngf * 8, ngf * 8, norm, bias, block, dropout=dropout)
        for mult in (4, 2, 1):
            block = RefSkip(ngf * mult, ngf * mult * 2, norm, bias, block)
        self.model = RefSkip(channels, ngf, norm, bias, block, in_channels=channels, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Random weights and (for batch norm) random running statistics, so every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=g) * (0.1 if tensor.dim() > 1 else 0.3)
                             + (1.0 if name.endswith("weight") and tensor.dim() == 1 else 0.0))
    return net.eval()
