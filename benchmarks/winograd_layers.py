"""Winograd F(2×2, 3×3) vs the direct convolution, one layer at a time (issue 15): where it pays
(`facecycle.ops.winograd.MIN_CHANNELS`) and how big a pass should be (`CHUNK_TILES`).

    python benchmarks/winograd_layers.py --threads 1            # per-shape table, forward + both backwards
    python benchmarks/winograd_layers.py --threads 1 --chunks   # the same for several CHUNK_TILES values

Each shape: one `(N, C, H+2, W+2)` input and `(K, C, 3, 3)` filter; the direct convolution
(`F.conv2d`, oneDNN) and `winograd_conv2d` alternate `--rounds` times, each timing the median of
`--reps` calls of forward + backward (gradients of input and filter). Ratios > 1: Winograd is
faster. Alternating in one process: a burst of load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

import facecycle.ops.winograd as winograd

# (N, C, K, H): the paper model's ResNet blocks at 128 px (batch 1, 4) and 256 px, and narrower
# layers like those of the faces recipe (64 px, width 32) and of the paper's up/down-sampling.
SHAPES = [(1, 256, 256, 32), (4, 256, 256, 32), (1, 256, 256, 64), (8, 256, 256, 16), (1, 128, 128, 32),
          (2, 128, 128, 16), (1, 64, 64, 32), (2, 64, 32, 64), (1, 32, 32, 64)]


def _median_time(fn: Callable[[], None], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(shape: tuple[int, int, int, int], rounds: int, reps: int) -> tuple[float, float, list[float]]:
    """(direct s, winograd s, per-round ratios) for forward + both backwards of one layer."""
    N, C, K, H = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H + 2, H + 2, generator=g, requires_grad=True)
    weight = torch.randn(K, C, 3, 3, generator=g, requires_grad=True)
    upstream = torch.randn(N, K, H, H, generator=g)

    def direct() -> None:
        F.conv2d(x, weight).backward(upstream)

    def fast() -> None:
        winograd.winograd_conv2d(x, weight).backward(upstream)

    direct(), fast()  # warm-up
    ratios, d_times, w_times = [], [], []
    for _ in range(rounds):
        d, w = _median_time(direct, reps), _median_time(fast, reps)
        d_times.append(d)
        w_times.append(w)
        ratios.append(d / w)
    return statistics.median(d_times), statistics.median(w_times), ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--chunks", action="store_true", help="repeat the 256-channel shapes for several CHUNK_TILES")
    p.add_argument("--quick", action="store_true", help="smoke run: two small shapes, one round")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [(1, 16, 16, 8), (2, 8, 8, 6)] if args.quick else SHAPES
    if args.quick:
        args.rounds, args.reps = 1, 1
    from facecycle.hardware import cpu_capabilities, torch_cpu_kernels

    cpu = cpu_capabilities()
    isa = "AMX" if cpu.amx else "AVX-512" if cpu.avx512 else "AVX2" if cpu.avx2 else "no AVX2"
    print(f"`python benchmarks/winograd_layers.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n\n"
          f"CPU: {cpu.model}; ISA {isa}; torch {torch.__version__} kernels {torch_cpu_kernels()}; "
          f"{torch.get_num_threads()} thread(s)\n")
    chunk_values = [64, 256, 512, 1024, 1 << 30] if args.chunks else [winograd.CHUNK_TILES]
    print("| N, C→K, output | CHUNK_TILES | direct ms | Winograd ms | direct / Winograd (per round) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for shape in shapes:
        if args.chunks and shape[1] < 256:
            continue
        for chunk in chunk_values:
            winograd.CHUNK_TILES = chunk
            d, w, ratios = compare(shape, args.rounds, args.reps)
            N, C, K, H = shape
            label = "all" if chunk >= 1 << 30 else str(chunk)
            print(f"| {N}, {C}→{K}, {H}² | {label} | {d * 1e3:.1f} | {w * 1e3:.1f} | **{d / w:.2f}×** "
                  f"({', '.join(f'{r:.2f}' for r in ratios)}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
