"""Wall-clock budgets: the re-plan rule (bounded, only while the LR is constant) and a real
budgeted run that ends on its plan with the schedule decayed to zero."""

from __future__ import annotations

from pathlib import Path

import torch

from facecycle.config import Config, with_values
from facecycle.training.budget import fit_within, next_plan


def test_one_slow_window_cannot_shrink_the_run() -> None:
    # 1000 steps planned, 200 done; the machine got 100x slower: the cut is bounded to 30 %.
    assert next_plan(200, 1000, 500, rate=0.01, remaining=600, max_cut=0.3) == 700
    # Faster than planned: grows, at most to twice the plan.
    assert next_plan(200, 1000, 500, rate=2.0, remaining=300) == 800
    assert next_plan(200, 1000, 500, rate=100.0, remaining=300) == 2000
    # Once the decay has started the plan is fixed (the LR schedule stays constant-then-linear).
    assert next_plan(600, 1000, 500, rate=0.01, remaining=10) == 1000
    # Never below the steps already done.
    assert next_plan(900, 1000, 50, rate=0.0, remaining=0, max_cut=0.5) == 902


def test_budgeted_run_ends_on_its_plan_with_marks(blob_domains: tuple[Path, Path], tmp_path: Path) -> None:
    from facecycle.training.trainer import CycleGANTrainer

    a, b = blob_domains
    config = with_values(Config(), data={"data_a": str(a), "data_b": str(b), "crop_size": 32, "load_size": 32},
                         model={"gen_width": 8, "gen_blocks": 1, "disc_width": 8},
                         train={"steps": 10, "log_every": 1, "checkpoint_every": 10**9, "sample_every": 10**9})
    torch.set_num_threads(1)
    trainer = CycleGANTrainer(config, tmp_path / "run", progress=False)
    seen: list[tuple[float, int]] = []
    # A first estimate of 2 steps/s plans 8 steps; whatever the measured speed on this machine,
    # each re-plan stays within its bounds and the run ends on its plan.
    summary = fit_within(trainer, seconds=4.0, rate=2.0, marks=[1e-4],
                         on_mark=lambda m, e: seen.append((m, len(list((tmp_path / "run" / "checkpoints").glob("*.pt"))))))
    assert seen == [(1e-4, 1)], "the mark fires once, with a checkpoint of that moment on disk"
    previous = 8
    for step, total in summary["replans"]:  # every re-plan bounded, and only before the decay
        assert int(previous * 0.7) <= total <= 2 * previous and step < previous - previous // 2
        previous = total
    assert trainer.step == trainer.config.train.steps == summary["steps"]
    assert trainer.opt_G.param_groups[0]["lr"] == 0.0  # the schedule still decayed to zero
