"""`facecycle train`: resolve the config, validate, then train (or resume) a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from facecycle.runtime import RUN_CONFIG

if TYPE_CHECKING:
    import torch

    from facecycle.training.trainer import ConditionalTrainer


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a CycleGAN on two unpaired image folders (or resume one)",
                              description="Train a CycleGAN. Precedence: defaults < --config < flags < --set.")
    p.add_argument("--data-a", help="folder of domain-A images (any nesting)")
    p.add_argument("--data-b", help="folder of domain-B images")
    p.add_argument("--dataroot", help="reference CycleGAN layout: DIR/trainA and DIR/trainB (instead of --data-a/-b; "
                                      "DIR/testA and DIR/testB, when present, are the held-out folders)")
    p.add_argument("--masks-a", help="folder of face masks for A (same relative names, .png)")
    p.add_argument("--masks-b", help="folder of face masks for B")
    p.add_argument("--data", help="conditional mode: folder of images (label paths are relative to it)")
    p.add_argument("--labels", help="conditional mode: labels CSV (OpenFace AUxx_c/AUxx_r columns or a class "
                                    "column; see configs/conditional_au.yaml)")
    p.add_argument("--run-dir", required=True, help="where checkpoints, samples and stats.jsonl go")
    p.add_argument("--config", help="YAML preset (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set loss.identity=0 (repeatable)")
    p.add_argument("--size", type=int, help="crop size in pixels (load size becomes 286/256 of it)")
    p.add_argument("--steps", type=int, help="total generator updates")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--until-step", type=int, default=None,
                   help="stop (with a checkpoint) at this step without changing the LR schedule; continue later with --resume")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve_train_config(args: argparse.Namespace):
    """Config for this invocation; with --resume the run's stored config is the base."""
    from facecycle.config import load_yaml, resolve, size_flags
    from facecycle.errors import ConfigError

    run_dir = Path(args.run_dir)
    eval_flags = dataroot_flags(args)
    flags = {"data.data_a": args.data_a, "data.data_b": args.data_b, "data.masks_a": args.masks_a,
             "data.masks_b": args.masks_b, "data.images": args.data, "data.labels": args.labels,
             "train.steps": args.steps, "train.batch_size": args.batch_size,
             "train.device": args.device, **eval_flags}
    flags.update(size_flags(args.size))
    base = None
    if args.resume:
        stored = run_dir / RUN_CONFIG
        if not stored.is_file():
            raise ConfigError(f"--resume: {stored} not found; is {run_dir} a facecycle run directory?")
        base = load_yaml(stored)
    return resolve(args.config, overrides=args.overrides, flags=flags, base=base)


def dataroot_flags(args: argparse.Namespace) -> dict:
    """--dataroot DIR -> args.data_a/data_b = DIR/trainA, DIR/trainB; returns the held-out folder
    settings (DIR/testA, DIR/testB) when both exist."""
    from facecycle.data.layout import reference_folders
    from facecycle.errors import ConfigError

    if not getattr(args, "dataroot", None):
        return {}
    if args.data_a or args.data_b:
        raise ConfigError("--dataroot gives both domains (DIR/trainA, DIR/trainB): drop --data-a/--data-b or --dataroot")
    args.data_a, args.data_b = reference_folders(args.dataroot, "train")
    test_a, test_b = reference_folders(args.dataroot, "test")
    return {"train.eval_data_a": test_a, "train.eval_data_b": test_b} if Path(test_a).is_dir() and Path(test_b).is_dir() else {}


def run(args: argparse.Namespace) -> int:
    from facecycle.errors import ConfigError
    from facecycle.runtime import checkpoints as ckpt

    config = resolve_train_config(args)
    if args.dry_run:
        sys.stdout.write(config.to_yaml())
        return 0
    run_dir = Path(args.run_dir)
    if not args.resume and ckpt.list_checkpoints(run_dir):
        raise ConfigError(f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another --run-dir")

    if config.is_conditional:
        return run_conditional(args, config, run_dir)

    from facecycle.training.distributed import distributed_context

    with distributed_context() as (rank, world_size):
        from facecycle.training.trainer import CycleGANTrainer

        trainer = CycleGANTrainer(config, run_dir, rank=rank, world_size=world_size, progress=not args.quiet)
        # config.yaml is written only once the checkpoint accepted the config: a refused --resume
        # (another architecture) must leave the run as it was.
        path = trainer.resume() if args.resume else None
        if path is None:  # a fresh start: drop what a run killed before its first checkpoint logged
            trainer.logger.truncate_after(0)
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / RUN_CONFIG).write_text(config.to_yaml())
            if path is not None:
                print(f"resumed from {path} at step {trainer.step} (epoch {trainer.epoch}, lr_g {trainer.sched_G.lr:.3g})")
        attach_evaluator(trainer)
        if rank == 0:
            print(f"training on {trainer.device} ({world_size} process(es)): {len(trainer.domain_a)} images in A, "
                  f"{len(trainer.domain_b)} in B, {config.train.steps} steps -> {run_dir}")
        last = trainer.fit(until_step=args.until_step)
        if rank == 0:
            print(f"done: step {trainer.step}, {last.get('images_per_s', float('nan')):.2f} images/s per domain; "
                  f"checkpoints in {run_dir / ckpt.CHECKPOINT_DIR}")
    return 0


