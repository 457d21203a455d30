"""Discriminators.

Every discriminator returns a *list* of logit maps, one per branch, with `branch_weights`
saying how the adversarial losses of the branches are combined (one PatchGAN: [1.0]; the
face-off report's two distinct discriminators: [lambda, 1 - lambda]; multi-scale: equal).
Inputs are `(N, C, H, W)` in [-1, 1]; logits are `(N, 1, h, w)`, one per receptive-field patch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facecycle.models.layers import conv_bias, norm_layer
from facecycle.models.registry import DISCRIMINATORS


def _maybe_sn(module: nn.Module, spectral_norm: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if spectral_norm else module


def min_input_size(layers: int) -> int:
    """Smallest input side for which a `layers`-deep PatchGAN still yields a 1x1 logit map:
    `layers` halvings, then two 4x4 stride-1 convs that each shrink the map by one."""
    return 3 * 2**layers


class PatchDiscriminator(nn.Module):
    """PatchGAN: `layers` stride-2 4x4 convs (width doubling up to 8x), a stride-1 conv, a 1-channel conv.

    layers=3 gives the 70x70 receptive field of CycleGAN; the face-off report's deeper D uses 5.
    """

    def __init__(
        self, in_channels: int = 3, width: int = 64, layers: int = 3, norm: str = "instance", spectral_norm: bool = False
    ) -> None:
        super().__init__()
        bias = conv_bias(norm) or spectral_norm
        blocks: list[nn.Module] = [
            nn.Sequential(_maybe_sn(nn.Conv2d(in_channels, width, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2, True))
        ]
        channels = width
        for n in range(1, layers + 1):
            out = width * min(2**n, 8)
            stride = 2 if n < layers else 1
            blocks.append(
                nn.Sequential(
                    _maybe_sn(nn.Conv2d(channels, out, 4, stride, 1, bias=bias), spectral_norm),
                    nn.Identity() if spectral_norm else norm_layer(norm, out),
                    nn.LeakyReLU(0.2, True),
                )
            )
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self.head = _maybe_sn(nn.Conv2d(channels, 1, 4, 1, 1), spectral_norm)
        self.layers = layers

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.head(x), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]


class BranchedDiscriminator(nn.Module):
    """Base for discriminators made of PatchGAN branches: forward -> list of logits."""

    branches: nn.ModuleList
    branch_weights: list[float]

    def branch_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x] * len(self.branches)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [branch(inp) for branch, inp in zip(self.branches, self.branch_inputs(x))]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate activations of every branch (for the feature-level cycle loss)."""
        out: list[torch.Tensor] = []
        for branch, inp in zip(self.branches, self.branch_inputs(x)):
            out += branch.forward_with_features(inp)[1]
        return out


@DISCRIMINATORS.register("patch")
class SinglePatchDiscriminator(BranchedDiscriminator):
    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3, norm: str = "instance",
                 spectral_norm: bool = False) -> None:
        super().__init__()
        self.branches = nn.ModuleList([PatchDiscriminator(in_channels, width, layers, norm, spectral_norm)])
        self.branch_weights = [1.0]
        self.min_size = min_input_size(layers)


@DISCRIMINATORS.register("dual")
class DualDiscriminator(BranchedDiscriminator):
    """Two distinct PatchGANs judging the same image (face-off report, eq. 7):
    L = lambda * L(D1) + (1 - lambda) * L(D2), e.g. a 3-layer and a 5-layer D with lambda = 0.5."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3, layers_2: int = 5,
                 norm: str = "instance", spectral_norm: bool = False, dual_lambda: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            PatchDiscriminator(in_channels, width, layers, norm, spectral_norm),
            PatchDiscriminator(in_channels, width, layers_2, norm, spectral_norm),
        ])
        self.branch_weights = [dual_lambda, 1.0 - dual_lambda]
        self.min_size = min_input_size(max(layers, layers_2))


#: The mouth, lips, cheeks and chin of a face crop, as fractions (top, bottom, left, right) of its
#: height and width: where smiles, frowns and open mouths show. It holds for the crops of
#: `prepare faces` (eyes and mouth at fixed template positions) and for roughly centred faces.
MOUTH_REGION = (0.5, 0.95, 0.2, 0.8)


@DISCRIMINATORS.register("face")
class FaceRegionDiscriminator(BranchedDiscriminator):
    """A PatchGAN on the whole face and a second, distinct one on its mouth region
    (`MOUTH_REGION`, at the image's own resolution): L = lambda * L(whole) + (1 - lambda) * L(mouth).

    A 70x70 PatchGAN on a 64 px face judges the whole face at once, and its gradient to the
    generator spreads over the face; the mouth branch says specifically whether the mouth looks
    like the target's (a smile, a neutral mouth), which is where an expression edit has to happen.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3, norm: str = "instance",
                 spectral_norm: bool = False, dual_lambda: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            PatchDiscriminator(in_channels, width, layers, norm, spectral_norm),
            PatchDiscriminator(in_channels, width, layers, norm, spectral_norm),
        ])
        self.branch_weights = [dual_lambda, 1.0 - dual_lambda]
        top, bottom, left, right = MOUTH_REGION
        self.min_size = math.ceil(min_input_size(layers) / min(bottom - top, right - left))

    def branch_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        top, bottom, left, right = MOUTH_REGION
        return [x, x[..., round(top * h):round(bottom * h), round(left * w):round(right * w)]]


@DISCRIMINATORS.register("multiscale")
class MultiScaleDiscriminator(BranchedDiscriminator):
    """The same PatchGAN design at `scales` resolutions (full, 1/2, 1/4 ...), losses averaged."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3, scales: int = 2,
                 norm: str = "instance", spectral_norm: bool = False) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [PatchDiscriminator(in_channels, width, layers, norm, spectral_norm) for _ in range(scales)]
        )
        self.branch_weights = [1.0 / scales] * scales
        self.min_size = min_input_size(layers) * 2 ** (scales - 1)

    def branch_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        inputs = [x]
        for _ in range(len(self.branches) - 1):
            inputs.append(F.avg_pool2d(inputs[-1], 3, stride=2, padding=1, count_include_pad=False))
        return inputs
