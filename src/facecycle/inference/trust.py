"""Which model files facecycle loads, and which it refuses unless the user says they trust them.

The answer for every format (README "Formats and trust"):

* safetensors exports and the built-in models: data only (tensors + JSON metadata), always loaded.
* ONNX: a graph of standard operators run by ONNX Runtime, no Python: always loaded.
* training checkpoints (`.pt`): read with `torch.load(weights_only=True)`, which refuses pickled
  code; always loaded.
* TorchScript (`.ts`, `.torchscript`): **code**. `torch.jit.load` runs what the archive contains
  (a scripted `__setstate__` can write files), and metadata inside it proves nothing, since it can
  be copied from a real export. facecycle loads a TorchScript file only when this installation
  wrote it (`facecycle export` records the file's SHA-256 in a local list) or the user says they
  trust it: `--trust-torchscript`, `FACECYCLE_TRUST_TORCHSCRIPT=1`, or
  `Translator.load(..., trust_torchscript=True)`.

The list of exports lives in `$FACECYCLE_HOME/trusted_torchscript.txt` (default
`~/.cache/facecycle`), one hex digest a line.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from pathlib import Path
from typing import Iterator

TRUST_ENV = "FACECYCLE_TRUST_TORCHSCRIPT"
_trust_all: contextvars.ContextVar[bool] = contextvars.ContextVar("facecycle_trust_torchscript", default=False)


def facecycle_home() -> Path:
    """Folder for facecycle's own small state: $FACECYCLE_HOME, else $XDG_CACHE_HOME/facecycle,
    else ~/.cache/facecycle."""
    if os.environ.get("FACECYCLE_HOME"):
        return Path(os.environ["FACECYCLE_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "facecycle"


def trust_list() -> Path:
    return facecycle_home() / "trusted_torchscript.txt"


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remember_export(path: str | Path) -> None:
    """Record a TorchScript file this installation just wrote as trusted (best effort: a
    read-only home only means the file will need --trust-torchscript later)."""
    try:
        target = trust_list()
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a") as f:
            f.write(file_digest(path) + "\n")
    except OSError:
        pass


@contextlib.contextmanager
def trusting_torchscript(trust: bool = True) -> Iterator[None]:
    """Within this block, TorchScript files load without the exported-here check."""
    token = _trust_all.set(trust)
    try:
        yield
    finally:
        _trust_all.reset(token)


def torchscript_trusted(path: str | Path) -> bool:
    """True when the user trusts every TorchScript file (flag, environment, context) or this
    installation exported this exact file."""
    if _trust_all.get() or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    try:
        known = set(trust_list().read_text().split())
    except OSError:
        return False
    return file_digest(path) in known


def refusal(path: str | Path) -> str:
    return (f"{path} is TorchScript, which is code: loading it runs whatever the file contains. facecycle loads "
            "only TorchScript files it exported itself on this machine. If you trust where this file came from, "
            f"pass --trust-torchscript (or set {TRUST_ENV}=1; in Python, Translator.load(..., "
            "trust_torchscript=True)); otherwise ask for a safetensors export, which is data only.")
