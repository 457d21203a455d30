"""Where the CPU time of one training step goes: torch.profiler table of a real trainer step.

    python benchmarks/profile_step.py --size 256 --precision bf16 [--channels-last] [--conv winograd] [--threads N]

Builds the paper model (ResNet-9 + 70x70 PatchGAN, identity on) on a synthetic cache, runs one
warm-up step, then profiles one step and prints the top operators by self CPU time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from facecycle.commands.bench import _config, _synthetic_cache
from facecycle.training.trainer import CycleGANTrainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--conv", default="direct", choices=["direct", "winograd"], help="train.conv")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = {"size": args.size, "batch_size": args.batch_size, "precision": args.precision,
            "channels_last": args.channels_last, "device": "cpu", "overrides": [f"train.conv={args.conv}"]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        load = max(args.size, round(args.size * 286 / 256))
        a, b = _synthetic_cache(folder, "a", 8, load), _synthetic_cache(folder, "b", 8, load)
        trainer = CycleGANTrainer(_config(spec, a, b), folder / "run", progress=False)
        stream = trainer.batches()

        def step() -> None:
            batch = next(stream)
            fake_a, fake_b, _ = trainer.g_step(batch)
            trainer.d_step(trainer._prepare(batch["a"]), trainer._prepare(batch["b"]), fake_a, fake_b)

        step()
        start = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
        total = time.perf_counter() - start
    print(f"{args.size}px {args.precision} batch {args.batch_size} channels_last={args.channels_last} "
          f"threads={torch.get_num_threads()}: {total:.2f} s for the profiled step")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
