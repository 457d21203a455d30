"""`auto` precision picks bf16 only where it is native; an explicit bf16 on an emulating CPU warns."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from facecycle.hardware import CpuCapabilities, resolve_precision
from tiny import tiny_model

AVX2_ONLY = CpuCapabilities("AMD EPYC (AVX2 only)", frozenset({"avx2", "fma"}), 2, 2)
AVX512_BF16 = CpuCapabilities("AMD EPYC (Zen 4)", frozenset({"avx2", "avx512f", "avx512_bf16"}), 2, 2)


@pytest.fixture(autouse=True)
def uncapped_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests describe the CPU themselves; the suite's own forced-AVX2 run must not leak in."""
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


def test_auto_is_fp32_without_native_bf16_and_bf16_with_it() -> None:
    assert resolve_precision("auto", "cpu", AVX2_ONLY) == "fp32"
    assert resolve_precision("auto", "cpu", AVX512_BF16) == "bf16"
    assert resolve_precision("fp32", "cpu", AVX512_BF16) == "fp32"


def test_forced_avx2_dispatch_counts_as_no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert resolve_precision("auto", "cpu", AVX512_BF16) == "fp32"


def test_explicit_bf16_on_an_emulating_cpu_warns_with_the_cost() -> None:
    with pytest.warns(UserWarning, match="28x slower than fp32"):
        assert resolve_precision("bf16", "cpu", AVX2_ONLY) == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu", AVX512_BF16) == "bf16"


def test_trainer_resolves_auto_and_records_it(blob_domains: tuple[Path, Path], tmp_path: Path) -> None:
    from facecycle.config import Config, with_values
    from facecycle.hardware import cpu_runs_bf16_natively
    from facecycle.training.trainer import CycleGANTrainer

    a, b = blob_domains
    config = with_values(Config(), data={"data_a": str(a), "data_b": str(b), "crop_size": 32, "load_size": 32},
                         model=tiny_model(blocks=1),
                         train={"precision": "auto", "steps": 1, "device": "cpu"})
    trainer = CycleGANTrainer(config, tmp_path / "run", progress=False)
    assert trainer.config.train.precision == ("bf16" if cpu_runs_bf16_natively() else "fp32")


def test_auto_threads_leave_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thread oversubscription (BENCHMARKS.md): one thread per *free* core; OMP_NUM_THREADS wins."""
    import os

    from facecycle.hardware import auto_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count() or 1
    machine = CpuCapabilities("test", frozenset(), cores, cores)
    assert auto_threads(machine, busy=0.0) == cores
    assert auto_threads(machine, busy=float(cores)) == 1  # everything busy: still one thread
    if cores >= 2:
        assert auto_threads(machine, busy=1.0) == cores - 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto_threads(machine, busy=float(cores)) == 3


def test_busy_cpus_sees_another_busy_process() -> None:
    import subprocess
    import sys

    from facecycle.hardware import busy_cpus

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)  # let it start spinning
        busy = busy_cpus(interval=0.5)
    finally:
        spinner.kill()
        spinner.wait()
    if busy is None:
        pytest.skip("/proc/stat is not available here")
    assert busy >= 0.7
