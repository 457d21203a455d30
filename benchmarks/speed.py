"""Side by side, in one process, alternating: training step and inference speed of the paths
facecycle offers on this CPU, as ratios to the reference-equivalent eager fp32 path (issue 15).

    python benchmarks/speed.py                    # ~10 min on 2 cores: the figures in BENCHMARKS.md
    python benchmarks/speed.py --quick            # smoke run (1-2 min): 64 px, one round, no compile
    python benchmarks/speed.py --threads 1 --output speed.md
    python benchmarks/speed.py --threads 1 --update-benchmarks   # the report into BENCHMARKS.md

Training (paper model: ResNet-9 + 70x70 PatchGAN, identity 0.5, pool 50, fused Adam, real
`CycleGANTrainer.g_step` + `d_step` on a synthetic uint8 cache; batch 1): every variant is built
from the same seed, warmed up (compiling, for compiled variants: that time is reported), then the
variants take one timed step each in turn, `--rounds` times; medians. Variants: a plain eager
loop with no trainer around it (the reference's update written out: shows the trainer's own
overhead), the trainer's eager fp32 (the reference-equivalent default, the 1.00x row), eager
fp32 with Winograd convolutions (`train.conv=winograd`), channels_last fp32, torch.compile fp32
without and with Winograd (where a C++ compiler exists; not with --no-compile), eager bf16
(where the CPU runs bf16 natively) and what `precision=auto, compile=auto, conv=auto` resolves
to here.

Inference (the same generator): `translate_tensor` with PyTorch fp32, PyTorch fp32 with
Winograd convolutions (`--backend winograd`), ONNX Runtime fp32
(`--backend onnxruntime`; export time reported) and PyTorch bf16 (native bf16 only), at
`--infer-sizes` x `--infer-batches`, alternating per round; seconds per batch, medians.

Alternating within one process means a burst of load from other processes hits every variant
alike; ratios are the reliable output on a shared machine, absolute times are not.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

Step = Callable[[], None]


def _header() -> str:
    from facecycle.hardware import cpu_capabilities, cpu_runs_bf16_natively, torch_cpu_kernels
    from facecycle.training.compile import cxx_compiler

    cpu = cpu_capabilities()
    isa = "AMX" if cpu.amx else "AVX-512" if cpu.avx512 else "AVX2" if cpu.avx2 else "no AVX2"
    return (f"CPU: {cpu.model or platform.machine()}, {os.cpu_count()} logical cores; ISA {isa}; "
            f"bf16 {'native' if cpu_runs_bf16_natively(cpu) else 'emulated'}; torch {torch.__version__} "
            f"kernels {torch_cpu_kernels()}; {torch.get_num_threads()} torch thread(s); "
            f"C++ compiler: {cxx_compiler() or 'none'}; python {platform.python_version()}; "
            f"load average {os.getloadavg()[0]:.1f}")


# ---- training ---------------------------------------------------------------------------------


def _trainer_step(folder: Path, a: str, b: str, size: int, name: str, precision: str, compile_mode: str,
                  channels_last: bool, conv: str, overrides: list[str]) -> tuple[Step, Any]:
    from facecycle.commands.bench import _config
    from facecycle.training.trainer import CycleGANTrainer

    spec = {"size": size, "batch_size": 1, "precision": precision, "channels_last": channels_last,
            "device": "cpu", "overrides": [f"train.compile={compile_mode}", f"train.conv={conv}", *overrides]}
    torch.manual_seed(0)
    trainer = CycleGANTrainer(_config(spec, a, b), folder / name, progress=False)
    trainer.logger.enabled = False
    for net in trainer.nets.values():
        net.train()
    stream = trainer.batches()

    def step() -> None:
        batch = next(stream)
        fake_a, fake_b, _ = trainer.g_step(batch)
        if fake_a is not None:
            trainer.d_step(trainer._prepare(batch["a"]), trainer._prepare(batch["b"]), fake_a, fake_b)

    return step, trainer


def plain_step(a: str, b: str, size: int, overrides: list[str]) -> Step:
    """The reference implementation's update written out with no trainer around it: same nets and
    losses (LSGAN, L1 cycle x10, identity x5), default torch Adam, image pool 50, batches from
    the same cache loader; no non-finite checks, no loss bookkeeping, no fused Adam. The
    trainer's overhead is its time over this one."""
    import torch.nn.functional as F

    from facecycle.commands.bench import _config
    from facecycle.data.cache import CachedBatches, CachedDomain
    from facecycle.data.transforms import TransformSpec
    from facecycle.data.unpaired import UnpairedSampler
    from facecycle.build import build_discriminator, build_generator
    from facecycle.training.pool import ImagePool

    config = _config({"size": size, "batch_size": 1, "device": "cpu", "overrides": overrides}, a, b)
    torch.manual_seed(0)
    g_ab, g_ba, d_a, d_b = (build_generator(config), build_generator(config),
                            build_discriminator(config), build_discriminator(config))
    opt_g = torch.optim.Adam(list(g_ab.parameters()) + list(g_ba.parameters()), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), lr=2e-4, betas=(0.5, 0.999))
    pool_a, pool_b = ImagePool(50, seed=1), ImagePool(50, seed=2)
    cached = CachedBatches(CachedDomain(a, "A"), CachedDomain(b, "B"),
                           TransformSpec(config.data.load_size, size, True, train=True), 3, torch.device("cpu"))

    def batches():
        epoch = 0
        while True:
            yield from cached.epoch(UnpairedSampler(8, 8, 0, epoch), 1)
            epoch += 1

    stream = batches()
    mse = lambda x, target: F.mse_loss(x, torch.full_like(x, target))  # noqa: E731

    def step() -> None:
        batch = next(stream)
        real_a, real_b = batch["a"], batch["b"]
        for p in itertools.chain(d_a.parameters(), d_b.parameters()):
            p.requires_grad_(False)
        opt_g.zero_grad()
        fake_b, fake_a = g_ab(real_a), g_ba(real_b)
        rec_a, rec_b = g_ba(fake_b), g_ab(fake_a)
        loss_g = (mse(d_b(fake_b)[0], 1.0) + mse(d_a(fake_a)[0], 1.0)
                  + 10 * (F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b))
                  + 5 * (F.l1_loss(g_ba(real_a), real_a) + F.l1_loss(g_ab(real_b), real_b)))
        loss_g.backward()
        opt_g.step()
        for p in itertools.chain(d_a.parameters(), d_b.parameters()):
            p.requires_grad_(True)
        opt_d.zero_grad()
        pa, pb = pool_a.query(fake_a.detach()), pool_b.query(fake_b.detach())
        loss_d = 0.5 * (mse(d_a(real_a)[0], 1.0) + mse(d_a(pa)[0], 0.0) + mse(d_b(real_b)[0], 1.0) + mse(d_b(pb)[0], 0.0))
        loss_d.backward()
        opt_d.step()

    return step


