#!/usr/bin/env bash
# One CUDA device, under 5 minutes: training img/s per domain (128/256 px, batch 1/8/32,
# fp32/bf16, compile off/on, channels_last off/on), inference img/s and peak memory, printed as
# markdown tables (see benchmarks/gpu.py; --smoke runs the same code on the CPU in seconds).
#   benchmarks/gpu.sh [--output gpu.md] [--budget-s 240] [gpu.py options...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Works from a checkout without installing: the repository's src/ comes first.
export PYTHONPATH="$here/../src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$here/gpu.py" "$@"
