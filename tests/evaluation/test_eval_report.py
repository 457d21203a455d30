"""evaluate_translations, PeriodicEvaluator and the HTML report, end to end on small tensors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from facecycle.errors import FacecycleError
from facecycle.evaluation import PeriodicEvaluator, evaluate_translations, write_report
from facecycle.evaluation.inputs import to_batch


def _images(n: int, seed: int, channels: int = 3, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) * 2 - 1


class Brighten(nn.Module):
    """A 'generator' with one parameter, so the evaluator can find its device and mode."""

    def __init__(self, amount: float) -> None:
        super().__init__()
        self.amount = nn.Parameter(torch.tensor(amount))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.amount).clamp(-1, 1)


def test_evaluate_translations_cheap_metrics(blob_domains: tuple[Path, Path]) -> None:
    a_dir, b_dir = blob_domains
    real_a = to_batch(a_dir)
    fake_b = (real_a + 0.3).clamp(-1, 1)
    result = evaluate_translations(a_dir, fake_b, b_dir, reconstructions=real_a, metrics=["ssim", "psnr", "lpips", "kid"],
                                   size=(40, 40))
    m, s = result["metrics"], result["samples"]
    assert m["ssim_cycle"] == pytest.approx(1.0) and m["ssim_input_output"] < 1.0
    assert m["psnr_cycle"] == pytest.approx(100.0)
    assert m["lpips_cycle"] == pytest.approx(0.0, abs=1e-6) and m["lpips_input_output"] > 0
    assert s["ssim_cycle"] == 6 and s["kid_x100"] == "6 vs 6"
    assert result["counts"] == {"inputs": 6, "outputs": 6, "targets": 6, "reconstructions": 6}
    assert any("KID" in w for w in result["warnings"])
    json.dumps(result)  # JSON-ready


def test_unknown_metric_and_missing_roles_are_explained() -> None:
    x = _images(2, 0)
    with pytest.raises(FacecycleError, match="choose from"):
        evaluate_translations(x, x, metrics=["fud"])
    result = evaluate_translations(x, x, metrics=["fid", "psnr", "expression", "inception_score"])
    assert set(result["unavailable"]) == {"fid", "psnr", "expression", "inception_score"}
    assert result["metrics"] == {}


def test_periodic_evaluator_scores_both_directions_and_restores_mode() -> None:
    g_ab, g_ba = Brighten(0.2), Brighten(-0.2)
    g_ab.train()
    g_ba.eval()
    evaluator = PeriodicEvaluator(_images(4, 1), _images(3, 2, channels=3), metrics=("ssim", "psnr", "lpips"), batch_size=2)
    scores = evaluator(g_ab, g_ba)
    assert scores is not None
    assert {"ab/ssim_cycle", "ba/ssim_cycle", "ab/psnr_cycle", "ab/lpips_input_output"} <= set(scores)
    assert all(isinstance(v, float) for v in scores.values())
    assert g_ab.training and not g_ba.training


def test_periodic_evaluator_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("out of memory, say")

    evaluator = PeriodicEvaluator(_images(2, 1), _images(2, 2), metrics=("ssim",))
    with caplog.at_level(logging.ERROR):
        assert evaluator(Broken(), Brighten(0.0)) is None
    assert "periodic evaluation failed" in caplog.text and "out of memory" in caplog.text
    with pytest.raises(FacecycleError):
        PeriodicEvaluator(_images(2, 1), _images(2, 2), metrics=("ssim", "nope"))


def test_report_renders_all_sections(tmp_path: Path) -> None:
    x = _images(3, 0, channels=1)
    y = _images(3, 1, channels=3, size=32)  # different size and channels: resized for the grid
    result = evaluate_translations(x, (x + 0.1).clamp(-1, 1), reconstructions=x, metrics=["ssim", "psnr"])
    result["warnings"].append("FID from 3 vs 3 images (< 2048 per side) is biased upwards")
    stats = tmp_path / "run" / "stats.jsonl"
    stats.parent.mkdir()
    lines = [json.dumps({"step": i * 10, "epoch": 0, "lr_g": 2e-4, "loss_G": 3.0 - 0.1 * i, "loss_D_a": 0.5, "loss_cycle_a": 1.0 / (i + 1)})
             for i in range(8)]
    stats.write_text("\n".join(lines) + "\n{\"step\": 80, \"loss_G\": 2.1\n")  # last line cut by a crash

    page = write_report(tmp_path / "eval", result, samples={"input": x, "output": y, "reconstruction": x}, stats_path=stats)
    text = page.read_text()
    for section in ("id='warnings'", "id='metrics'", "id='samples'", "id='losses'"):
        assert section in text
    assert "biased upwards" in text and "ssim_cycle" in text and "psnr_cycle" in text
    assert "loss_G" in text and "loss_D_a" in text and "loss_cycle_a" in text and "lr_g" not in text
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["ssim_cycle"] == pytest.approx(1.0)
    grid = Image.open(tmp_path / "eval" / "samples.png")
    assert grid.width > 3 * 48 and grid.height > 3 * 48
    assert Image.open(tmp_path / "eval" / "losses.png").width > 100


def test_report_without_samples_or_stats(tmp_path: Path) -> None:
    page = write_report(tmp_path, {"metrics": {"fid": 12.5}, "samples": {"fid": "10 vs 10"}})
    text = page.read_text()
    assert "No samples given" in text and "No training statistics" in text and "12.5" in text