def training_variants(compile_ok: bool) -> list[tuple[str, str, str, bool, str]]:
    """(label, precision, compile, channels_last, conv) of the training paths compared."""
    from facecycle.hardware import cpu_runs_bf16_natively

    variants = [("trainer, eager fp32 (default)", "fp32", "off", False, "direct"),
                ("trainer, eager fp32 Winograd (train.conv=winograd)", "fp32", "off", False, "winograd"),
                ("trainer, eager fp32 channels_last", "fp32", "off", True, "direct")]
    if compile_ok:
        variants.append(("trainer, torch.compile fp32", "fp32", "on", False, "direct"))
        variants.append(("trainer, torch.compile fp32 Winograd", "fp32", "on", False, "winograd"))
    if cpu_runs_bf16_natively():
        variants.append(("trainer, eager bf16", "bf16", "off", False, "direct"))
    variants.append(("trainer, precision=auto compile=auto conv=auto", "auto", "auto", False, "auto"))
    return variants


def bench_training(size: int, rounds: int, compile_ok: bool, overrides: list[str]) -> list[dict[str, Any]]:
    from facecycle.commands.bench import _synthetic_cache

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        load = max(size, round(size * 286 / 256))
        a, b = _synthetic_cache(folder, "a", 8, load), _synthetic_cache(folder, "b", 8, load)
        steps: list[Step] = []
        plain = plain_step(a, b, size, overrides)
        start = time.perf_counter()
        plain()
        plain()
        rows.append({"label": "plain eager loop (reference-style, no trainer)", "resolved": "fp32, eager",
                     "warmup_s": time.perf_counter() - start, "times": []})
        steps.append(plain)
        for i, (label, precision, compile_mode, cl, conv) in enumerate(training_variants(compile_ok)):
            step, trainer = _trainer_step(folder, a, b, size, f"v{i}", precision, compile_mode, cl, conv, overrides)
            start = time.perf_counter()
            step()
            step()  # the second step too: a compiled D sees requires_grad flip once more
            resolved = (f"{trainer.config.train.precision}, {'compiled' if trainer.compiled else 'eager'}, "
                        f"{trainer.config.train.conv}")
            rows.append({"label": label, "resolved": resolved, "warmup_s": time.perf_counter() - start, "times": []})
            steps.append(step)
            print(f"  built {label} ({resolved}); 2 warm-up steps {rows[-1]['warmup_s']:.1f} s", file=sys.stderr,
                  flush=True)
        for _ in range(rounds):
            for row, step in zip(rows, steps):
                start = time.perf_counter()
                step()
                row["times"].append(time.perf_counter() - start)
    base = statistics.median(rows[1]["times"])  # the trainer's eager fp32 step
    for row in rows:
        row["s"] = statistics.median(row["times"])
        row["ratio"] = base / row["s"]
    return rows


