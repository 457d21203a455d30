"""benchmarks/gpu.sh (issue 15) cannot rot while no GPU is lent: its --smoke mode runs the same
grid code (trainer steps, inference, tables) on the CPU with a tiny model, one step per case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_gpu_benchmark_smoke_run_prints_full_tables(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--output", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text in done.stdout and "smoke run" in text
    train = [line for line in text.splitlines() if line.startswith("| 32 |") and line.count("|") == 10]
    infer = [line for line in text.splitlines() if line.startswith("| 32 |") and line.count("|") == 7]
    # 1 size x 2 batches x fp32/bf16 x channels_last off/on; inference 1 size x 2 batches x 2 precisions
    assert len(train) == 8 and len(infer) == 4, text
    assert "skipped" not in text
    for line in train + infer:
        img_s = float(line.split("|")[6 if line in train else 4])
        assert img_s > 0, line


def test_gpu_benchmark_without_cuda_says_so() -> None:
    import torch

    if torch.cuda.is_available():
        return
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "src")), timeout=120)
    assert done.returncode == 2 and "--smoke" in done.stderr
