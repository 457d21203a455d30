"""`facecycle faceoff`: two videos in, two face-swapped videos and a report out, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from facecycle.faces.paste import COLOR_MATCHES
    from facecycle.faces.paste_masks import MASK_MODES

    p = subparsers.add_parser(
        "faceoff", help="end to end: two videos -> train -> both videos with swapped faces, audio kept, and a report",
        description="Extract and align the faces of two videos (or folders of frames/photos), split them into "
                    "train/held-out, train a model (the face recipe by default), translate both videos with "
                    "paste-back and audio kept, and write DIR/report/index.html. Every stage's output stays in "
                    "DIR and is reused while its inputs and settings are unchanged; the same command again "
                    "continues training from the last checkpoint.")
    p.add_argument("--video-a", required=True, help="video (or folder of frames/photos) of person/domain A")
    p.add_argument("--video-b", required=True, help="video (or folder of frames/photos) of person/domain B")
    p.add_argument("--out", required=True, help="output folder (stages, run, swapped videos, report)")
    train = p.add_argument_group("training")
    train.add_argument("--config", default="faces", help="training preset name or YAML file (default: the face recipe)")
    train.add_argument("--steps", type=int, help="length of the training schedule in generator updates")
    train.add_argument("--minutes", type=float, help="stop training after this many minutes (with a checkpoint); "
                                                     "the same command later continues")
    train.add_argument("--size", type=int, help="training crop size in pixels (default: the config's)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set model.gen_width=16 (repeatable)")
    train.add_argument("--device", default="auto")
    data = p.add_argument_group("faces")
    data.add_argument("--face-size", type=int, default=256, help="aligned crop size written by the extract stage")
    data.add_argument("--every", type=int, default=1, help="use every N-th video frame for training")
    data.add_argument("--holdout", type=float, default=0.1, help="share of each input's last frames held out")
    data.add_argument("--face-reference", type=Path, help="photo of the person to replace in video A (picks them "
                                                          "among several faces, for training crops and translation)")
    data.add_argument("--face-reference-b", type=Path, help="the same for video B")
    data.add_argument("--metrics", default="ssim,identity",
                      help="held-out scores (facecycle evaluate names, comma-separated; 'none' to skip)")
    data.add_argument("--max-gap", type=int, default=5, help="frames without a detection filled with the track's "
                                                             "interpolated landmarks (longer gaps are left alone)")
    paste = p.add_argument_group("paste-back")
    paste.add_argument("--color-match", default="lab", choices=COLOR_MATCHES)
    paste.add_argument("--mask", default="face", choices=MASK_MODES,
                       help="paste mask: square (whole crop), oval (template), face (landmark oval), hull "
                            "(all landmarks), regions (only --regions)")
    paste.add_argument("--regions", default="eyes,brows,mouth", help="with --mask regions: which regions")
    paste.add_argument("--feather", type=float, default=0.04, help="mask blur sigma, fraction of the crop")
    paste.add_argument("--grow", type=float, default=0.03, help="mask padding (negative: erode), fraction of the crop")
    paste.add_argument("--smooth", type=float, default=0.6, help="landmark smoothing in [0, 1)")
    paste.add_argument("--temporal", type=float, default=0.8,
                       help="flicker reduction: flow-guided blending with the previous output frame in [0, 1) "
                            "(0 = off)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facecycle.errors import ConfigError
    from facecycle.faceoff.run import FaceoffOptions, run_faceoff
    from facecycle.faces.paste_masks import PasteSettings

    if args.steps is not None and args.steps < 1:
        raise ConfigError("--steps must be at least 1")
    if args.minutes is not None and args.minutes <= 0:
        raise ConfigError("--minutes must be positive")
    if not 0 <= args.temporal < 1 or not 0 <= args.smooth < 1:
        raise ConfigError("--temporal and --smooth must be within [0, 1)")
    if not 0 <= args.holdout < 0.9:
        raise ConfigError("--holdout must be within [0, 0.9)")
    if args.max_gap < 0 or args.every < 1:
        raise ConfigError("--max-gap must be >= 0 and --every >= 1")
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    from facecycle.faces.masks import REGION_NAMES

    bad = [r for r in regions if r not in REGION_NAMES]
    if bad:
        raise ConfigError(f"unknown --regions {bad}; choose from {', '.join(REGION_NAMES)}")
    metrics = [] if args.metrics.strip() == "none" else [m.strip() for m in args.metrics.split(",") if m.strip()]
    if metrics:
        from facecycle.evaluation.metrics import check_metric_names

        metrics = check_metric_names(metrics)
    paste = PasteSettings(color_match=args.color_match, mask=args.mask, regions=regions, feather=args.feather,
                          grow=args.grow, smooth=args.smooth, temporal=args.temporal, max_gap=args.max_gap)
    opts = FaceoffOptions(video_a=Path(args.video_a), video_b=Path(args.video_b), out=Path(args.out),
                          config=args.config, steps=args.steps, minutes=args.minutes, size=args.size,
                          overrides=args.overrides, face_size=args.face_size, every=args.every, holdout=args.holdout,
                          reference_a=args.face_reference, reference_b=args.face_reference_b, paste=paste,
                          device=args.device, quiet=args.quiet, metrics=metrics)
    result = run_faceoff(opts)
    for direction, summary in result["directions"].items():
        flicker = summary.get("flicker") or {}
        line = (f"{direction}: {summary['output']} ({summary['frames']} frames"
                + (f", {summary['fps']:.2f} fps, audio {summary['audio']}, {summary['frames_interpolated']} interpolated, "
                   f"{summary['frames_without_face']} without a face" if summary.get("kind") == "video" else "") + ")")
        if "selection" in summary:
            line += f"; {summary['selection']['reason']}"
        if flicker.get("flicker") is not None:
            line += f"; flicker {flicker['flicker']:.3f}, warp {flicker['flicker_warp']:.3f}"
        print(line)
    print(f"reused stages: {', '.join(result['reused']) or 'none'}")
    return 0
