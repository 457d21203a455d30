"""Regularisers of the attention masks of CycleGAN-mode attention generators, as one pure function.

    L_mask = l1 * mean(A) + tv * TV(A)
           + floor * mean_n [relu(min_area - mean_hw A_n^2) + relu(min_area - mean_hw A_n)]

over the masks of one generator step (`(N, 1, H, W)` in [0, 1], A = 1 where the generator
changes the input; facecycle.models.attention).

* `l1` (sparsity) keeps the change local: only what the adversarial loss asks for opens the mask.
* `tv` (total variation) makes the mask a few smooth regions instead of speckle.
* `floor` is the guard against the all-copy mask: cycle and identity losses are exactly 0 when
  A = 0 everywhere, so on their own they drive the mask shut within a few hundred steps (measured
  here too: mean 0.13 -> 0.0007 within 370 steps, QUALITY.md). Below `min_area` of its image,
  each mask is pushed open again with a weight that outweighs the sparsity term, so the generator
  always has to commit to *some* change and the adversarial loss decides where.
  The floor is on the *committed* area mean(A^2), which is the area of a binary mask but only a
  fraction of it for a faint one: a floor on mean(A) was met (measured) by a uniform 5 % mask,
  a faint blend of content over the whole face that TV does not penalise and that reads as noise.
  Squaring makes a concentrated mask (1 on the mouth, 0 elsewhere) the cheapest way to meet it.
  The second hinge, on mean(A), has a gradient even at A = 0 (A^2 has none there), so a mask
  that did close is pushed open again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from facecycle.losses.stargan import total_variation


@dataclass(frozen=True)
class MaskWeights:
    l1: float = 0.0
    tv: float = 0.0
    min_area: float = 0.0  # fraction of the image each mask covers at least (0 = no floor)
    floor: float = 0.0  # weight of the floor's hinge


def mask_regularizer(masks: Sequence[torch.Tensor], weights: MaskWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total mask loss (summed over `masks`) and detached terms for the log: `mask_mean` and
    `mask_std` (over every pixel of every mask), `mask_tv`, `mask_floor` (the hinge, before weighting).

    masks: each `(N, 1, H, W)` float in [0, 1]."""
    if not masks:
        raise ValueError("mask_regularizer needs at least one mask")
    total = masks[0].new_zeros((), dtype=torch.float32)
    tv_sum = floor_sum = total
    for mask in masks:
        mask = mask.float()
        area = mask.mean(dim=(1, 2, 3))  # (N,)
        committed = mask.square().mean(dim=(1, 2, 3))
        tv = total_variation(mask)
        floor = (torch.relu(weights.min_area - committed) + torch.relu(weights.min_area - area)).mean()
        total = total + weights.l1 * area.mean() + weights.tv * tv + weights.floor * floor
        tv_sum, floor_sum = tv_sum + tv.detach(), floor_sum + floor.detach()
    every = torch.cat([m.detach().float().flatten() for m in masks])
    terms = {"mask_mean": every.mean(), "mask_std": every.std(unbiased=False),
             "mask_tv": tv_sum / len(masks), "mask_floor": floor_sum / len(masks)}
    return total, terms
