"""Objectives: adversarial losses (registry `GAN_LOSSES`), reconstruction terms, CycleGAN totals.

Loss functions are pure: tensors in, `(total, terms)` out, where `terms` maps a name to a
detached scalar tensor (converted to floats only when logged, so a step never syncs the device).
"""

from facecycle.losses.adversarial import GAN_LOSSES, GanLoss, gradient_penalty

__all__ = ["GAN_LOSSES", "GanLoss", "gradient_penalty"]
