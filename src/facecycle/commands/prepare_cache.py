"""`facecycle prepare cache`: decode and resize a folder once into a uint8 memory-mappable cache.

Registered by `facecycle.commands.prepare` through `add_cache_parser(sub)`, where `sub` is the
`prepare` sub-parsers object. Train from caches by passing the .npy files as the domains:

    facecycle prepare cache --input faces/trainA --output cache/a.npy --size 286
    facecycle prepare cache --input faces/trainB --output cache/b.npy --size 286
    facecycle train --data-a cache/a.npy --data-b cache/b.npy --size 256 --run-dir runs/x

`--size` should equal the training `data.load_size` (286 for `--size 256`, 143 for 128): the
batches are then bit-identical to those of the folder pipeline (see facecycle.data.cache).
"""

from __future__ import annotations

import argparse
import sys


def add_cache_parser(prepare_subparsers: argparse._SubParsersAction) -> None:
    c = prepare_subparsers.add_parser(
        "cache", help="pre-resized uint8 .npy cache of a folder (training reads it without decoding)",
        description="Writes OUTPUT (.npy, (N, S, S, C) uint8), OUTPUT.json (file names, size) and, with "
                    "--masks, OUTPUT.masks.npy. Pass the .npy as --data-a/--data-b to train from it.")
    c.add_argument("--input", required=True, help="image folder (any nesting)")
    c.add_argument("--output", required=True, help="cache file to write, ending in .npy")
    c.add_argument("--size", type=int, default=286,
                   help="side in pixels; use the training load size: 286 for --size 256, 143 for 128 (default 286)")
    c.add_argument("--channels", type=int, choices=[1, 3], default=3)
    c.add_argument("--masks", help="mask folder mirroring --input (same stems, .png), stored alongside")
    c.add_argument("--workers", type=int, default=0, help="decoding processes (default: all cores, at most 8)")
    c.set_defaults(func=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    from facecycle.data.cache import build_cache, index_path

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done == total or done % 200 == 0):
            print(f"\r{done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    index = build_cache(args.input, args.output, args.size, args.channels, args.masks, args.workers, progress)
    for path, reason in index["skipped"]:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    print(f"cached {index['count']} image(s) at {index['size']}x{index['size']}x{index['channels']} -> "
          f"{args.output} (index {index_path(args.output)})"
          + (f"; {len(index['skipped'])} unreadable (listed above)" if index["skipped"] else ""))
    return 0
