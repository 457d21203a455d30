"""One CUDA device, one command, under 5 minutes: the paper model's training and inference
throughput grid, printed as markdown tables to paste into BENCHMARKS.md (issue 15).

    benchmarks/gpu.sh                      # = python benchmarks/gpu.py on cuda
    python benchmarks/gpu.py --budget-s 240 --output gpu.md
    python benchmarks/gpu.py --smoke       # CPU, tiny model, 1 step per case (tests/benchmarks/test_gpu_benchmark.py)

Training: ResNet-9 + 70x70 PatchGAN, identity 0.5, pool 50, fused Adam, the real
`CycleGANTrainer.g_step` + `d_step` on batches already on the device (the loader is measured by
`facecycle bench --cases loader`). Grid: 128^2 and 256^2 x batch 1/8/32 x fp32/bf16 x
compile off/on x channels_last off/on; img/s per domain and peak memory
(`torch.cuda.max_memory_allocated`). One trainer serves the three batch sizes of a
(size, precision, compile, layout) cell, so a compiled cell compiles once plus recompiles for
new batch sizes (dynamo then marks the batch dynamic). Inference: the generator alone,
fp32/bf16 weights, 128/256/512 px x batch 1/8/32.

Cases run in priority order (eager training, inference, then compiled training, whose
compilation dominates the time) and stop when `--budget-s` (default 240 s) is spent: the rest are listed as
skipped, so the whole run stays within the device time one session has.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

TINY = ["model.gen_width=8", "model.disc_width=8", "model.gen_blocks=1"]  # --smoke's model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process RSS high-water mark (KiB)


def _time(run: Callable[[], None], device: torch.device, warmup: int, min_iters: int, min_s: float) -> float:
    """Median-free mean seconds per call after `warmup` calls: at least `min_iters` calls and `min_s`
    seconds (GPU steps are short and steady; a mean over a synchronised window is what img/s means)."""
    for _ in range(warmup):
        run()
    _sync(device)
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < min_s:
        run()
        n += 1
        if device.type == "cuda" and n % 5 == 0:
            _sync(device)
        if device.type != "cuda" and n >= min_iters:
            break
    _sync(device)
    return (time.perf_counter() - start) / n


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def train_cell(device: torch.device, size: int, precision: str, compile_on: bool, channels_last: bool,
               batches: list[int], args: argparse.Namespace, budget: Budget) -> list[dict[str, Any]]:
    """One trainer, the batch sizes in turn; a row per batch size (skipped ones flagged)."""
    from facecycle.commands.bench import _config, _synthetic_cache
    from facecycle.training.trainer import CycleGANTrainer

    rows: list[dict[str, Any]] = []
    base = {"size": size, "precision": precision, "compile": compile_on, "channels_last": channels_last}
    # A compiled cell needs time to compile: do not start one in the budget's last minute.
    if budget.left() <= (60 if compile_on else 0):
        return [{**base, "batch": n, "skipped": "budget"} for n in batches]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The trainer needs data to start; the timed steps get batches made on the device below.
        count, load = max(2 * max(batches), 8), max(size, round(size * 286 / 256))
        a, b = _synthetic_cache(folder, "a", count, load), _synthetic_cache(folder, "b", count, load)
        spec = {"size": size, "batch_size": 1, "precision": precision, "channels_last": channels_last,
                "device": str(device), "overrides": [f"train.compile={'on' if compile_on else 'off'}",
                                                     *args.overrides]}
        torch.manual_seed(0)
        trainer = CycleGANTrainer(_config(spec, a, b), folder / "run", progress=False)
        trainer.logger.enabled = False
        for net in trainer.nets.values():
            net.train()
        fell_back = False  # a compile failure falls back once, for the rest of the cell
        for batch_size in batches:
            row = {**base, "batch": batch_size}
            if budget.left() <= 0:
                rows.append({**row, "skipped": "budget"})
                continue
            real = {k: (torch.rand(batch_size, 3, size, size, device=device) * 2 - 1) for k in ("a", "b")}

            def step() -> None:
                fake_a, fake_b, _ = trainer.g_step(real)
                if fake_a is not None:
                    trainer.d_step(trainer._prepare(real["a"]), trainer._prepare(real["b"]), fake_a, fake_b)

            _reset_peak(device)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    start = time.perf_counter()
                    step()  # first call: compiles, for compiled cells
                    first_s = time.perf_counter() - start
                    s = _time(step, device, args.warmup, args.iters, args.min_s)
            except torch.OutOfMemoryError:
                rows.append({**row, "skipped": "out of memory"})
                torch.cuda.empty_cache()
                continue
            except Exception as exc:  # noqa: BLE001 - one broken case must not lose the others' figures
                first = str(exc).splitlines()[0][:80].replace("|", "/") if str(exc) else ""
                rows.append({**row, "skipped": f"error {type(exc).__name__}: {first}"})
                continue
            fell_back = fell_back or any("running eagerly" in str(w.message) for w in caught)
            rows.append({**row, "s": s, "img_s": batch_size / s, "peak_gib": _peak_gib(device),
                         "first_s": first_s, "compiled": trainer.compiled and not fell_back})
            print(f"  train {size}px b{batch_size} {precision} compile={compile_on} cl={channels_last}: "
                  f"{batch_size / s:.1f} img/s", file=sys.stderr, flush=True)
    return rows


def infer_rows(device: torch.device, sizes: list[int], batches: list[int], args: argparse.Namespace,
               budget: Budget) -> list[dict[str, Any]]:
    from facecycle.commands.bench import _config
    from facecycle.build import build_generator

    rows: list[dict[str, Any]] = []
    for precision, size, batch_size in itertools.product(["fp32", "bf16"], sizes, batches):
        row = {"size": size, "batch": batch_size, "precision": precision}
        if budget.left() <= 0:
            rows.append({**row, "skipped": "budget"})
            continue
        config = _config({"size": size, "batch_size": batch_size, "device": str(device), "overrides": args.overrides})
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        net = build_generator(config).to(device, dtype).eval()  # bf16 weights, as `translate --precision bf16`
        x = (torch.rand(batch_size, 3, size, size, device=device) * 2 - 1).to(dtype)
        _reset_peak(device)

        @torch.inference_mode()
        def forward() -> None:
            net(x)

        try:
            s = _time(forward, device, args.warmup, args.iters, args.min_s)
        except torch.OutOfMemoryError:
            rows.append({**row, "skipped": "out of memory"})
            continue
        except Exception as exc:  # noqa: BLE001 - keep the other cases' figures
            rows.append({**row, "skipped": f"error {type(exc).__name__}"})
            continue
        rows.append({**row, "s": s, "img_s": batch_size / s, "peak_gib": _peak_gib(device)})
    return rows


def _cell(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else str(value)


def tables(header: str, train: list[dict[str, Any]], infer: list[dict[str, Any]]) -> str:
    lines = [header, "", "Training (img/s per domain; peak = max allocated on the device, RSS on the CPU):", "",
             "| size | batch | precision | compile | channels_last | img/s | s/step | peak GiB | first step s |",
             "| ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in train:
        compiled = ("on" if r.get("compiled", True) else "on (fell back to eager)") if r["compile"] else "off"
        tail = (f"{r['img_s']:.2f} | {r['s']:.4f} | {r['peak_gib']:.2f} | {r['first_s']:.1f}" if "s" in r
                else f"skipped: {r['skipped']} | | |")
        lines.append(f"| {r['size']} | {r['batch']} | {r['precision']} | {compiled} | "
                     f"{'on' if r['channels_last'] else 'off'} | {tail} |")
    lines += ["", "Inference (generator only, weights in the precision shown):", "",
              "| size | batch | precision | img/s | s/batch | peak GiB |", "| ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in infer:
        tail = f"{r['img_s']:.2f} | {r['s']:.4f} | {r['peak_gib']:.2f}" if "s" in r else f"skipped: {r['skipped']} | |"
        lines.append(f"| {r['size']} | {r['batch']} | {r['precision']} | {tail} |")
    return "\n".join(lines) + "\n"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"Device: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
                f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    from facecycle.hardware import cpu_capabilities, torch_cpu_kernels

    return (f"Device: CPU ({cpu_capabilities().model or 'unknown'}), torch {torch.__version__}, "
            f"kernels {torch_cpu_kernels()}, {torch.get_num_threads()} thread(s) -- smoke run, not a measurement")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="CPU smoke run: tiny model, 32 px, batch 1-2, one step per case, no compile")
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--infer-sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--compile", choices=["off", "on", "both"], default="both")
    p.add_argument("--channels-last", choices=["off", "on", "both"], default="both")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=5, help="at least this many timed steps per case")
    p.add_argument("--min-s", type=float, default=1.0, help="and at least this many seconds per case (CUDA)")
    p.add_argument("--budget-s", type=float, default=240.0, help="stop starting cases after this many seconds")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override (default: the paper model)")
    p.add_argument("--output", help="also write the tables to this file")
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.sizes, args.batches, args.infer_sizes = "cpu", [32], [1, 2], [32]
        args.compile, args.warmup, args.iters, args.min_s = "off", 0, 1, 0.0
        args.overrides = TINY + args.overrides
        torch.set_num_threads(1)  # a smoke run must not depend on (or fight over) free cores
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible; use --smoke for the CPU smoke run", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per case: let cuDNN pick its fastest kernels
    budget = Budget(args.budget_s)
    start = time.perf_counter()
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    layouts = {"off": [False], "on": [True], "both": [False, True]}[args.channels_last]
    cells = [(size, precision, c, cl) for c in compiles
             for size, precision, cl in itertools.product(args.sizes, args.precisions, layouts)]
    eager = [cell for cell in cells if not cell[2]]
    compiled = [cell for cell in cells if cell[2]]
    train: list[dict[str, Any]] = []
    for cell in eager:
        train += train_cell(device, *cell, batches=args.batches, args=args, budget=budget)
    infer = infer_rows(device, args.infer_sizes, args.batches, args, budget)
    for cell in compiled:
        train += train_cell(device, *cell, batches=args.batches, args=args, budget=budget)
    command = " ".join(["python benchmarks/gpu.py", *(sys.argv[1:] if argv is None else argv)])
    header = f"`{command}` -- {describe(device)}; total {time.perf_counter() - start:.0f} s"
    text = tables(header, train, infer)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
