"""The one tiny model the suite trains, in each form a test needs it, and the CLI helpers around it.

`TINY_MODEL` is the model section (8-wide G and D, 2 residual blocks); the forms below build on it:
`tiny_model()` (a section dict, other block counts), `tiny_overrides()` (`model.key=value`
strings), `tiny_sets()` (`--set` pairs), `tiny_flags()` (a `train` command line at 32 px),
`tiny_raw()` / `tiny_config()` (a whole config on two image folders). A test that needs other
values passes them (`blocks=1`, extra `--set` values, more sections); nothing here picks a seed.

`tiny_run_dir` trains that model once per session (2 steps, through the real CLI); the
`run_dir` and `translator` fixtures hand it to the API, export, serve and browser tests.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from PIL import Image

from conftest import facecycle_cmd, write_blobs
from facecycle.config import Config

TINY_MODEL = {"gen_width": 8, "disc_width": 8, "gen_blocks": 2}


def tiny_model(blocks: int = 2, **more) -> dict:
    """`TINY_MODEL` with `blocks` residual blocks, plus `more` model settings."""
    return {**TINY_MODEL, "gen_blocks": blocks, **more}


def tiny_overrides(blocks: int = 2) -> list[str]:
    """The tiny model as `model.key=value` overrides."""
    return [f"model.{key}={value}" for key, value in tiny_model(blocks).items()]


def tiny_sets(*sets: str, blocks: int = 2) -> list[str]:
    """`--set` pairs: the tiny model, then `sets` in the order given."""
    return [flag for value in (*tiny_overrides(blocks), *sets) for flag in ("--set", value)]


def tiny_flags(*sets: str, blocks: int = 2, size: int = 32, extra: Sequence[str] = ()) -> list[str]:
    """`--size 32 --quiet`, then `extra` flags, then `tiny_sets(*sets, blocks=blocks)`."""
    return ["--size", str(size), "--quiet", *extra, *tiny_sets(*sets, blocks=blocks)]


def tiny_raw(data_a: Path, data_b: Path, *, blocks: int = 2, crop: int = 32, load: int = 36, **sections) -> dict:
    """A config dict on two image folders; each of `sections` is merged into its section."""
    raw = {"data": {"data_a": str(data_a), "data_b": str(data_b), "crop_size": crop, "load_size": load},
           "model": tiny_model(blocks)}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def tiny_config(data_a: Path, data_b: Path, **kwargs) -> Config:
    """`tiny_raw(...)` as a validated Config."""
    return Config.from_dict(tiny_raw(data_a, data_b, **kwargs)).validate()


TINY_TRAIN = tiny_flags("train.log_every=1")  # what `train()` passes: the tiny model, a log line per step


def run(args: list[str], env: dict[str, str], check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
    """`facecycle *args` in a real subprocess; with `check`, a failure shows its output."""
    proc = subprocess.run(facecycle_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"facecycle {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def train(a: Path, b: Path, run_dir: Path, env: dict[str, str], *extra: str, check: bool = True):
    """`facecycle train` of the tiny model (logging every step) on folders `a` and `b`."""
    return run(["train", "--data-a", str(a), "--data-b", str(b), "--run-dir", str(run_dir),
                *TINY_TRAIN, *extra], env, check)


def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with a 2-step checkpoint of a tiny ResNet CycleGAN (trained once per session)."""
    root = tmp_path_factory.getbasetemp() / "facecycle_tiny_run"
    run = root / "run"
    if not (run / "checkpoints").is_dir():
        write_blobs(root / "A", 6, (40, 40), seed=1, bright=False)
        write_blobs(root / "B", 6, (36, 44), seed=2, bright=True, ext=".jpg")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(facecycle_cmd("train", "--data-a", str(root / "A"), "--data-b", str(root / "B"),
                                            "--run-dir", str(run), *tiny_flags(extra=["--steps", "2"])),
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return run


def photo(size: tuple[int, int] = (50, 70), mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth random colour image of `size` (W, H) in `mode`."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([np.sin(xx / (3 + c) + rng.uniform(0, 6)) * np.cos(yy / (4 + c)) for c in range(3)], -1)
    return Image.fromarray(((img + 1) * 127.5).astype(np.uint8)).convert(mode)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def translator(run_dir: Path):
    from facecycle import Translator

    return Translator.load(run_dir, device="cpu")
