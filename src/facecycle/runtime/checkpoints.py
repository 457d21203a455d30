"""Checkpoint files: plain tensors and builtins only, written atomically, loaded without unpickling code.

Layout: `RUN/checkpoints/step_00001200.pt`. A write goes to a temporary file in the same
folder, is fsynced, then renamed over the final name, so a process killed at any moment
leaves either the previous checkpoints or the new complete one, never a torn file. Loading
uses `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from facecycle.errors import CheckpointError, TrainingDiverged

# The version of the checkpoint layout written by `facecycle train` and `facecycle import-reference`.
CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives in a run directory."""
    return run_dir / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary files are ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def recovery_advice(run_dir: Path, fix: str) -> str:
    """What to do after a diverged run: resume from the last good checkpoint, or start again
    when the run stopped before its first one."""
    kept = list_checkpoints(Path(run_dir))
    if not kept:
        return f"No checkpoint was written yet ({Path(run_dir) / CHECKPOINT_DIR} is empty): {fix}, then start the run again."
    return f"The last good checkpoint, {kept[-1]}, is intact: {fix}, then --resume."


def non_finite_nets(state: dict[str, Any]) -> list[str]:
    """Names of the networks in a checkpoint state whose weights hold inf or NaN."""
    bad = []
    for name, weights in state.get("nets", {}).items():
        if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in weights.values()):
            bad.append(name)
    return bad


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, rename: a kill or a full disk leaves the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as "unexpected pos" RuntimeError
        Path(tmp).unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        raise CheckpointError(
            f"could not write {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
            f"{free / 2**20:.1f} MiB free on that disk. Free some space (or point --run-dir elsewhere) and --resume: "
            "the previous checkpoints are intact.") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Persist the rename itself (POSIX: the directory entry lives in the folder).
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` as the checkpoint of `step`, then delete all but the newest `keep`.

    Refuses (TrainingDiverged) weights that are not finite: a checkpoint is a point to go back to,
    and rotating good ones out for exploded ones would leave nothing to resume from."""
    bad = non_finite_nets(state)
    if bad:
        raise TrainingDiverged(
            f"step {step}: the weights of {', '.join(bad)} are not finite (inf/NaN), so they were not saved. "
            + recovery_advice(Path(run_dir), "lower the learning rates"))
    path = checkpoint_path(Path(run_dir), step)
    atomic_save(state, path)
    for old in list_checkpoints(Path(run_dir))[:-keep]:
        old.unlink(missing_ok=True)
    # Leftover temporary files of a killed writer are garbage.
    for stale in (Path(run_dir) / CHECKPOINT_DIR).glob(".step_*.tmp"):
        stale.unlink(missing_ok=True)
    return path


def load_file(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load and validate one facecycle checkpoint file (tensors and builtins only).

    `mmap=True` maps the tensors' storage instead of reading it: cheap when only the small
    entries (mode, config, counters) are needed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign/corrupt files
        raise CheckpointError(
            f"cannot load checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(is it a facecycle checkpoint? facecycle never unpickles arbitrary objects)"
        ) from None
    if not isinstance(state, dict) or "format" not in state or "nets" not in state:
        raise CheckpointError(f"{path} is not a facecycle checkpoint (no 'format'/'nets' entries)")
    nets = state["nets"]
    broken = ("config" if not isinstance(state.get("config"), dict) else
              "nets" if not isinstance(nets, dict) or not all(isinstance(n, dict) for n in nets.values()) else None)
    if broken:
        raise CheckpointError(f"{path} is not a complete facecycle checkpoint (missing or malformed: {broken}); "
                              "was it written by `facecycle train`?")
    return state


def load_latest(run_dir: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """The newest loadable checkpoint of a run (an unreadable newest one is skipped with a warning)."""
    candidates = list_checkpoints(Path(run_dir))
    if not candidates:
        raise CheckpointError(
            f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR}: the run stopped before its first checkpoint "
            "(or never started); start it again without --resume"
        )
    for path in reversed(candidates):
        try:
            return path, load_file(path, map_location)
        except CheckpointError as exc:
            warnings.warn(f"skipping unusable checkpoint: {exc}", stacklevel=2)
    raise CheckpointError(f"none of the {len(candidates)} checkpoints in {run_dir} could be loaded")


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory -> its newest checkpoint file; a file -> itself."""
    p = Path(path)
    if p.is_dir():
        found = list_checkpoints(p)
        if not found:
            raise CheckpointError(f"{p} has no checkpoints/step_*.pt; is it a facecycle run directory?")
        return found[-1]
    if not p.exists():
        raise CheckpointError(f"checkpoint or run directory not found: {p}")
    return p