# ---- inference --------------------------------------------------------------------------------


def bench_inference(sizes: list[int], batches: list[int], reps: int, overrides: list[str]) -> tuple[list[dict[str, Any]], float]:
    from facecycle.commands.bench import _config
    from facecycle.hardware import cpu_runs_bf16_natively
    from facecycle.inference.backends import onnxruntime_generator, winograd_generator
    from facecycle.inference.loading import LoadedGenerator
    from facecycle.inference.translate import translate_tensor
    from facecycle.build import build_generator

    config = _config({"size": max(sizes), "batch_size": 1, "device": "cpu", "overrides": overrides})
    torch.manual_seed(0)
    net = build_generator(config).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    generator = LoadedGenerator(net, "a2b", config.data.channels, int(getattr(net, "size_multiple", 4)),
                                config.data.crop_size, config.to_dict(), Path("speed-benchmark"), None)
    backends: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
        ("torch fp32", lambda x: translate_tensor(generator, x))]
    winograd = winograd_generator(generator)
    backends.append(("winograd fp32", lambda x: translate_tensor(winograd, x)))
    export_s = float("nan")
    try:
        with tempfile.TemporaryDirectory() as home:
            previous = os.environ.get("FACECYCLE_HOME")
            os.environ["FACECYCLE_HOME"] = home  # a fresh cache: the export is timed, never reused
            try:
                start = time.perf_counter()
                ort_gen = onnxruntime_generator(generator)
                export_s = time.perf_counter() - start
            finally:
                if previous is None:
                    os.environ.pop("FACECYCLE_HOME", None)
                else:
                    os.environ["FACECYCLE_HOME"] = previous
        backends.append(("onnxruntime fp32", lambda x: translate_tensor(ort_gen, x)))
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not run
        print(f"  onnxruntime backend skipped: {exc}", file=sys.stderr)
    if cpu_runs_bf16_natively():
        backends.append(("torch bf16", lambda x: translate_tensor(generator, x, "bf16")))
    rows = []
    for size in sizes:
        for batch in batches:
            x = torch.rand(batch, config.data.channels, size, size) * 2 - 1
            outputs = {name: run(x) for name, run in backends}  # warm-up, and the parity check below
            times: dict[str, list[float]] = {name: [] for name, _ in backends}
            for _ in range(reps):
                for name, run in backends:
                    start = time.perf_counter()
                    run(x)
                    times[name].append(time.perf_counter() - start)
            row: dict[str, Any] = {"size": size, "batch": batch}
            for name, _ in backends:
                row[name] = statistics.median(times[name])
                row[name + " maxdiff"] = float((outputs[name] - outputs["torch fp32"]).abs().max())
            rows.append(row)
            print(f"  inference {size}px batch {batch}: " + ", ".join(f"{n} {row[n]:.3f}s" for n, _ in backends),
                  file=sys.stderr, flush=True)
    return rows, export_s


