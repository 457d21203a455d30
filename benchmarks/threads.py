"""Thread oversubscription: training speed with and without one other busy process on the machine.

    python benchmarks/threads.py [--iters 15] [--rounds 2]

Each condition runs `facecycle bench --cases train` (the face recipe's networks at 64 px, batch 2,
fp32) in a fresh process, alternating conditions round by round so that drift of the machine
hits all of them alike. "busy" starts one CPU-bound Python loop (another user's job) for the
duration of the measurement. Conditions: torch threads = every core (torch's default) or one,
and OpenMP's wait policy as it comes (ACTIVE spin-waiting in GNU OpenMP) or PASSIVE (threads
sleep at barriers instead of spinning). Prints s/step per condition and the slow-down that the
busy process causes; the figures and the command go into BENCHMARKS.md ("shared cores").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

RECIPE = ["--set", "model.gen_width=32", "--set", "model.gen_blocks=6", "--set", "model.attention_mask=true",
          "--set", "model.gen_upsample=resize", "--set", "loss.identity=0"]
BUSY = [sys.executable, "-c", "while True: pass"]


def measure(threads: int, policy: str | None, busy: bool, iters: int) -> float:
    """Seconds per training step of one fresh `facecycle bench` process."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    else:
        env.pop("OMP_WAIT_POLICY", None)
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:
        cmd = [sys.executable, "-m", "facecycle", "bench", "--cases", "train", "--sizes", "64", "--batch-sizes", "2",
               "--precisions", "fp32", "--iters", str(iters), "--warmup", "2", "--no-flops", "--device", "cpu",
               "--threads", str(threads), "--json", out.name, *RECIPE]
        competitor = subprocess.Popen(BUSY) if busy else None
        try:
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
        result = json.loads(open(out.name).read().splitlines()[-1])
    return float(result["s_per_iter"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    conditions = [(cores, None), (1, None), (cores, "PASSIVE"), (1, "PASSIVE")]
    times: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for threads, policy in conditions:
            for busy in (False, True):
                times.setdefault((threads, policy, busy), []).append(measure(threads, policy, busy, args.iters))
    print(f"cores: {cores}; median s/step over {args.rounds} rounds (face recipe, 64 px, batch 2, fp32)")
    print("| threads | OMP_WAIT_POLICY | quiet s/step | one busy process s/step | slow-down |")
    print("|---|---|---|---|---|")
    for threads, policy in conditions:
        quiet = statistics.median(times[(threads, policy, False)])
        busy = statistics.median(times[(threads, policy, True)])
        print(f"| {threads} | {policy or 'default'} | {quiet:.3f} | {busy:.3f} | {busy / quiet:.2f}x |")


if __name__ == "__main__":
    main()
