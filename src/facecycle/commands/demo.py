"""`facecycle demo`: build cartoon data offline, train briefly on the CPU, write an HTML page."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="offline end-to-end demo: cartoon frown <-> smile in a few minutes")
    p.add_argument("--out", default="demo_out", help="output folder (data, run, page)")
    p.add_argument("--minutes", type=float, default=8.0, help="total time budget; training gets what is left")
    p.add_argument("--images", type=int, default=300, help="training images per domain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, help="recipe to train (default: the face recipe, configs/faces.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change one setting of the recipe, e.g. --set model.gen_width=16 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facecycle.demo import DEMO_PRESET, run_demo

    run_demo(args.out, minutes=args.minutes, n_train=args.images, seed=args.seed, progress=not args.quiet,
             preset=args.config or DEMO_PRESET, overrides=args.overrides)
    return 0
