"""CLI verbs: each module has add_parser(subparsers) and run(args); options shared by several
verbs are added and applied by the helpers here."""

from __future__ import annotations

import argparse
import os


def add_trust_torchscript(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-torchscript", action="store_true",
                        help="load a TorchScript file (.ts) that this installation did not export: TorchScript is "
                             "code and runs when loaded, so only for files from a source you trust")


def apply_trust_torchscript(args: argparse.Namespace) -> None:
    """--trust-torchscript: set in the environment, so the loaders see it here and in any worker process."""
    if args.trust_torchscript:
        from facecycle.inference.trust import TRUST_ENV

        os.environ[TRUST_ENV] = "1"
