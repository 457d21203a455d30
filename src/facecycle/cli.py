"""`facecycle` command line: one subcommand module per verb under facecycle.commands.

Each module exposes `add_parser(subparsers)` which registers its parser and sets
`func=run`. Modules are imported only when listed, and import torch lazily inside `run`,
so `facecycle --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from facecycle import __version__
from facecycle.errors import FacecycleError

# Order is the order shown in --help.
COMMAND_MODULES = [
    "prepare",
    "train",
    "evaluate",
    "translate",
    "faceoff",
    "export",
    "serve",
    "demo",
    "bench",
    "import_reference",
    "doctor",
]


# Verbs that run networks on the CPU: their torch thread count is chosen at start (--threads).
# `bench` sets its own per case; the rest do not compute.
COMPUTE_COMMANDS = frozenset({"prepare", "train", "evaluate", "translate", "faceoff", "export", "serve", "demo", "import-reference"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facecycle",
        description="Unpaired facial image-to-image translation: prepare -> train -> evaluate -> translate -> export.",
    )
    parser.add_argument("--version", action="version", version=f"facecycle {__version__}")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU threads for torch (default 0 = auto: $OMP_NUM_THREADS, else the cores that other "
                             "processes leave free when the command starts)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"facecycle.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"facecycle.commands.{name}":
                continue  # verb not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.threads < 0:
        parser.error("--threads must be >= 0 (0 = auto)")
    try:
        if args.command in COMPUTE_COMMANDS:
            from facecycle.hardware import apply_threads

            apply_threads(args.threads)
        return int(args.func(args) or 0)
    except FacecycleError as exc:
        print(f"facecycle {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Stopping: a further Ctrl-C or SIGTERM must not turn the exit (interpreter shutdown
        # included) into a traceback; the checkpoint, if any, is already written.
        for kind in (signal.SIGINT, signal.SIGTERM):
            signal.signal(kind, signal.SIG_IGN)
        print(f"facecycle {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
