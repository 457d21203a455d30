"""`facecycle translate`: images, folders (and, with --faces, photos/videos with paste-back)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facecycle.commands import add_trust_torchscript, apply_trust_torchscript


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("translate", help="translate an image, a folder or a video with a trained generator")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="run directory, checkpoint file or exported generator")
    source.add_argument("--model", help="a built-in model by name: smile (a2b: neutral -> happy, b2a: happy -> neutral)")
    p.add_argument("--input", help="image file or folder (any nesting)")
    p.add_argument("--dataroot", help="reference CycleGAN layout: translate DIR/testA (a2b) or DIR/testB (b2a)")
    p.add_argument("--output", required=True, help="output folder (same relative paths and stems, .png)")
    p.add_argument("--direction", default="a2b", choices=["a2b", "b2a"])
    cond = p.add_argument_group("conditional models (train.mode=conditional)")
    cond.add_argument("--target", help='target condition, e.g. "AU06=1,AU12=1" (presence 0/1, intensity 0-5, '
                                       'or a class name); unnamed units are 0')
    cond.add_argument("--expression", help="target preset: joy (AU06+AU12), sadness (AU01+AU04+AU15), surprise "
                                           "(AU01+AU02+AU05+AU26), contempt (AU12+AU14), anger (AU04+AU05+AU07+AU23), "
                                           "fear (AU01+AU02+AU04+AU05+AU07+AU20+AU26), disgust (AU09+AU15+AU16), "
                                           "neutral; or a class of a categorical model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-size", type=int, default=None,
                   help="process images whose longer side exceeds this at that size, then resize back")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="fp32 (default: the same result on every machine), bf16, or auto: bf16 where the CPU/GPU "
                        "runs it natively (AVX512_BF16/AMX, Ampere+), else fp32")
    p.add_argument("--backend", default="torch", choices=["torch", "winograd", "onnxruntime", "auto"],
                   help="torch (default), winograd (PyTorch with Winograd 3x3 convolutions; CPU, fp32), onnxruntime "
                        "(CPU, fp32: the generator is exported to ONNX once, cached; needs the 'export' extra) or "
                        "auto: ONNX Runtime where it runs the model in fp32 on the CPU, else winograd there, else "
                        "torch (see BENCHMARKS.md)")
    p.add_argument("--save-masks", default=None, metavar="DIR",
                   help="attention models: also write each translation's mask (white = changed) into DIR")
    p.add_argument("--work-size", default="auto",
                   help="run the network with the shorter side at this size; 'auto': attention models run at "
                        "their training size and compose at the input's resolution, others at the input's size; "
                        "'full': always at the input's size")
    faces = p.add_argument_group("face mode (photos and videos: detect, align, translate, paste back)")
    faces.add_argument("--faces", action="store_true",
                       help="translate the aligned faces inside whole photos/videos and paste them back")
    faces.add_argument("--face-margin", type=float, default=0.25,
                       help="alignment margin; use the one the training faces were prepared with")
    faces.add_argument("--color-match", default="none", choices=["none", "rgb", "lab", "reinhard", "histogram"],
                       help="match the pasted face's colours to the original face: mean/std in RGB, Lab or "
                            "Reinhard's l-alpha-beta, or histogram matching")
    faces.add_argument("--mask", default="face", choices=["square", "oval", "face", "hull", "regions"],
                       help="paste mask: square (whole aligned crop), oval (template ellipse), face (landmark "
                            "oval), hull (all landmarks), regions (only --regions)")
    faces.add_argument("--regions", default="eyes,brows,mouth", help="with --mask regions: which regions")
    faces.add_argument("--feather", type=float, default=0.04, help="paste mask blur sigma, fraction of the crop")
    faces.add_argument("--grow", type=float, default=0.03, help="paste mask padding (negative erodes), fraction of the crop")
    faces.add_argument("--temporal", type=float, default=0.0,
                       help="video: flicker reduction by flow-guided blending with the previous output in [0, 1)")
    faces.add_argument("--face-reference", default=None, metavar="PHOTO",
                       help="video: replace only this person (tracked; detection gaps of up to --max-gap frames "
                            "get interpolated landmarks)")
    faces.add_argument("--max-gap", type=int, default=5, help="with --face-reference: longest gap filled")
    faces.add_argument("--max-faces", type=int, default=4)
    faces.add_argument("--smooth", type=float, default=0.6, help="video: temporal smoothing of face landmarks in [0, 1)")
    add_trust_torchscript(p)
    p.set_defaults(func=run)


def input_folder(args: argparse.Namespace) -> str:
    """--input, or DIR/testA (a2b) / DIR/testB (b2a) from --dataroot DIR."""
    from facecycle.data.layout import reference_folders
    from facecycle.errors import ConfigError

    if args.dataroot:
        if args.input:
            raise ConfigError("--dataroot picks the input (DIR/testA or DIR/testB): drop --input or --dataroot")
        test_a, test_b = reference_folders(args.dataroot, "test")
        return test_b if args.direction == "b2a" else test_a
    if not args.input:
        raise ConfigError("nothing to translate: pass --input FILE_OR_FOLDER (or --dataroot DIR with testA/, testB/)")
    return args.input


def run(args: argparse.Namespace) -> int:
    apply_trust_torchscript(args)
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_folder
    from facecycle.runtime.device import resolve_device

    from facecycle.errors import ConfigError

    if args.work_size not in ("auto", "full") and not (args.work_size.isdigit() and int(args.work_size) >= 8):
        raise ConfigError(f"--work-size must be auto, full or a size >= 8, got {args.work_size!r}")
    work_size = None if args.work_size == "full" else args.work_size if args.work_size == "auto" else int(args.work_size)
    args.input = input_folder(args)
    generator = load_generator(args.model or args.checkpoint, args.direction, resolve_device(args.device),
                               target=args.target, expression=args.expression)
    from facecycle.inference.backends import with_backend

    generator = with_backend(generator, args.backend, args.precision)
    if generator.target is not None:
        from facecycle.data.expressions import describe_target

        args.direction = f"to {describe_target(generator.target, generator.condition_columns, generator.condition_kind or '')}"
    if args.faces:
        if args.save_masks:
            raise ConfigError("--save-masks writes the masks of whole images; it does not apply with --faces")
        return run_faces(args, generator)
    result = translate_folder(generator, args.input, args.output, batch_size=args.batch_size,
                              max_size=args.max_size, precision=args.precision, work_size=work_size,
                              masks_dir=args.save_masks)
    for path, reason in result["failed"]:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    print(f"translated {len(result['written'])} image(s) {args.direction} -> {Path(args.output)}"
          + (f"; {len(result['failed'])} unreadable (listed above)" if result["failed"] else ""))
    return 0 if result["written"] else 2


def run_faces(args: argparse.Namespace, generator) -> int:
    from facecycle.inference.faces import translate_faces_in_paths

    from facecycle.errors import ConfigError
    from facecycle.faces.masks import REGION_NAMES

    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    if any(r not in REGION_NAMES for r in regions):
        raise ConfigError(f"unknown --regions {args.regions!r}; choose from {', '.join(REGION_NAMES)}")
    if not 0 <= args.temporal < 1:
        raise ConfigError("--temporal must be within [0, 1)")
    result = translate_faces_in_paths(generator, args.input, args.output, margin=args.face_margin,
                                      color_match=args.color_match, max_faces=args.max_faces, smooth=args.smooth,
                                      precision=args.precision, mask=args.mask, regions=regions,
                                      feather=args.feather, grow=args.grow, temporal=args.temporal,
                                      reference=args.face_reference, max_gap=args.max_gap)
    for path, reason in result["failed"]:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    for path in result["no_face"]:
        print(f"note: no face found in {path} (written unchanged)", file=sys.stderr)
    print(f"translated faces in {len(result['written'])} file(s) {args.direction} -> {Path(args.output)}"
          f"; {len(result['no_face'])} without a face, {len(result['failed'])} unreadable")
    return 0 if result["written"] else 2
