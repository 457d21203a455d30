"""facecycle: unpaired facial image-to-image translation.

The heavy parts (torch models, trainer) are imported lazily so that `import facecycle`
and `facecycle --help` stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Translator"]


def __getattr__(name: str):
    if name == "Translator":
        from facecycle.inference.translator import Translator

        return Translator
    raise AttributeError(f"module 'facecycle' has no attribute {name!r}")
