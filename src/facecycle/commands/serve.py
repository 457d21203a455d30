"""`facecycle serve`: a local web demo (upload a photo, see before/after) and a JSON/HTTP API."""

from __future__ import annotations

import argparse
import sys

from facecycle.commands import add_trust_torchscript, apply_trust_torchscript


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="web demo and HTTP API for a trained or exported generator",
        description="Serve a page at http://HOST:PORT/ (upload or drop a photo, choose the direction, "
                    "download the result) and an API: POST /api/translate (multipart 'file' + "
                    "'direction') -> PNG; GET /api/info -> JSON. Conditional models (train.mode=conditional): the "
                    "page shows an expression menu and one slider per condition; the API takes 'expression' "
                    "(e.g. joy) and/or 'target' (e.g. AU06=1,AU12=1) instead of 'direction'.")
    p.add_argument("--checkpoint", default=None,
                   help="run directory, checkpoint file, exported generator or built-in model name "
                        "(default: the built-in 'smile' model, neutral <-> happy)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it, unauthenticated)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload (default 10 MB)")
    p.add_argument("--max-size", type=int, default=1024,
                   help="translate images whose longer side exceeds this at that size, then resize back "
                        "(0 = always full size)")
    p.add_argument("--max-waiting", type=int, default=8,
                   help="translation requests admitted at once (one computing, the rest queued); more get 503")
    p.add_argument("--direction", default=None, choices=["a2b", "b2a"],
                   help="default direction on the page (default: a2b, or an export's own direction)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="torch", choices=["torch", "winograd", "onnxruntime", "auto"],
                   help="torch (default), winograd (PyTorch with Winograd 3x3 convolutions; CPU, fp32), onnxruntime "
                        "(CPU, fp32; exported to ONNX once and cached; needs the 'export' extra) or auto: ONNX "
                        "Runtime where it runs the model, else winograd on the CPU in fp32, else torch")
    p.add_argument("--faces", action="store_true",
                   help="offer face mode: translate the aligned faces in a photo and paste them back")
    add_trust_torchscript(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    apply_trust_torchscript(args)
    import socket

    from facecycle.errors import ConfigError, require

    if args.max_upload_mb <= 0:
        raise ConfigError("--max-upload-mb must be > 0")
    if args.max_waiting < 1:
        raise ConfigError(f"--max-waiting must be >= 1, got {args.max_waiting}")
    if args.max_size < 0:
        raise ConfigError("--max-size must be >= 0 (0 = full size)")
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    uvicorn = require("uvicorn", "serve", "facecycle serve")
    require("fastapi", "serve", "facecycle serve")
    require("python_multipart", "serve", "facecycle serve (uploads)")
    # Fail before loading the model when the address is unusable.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                              "choose another --port or stop the program using it") from None

    from facecycle.inference.translator import Translator
    from facecycle.serve.app import MB, FacePipeline, ServeOptions, TranslatorPipeline, create_app

    from facecycle.zoo import DEFAULT_MODEL

    translator = Translator.load(args.checkpoint or DEFAULT_MODEL, device=args.device, direction=args.direction,
                                 backend=args.backend)
    options = ServeOptions(max_upload_bytes=int(args.max_upload_mb * MB), max_size=args.max_size or None,
                           max_waiting=args.max_waiting)
    pipeline_class = FacePipeline if args.faces else TranslatorPipeline
    app = create_app(pipeline_class(translator, options.max_size), options)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"facecycle serve: {translator!r}", flush=True)
    print(f"facecycle serve: open http://{shown_host}:{args.port}/  (Ctrl+C to stop)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host} makes the demo reachable from other machines, "
              "without authentication", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
