"""In-training evaluation of conditional models: per-expression held-out scores, best.pt, never fatal.

Real tiny training runs on the offline avatars (no mocks); cheap metrics (lpips, ssim) except one
run with the default kid,lpips on a handful of images.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import facecycle_cmd
from facecycle.config import resolve
from facecycle.errors import ConfigError, FacecycleError
from facecycle.runtime.checkpoints import load_file

TINY = ["--size", "32", "--quiet", "--set", "model.gen_width=8", "--set", "model.disc_width=8",
        "--set", "model.gen_blocks=1", "--set", "train.log_every=1", "--batch-size", "2"]
SRC = Path(__file__).resolve().parent.parent / "src" / "facecycle"


@pytest.fixture(scope="module")
def avatars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 labelled training avatars (13 presence AUs) under images/, 4 held-out ones under test/."""
    from facecycle.data.avatars import build_conditional_dataset

    out = tmp_path_factory.mktemp("ceval_avatars") / "avatars"
    build_conditional_dataset(out, n=10, size=32, seed=5, n_test=4)
    return out


def _config(avatars: Path, *overrides: str):
    return resolve("conditional_avatars", overrides=[
        f"data.images={avatars / 'images'}", f"data.labels={avatars / 'labels.csv'}", "data.crop_size=32",
        "data.load_size=32", "model.gen_width=4", "model.disc_width=4", "model.gen_blocks=1", "train.steps=2",
        "train.batch_size=2", "train.sample_every=100", "train.device=cpu", "train.log_every=1", *overrides])


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_cli_run_logs_per_expression_scores_and_keeps_best(avatars: Path, tmp_path: Path, cli_env) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "--config", "conditional_avatars", "--data", str(avatars / "images"), "--labels",
            str(avatars / "labels.csv"), *TINY, "--run-dir", str(run_dir), "--steps", "4",
            "--set", "train.eval_every=2", "--set", "train.eval_metrics=lpips,ssim", "--set", "train.eval_images=4",
            "--set", f"train.eval_data_a={avatars / 'test'}", "--set", "train.eval_expressions=joy,neutral",
            "--set", "train.best_metric=mean/ssim_input_output"]
    proc = subprocess.run(facecycle_cmd(*args), env=cli_env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "not available for conditional" not in proc.stderr
    evals = [r for r in _records(run_dir) if "eval_mean/ssim_input_output" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for record in evals:
        assert {f"eval_{t}/{s}" for t in ("joy", "neutral", "mean")
                for s in ("lpips_input_output", "ssim_input_output")} <= set(record)
        assert all(math.isfinite(v) for k, v in record.items() if k != "step")
        per_target = [record["eval_joy/lpips_input_output"], record["eval_neutral/lpips_input_output"]]
        assert record["eval_mean/lpips_input_output"] == pytest.approx(sum(per_target) / 2)
    best = load_file(run_dir / "checkpoints" / "best.pt")
    assert best["best"]["metric"] == "mean/ssim_input_output" and best["mode"] == "conditional"
    scores = {r["step"]: r["eval_mean/ssim_input_output"] for r in evals}
    assert best["best"]["step"] == max(scores, key=scores.get)  # SSIM: higher is better
    assert best["counters"]["step"] == best["best"]["step"]


def test_default_metrics_choose_best_by_mean_kid(avatars: Path, tmp_path: Path) -> None:
    """Default eval_metrics (kid, lpips) and best_metric: the CycleGAN default reads as mean/kid_x100."""
    from facecycle.commands.train import attach_conditional_evaluator
    from facecycle.training.trainer import ConditionalTrainer

    torch.set_num_threads(1)
    config = _config(avatars, "train.eval_every=2", "train.eval_images=4", "train.eval_expressions=joy")
    trainer = ConditionalTrainer(config, tmp_path / "run", progress=False)
    assert trainer.config.train.best_metric == "mean/kid_x100"
    attach_conditional_evaluator(trainer)
    trainer.fit()
    (record,) = [r for r in _records(tmp_path / "run") if "eval_mean/kid_x100" in r]
    assert {"eval_joy/kid_x100", "eval_joy/lpips_input_output", "eval_mean/lpips_input_output"} <= set(record)
    assert "eval_joy/kid_inputs_x100" not in record  # reals against themselves: no baseline worth logging
    best = load_file(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["best"]["metric"] == "mean/kid_x100" and best["best"]["step"] == 2
    assert "best_metric: mean/kid_x100" in trainer.config.to_yaml()


def test_a_failing_metric_does_not_stop_training(avatars: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """KID with its network file missing: a logged error at each evaluation, training goes on."""
    from facecycle.commands.train import attach_conditional_evaluator
    from facecycle.evaluation.fid import FID_WEIGHTS_ENV
    from facecycle.training.trainer import ConditionalTrainer

    monkeypatch.setenv(FID_WEIGHTS_ENV, str(tmp_path / "no_such_inception.pt"))
    torch.set_num_threads(1)
    config = _config(avatars, "train.eval_every=1", "train.eval_images=2", "train.eval_metrics=kid")
    trainer = ConditionalTrainer(config, tmp_path / "run", progress=False)
    attach_conditional_evaluator(trainer)
    with caplog.at_level(logging.ERROR):
        last = trainer.fit()
    assert trainer.step == 2 and math.isfinite(last["loss_G"])
    assert caplog.text.count("periodic evaluation failed") == 2 and "no_such_inception.pt" in caplog.text
    assert not any(k.startswith("eval_") for r in _records(tmp_path / "run") for k in r)
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()


def test_evaluator_scores_each_target_and_restores_mode() -> None:
    from facecycle.evaluation.periodic_conditional import ConditionalPeriodicEvaluator

    class Shift(nn.Module):
        """G(x, c) = x + 0.5 * mean(c): the target moves the output, a parameter gives a device."""

        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(0.5))

        def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            assert c.shape == (x.shape[0], 2)
            return (x + self.scale * c.mean(dim=1).view(-1, 1, 1, 1)).clamp(-1, 1)

    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 3, 32, 32, generator=g) * 1.6 - 0.8
    evaluator = ConditionalPeriodicEvaluator(real, {"still": torch.zeros(2), "moved": torch.ones(2)},
                                             metrics=("ssim", "lpips"), batch_size=2)
    G = Shift().train()
    scores = evaluator(G)
    assert scores is not None and G.training
    assert scores["still/ssim_input_output"] == pytest.approx(1.0, abs=1e-5)
    assert scores["moved/ssim_input_output"] < scores["still/ssim_input_output"]
    assert scores["mean/ssim_input_output"] == pytest.approx(
        (scores["still/ssim_input_output"] + scores["moved/ssim_input_output"]) / 2)
    assert evaluator.higher_is_better("mean/ssim_input_output")
    assert not evaluator.higher_is_better("moved/lpips_input_output")
    assert evaluator.judged_as == {"still": None, "moved": None}

    with pytest.raises(ConfigError, match="without '/'"):
        ConditionalPeriodicEvaluator(real, {"mean": torch.zeros(2)}, metrics=("ssim",))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        ConditionalPeriodicEvaluator(real, {"up": torch.full((2,), 3.0)}, metrics=("ssim",))
    with pytest.raises(FacecycleError, match="choose from"):
        ConditionalPeriodicEvaluator(real, {"up": torch.ones(2)}, metrics=("ssim", "nope"))


def test_expression_targets_below_inference() -> None:
    from facecycle.data.expressions import classifier_expression, expression_targets
    from facecycle.data import expressions
    from facecycle.inference import targets as inference_targets

    # inference binds targets with the same functions training and evaluation use
    for name in ("target_vector", "expression_values"):
        assert getattr(inference_targets, name) is getattr(expressions, name)
    columns = ["AU01", "AU04", "AU06", "AU12", "AU15"]
    targets = expression_targets(columns, "presence")
    assert list(targets) == ["joy", "sadness", "neutral"]
    assert targets["joy"].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0] and targets["neutral"].sum() == 0
    classes = expression_targets(["angry", "happiness"], "categorical")
    assert {k: v.tolist() for k, v in classes.items()} == {"angry": [1.0, 0.0], "happiness": [0.0, 1.0]}
    assert classifier_expression("happiness") == "happy" and classifier_expression("contempt") is None
    with pytest.raises(ConfigError, match="has no AU02"):
        expression_targets(columns, "presence", ["surprise"])


def test_training_and_evaluation_never_import_inference() -> None:
    offenders = []
    for package in ("training", "evaluation", "data"):
        for path in sorted((SRC / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                offenders += [f"{path.relative_to(SRC)}: {n}" for n in names
                              if n.startswith(("facecycle.inference", "facecycle.commands"))]
    assert offenders == []


def test_config_checks_for_conditional_evaluation(avatars: Path, tmp_path: Path) -> None:
    from facecycle.commands.train import attach_conditional_evaluator
    from facecycle.training.trainer import ConditionalTrainer

    with pytest.raises(ConfigError, match="train.eval_data_b is a CycleGAN-mode setting"):
        _config(avatars, f"train.eval_data_b={avatars / 'test'}")
    with pytest.raises(ConfigError, match="e.g. mean/psnr_cycle"):
        _config(avatars, "train.best_metric=ab/psnr_cycle")
    with pytest.raises(ConfigError, match="eval_expressions is for conditional models"):
        resolve(overrides=["train.eval_expressions=joy"])
    trainer = ConditionalTrainer(_config(avatars, "train.eval_every=1", "train.eval_expressions=contempt"),
                                 tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="has no AU14"):  # the avatars have no dimpler
        attach_conditional_evaluator(trainer)
    trainer = ConditionalTrainer(_config(avatars, "train.eval_every=1", "train.best_metric=happy/kid_x100"),
                                 tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="target one of joy, .*mean"):
        attach_conditional_evaluator(trainer)
