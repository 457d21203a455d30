"""What this machine can do: CPU instruction sets (from /proc/cpuinfo), GPUs, and what `auto` picks.

    >>> caps = cpu_capabilities()
    >>> caps.avx2, caps.avx512, caps.amx, caps.native_bf16
    (True, True, False, True)

`native_bf16` means the CPU has bf16 dot-product instructions (AVX512_BF16 or AMX-BF16 on x86,
BF16 on Arm). Without them PyTorch emulates bf16 with fp32 arithmetic plus conversions, which
is slower than plain fp32, so `auto` precision stays fp32 on such CPUs.
"""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (two kinds), then aarch64's "Features" name


@dataclass(frozen=True)
class CpuCapabilities:
    """CPU facts that decide speed: the instruction-set flags the kernel reports, and CPU counts."""

    model: str
    flags: frozenset[str] = field(default_factory=frozenset)
    logical_cpus: int = 1  # all CPUs of the machine
    usable_cpus: int = 1  # CPUs this process may run on (affinity, e.g. a container's cpuset)

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    @property
    def native_bf16(self) -> bool:
        return any(flag in self.flags for flag in _NATIVE_BF16_FLAGS)

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "logical_cpus": self.logical_cpus, "usable_cpus": self.usable_cpus,
                "avx2": self.avx2, "avx512": self.avx512, "avx512_bf16": "avx512_bf16" in self.flags,
                "amx": self.amx, "amx_bf16": "amx_bf16" in self.flags, "native_bf16": self.native_bf16}


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo text (x86 `flags`, Arm `Features`)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags


def cpu_capabilities(cpuinfo: str | os.PathLike[str] = CPUINFO) -> CpuCapabilities:
    """This machine's CPU capabilities (flags empty where /proc/cpuinfo does not exist)."""
    try:
        model, flags = parse_cpuinfo(Path(cpuinfo).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        model, flags = "", frozenset()
    logical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        usable = logical
    return CpuCapabilities(model or platform.processor() or platform.machine(), flags, logical, usable)


def torch_cpu_kernels() -> str:
    """The CPU kernel set PyTorch dispatches to ("AVX2", "AVX512", ...; ATEN_CPU_CAPABILITY lowers it)."""
    import torch

    getter = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return str(getter()) if getter else "unknown"


def gpus() -> list[dict[str, Any]]:
    """CUDA GPUs: name, compute capability, memory (GiB) and native bf16 (compute capability >= 8)."""
    import torch

    if not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.append({"index": index, "name": props.name, "capability": f"{props.major}.{props.minor}",
                      "memory_gib": round(props.total_memory / 2**30, 1), "native_bf16": props.major >= 8})
    return found


def auto_precision(device: str, cpu: CpuCapabilities | None = None, gpu_list: list[dict[str, Any]] | None = None) -> str:
    """The precision `auto` picks on `device` ("cpu" or "cuda"): bf16 where it is native, else fp32."""
    if device.startswith("cuda"):
        listed = gpus() if gpu_list is None else gpu_list
        return "bf16" if listed and all(g["native_bf16"] for g in listed) else "fp32"
    return "bf16" if cpu_runs_bf16_natively(cpu) else "fp32"


#: Measured on an AVX2-only AMD EPYC core (robustness issue): one ResNet-9 generator
#: forward+backward at 128 px, fp32 2.5 s, bf16 autocast 70-74 s.
EMULATED_BF16 = "about 28x slower than fp32 (measured: a ResNet-9 generator step at 128 px on an AVX2-only core)"


def kernels_capped_below_avx512() -> bool:
    """True when PyTorch/oneDNN were told to use AVX2 at most (ATEN_CPU_CAPABILITY,
    ONEDNN_MAX_CPU_ISA): the CPU's native bf16 instructions are then out of reach."""
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return aten in ("default", "avx2") or onednn in ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def cpu_runs_bf16_natively(cpu: CpuCapabilities | None = None) -> bool:
    return (cpu or cpu_capabilities()).native_bf16 and not kernels_capped_below_avx512()


def resolve_precision(requested: str, device: str, cpu: CpuCapabilities | None = None) -> str:
    """`auto` -> bf16 where `device` runs it natively, else fp32; anything else is kept. An
    explicit bf16 on a CPU without native bf16 is kept too, with a warning that says the cost."""
    on_cuda = str(device).startswith("cuda")
    if requested == "auto":
        if on_cuda:
            return auto_precision("cuda")
        return "bf16" if cpu_runs_bf16_natively(cpu) else "fp32"
    if requested == "bf16" and not on_cuda and not cpu_runs_bf16_natively(cpu):
        warnings.warn(f"bf16 was asked for on a CPU without native bf16 instructions (no AVX512_BF16/AMX): "
                      f"PyTorch emulates it, {EMULATED_BF16}. Use fp32 (or precision auto) on this machine.",
                      stacklevel=2)
    return requested


def resolve_conv(requested: str, device: str, precision: str) -> str:
    """`train.conv`: `auto` -> winograd for fp32 on the CPU (where it measured faster: BENCHMARKS.md),
    direct elsewhere (CUDA's cuDNN picks its own algorithms; bf16/fp16 lose too much precision in
    the Winograd transforms, and the module runs them direct anyway); anything else is kept."""
    if requested == "auto":
        return "winograd" if not str(device).startswith("cuda") and precision == "fp32" else "direct"
    return requested


PROC_STAT = Path("/proc/stat")


def busy_cpus(interval: float = 0.2, stat: Path = PROC_STAT) -> float | None:
    """How many CPUs other processes keep busy right now: two reads of /proc/stat `interval`
    seconds apart, while this process sleeps. None where /proc/stat is unavailable."""
    import time

    def snapshot() -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user nice system idle iowait irq softirq steal

    first = snapshot()
    time.sleep(interval)
    second = snapshot()
    if first is None or second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (1.0 - idle / total) * (os.cpu_count() or 1)


def auto_threads(cpu: CpuCapabilities | None = None, busy: float | None = None) -> int:
    """Intra-op threads for CPU work: $OMP_NUM_THREADS when set, else the usable CPUs that other
    processes leave free right now (at least one).

    Why (BENCHMARKS.md, "Threads on a shared machine", benchmarks/threads.py): with torch's
    default of one thread per core, one other busy process made a training step 4.1x slower
    (0.40 -> 1.67 s), because every parallel region waits for the thread the kernel has
    descheduled; one thread on the free core ran the same step in 0.70 s. On a quiet machine
    every core is used. The choice is made once, when a command starts."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    cpu = cpu or cpu_capabilities()
    busy = busy_cpus() if busy is None else busy
    if busy is None:
        return cpu.usable_cpus
    free = (os.cpu_count() or cpu.usable_cpus) - busy
    return max(1, min(cpu.usable_cpus, round(free)))


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads: `requested` when > 0, else `auto_threads()`; returns it."""
    import torch

    threads = requested if requested > 0 else auto_threads()
    torch.set_num_threads(threads)
    return threads
