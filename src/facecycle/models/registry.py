"""Registries for network constructors (kept apart so models can register without cycles)."""

from facecycle.registry import Registry

GENERATORS: Registry = Registry("generator")
DISCRIMINATORS: Registry = Registry("discriminator")
