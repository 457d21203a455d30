"""Exceptions with messages meant for the person at the keyboard.

The CLI prints `FacecycleError` messages without a traceback and exits non-zero; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FacecycleError(Exception):
    """A problem the user can fix; the message says what to do."""


class ConfigError(FacecycleError):
    """An invalid or inconsistent configuration value."""


class DataError(FacecycleError):
    """Missing folder, empty domain, unreadable input."""


class CheckpointError(FacecycleError):
    """Missing, corrupt or incompatible checkpoint."""


class TrainingDiverged(FacecycleError):
    """Too many consecutive steps with non-finite losses, or non-finite weights."""


class MissingExtraError(FacecycleError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, feature: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency '{module}', which is not installed. "
            f"Install it with: pip install 'facecycle[{extra}]' (or `make install`)."
        )
        self.extra = extra


def require(module: str, extra: str, feature: str):
    """Import `module` or raise `MissingExtraError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # the module or one of its native libraries is missing
        raise MissingExtraError(extra, feature, module) from exc
