"""`facecycle evaluate` and in-training evaluation with a best checkpoint, through the CLI."""

from __future__ import annotations

import json
import subprocess

from conftest import facecycle_cmd
from tiny import train
from facecycle.runtime.checkpoints import load_file


def test_training_evaluates_and_keeps_best_checkpoint(blob_domains, tmp_path, cli_env) -> None:
    a, b = blob_domains
    run_dir = tmp_path / "run"
    train(a, b, run_dir, cli_env, "--steps", "4", "--set", "train.eval_every=2", "--set", "train.eval_metrics=ssim,psnr",
          "--set", "train.eval_images=4", "--set", "train.best_metric=ab/psnr_cycle")
    records = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_ab/psnr_cycle" in r]
    assert [r["step"] for r in evals] == [2, 4]
    best = load_file(run_dir / "checkpoints" / "best.pt")
    assert best["best"]["metric"] == "ab/psnr_cycle"
    # PSNR: higher is better, so best.pt is the step with the larger value.
    scores = {r["step"]: r["eval_ab/psnr_cycle"] for r in evals}
    assert best["best"]["step"] == max(scores, key=scores.get)
    assert best["counters"]["step"] == best["best"]["step"]


def test_score_directions() -> None:
    from facecycle.evaluation.metrics import higher_is_better

    assert higher_is_better("ab/psnr_cycle") and higher_is_better("ba/ssim_cycle")
    assert higher_is_better("ab/expression_target_rate") and higher_is_better("ab/identity_same_rate")
    assert not higher_is_better("ab/kid_x100") and not higher_is_better("ab/fid")
    assert not higher_is_better("ab/lpips_input_output") and not higher_is_better("ab/identity_distance")


def test_every_reported_score_declares_its_direction() -> None:
    import pytest
    import torch

    from facecycle.errors import FacecycleError
    from facecycle.evaluation.metrics import evaluate_translations, higher_is_better, score_direction

    torch.manual_seed(0)
    x, y, r = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3))
    result = evaluate_translations(x, y, reconstructions=r, metrics=("ssim", "ms_ssim", "psnr"))
    assert set(result["metrics"]) == {"ssim_input_output", "ssim_cycle", "ms_ssim_input_output", "ms_ssim_cycle",
                                      "psnr_cycle"}
    assert all(score_direction(f"ab/{name}") is True for name in result["metrics"])
    assert higher_is_better("ab/au_change_relevant") and higher_is_better("ba/au_change_AU12")
    assert score_direction("ab/no_such_score") is None
    with pytest.raises(FacecycleError, match="no_such_score"):
        higher_is_better("ab/no_such_score")


def test_evaluate_writes_metrics_and_report(blob_domains, tmp_path, cli_env) -> None:
    a, b = blob_domains
    run_dir = tmp_path / "run"
    train(a, b, run_dir, cli_env, "--steps", "2")
    out = tmp_path / "eval"
    proc = subprocess.run(facecycle_cmd("evaluate", "--checkpoint", str(run_dir), "--data-a", str(a), "--data-b", str(b),
                                        "--out", str(out), "--metrics", "kid,lpips,ssim,psnr,inception_score"),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary) == {"a2b", "b2a"}
    for direction in ("a2b", "b2a"):
        metrics = summary[direction]
        assert {"kid_x100", "lpips_input_output", "ssim_cycle", "psnr_cycle"} <= set(metrics)
        html = (out / direction / "report.html").read_text()
        assert "Metrics" in html and "Warnings" in html
    assert "inception_score: unavailable" in proc.stdout
    proc = subprocess.run(facecycle_cmd("evaluate", "--checkpoint", str(run_dir), "--data-a", str(a), "--data-b", str(b),
                                        "--out", str(out), "--metrics", "fidd"), env=cli_env, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown metric(s) fidd" in proc.stderr
