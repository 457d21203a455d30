"""benchmarks/winograd_layers.py (issue 15) stays runnable: its --quick mode prints the per-layer
table with the machine's capabilities (no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_winograd_layers_quick_prints_the_table() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "winograd_layers.py"), "--quick",
                           "--threads", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ISA" in done.stdout and "| N, C→K, output |" in done.stdout
    assert "| 1, 16→16, 8² | 512 |" in done.stdout and "| 2, 8→8, 6² | 512 |" in done.stdout
