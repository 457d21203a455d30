"""Face-off training stage: the face recipe (or `--config`) on the split crops, resumable.

`steps` is the length of the whole schedule (LR decay included); `minutes` caps the wall
clock of *this* invocation: training stops with a checkpoint when it runs out, and the same
command later continues from that checkpoint with the schedule unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path

from facecycle.runtime import RUN_CONFIG
from facecycle.runtime import checkpoints as ckpt


def train_run(data_root: Path, run_dir: Path, *, config: str, steps: int | None, minutes: float | None,
              size: int | None, overrides: list[str], device: str, quiet: bool) -> dict:
    """Train (or continue) the run in `run_dir` on `data_root/train{A,B}`.

    Returns {"step", "steps", "complete", "checkpoint", "resumed_from"}; `complete` is False
    when `minutes` ran out first (run the command again to continue).
    """
    from facecycle.config import load_yaml, resolve, size_flags
    from facecycle.data.layout import reference_folders
    from facecycle.training.trainer import CycleGANTrainer

    resume = bool(ckpt.list_checkpoints(run_dir))
    (data_a, data_b), (test_a, test_b) = reference_folders(data_root, "train"), reference_folders(data_root, "test")
    flags = {"data.data_a": data_a, "data.data_b": data_b, "train.steps": steps, "train.device": device,
             **size_flags(size)}
    if Path(test_a).is_dir() and Path(test_b).is_dir():
        flags.update({"train.eval_data_a": test_a, "train.eval_data_b": test_b})
    base = load_yaml(run_dir / RUN_CONFIG) if resume and (run_dir / RUN_CONFIG).is_file() else None
    cfg = resolve(config, overrides=list(overrides), flags=flags, base=base)
    trainer = CycleGANTrainer(cfg, run_dir, progress=not quiet)
    resumed = trainer.resume() if resume else None
    if resumed is None:
        trainer.logger.truncate_after(0)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_CONFIG).write_text(cfg.to_yaml())
    total = cfg.train.steps
    if minutes is None:
        trainer.fit()
    else:
        deadline = time.monotonic() + 60.0 * minutes
        chunk = 5
        while trainer.step < total and time.monotonic() < deadline:
            start, first = time.monotonic(), trainer.step
            trainer.fit(until_step=min(total, trainer.step + chunk))
            rate = (trainer.step - first) / max(time.monotonic() - start, 1e-6)
            # Next slice: about a tenth of what is left, so the overrun past the deadline stays small.
            chunk = max(1, int(rate * max(deadline - time.monotonic(), 0.0) / 10))
    last = ckpt.list_checkpoints(run_dir)[-1]
    return {"step": trainer.step, "steps": total, "complete": trainer.step >= total,
            "checkpoint": str(last), "resumed_from": None if resumed is None else str(resumed)}
