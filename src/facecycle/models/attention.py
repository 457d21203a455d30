"""Attention-guided generators (AttentionGAN / GANimation scheme) for CycleGAN mode.

A base generator predicts `C + 1` channels: `C` content channels and one mask channel. The
output keeps the input wherever the mask is closed:

    fake = A * content + (1 - A) * x        A in [0, 1], A = 1: "change this pixel"

so a face keeps its identity, background and sharpness by construction, and the network spends
its capacity where the expression lives. (The conditional generator uses GANimation's opposite
convention, A = 1 keeps the input; see facecycle.models.conditional_nets.)

The trap of this scheme is the all-zero mask: cycle and identity losses are then exactly 0
because the generator copies its input. The guard lives in the loss
(facecycle.losses.attention: an area floor below which the mask is pushed open again), and the
trainer logs the mask's mean and spread so a collapse is visible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionGenerator(nn.Module):
    """Wraps a generator whose last layer is `Tanh` with `out_channels + 1` outputs.

    The first `out_channels` channels are the content `C` in [-1, 1]; the last one, `t`, becomes
    the mask `A = (smooth(t) + 1) / 2` in [0, 1] (a sigmoid of twice the pre-activation, averaged over
    4x4 cells and upsampled), so both heads share every layer but the output convolution's filters.

    x: `(N, C, H, W)` float in [-1, 1], H and W multiples of `size_multiple`.
    `forward(x)` -> fake `(N, C, H, W)` in [-1, 1] (what export and inference see);
    `forward(x, with_mask=True)` -> (fake, mask `(N, 1, H, W)` in [0, 1]);
    `parts(x)` -> (content, mask), for composing at another resolution.
    """

    attention_mask = True

    #: The mask is averaged over MASK_CELL x MASK_CELL cells and upsampled bilinearly. Measured: a
    #: full-resolution mask met the area floor with a lattice of single saturated pixels (the
    #: transposed convolutions' checkerboard), which changes nothing visible but fools the guard.
    #: A mask that is smooth by construction can only open whole regions.
    MASK_CELL = 4

    def __init__(self, base: nn.Module, channels: int, prior: str = "none") -> None:
        super().__init__()
        self.base = base
        self.channels = channels
        self.size_multiple = max(int(getattr(base, "size_multiple", 1)), self.MASK_CELL)
        if prior not in MASK_PRIORS:
            raise ValueError(f"unknown mask prior '{prior}'; choose one of: {', '.join(MASK_PRIORS)}")
        self.prior_name = prior
        # Not a weight: rebuilt from the config, so it is not saved (persistent=False).
        self.register_buffer("prior", None if prior == "none" else face_prior(), persistent=False)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.base(x)
        if out.shape[1] != self.channels + 1:
            raise ValueError(f"the base generator returned {out.shape[1]} channels, expected {self.channels + 1}")
        content, t = out[:, : self.channels], out[:, self.channels :]
        cells = F.avg_pool2d(t, self.MASK_CELL)
        t = F.interpolate(cells, size=t.shape[-2:], mode="bilinear", align_corners=False)
        mask = (t + 1) * 0.5
        if self.prior is not None:  # the mask can only open where the prior allows
            mask = mask * F.interpolate(self.prior, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return content, mask

    def forward(self, x: torch.Tensor, with_mask: bool = False):  # type: ignore[override]
        content, mask = self.parts(x)
        fake = compose(x, content, mask)
        return (fake, mask) if with_mask else fake


MASK_PRIORS = ("none", "face")


def face_prior(cells: int = 32) -> torch.Tensor:
    """Where an expression lives in a face crop (`prepare faces` alignment, or any roughly centred
    face): a soft ellipse from the brows to the chin, centred a little below the middle, that
    leaves out the forehead, hair, ears and background. `(1, 1, cells, cells)` in [0, 1], 1 inside,
    a smooth 0.15-wide edge. Used by `model.mask_prior: face`."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, cells), torch.linspace(0, 1, cells), indexing="ij")
    r = torch.sqrt(((xs - 0.5) / 0.38) ** 2 + ((ys - 0.62) / 0.37) ** 2)  # 1 on the ellipse
    edge = ((1.15 - r) / 0.3).clamp(0, 1)
    return (edge * edge * (3 - 2 * edge)).view(1, 1, cells, cells)  # smoothstep


def compose(x: torch.Tensor, content: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`mask * content + (1 - mask) * x`; exactly `x` where the mask is 0.

    x, content: `(N, C, H, W)`; mask `(N, 1, H, W)` in [0, 1] (broadcast over channels).
    """
    return mask * content + (1 - mask) * x


def is_attention(net: nn.Module) -> bool:
    """True for generators that can return their mask (`net(x, with_mask=True)`)."""
    return bool(getattr(net, "attention_mask", False)) and isinstance(net, AttentionGenerator)
