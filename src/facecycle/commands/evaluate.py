"""`facecycle evaluate`: translate held-out images with a trained model and score them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="score a model: FID/KID, LPIPS, SSIM/PSNR, identity, expression",
                              description="Translate images of the source domain and compare with the target domain. "
                                          "Writes into --out: report.html (one page for all evaluated directions: "
                                          "metric table, sample grids, links) and metrics.json (all directions), "
                                          "plus a2b/ and b2a/ with each direction's own report.html, metrics.json, "
                                          "sample grid and loss curves.")
    p.add_argument("--checkpoint", help="run directory or checkpoint file (both generators, or a conditional model)")
    p.add_argument("--data-a", help="held-out images of domain A")
    p.add_argument("--data-b", help="held-out images of domain B")
    p.add_argument("--dataroot", help="reference CycleGAN layout: DIR/testA and DIR/testB (instead of --data-a/-b)")
    p.add_argument("--out", required=True, help="folder for report.html, metrics.json and the a2b/, b2a/ reports")
    p.add_argument("--direction", default="both", choices=["a2b", "b2a", "both"])
    p.add_argument("--metrics", default=None,
                   help="comma-separated: fid,kid,lpips,ssim,ms_ssim,psnr,identity,expression,au,inception_score "
                        "(default fid,kid,lpips,ssim,psnr; conditional models: expression,identity,kid,lpips)")
    p.add_argument("--max-images", type=int, default=500, help="per domain (evenly spaced over the sorted files)")
    p.add_argument("--target-expression", default=None,
                   help="expression of domain B for the expression/au metrics, e.g. happy (b2a uses --source-expression)")
    p.add_argument("--source-expression", default=None, help="expression of domain A (target of b2a)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="keep the FID/KID Inception features of the real image sets in DIR (.npy, keyed by the "
                        "images' content), so repeated evaluations against the same held-out sets compute them once")
    cond = p.add_argument_group("conditional models (train.mode=conditional): translate --data to each expression")
    cond.add_argument("--data", help="held-out images to translate (instead of --data-a/--data-b)")
    cond.add_argument("--expressions", default=None,
                      help="comma-separated targets, e.g. joy,sadness (presets or class names; default: every "
                           "expression the model takes)")
    cond.add_argument("--labels", default=None,
                      help="labels CSV of real photos (the model's label format): FID/KID compare each expression's "
                           "translations with the photos labelled with it (default: the run's data.labels)")
    video = p.add_argument_group("videos: temporal consistency of a translated video (no model needed)")
    video.add_argument("--video-in", help="the original video")
    video.add_argument("--video-out", help="its translation (same frame count, e.g. from translate --faces or faceoff); "
                                           "writes flicker figures to --out/metrics.json")
    p.set_defaults(func=run)


def held_out_folders(args: argparse.Namespace) -> tuple[str, str]:
    """--data-a/--data-b, or DIR/testA and DIR/testB from --dataroot DIR."""
    from facecycle.data.layout import reference_folders
    from facecycle.errors import ConfigError

    if args.dataroot:
        if args.data_a or args.data_b:
            raise ConfigError("--dataroot gives both domains (DIR/testA, DIR/testB): drop --data-a/--data-b or --dataroot")
        return reference_folders(args.dataroot, "test")
    if not (args.data_a and args.data_b):
        raise ConfigError("both held-out domains are needed: pass --data-a DIR and --data-b DIR, or --dataroot DIR "
                          "(with testA/ and testB/)")
    return args.data_a, args.data_b


def run_videos(args: argparse.Namespace) -> int:
    """--video-in/--video-out: flicker of a translated video inside the face region."""
    import json

    from facecycle.errors import ConfigError
    from facecycle.evaluation.flicker import video_flicker

    if not (args.video_in and args.video_out):
        raise ConfigError("video evaluation needs both --video-in (the original) and --video-out (its translation)")
    metrics = video_flicker(args.video_in, args.video_out)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"video": {"input": args.video_in, "output": args.video_out,
                                                            **metrics}}, indent=2) + "\n")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    print(f"video: {shown}")
    print(f"metrics: {(out / 'metrics.json').resolve()} (grey levels; flicker = output change minus input change "
          "inside the face, lower is better)")
    return 0


def run(args: argparse.Namespace) -> int:
    from facecycle.errors import ConfigError
    from facecycle.inference.evaluate import evaluate_checkpoint

    if args.video_in or args.video_out:
        return run_videos(args)
    if not args.checkpoint:
        raise ConfigError("pass --checkpoint RUN_DIR_OR_FILE (or --video-in/--video-out to measure a translated video)")
    from facecycle.inference.loading import model_mode

    if model_mode(args.checkpoint) == "conditional":
        return run_conditional(args)
    if args.data or args.expressions or args.labels:
        raise ConfigError("--data, --expressions and --labels apply to conditional models; this is a two-domain "
                          "CycleGAN: pass --data-a and --data-b")
    if args.metrics is None:
        args.metrics = "fid,kid,lpips,ssim,psnr"
    data_a, data_b = held_out_folders(args)
    directions = ["a2b", "b2a"] if args.direction == "both" else [args.direction]
    results = evaluate_checkpoint(args.checkpoint, data_a, data_b, args.out, directions,
                                  [m.strip() for m in args.metrics.split(",") if m.strip()], args.max_images,
                                  {"a2b": args.target_expression, "b2a": args.source_expression},
                                  args.device, args.batch_size, args.feature_cache)
    print_results(results, args.out, "direction", lambda direction, _: direction)
    return 0


def print_results(results: dict[str, dict], out: str, per: str, heading: Callable[[str, dict], str]) -> None:
    """One line of numeric scores per evaluated set (`heading(name, result)`: its label), its
    warnings and unavailable metrics, then where the reports are."""
    for name, result in results.items():
        shown = ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items() if isinstance(v, (int, float)))
        print(f"{heading(name, result)}: {shown}")
        for warning in result.get("warnings", []):
            print(f"  warning: {warning}")
        for metric, reason in result.get("unavailable", {}).items():
            print(f"  {metric}: unavailable ({reason})")
    print(f"report: {Path(out).resolve() / 'report.html'} (per {per}: "
          + ", ".join(f"{n}/report.html" for n in results) + ")")


def run_conditional(args: argparse.Namespace) -> int:
    """A conditional checkpoint: translate --data to each expression and score each set."""
    from facecycle.errors import ConfigError
    from facecycle.inference.evaluate import CONDITIONAL_METRICS, evaluate_conditional

    data = args.data or args.data_a
    if not data or (args.data and args.data_a) or args.data_b or args.dataroot:
        raise ConfigError("a conditional model translates one held-out folder to each expression: pass --data DIR "
                          "(not --data-a/--data-b/--dataroot)")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else list(CONDITIONAL_METRICS)
    expressions = [e.strip() for e in args.expressions.split(",") if e.strip()] if args.expressions else None
    results = evaluate_conditional(args.checkpoint, data, args.out, expressions, metrics, args.labels,
                                   args.max_images, args.device, args.batch_size, args.feature_cache)
    print_results(results, args.out, "expression", lambda name, result: f"to {name} ({result['target']['condition']})")
    return 0
