"""Generators and discriminators, registered by name (see `GENERATORS`, `DISCRIMINATORS`)."""

from facecycle.models.registry import DISCRIMINATORS, GENERATORS
from facecycle.models import discriminators as _discriminators  # noqa: F401  (registers)
from facecycle.models import generators as _generators  # noqa: F401  (registers)
from facecycle.models import conditional_nets as _conditional_nets  # noqa: F401  (registers)

__all__ = ["GENERATORS", "DISCRIMINATORS"]
