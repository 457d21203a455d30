"""`make bench`: the paper model's training/inference/loader throughput (see BENCHMARKS.md).

    python benchmarks/train_throughput.py [--quick] [extra `facecycle bench` flags...]

Runs `facecycle bench` (each case in a fresh process) and appends the results to
benchmarks/results.jsonl. --quick: 128 px only, one timed iteration (a smoke run). Timings on a
shared machine are noisy: check `uptime` first, and prefer --threads 1 when other processes
use the cores (see BENCHMARKS.md, "shared cores").
"""

from __future__ import annotations

import sys
from pathlib import Path

from facecycle.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    out = Path(__file__).with_name("results.jsonl")
    base = ["bench", "--json", str(out)]
    if quick:
        base += ["--sizes", "128", "--batch-sizes", "1", "--iters", "1"]
    sys.exit(main(base + args))
