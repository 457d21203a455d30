"""Train for a wall-clock budget instead of a step count (`facecycle demo`, benchmarks/quality.py).

The LR schedule (constant, then linear decay to 0 over `decay_steps`) is defined in steps, so
the number of steps that fit the budget has to be planned from the measured speed. Speed on a
shared machine moves by 2-10x from one minute to the next, so:

* the plan is re-made after every segment (a tenth of the budget) from the *cumulative* rate,
  a long window that one slow minute cannot dominate;
* a re-plan may cut the total by at most `max_cut` of the previous plan (and grow it by at most
  2x), so a burst of load cannot shrink the run to a few hundred steps;
* a re-plan in the decay phase keeps the LR continuous: the remaining steps get a new slope
  from the current LR down to 0 (`replanned_decay`), so a machine that gets faster or slower
  late in the run still ends on time (a fixed plan there missed an 8-minute budget by 14 %).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from facecycle.config import Config, with_values


def calibrate_steps_per_second(config: Config, run_dir: Path, probe_steps: int = 6) -> float:
    """Generator updates per second of `config` on this machine (the first, warm-up step excluded).

    One `fit` call for the timed steps: every `fit(until_step=...)` ends with a checkpoint write,
    which must not be counted once per step."""
    from facecycle.training.trainer import CycleGANTrainer  # the trainer imports nothing from here

    probe = with_values(config, train={"steps": probe_steps + 1, "checkpoint_every": 10**9,
                                       "sample_every": 10**9, "log_every": 10**9})
    trainer = CycleGANTrainer(probe, run_dir, progress=False)
    trainer.logger.enabled = False
    trainer.fit(until_step=1)  # warm-up: allocator, optimizer state
    start = time.perf_counter()
    trainer.fit()
    return probe_steps / (time.perf_counter() - start)


def replanned_decay(step: int, total: int, decay_steps: int, new_total: int) -> int:
    """Decay length for a run re-planned from `total` to `new_total` steps at `step`.

    Before the decay the decay keeps its fraction of the run. Inside it, the LR factor at `step`,
    (total - step) / decay_steps, is kept: the new slope runs from that factor to 0 at
    `new_total` (capped at `new_total`, the config's bound, which can only raise the factor)."""
    if decay_steps <= 0:
        return 0
    if step < total - decay_steps:
        return int(new_total * decay_steps / max(total, 1))
    factor = max(total - step, 0) / decay_steps
    if factor <= 0:
        return min(decay_steps, new_total)
    return min(new_total, max(round((new_total - step) / factor), 1))


def replan(trainer: Any, steps: int) -> None:
    """Set the run's total steps on a live trainer, with the decay from `replanned_decay`."""
    config = trainer.config
    decay = replanned_decay(trainer.step, config.train.steps, config.decay_steps, steps)
    trainer.config = with_values(config, train={"steps": steps, "decay_steps": decay})
    for schedule in (trainer.sched_G, trainer.sched_D):
        schedule.set_plan(steps, decay)


def next_plan(step: int, total: int, rate: float, remaining: float, max_cut: float = 0.3) -> int:
    """The run's new total steps after a segment: what `rate` (steps/s) fits into `remaining`
    seconds, cut by at most `max_cut` of `total`, grown by at most 2x, never below step + 2."""
    wanted = step + int(rate * max(remaining, 0.0))
    return min(max(wanted, int(total * (1 - max_cut)), step + 2), total * 2)


def fit_within(trainer: Any, seconds: float, rate: float, marks: Sequence[float] = (),
               on_mark: Optional[Callable[[float, float], None]] = None, segments: int = 10,
               max_cut: float = 0.3) -> dict[str, Any]:
    """Train `trainer` (a CycleGANTrainer whose schedule is already planned) for about `seconds`.

    rate: a first speed estimate in steps/s (e.g. from a warm probe). marks: times in seconds
    at which `on_mark(mark, elapsed)` is called with a checkpoint of that moment on disk (the
    benchmark's snapshots). Returns {"seconds", "steps", "replans": [(step, total), ...], "last"}.
    """
    marks = sorted(m for m in marks if 0 < m < seconds)
    elapsed = 0.0
    done_at_start = trainer.step
    replans: list[tuple[int, int]] = []
    last: dict[str, float] = {}
    replan(trainer, max(trainer.step + int(rate * seconds), trainer.step + 2))
    while trainer.step < trainer.config.train.steps:
        total = trainer.config.train.steps
        next_time = min([m for m in marks if m > elapsed + 1e-6] + [elapsed + seconds / segments, seconds])
        final = next_time >= seconds
        target = total if final else min(trainer.step + max(int(rate * (next_time - elapsed)), 1), total - 1)
        start = time.perf_counter()
        last = trainer.fit(until_step=target) or last
        elapsed += time.perf_counter() - start
        rate = (trainer.step - done_at_start) / max(elapsed, 1e-9)  # cumulative: a long, robust window
        for mark in [m for m in marks if m <= elapsed + 1e-6]:
            marks.remove(mark)
            if on_mark is not None:
                on_mark(mark, elapsed)
        if not final:
            planned = next_plan(trainer.step, total, rate, seconds - elapsed, max_cut)
            if planned != total:
                replan(trainer, planned)
                replans.append((trainer.step, planned))
    return {"seconds": elapsed, "steps": trainer.step - done_at_start, "replans": replans, "last": last}
