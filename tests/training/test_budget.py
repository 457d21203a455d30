"""Wall-clock budgets: the re-plan rule (bounded, LR continuous across a re-plan in the decay)
and a real budgeted run that ends on its plan with the schedule decayed to zero."""

from __future__ import annotations

from pathlib import Path

import torch

from facecycle.config import Config, with_values
from facecycle.training.budget import fit_within, next_plan, replanned_decay
from facecycle.training.schedule import linear_decay_factor
from tiny import tiny_model


def test_one_slow_window_cannot_shrink_the_run() -> None:
    # 1000 steps planned, 200 done; the machine got 100x slower: the cut is bounded to 30 %.
    assert next_plan(200, 1000, rate=0.01, remaining=600, max_cut=0.3) == 700
    # Faster than planned: grows, at most to twice the plan.
    assert next_plan(200, 1000, rate=2.0, remaining=300) == 800
    assert next_plan(200, 1000, rate=100.0, remaining=300) == 2000
    # Never below the steps already done.
    assert next_plan(900, 1000, rate=0.0, remaining=0, max_cut=0.5) == 902


def test_a_replan_keeps_the_learning_rate_continuous() -> None:
    # Before the decay: the decay keeps its fraction of the run.
    assert replanned_decay(100, 1000, 500, 1400) == 700
    # Inside the decay (step 700 of 1000, decay 500: LR factor 0.6), longer and shorter plans
    # continue from the same LR and still reach 0 at their new end.
    for new_total in (800, 900, 1200):
        decay = replanned_decay(700, 1000, 500, new_total)
        assert decay <= new_total
        assert abs(linear_decay_factor(700, new_total, decay) - 0.6) < 0.01, new_total
        assert linear_decay_factor(new_total, new_total, decay) == 0.0
    # A plan so long that the slope would start before step 0 is capped (the config's bound).
    assert replanned_decay(950, 1000, 500, 2000) == 2000
    assert replanned_decay(100, 1000, 0, 2000) == 0  # no decay stays no decay


def test_budgeted_run_ends_on_its_plan_with_marks(blob_domains: tuple[Path, Path], tmp_path: Path) -> None:
    from facecycle.training.trainer import CycleGANTrainer

    a, b = blob_domains
    config = with_values(Config(), data={"data_a": str(a), "data_b": str(b), "crop_size": 32, "load_size": 32},
                         model=tiny_model(blocks=1),
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
    for step, total in summary["replans"]:  # every re-plan bounded
        assert max(int(previous * 0.7), step + 2) <= total <= 2 * previous
        previous = total
    assert trainer.step == trainer.config.train.steps == summary["steps"]
    assert trainer.opt_G.param_groups[0]["lr"] == 0.0  # the schedule still decayed to zero
