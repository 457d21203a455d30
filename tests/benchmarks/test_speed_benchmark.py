"""benchmarks/speed.py (issue 15) stays runnable: its --quick mode, with a tiny model, prints the
training and inference tables with every row it promises (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from tiny import tiny_sets

TINY = tiny_sets(blocks=1)


def test_speed_quick_prints_both_tables(tmp_path: Path) -> None:
    out = tmp_path / "speed.md"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", FACECYCLE_HOME=str(tmp_path / "home"))
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nearlier text\n")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "speed.py"), "--quick", "--threads", "1",
                           "--output", str(out), "--update-benchmarks", str(md), *TINY],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "ISA" in text and "C++ compiler" in text  # the machine's capabilities head the report
    for row in ("plain eager loop", "trainer, eager fp32 (default)", "trainer, eager fp32 Winograd",
                "trainer, precision=auto compile=auto conv=auto"):
        assert f"| {row}" in text, row
    assert "| 64 | 1 | " in text and "| 64 | 2 | " in text and "onnxruntime fp32" in text and "winograd fp32" in text
    # The same report lands in BENCHMARKS.md between markers; a second run replaces it, keeping the rest.
    written = md.read_text()
    assert written.startswith("# Benchmarks\n\nearlier text\n") and text.strip() in written
    spec = importlib.util.spec_from_file_location("speed", REPO / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    speed.update_benchmarks(md, "second report")
    again = md.read_text()
    assert "earlier text" in again and "second report" in again and text.strip() not in again
    assert again.count("speed.py report: begin") == 1
