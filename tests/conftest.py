"""Shared fixtures: small real image folders made on the fly, and the shared face sample."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# facecycle's own state (the list of TorchScript files exported here) goes to a folder of this
# test session, never the user's ~/.cache; CLI subprocesses inherit it.
os.environ.setdefault("FACECYCLE_HOME", tempfile.mkdtemp(prefix="facecycle-home-"))
SHARED_FACES = Path(os.environ.get("FACECYCLE_SHARED_FACES", REPO.parent / "shared" / "data" / "facial_expressions"))


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """`../shared/data/facial_expressions` (Apache-2.0 real faces); skipped where absent."""
    if not (SHARED_FACES / "labels.csv").is_file():
        pytest.skip(f"shared face sample not found at {SHARED_FACES}")
    return SHARED_FACES


def write_blobs(folder: Path, count: int, size: tuple[int, int], seed: int, bright: bool, ext: str = ".png") -> list[Path]:
    """Write `count` real image files: smooth random colour blobs, darker or brighter by domain."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        r = rng.uniform(0.15, 0.4) * min(w, h)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        base = rng.uniform(0.5, 1.0, size=3) if bright else rng.uniform(0.0, 0.4, size=3)
        img = (blob[..., None] * base[None, None, :] * 255 + rng.normal(0, 8, (h, w, 3))).clip(0, 255)
        path = folder / f"img_{i:03d}{ext}"
        Image.fromarray(img.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def blob_domains(tmp_path: Path) -> tuple[Path, Path]:
    """Two unpaired folders of 6 small RGB images each (40x40 and 36x44)."""
    a, b = tmp_path / "A", tmp_path / "B"
    write_blobs(a, 6, (40, 40), seed=1, bright=False)
    write_blobs(b, 6, (36, 44), seed=2, bright=True, ext=".jpg")
    return a, b


@pytest.fixture()
def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: one thread each so parallel tests stay fast on 2 cores."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def facecycle_cmd(*args: str) -> list[str]:
    """Command line that runs the installed package's CLI with this interpreter."""
    return [sys.executable, "-m", "facecycle", *args]
