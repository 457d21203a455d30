"""`facecycle bench`: training / inference / loader throughput, peak memory and FLOPs.

Every case runs in a fresh child process, so the peak memory of one case (RSS high-water mark
on the CPU, `torch.cuda.max_memory_allocated` on CUDA) is not inflated by an earlier one.
Training cases drive the real trainer (`g_step` + `d_step`, image pool, fused Adam, autocast)
on a synthetic uint8 cache, so the loader is part of the timed step, as in a real run.

    facecycle bench                                   # paper model, 128 and 256, fp32 + bf16
    facecycle bench --cases train --sizes 256 --batch-sizes 1 --precisions bf16 --iters 5
    facecycle bench --json results.jsonl              # one JSON object per case

Output: one line per case (s/iter, images/s per domain, peak memory, GFLOP per step and the
achieved GFLOP/s). FLOPs come from `torch.utils.flop_counter.FlopCounterMode` (convolutions and
matmuls, forward and backward, 2 FLOPs per multiply-add), counted on one extra, untimed step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any, Callable

CASES = ("train", "infer", "loader")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="measure training/inference/loader speed, memory and FLOPs",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="train,infer,loader", help="comma-separated: train, infer, loader")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="crop sizes in pixels")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", choices=["on", "off", "both"], default="off",
                   help="channels_last layout (default off: slower on CPU, see BENCHMARKS.md)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (train.compile)")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per case (after --warmup)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the model (default: ResNet-9 + 70x70 PatchGAN, identity 0.5)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument("--json", help="append one JSON object per case to this file")
    p.add_argument("--case-json", help=argparse.SUPPRESS)  # internal: run one case in this process
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.case_json:
        result = run_case(json.loads(args.case_json))
        print("BENCH " + json.dumps(result), flush=True)
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        from facecycle.errors import ConfigError

        raise ConfigError(f"unknown bench case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    layouts = {"on": [True], "off": [False], "both": [False, True]}[args.channels_last]
    specs: list[dict[str, Any]] = []
    for case in cases:
        for size in args.sizes:
            if case == "loader":
                specs.append({"case": "loader", "size": size, "batch_size": 16, "iters": max(args.iters, 100)})
                continue
            for precision in args.precisions:
                for batch in args.batch_sizes:
                    for cl in layouts:
                        specs.append({"case": case, "size": size, "batch_size": batch, "precision": precision,
                                      "channels_last": cl, "iters": args.iters, "warmup": args.warmup,
                                      "compile": args.compile, "flops": not args.no_flops})
    import platform

    from facecycle.hardware import cpu_capabilities, cpu_runs_bf16_natively, torch_cpu_kernels

    cpu = cpu_capabilities()
    isa = "AMX" if cpu.amx else "AVX-512" if cpu.avx512 else "AVX2" if cpu.avx2 else "no AVX2"
    print(f"facecycle bench on {cpu.model or platform.machine()}, python {platform.python_version()}; CPU: {isa}, "
          f"bf16 {'native' if cpu_runs_bf16_natively(cpu) else 'emulated (slow)'}, torch kernels {torch_cpu_kernels()}")
    failures = 0
    for spec in specs:
        spec.update(device=args.device, threads=args.threads, overrides=args.overrides)
        result = _run_isolated(spec)
        print(format_result(result), flush=True)
        failures += "error" in result
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(result) + "\n")
    return 1 if failures else 0


def _run_isolated(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "facecycle", "bench", "--case-json", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**spec, "error": " | ".join(tail) or f"exit code {proc.returncode}"}


def format_result(r: dict[str, Any]) -> str:
    head = f"{r['case']:6s} {r['size']:4d}px"
    if "error" in r:
        return f"{head} FAILED: {r['error']}"
    if r["case"] == "loader":
        return (f"{head} batch {r['batch_size']:3d}: {r['images_per_s']:8.1f} pairs/s from cache "
                f"({r['total_images_per_s']:.0f} img/s); folder decoding: {r['source_images_per_s']:.1f} pairs/s")
    text = (f"{head} {r['precision']} batch {r['batch_size']:2d}{' CL' if r.get('channels_last') else '   '}: "
            f"{r['s_per_iter']:7.3f} s/iter  {r['images_per_s']:7.3f} img/s  peak {r['peak_mem_gib']:.2f} GiB")
    if r.get("gflop_per_iter"):
        text += f"  {r['gflop_per_iter']:8.1f} GFLOP/iter  {r['gflop_per_s']:6.1f} GFLOP/s"
    return text


# ---- cases (run in the child process) ---------------------------------------------------------


def _config(spec: dict[str, Any], data_a: str = "", data_b: str = ""):
    from facecycle.config import Config, apply_overrides

    size = spec["size"]
    raw = {"data": {"data_a": data_a or None, "data_b": data_b or None, "crop_size": size,
                    "load_size": max(size, round(size * 286 / 256))},
           "train": {"batch_size": spec["batch_size"], "precision": spec.get("precision", "fp32"),
                     "channels_last": bool(spec.get("channels_last")), "compile": bool(spec.get("compile")),
                     "device": spec.get("device", "auto"), "steps": 10_000}}
    raw = apply_overrides(raw, spec.get("overrides", []))
    return Config.from_dict(raw).validate()


def _peak_memory(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synthetic_cache(folder, name: str, count: int, size: int, channels: int = 3) -> str:
    """A valid cache of smooth random images (no decoding needed to build it)."""
    import numpy as np

    from facecycle.data.cache import CACHE_FORMAT, CACHE_VERSION, index_path

    rng = np.random.default_rng(len(name))
    base = rng.integers(0, 256, (count, size // 8 + 1, size // 8 + 1, channels)).astype(np.float32)
    images = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)[:, :size, :size].astype(np.uint8)
    path = folder / f"{name}.npy"
    np.save(path, images)
    index_path(path).write_text(json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "size": size,
                                            "channels": channels, "count": count, "root": str(folder),
                                            "files": [f"{i}.png" for i in range(count)], "masks": None}))
    return str(path)


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    result = dict(spec)
    result["threads"] = torch.get_num_threads()
    {"train": _bench_train, "infer": _bench_infer, "loader": _bench_loader}[spec["case"]](spec, result)
    return result


def _measure(run: Callable[[], None], device: Any, spec: dict[str, Any], iters: int, result: dict[str, Any]) -> None:
    """Warm up, time `iters` calls of `run` (median: robust to other processes' bursts), record
    peak memory and, unless spec["flops"] is False, the FLOPs of one extra untimed call."""
    import time

    from torch.utils.flop_counter import FlopCounterMode

    for _ in range(spec.get("warmup", 1)):
        run()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    s = sorted(times)[len(times) // 2]
    result.update(s_per_iter=s, s_per_iter_all=times, images_per_s=spec["batch_size"] / s,
                  peak_mem_gib=_peak_memory(device), device=str(device))
    if spec.get("flops", True):
        with FlopCounterMode(display=False) as counter:
            run()
        flops = counter.get_total_flops()
        result.update(gflop_per_iter=flops / 1e9, gflop_per_s=flops / 1e9 / s)


def _bench_train(spec: dict[str, Any], result: dict[str, Any]) -> None:
    import tempfile
    from pathlib import Path

    from facecycle.training.trainer import CycleGANTrainer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        load = max(spec["size"], round(spec["size"] * 286 / 256))
        count = max(8, spec["batch_size"] * 2)
        a = _synthetic_cache(folder, "a", count, load)
        b = _synthetic_cache(folder, "b", count, load)
        trainer = CycleGANTrainer(_config(spec, a, b), folder / "run", progress=False)
        trainer.logger.enabled = False
        for net in trainer.nets.values():
            net.train()
        stream = trainer.batches()

        def step() -> None:
            batch = next(stream)
            fake_a, fake_b, _ = trainer.g_step(batch)
            if fake_a is not None:
                trainer.d_step(trainer._prepare(batch["a"]), trainer._prepare(batch["b"]), fake_a, fake_b)

        _measure(step, trainer.device, spec, spec["iters"], result)


def _bench_infer(spec: dict[str, Any], result: dict[str, Any]) -> None:
    import torch

    from facecycle.build import build_generator
    from facecycle.runtime.device import resolve_device

    config = _config(spec)
    device = resolve_device(config.train.device)
    net = build_generator(config).to(device).eval()
    x = torch.rand(spec["batch_size"], config.data.channels, spec["size"], spec["size"], device=device) * 2 - 1
    if spec.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if spec.get("compile"):
        net = torch.compile(net)
    precision = spec.get("precision", "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is not None:
        # As `translate --precision bf16` runs it: low-precision weights, no autocast
        # (autocast re-casts every weight on every call).
        net, x = net.to(dtype), x.to(dtype)

    @torch.inference_mode()
    def forward() -> None:
        net(x)

    _measure(forward, device, spec, max(spec["iters"], 3), result)


def _bench_loader(spec: dict[str, Any], result: dict[str, Any]) -> None:
    """Batches/s of the cache path (memmap rows -> cropped, flipped float batches on the device),
    counted as image pairs (one A and one B image) per second; and, for comparison, items/s of
    the folder path (PNG decode + PIL resize/crop/flip) on the same kind of images."""
    import tempfile
    import time
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from facecycle.data.cache import CachedBatches, CachedDomain
    from facecycle.data.transforms import TransformSpec
    from facecycle.data.unpaired import Domain, UnpairedDataset, UnpairedSampler
    from facecycle.runtime.device import resolve_device

    size, batch = spec["size"], spec["batch_size"]
    load = max(size, round(size * 286 / 256))
    device = resolve_device(spec.get("device", "auto"))
    count = 256
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a, b = _synthetic_cache(folder, "a", count, load), _synthetic_cache(folder, "b", count, load)
        spec_t = TransformSpec(load, size, True, train=True)
        cached = CachedBatches(CachedDomain(a, "A"), CachedDomain(b, "B"), spec_t, 3, device)
        for _ in cached.epoch(UnpairedSampler(count, count, 0, 0), batch):  # warm-up: page cache
            pass
        n_pairs, epoch = 0, 1
        start = time.perf_counter()
        while n_pairs < spec["iters"] * batch:
            for out in cached.epoch(UnpairedSampler(count, count, 0, epoch), batch):
                n_pairs += out["a"].shape[0]
            epoch += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        images = np.load(a, mmap_mode="r")
        for key in ("A", "B"):
            (folder / key).mkdir()
            for i in range(16):
                Image.fromarray(np.asarray(images[i, :size, :size])).save(folder / key / f"{i:03d}.png")
        dataset = UnpairedDataset(Domain(folder / "A", "A"), Domain(folder / "B", "B"), 3, spec_t)
        items = list(UnpairedSampler(16, 16, 0, 0))
        dataset[items[0]]
        t0 = time.perf_counter()
        for item in items:
            dataset[item]
        source_rate = len(items) / (time.perf_counter() - t0)
    result.update(images_per_s=n_pairs / elapsed, total_images_per_s=2 * n_pairs / elapsed,
                  source_images_per_s=source_rate, peak_mem_gib=_peak_memory(device), device=str(device))