def attach_evaluator(trainer) -> None:
    """Periodic held-out evaluation when train.eval_every > 0 (failures are logged, never fatal)."""
    t = trainer.config.train
    if not t.eval_every:
        return
    from facecycle.evaluation.held_out import load_sample
    from facecycle.evaluation.periodic import PeriodicEvaluator

    d = trainer.config.data
    # Without dedicated held-out folders the sample comes from the training folders: fine for
    # tracking progress and picking the best checkpoint, not for reporting generalisation.
    held_a = load_sample(t.eval_data_a or d.data_a, t.eval_images, d.crop_size, d.channels, "held-out A folder")[0]
    held_b = load_sample(t.eval_data_b or d.data_b, t.eval_images, d.crop_size, d.channels, "held-out B folder")[0]
    metrics = [m.strip() for m in t.eval_metrics.split(",") if m.strip()]
    trainer.evaluator = PeriodicEvaluator(held_a, held_b, metrics=metrics)
    trainer.score_higher_is_better = trainer.evaluator.higher_is_better


def run_conditional(args: argparse.Namespace, config, run_dir: Path) -> int:
    """Conditional mode (train.mode=conditional): one generator G(x, c), one critic with a condition
    head; under torchrun, one process per device like CycleGAN mode."""
    from facecycle.runtime import checkpoints as ckpt
    from facecycle.training.distributed import distributed_context

    with distributed_context() as (rank, world_size):
        from facecycle.training.trainer import ConditionalTrainer

        trainer = ConditionalTrainer(config, run_dir, rank=rank, world_size=world_size, progress=not args.quiet)
        table = trainer.table
        if table.has_problems and rank == 0:
            print(table.summary(), file=sys.stderr)
        path = trainer.resume() if args.resume else None  # before writing: a refused resume changes nothing
        if path is None:  # a fresh start: drop what a run killed before its first checkpoint logged
            trainer.logger.truncate_after(0)
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / RUN_CONFIG).write_text(trainer.config.to_yaml())  # with the resolved label columns
            if path is not None:
                print(f"resumed from {path} at step {trainer.step} (epoch {trainer.epoch}, lr_g {trainer.sched_G.lr:.3g})")
            print(f"training a conditional model on {trainer.device} ({world_size} process(es)): {len(table)} "
                  f"labelled images, {len(trainer.columns)} {trainer.kind} condition(s) ({', '.join(trainer.columns)}), "
                  f"{trainer.config.train.steps} steps -> {run_dir}")
        attach_conditional_evaluator(trainer)
        last = trainer.fit(until_step=args.until_step)
        if rank == 0:
            print(f"done: step {trainer.step}, {last.get('images_per_s', float('nan')):.2f} images/s; "
                  f"checkpoints in {run_dir / ckpt.CHECKPOINT_DIR}")
    return 0


def attach_conditional_evaluator(trainer: "ConditionalTrainer") -> None:
    """Conditional mode's periodic held-out evaluation when train.eval_every > 0: every held-out
    image translated to each target expression (train.eval_expressions, default every one the
    model takes), scored per expression and averaged ("mean/<score>"); failures are logged, never
    fatal. Held-out images: train.eval_data_a, else evenly spaced labelled training images."""
    t = trainer.config.train
    if not t.eval_every:
        return
    from facecycle.data.expressions import expression_targets
    from facecycle.data.labels import parse_columns
    from facecycle.errors import ConfigError
    from facecycle.evaluation.periodic_conditional import MEAN, ConditionalPeriodicEvaluator

    names = parse_columns(t.eval_expressions) or None
    targets = expression_targets(trainer.columns, trainer.kind, names)  # a name the model cannot take fails here
    prefixes = [*targets, MEAN]
    if t.best_metric.split("/", 1)[0] not in prefixes or "/" not in t.best_metric:
        raise ConfigError(f"train.best_metric '{t.best_metric}': this run's evaluation scores are named "
                          f"'<target>/<score>' with target one of {', '.join(prefixes)} "
                          f"(e.g. mean/{t.best_metric.rsplit('/', 1)[-1]}); set train.best_metric or train.eval_expressions")
    metrics = [m.strip() for m in t.eval_metrics.split(",") if m.strip()]
    evaluator = ConditionalPeriodicEvaluator(_conditional_held_out(trainer), targets, metrics=metrics)
    trainer.evaluator = evaluator
    trainer.score_higher_is_better = evaluator.higher_is_better


def _conditional_held_out(trainer: "ConditionalTrainer") -> "torch.Tensor":
    """`(N, C, S, S)` in [-1, 1]: train.eval_data_a's images, else evenly spaced labelled training images."""
    from facecycle.evaluation.held_out import load_files, load_sample

    t, d = trainer.config.train, trainer.config.data
    if t.eval_data_a:
        return load_sample(t.eval_data_a, t.eval_images, d.crop_size, d.channels, "held-out folder")[0]
    # Without a held-out folder the sample is the training images: fine for tracking progress and
    # picking the best checkpoint, not for reporting generalisation.
    return load_files(sorted(trainer.table.paths), t.eval_images, d.crop_size, d.channels,
                      "labelled training images", str(d.labels))[0]
