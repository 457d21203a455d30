"""Networks for conditional translation: a generator that takes a target condition vector
(Action Units or a one-hot expression) and a critic with an extra head that predicts it.

Condition vectors are `(N, K)` float in [0, 1]. The generator tiles the vector to `(N, K, H, W)`
and concatenates it with the image at the input (StarGAN) and/or with the features at the
bottleneck, followed by one extra 3x3 conv (seed report 004, e6/e7: tiling the target into
the bottleneck *and* adding one more conv layer was what made AUs change realistically).
"""

from __future__ import annotations

import torch
from torch import nn

from facecycle.models.discriminators import PatchDiscriminator, min_input_size
from facecycle.models.generators import ResidualBlock
from facecycle.models.layers import SelfAttention, conv_bias, norm_layer
from facecycle.models.registry import DISCRIMINATORS, GENERATORS

CONDITION_AT = ("input", "bottleneck", "both")


def tile_condition(c: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`(N, K)` -> `(N, K, height, width)`: every pixel carries the whole vector."""
    if c.ndim != 2:
        raise ValueError(f"condition must be (N, K), got shape {tuple(c.shape)}")
    return c[:, :, None, None].expand(c.shape[0], c.shape[1], height, width)


def concat_condition(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """`(N, C, H, W)` and `(N, K)` -> `(N, C + K, H, W)`."""
    return torch.cat([x, tile_condition(c.to(x.dtype), x.shape[2], x.shape[3])], dim=1)


@GENERATORS.register("conditional_resnet")
class ConditionalResnetGenerator(nn.Module):
    """ResNet generator G(x, c) conditioned on a target vector.

    c7s1-w, two stride-2 downsamplings, [bottleneck: concat tiled c, 3x3 conv back to 4w],
    `blocks` residual blocks (+ self-attention), two upsamplings, then either a tanh colour
    image, or (`attention_mask`) GANimation's output `A * x + (1 - A) * colour` with a
    sigmoid mask A `(N, 1, H, W)` (A = 1 keeps the input pixel).

    x: `(N, C, H, W)` float in [-1, 1] (H, W multiples of 4); c: `(N, K)` float in [0, 1].
    `forward` returns the image; `generate` returns (image, mask or None).
    """

    size_multiple = 4
    conditional = True

    def __init__(self, in_channels: int = 3, out_channels: int = 3, condition_dim: int = 1, width: int = 64,
                 blocks: int = 6, norm: str = "instance", dropout: float = 0.0, attention: bool = False,
                 condition_at: str = "both", attention_mask: bool = False) -> None:
        super().__init__()
        if condition_at not in CONDITION_AT:
            raise ValueError(f"condition_at must be one of {CONDITION_AT}, got {condition_at!r}")
        if condition_dim < 1:
            raise ValueError(f"condition_dim must be >= 1, got {condition_dim}")
        self.condition_dim = condition_dim
        self.condition_at = condition_at
        self.attention_mask = attention_mask
        self.at_input = condition_at in ("input", "both")
        self.at_bottleneck = condition_at in ("bottleneck", "both")
        bias = conv_bias(norm)
        c_in = in_channels + (condition_dim if self.at_input else 0)
        down: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(c_in, width, 7, bias=bias),
                                 norm_layer(norm, width), nn.ReLU(True)]
        channels = width
        for _ in range(2):
            down += [nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1, bias=bias),
                     norm_layer(norm, channels * 2), nn.ReLU(True)]
            channels *= 2
        self.down = nn.Sequential(*down)
        self.fuse = (nn.Sequential(nn.Conv2d(channels + condition_dim, channels, 3, padding=1, bias=bias),
                                   norm_layer(norm, channels), nn.ReLU(True)) if self.at_bottleneck else None)
        body: list[nn.Module] = [ResidualBlock(channels, norm, dropout) for _ in range(blocks)]
        if attention:
            body.append(SelfAttention(channels))
        self.body = nn.Sequential(*body)
        up: list[nn.Module] = []
        for _ in range(2):
            up += [nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                   norm_layer(norm, channels // 2), nn.ReLU(True)]
            channels //= 2
        self.up = nn.Sequential(*up)
        self.color = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh())
        self.mask = (nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels, 1, 7), nn.Sigmoid())
                     if attention_mask else None)
        self.in_channels, self.out_channels = in_channels, out_channels

    def generate(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if c.shape[-1] != self.condition_dim:
            raise ValueError(f"condition has {c.shape[-1]} values, the generator expects {self.condition_dim}")
        h = self.down(concat_condition(x, c) if self.at_input else x)
        if self.fuse is not None:
            h = self.fuse(concat_condition(h, c))
        h = self.up(self.body(h))
        color = self.color(h)
        if self.mask is None:
            return color, None
        mask = self.mask(h)
        if x.shape[1] != color.shape[1]:
            raise ValueError("attention_mask needs in_channels == out_channels")
        return mask * x + (1 - mask) * color, mask

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                with_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """`(N, C, H, W)` in [-1, 1] and `(N, K)` -> the translation; with `with_mask`, `generate`'s
        (translation, mask or None) -- the form training uses, as DDP only hooks `forward`."""
        out = self.generate(x, c)
        return out if with_mask else out[0]


@DISCRIMINATORS.register("conditional_patch")
class ConditionalPatchDiscriminator(nn.Module):
    """PatchGAN critic with a condition head (StarGAN/GANimation style).

    `forward(x)` -> (list with one `(N, 1, h, w)` realness map, `(N, K)` condition logits).
    The condition head is a 3x3 conv on the last PatchGAN features, averaged over positions,
    so any input size works. Presence labels read the logits through BCE-with-logits,
    intensities (in [0, 1]) through MSE on the raw outputs.
    """

    conditional = True

    def __init__(self, in_channels: int = 3, condition_dim: int = 1, width: int = 64, layers: int = 3,
                 norm: str = "instance", spectral_norm: bool = False) -> None:
        super().__init__()
        self.trunk = PatchDiscriminator(in_channels, width, layers, norm, spectral_norm)
        channels = width * min(2**layers, 8)
        head = nn.Conv2d(channels, condition_dim, 3, padding=1)
        self.condition_head = nn.utils.parametrizations.spectral_norm(head) if spectral_norm else head
        self.branch_weights = [1.0]
        self.min_size = min_input_size(layers)
        self.condition_dim = condition_dim

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        logits, features = self.trunk.forward_with_features(x)
        condition = self.condition_head(features[-1]).mean(dim=(2, 3))
        return [logits], condition

    def realness(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Only the adversarial output (what `gradient_penalty` differentiates)."""
        return self.forward(x)[0]
