"""`facecycle import-reference`: generators trained with the reference CycleGAN code -> a facecycle model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-reference", help="import generators trained with the reference CycleGAN code (latest_net_G_A.pth ...)",
        description="Convert generators saved by junyanz/pytorch-CycleGAN-and-pix2pix (plain state dicts, loaded "
                    "with weights_only=True) into a facecycle model folder that translate (also --faces and "
                    "video), evaluate, export, serve and Translator.load accept like a run directory. "
                    "G_A (latest_net_G_A.pth) maps A->B and becomes a2b; G_B maps B->A and becomes b2a. "
                    "Supported: resnet_9blocks, resnet_6blocks, unet_128, unet_256 with instance or batch norm, "
                    "and the affine-instance-norm ResNet variant of many tutorials and packages. The architecture "
                    "is read from the weights.")
    p.add_argument("--from", dest="source", metavar="DIR",
                   help="reference checkpoint folder (checkpoints/NAME) holding EPOCH_net_G_A.pth / EPOCH_net_G_B.pth")
    p.add_argument("--epoch", default="latest", help="with --from: which files, EPOCH_net_G_A.pth (default latest)")
    p.add_argument("--a2b", metavar="FILE", help="generator file that maps A->B (the reference's G_A, or a test "
                                                 "model's latest_net_G.pth)")
    p.add_argument("--b2a", metavar="FILE", help="generator file that maps B->A (the reference's G_B)")
    p.add_argument("--out", required=True, help="facecycle model folder to create")
    p.add_argument("--size", type=int, default=None,
                   help="training resolution to record (reference --crop_size; default 256, U-Net: 2**depth)")
    p.set_defaults(func=run)


def reference_files(args: argparse.Namespace) -> dict[str, Path]:
    """{"a2b": file, "b2a": file} from --from/--epoch and/or --a2b/--b2a."""
    from facecycle.errors import ConfigError

    files: dict[str, Path] = {}
    if args.source:
        folder = Path(args.source)
        if not folder.is_dir():
            raise ConfigError(f"--from {folder}: folder not found")
        for direction, name in (("a2b", "G_A"), ("b2a", "G_B")):
            candidate = folder / f"{args.epoch}_net_{name}.pth"
            if candidate.is_file():
                files[direction] = candidate
        if not files:
            single = folder / f"{args.epoch}_net_G.pth"
            hint = (f"; it has {single.name} (a one-direction test model): pass it with --a2b or --b2a"
                    if single.is_file() else "")
            raise ConfigError(f"--from {folder}: no {args.epoch}_net_G_A.pth or {args.epoch}_net_G_B.pth{hint}")
    for direction in ("a2b", "b2a"):
        explicit = getattr(args, direction)
        if explicit:
            if direction in files:
                raise ConfigError(f"--{direction} and --from both give the {direction} generator; use one")
            files[direction] = Path(explicit)
    if not files:
        raise ConfigError("nothing to import: pass --from DIR (reference checkpoints/NAME) or --a2b/--b2a FILE")
    return files


def run(args: argparse.Namespace) -> int:
    from facecycle.inference.reference import IMPORT_INFO, write_imported_model

    files = reference_files(args)
    path = write_imported_model(args.out, files, crop_size=args.size)
    import json

    info = json.loads((Path(args.out) / IMPORT_INFO).read_text())
    directions = " and ".join(files)
    print(f"imported {directions} ({info['description']}) -> {Path(args.out)}\n"
          f"  checkpoint {path}\n"
          f"  try: facecycle translate --checkpoint {args.out} --input IMAGES --output OUT --direction "
          f"{next(iter(files))}")
    return 0
