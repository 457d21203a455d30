"""The reference CycleGAN code's dataset layout: `DIR/trainA`, `DIR/trainB`, `DIR/testA`, `DIR/testB`."""

from __future__ import annotations

from pathlib import Path

from facecycle.errors import DataError

SPLITS = ("train", "test")


def reference_folders(root: str | Path, split: str) -> tuple[str, str]:
    """(`root/<split>A`, `root/<split>B`) for `split` "train" or "test".

    Only `root` itself is checked here: a missing `trainA` (...) is reported by the code that
    reads the folder, with the same message as when the folder is given with --data-a (...).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"--dataroot {path} does not exist; it should hold trainA/ and trainB/ (training) "
                        "and testA/ and testB/ (evaluation, translation), as in the reference CycleGAN code")
    return str(path / f"{split}A"), str(path / f"{split}B")
