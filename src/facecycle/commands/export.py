"""`facecycle export`: one generator as ONNX, TorchScript or safetensors (see facecycle.inference.export)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export one generator as ONNX, TorchScript or safetensors",
        description="Export one generator with its metadata (channels, value range [-1, 1], direction, "
                    "size_multiple, crop_size, version, full config). Inputs are (N, C, H, W) float32 in "
                    "[-1, 1] with dynamic N, H and W. ONNX and TorchScript files pad H and W to the "
                    "generator's size_multiple themselves (reflect) and crop back, so any size >= 8 px "
                    "works; safetensors holds plain weights and the caller pads. File suffixes: "
                    ".onnx, .ts or .torchscript, .safetensors (.pt is reserved for checkpoints). Conditional "
                    "models (train.mode=conditional) get a second input 'condition': (N, K) float32 in [0, 1], one "
                    "value per condition column (listed in the metadata); --direction does not apply to them.")
    p.add_argument("--checkpoint", required=True, help="run directory (newest checkpoint) or checkpoint file")
    p.add_argument("--direction", default="a2b", choices=["a2b", "b2a"])
    p.add_argument("--format", dest="fmt", default=None, choices=["onnx", "torchscript", "safetensors"],
                   help="default: from the --output suffix")
    p.add_argument("--output", required=True, help="file to write (.onnx, .ts, .safetensors)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facecycle.errors import ConfigError
    from facecycle.inference.export import DEFAULT_OPSET, SUFFIX_TO_FORMAT, export_generator, format_for
    from facecycle.inference.loading import load_model

    output = Path(args.output)
    fmt = format_for(output, args.fmt)  # fail on a bad name before loading anything
    if args.opset is not None and fmt != "onnx":
        raise ConfigError("--opset applies to --format onnx only")
    if Path(args.checkpoint).suffix.lower() in SUFFIX_TO_FORMAT:
        raise ConfigError(f"{args.checkpoint} is already an export; export from a run directory or checkpoint")
    generator = load_model(args.checkpoint, args.direction, "cpu")
    path = export_generator(generator, output, fmt, opset=args.opset or DEFAULT_OPSET)
    size_kb = path.stat().st_size / 1024
    pads = "pads any H x W itself" if fmt != "safetensors" else f"caller pads H, W to multiples of {generator.size_multiple}"
    what = "conditional" if generator.conditional else args.direction
    condition = (f" + condition (N, {len(generator.condition_columns)}) float32 in [0, 1]: "
                 f"{','.join(generator.condition_columns)} ({generator.condition_kind})" if generator.conditional else "")
    print(f"exported {what} generator from {generator.source} -> {path} ({fmt}, {size_kb:.0f} KiB; "
          f"input (N, {generator.channels}, H, W) float32 in [-1, 1]{condition}; {pads})")
    return 0
