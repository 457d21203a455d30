"""Stage manifests: reuse a stage's output when its inputs and settings have not changed.

Each stage writes `<folder>/stage.json` when it finishes, holding a key (SHA-256 of the
inputs' fingerprints and the settings) and the stage's result. A file's fingerprint is its
path, size and modification time (nanoseconds): cheap on multi-gigabyte videos, and any
edit, copy-over or re-encode changes it. A later run with the same key reads the stored
result instead of redoing the work; a different key (new video, other settings) wipes the
folder first so no stale output survives next to new output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

MANIFEST = "stage.json"


def fingerprint(paths: Iterable[str | Path]) -> list[list[Any]]:
    """[[path, size, mtime_ns], ...] of the given files and of every file below given folders,
    sorted; a missing path is listed as [path, None, None] so its later arrival changes the key."""
    rows: list[list[Any]] = []
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                st = f.stat()
                rows.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
            except FileNotFoundError:
                rows.append([str(f), None, None])
    return rows


class Stage:
    """One pipeline stage's folder and manifest.

    folder:   where the stage writes (created on `begin`).
    inputs:   files/folders whose fingerprints enter the key.
    settings: JSON-able values that change the output (sizes, modes, upstream keys).
    """

    def __init__(self, folder: str | Path, inputs: Iterable[str | Path], settings: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.settings = settings
        blob = json.dumps({"inputs": fingerprint(inputs), "settings": settings}, sort_keys=True, default=str)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST

    def stored(self) -> dict[str, Any] | None:
        """The manifest on disk, whatever its key (None when absent or unreadable)."""
        try:
            return json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None

    def cached(self) -> dict[str, Any] | None:
        """The stored result when the stage finished with this key, else None."""
        stored = self.stored()
        if stored and stored.get("key") == self.key and stored.get("done"):
            return stored.get("result")
        return None

    def begin(self, keep: bool = False) -> None:
        """Start (re)doing the stage: wipe the folder unless `keep` (a resumable stage whose
        stored key still matches keeps its partial output)."""
        if not keep and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write({"key": self.key, "done": False, "settings": self.settings})

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Record the stage as done with `result` (JSON-able); returns `result`."""
        self._write({"key": self.key, "done": True, "settings": self.settings, "result": result})
        return result

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.manifest.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, self.manifest)  # atomic: a killed run never leaves half a manifest
