"""Image-to-image generators.

All generators map `(N, C_in, H, W)` float in [-1, 1] to `(N, C_out, H, W)` in [-1, 1]
(tanh output). H and W must be multiples of `size_multiple`; inference pads to it.
"""

from __future__ import annotations

import torch
from torch import nn

from facecycle.models.layers import SelfAttention, conv_bias, norm_layer
from facecycle.models.registry import GENERATORS


class ResidualBlock(nn.Module):
    """Two 3x3 convs with reflection padding and a skip connection."""

    def __init__(self, channels: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


UPSAMPLING = ("transpose", "resize")


def upsampling_conv(c_in: int, c_out: int, bias: bool, kind: str) -> nn.Module:
    """x2 upsampling with a 3x3 convolution, `(N, c_in, H, W)` -> `(N, c_out, 2H, 2W)`.

    "transpose": the reference's ConvTranspose2d(stride 2). "resize": nearest-neighbour x2 then
    a reflection-padded 3x3 conv (Odena et al. 2016): same parameter count, no checkerboard
    artefacts, which a transposed conv paints over every face early in training (measured).
    """
    if kind == "transpose":
        return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=bias)
    if kind == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                             nn.Conv2d(c_in, c_out, 3, bias=bias))
    raise ValueError(f"unknown upsampling {kind!r}; choose one of: {', '.join(UPSAMPLING)}")


@GENERATORS.register("resnet")
class ResnetGenerator(nn.Module):
    """Johnson-style ResNet generator of CycleGAN: c7s1-w, two stride-2 downsamplings,
    `blocks` residual blocks at 1/4 resolution, two transposed-conv upsamplings, c7s1-out.

    ResNet-9 is the paper's 256x256 model; ResNet-6 its 128x128 one. `upsample`: see
    `upsampling_conv` ("transpose" is the paper's).
    """

    size_multiple = 4

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 64,
        blocks: int = 9,
        norm: str = "instance",
        dropout: float = 0.0,
        attention: bool = False,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, width, 7, bias=bias),
            norm_layer(norm, width),
            nn.ReLU(True),
        ]
        channels = width
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, channels * 2),
                nn.ReLU(True),
            ]
            channels *= 2
        layers += [ResidualBlock(channels, norm, dropout) for _ in range(blocks)]
        if attention:
            layers.append(SelfAttention(channels))
        for _ in range(2):
            layers += [
                upsampling_conv(channels, channels // 2, bias, upsample),
                norm_layer(norm, channels // 2),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@GENERATORS.register("unet")
class UnetGenerator(nn.Module):
    """U-Net of pix2pix/CycleGAN: `depth` stride-2 4x4 convs down (channels w, 2w, 4w, 8w, 8w...),
    transposed convs up, each decoder level concatenated with the encoder level of the same size.

    depth 7 suits 128x128 inputs (1x1 bottleneck), depth 8 suits 256x256. Dropout (pix2pix uses 0.5)
    applies to the three innermost decoder levels. With `attention`, a self-attention block acts on
    the encoder features at 1/8 resolution.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 64,
        depth: int = 8,
        norm: str = "instance",
        dropout: float = 0.0,
        attention: bool = False,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError("U-Net depth must be >= 2")
        self.size_multiple = 2**depth
        bias = conv_bias(norm)
        chans = [min(width * 2**i, width * 8) for i in range(depth)]  # encoder outputs per level
        self.down = nn.ModuleList()
        for i in range(depth):
            c_in = in_channels if i == 0 else chans[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(c_in, chans[i], 4, stride=2, padding=1, bias=bias))
            if 0 < i < depth - 1:  # no norm on the outermost and on the 1x1 bottleneck
                layers.append(norm_layer(norm, chans[i]))
            self.down.append(nn.Sequential(*layers))
        self.attention_level = min(2, depth - 1)  # output of the 3rd downsampling: 1/8 resolution
        self.attention = SelfAttention(chans[self.attention_level]) if attention else None
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            c_in = chans[i] if i == depth - 1 else chans[i] * 2  # skip concatenation doubles channels
            if i == 0:
                layers = [nn.ReLU(True), nn.ConvTranspose2d(c_in, out_channels, 4, stride=2, padding=1), nn.Tanh()]
            else:
                layers = [
                    nn.ReLU(True),
                    nn.ConvTranspose2d(c_in, chans[i - 1], 4, stride=2, padding=1, bias=bias),
                    norm_layer(norm, chans[i - 1]),
                ]
                if dropout > 0 and i >= depth - 3:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if self.attention is not None and i == self.attention_level:
                x = self.attention(x)
            skips.append(x)
        for j, block in enumerate(self.up):
            if j > 0:
                x = torch.cat([x, skips[len(skips) - 1 - j]], dim=1)
            x = block(x)
        return x