# ---- report -----------------------------------------------------------------------------------


def report(header: str, size: int, train_rows: list[dict[str, Any]], infer_rows: list[dict[str, Any]],
           export_s: float, command: str) -> str:
    lines = [f"`{command}`", "", header, ""]
    if train_rows:
        lines += [f"Training step, {size}x{size}, batch 1 (median of alternating rounds; img/s per domain):", "",
                  "| path | runs as | s/step | img/s | vs eager fp32 | 2 warm-up steps (incl. compile) |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for r in train_rows:
            lines.append(f"| {r['label']} | {r['resolved']} | {r['s']:.3f} | {1 / r['s']:.3f} | **{r['ratio']:.2f}x** "
                         f"| {r['warmup_s']:.1f} s |")
        lines.append("")
    if infer_rows:
        names = [k for k in infer_rows[0] if k not in ("size", "batch") and not k.endswith("maxdiff")]
        lines += [f"Inference, generator only (`translate_tensor`; s/batch, median; ONNX export {export_s:.1f} s, "
                  "once per weights, cached):", "",
                  "| size | batch | " + " | ".join(names) + " | " + " | ".join(f"{n} vs torch fp32" for n in names[1:])
                  + " | max abs diff vs torch fp32 |",
                  "| ---: | ---: | " + " | ".join("---:" for _ in names) + " | "
                  + " | ".join("---:" for _ in names[1:]) + " | --- |"]
        for r in infer_rows:
            base = r["torch fp32"]
            diffs = ", ".join(f"{n}: {r[n + ' maxdiff']:.1e}" for n in names[1:])
            lines.append(f"| {r['size']} | {r['batch']} | " + " | ".join(f"{r[n]:.3f}" for n in names) + " | "
                         + " | ".join(f"**{base / r[n]:.2f}x**" for n in names[1:]) + f" | {diffs} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- speed.py report: begin -->", "<!-- speed.py report: end -->"


def update_benchmarks(path: Path, text: str) -> None:
    """Put `text` between the report markers in `path` (BENCHMARKS.md), replacing the last report;
    without markers, append a section with them."""
    old = path.read_text() if path.is_file() else ""
    block = f"{BEGIN}\n\n{text.rstrip()}\n\n{END}"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = old.rstrip() + "\n\n## The latest `benchmarks/speed.py` report\n\n" + block + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 64 px, 1 round, inference 64 px batch 1-2, no compile")
    p.add_argument("--size", type=int, default=128, help="training crop size (default 128)")
    p.add_argument("--rounds", type=int, default=4, help="timed training steps per variant (alternating)")
    p.add_argument("--infer-sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--infer-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--infer-reps", type=int, default=2, help="timed calls per backend and case (after a warm-up)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant (minutes to compile)")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--no-infer", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch (and ONNX Runtime) threads; 0 = torch's default")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override (default: the paper model)")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--update-benchmarks", nargs="?", const=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"),
                   metavar="MD", help="also put the report into BENCHMARKS.md (or MD), between its report markers")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.rounds, args.no_compile = 64, 1, True
        args.infer_sizes, args.infer_batches, args.infer_reps = [64], [1, 2], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from facecycle.training.compile import cxx_compiler

    header = _header()
    print(header, file=sys.stderr, flush=True)
    train_rows = [] if args.no_train else bench_training(args.size, args.rounds,
                                                         not args.no_compile and cxx_compiler() is not None,
                                                         args.overrides)
    infer_rows, export_s = ([], float("nan")) if args.no_infer else bench_inference(
        args.infer_sizes, args.infer_batches, args.infer_reps, args.overrides)
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(header, args.size, train_rows, infer_rows, export_s, command.strip())
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    if args.update_benchmarks:
        update_benchmarks(Path(args.update_benchmarks), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
