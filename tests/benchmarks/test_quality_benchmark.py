"""benchmarks/quality.py end to end at toy scale, so the protocol cannot rot: the fixed split,
two variants trained side by side within a wall-clock budget, `facecycle evaluate` on each
snapshot, and the report (tables, curves, mask curves, grids)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from tiny import tiny_overrides

TINY = ",".join(tiny_overrides(blocks=1))


@pytest.mark.slow
def test_quality_benchmark_smoke(shared_faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    cmd = [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--data", str(shared_faces), "--out", str(out),
           "--minutes", "0.1", "--evals", "0.05,0.1", "--size", "56", "--max-eval", "6",
           "--variant", f"recipe=faces,{TINY}", "--variant", f"paper=paper_cyclegan,{TINY}"]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert {p.name: len(list(p.iterdir())) for p in (out / "data").iterdir()} == \
        {"trainA": 300, "testA": 100, "trainB": 300, "testB": 100}
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results] == ["recipe", "paper"]
    for result in results:
        assert [r["mark"] for r in result["records"]] == [0.05, 0.1]
        steps = [r["step"] for r in result["records"]]
        assert steps == sorted(steps) and steps[-1] == result["planned_steps"]
        for record in result["records"]:
            for direction in ("a2b", "b2a"):
                metrics = record["metrics"][direction]
                assert 0 <= metrics["expression_target_rate"] <= 1 and metrics["kid_x100"] is not None
    report = (out / "report.md").read_text()
    rows = report.splitlines()
    assert sum(r.startswith("| recipe |") for r in rows) == 4 and sum(r.startswith("| paper |") for r in rows) == 4
    for name in ("curves.png", "masks.png", "grid_a2b.png", "grid_b2a.png"):
        assert (out / name).stat().st_size > 1000, name
