"""`train.conv` direct|winograd|auto (issue 15): what auto picks, and real training steps with
Winograd convolutions: within float tolerance of the direct ones, same checkpoint keys, and a run
resumes across the setting."""

from __future__ import annotations

import pytest
import torch

from facecycle.config import Config
from facecycle.errors import ConfigError
from facecycle.hardware import resolve_conv
from facecycle.ops.winograd import WinogradConv2d, set_conv_algorithm
from facecycle.runtime import checkpoints as ckpt
from facecycle.training.trainer import CycleGANTrainer
from test_speed_trainer import data, tiny  # noqa: F401  (fixture)


def wide(a, b, **train) -> Config:
    """The tiny model but 64 wide, so its residual blocks have the 256 channels Winograd takes."""
    return tiny(a, b, model={"gen_width": 64}, **{"steps": 3, "log_every": 2, **train})


def test_auto_is_winograd_for_fp32_on_the_cpu_only() -> None:
    assert resolve_conv("auto", "cpu", "fp32") == "winograd"
    assert resolve_conv("auto", "cpu", "bf16") == "direct"
    assert resolve_conv("auto", "cuda:0", "fp32") == "direct"
    assert resolve_conv("direct", "cpu", "fp32") == "direct"
    assert resolve_conv("winograd", "cuda", "fp16") == "winograd"  # kept; the module runs direct there


def test_unknown_conv_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.conv must be direct, winograd or auto"):
        Config.from_dict({"train": {"conv": "fft"}}).validate()


def test_default_is_direct_and_auto_is_recorded_as_what_ran(data, tmp_path) -> None:  # noqa: F811
    a, b = data
    assert Config().train.conv == "direct"
    trainer = CycleGANTrainer(wide(a, b, steps=1, conv="auto"), tmp_path / "auto", progress=False)
    assert trainer.config.train.conv == "winograd"
    assert sum(type(m) is WinogradConv2d for m in trainer.G_ab.modules()) == 2  # the block's two 256→256
    plain = CycleGANTrainer(wide(a, b, steps=1), tmp_path / "direct", progress=False)
    assert not any(type(m) is WinogradConv2d for net in plain.nets.values() for m in net.modules())


def test_one_generator_pass_matches_direct_to_float_rounding(data, tmp_path) -> None:  # noqa: F811
    a, b = data
    torch.manual_seed(0)
    trainer = CycleGANTrainer(wide(a, b, conv="winograd"), tmp_path / "run", progress=False)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    passes = {}
    for conv in ("winograd", "direct"):
        set_conv_algorithm(trainer.G_ab, conv)
        trainer.G_ab.zero_grad(set_to_none=True)
        out = trainer.G_ab(x)
        out.square().mean().backward()
        passes[conv] = (out.detach(), [p.grad.clone() for p in trainer.G_ab.parameters()])
    assert torch.allclose(passes["winograd"][0], passes["direct"][0], atol=1e-5)
    for g_fast, g_direct in zip(passes["winograd"][1], passes["direct"][1]):
        assert torch.allclose(g_fast, g_direct, rtol=1e-3, atol=1e-6), (g_fast - g_direct).abs().max()


def test_winograd_training_matches_direct_and_resumes_across_the_setting(data, tmp_path) -> None:  # noqa: F811
    a, b = data
    probe = torch.rand(2, 3, 32, 32) * 2 - 1
    results = {}
    for conv in ("direct", "winograd"):
        torch.manual_seed(0)
        trainer = CycleGANTrainer(wide(a, b, conv=conv), tmp_path / conv, progress=False)
        last = trainer.fit(until_step=2)
        assert sum(type(m) is WinogradConv2d for m in trainer.G_ab.modules()) == (2 if conv == "winograd" else 0)
        with torch.no_grad():
            outputs = [trainer.G_ab(probe), trainer.G_ba(probe)]
        results[conv] = (outputs, last)
    # Two Adam steps amplify rounding differences (Adam moves a parameter by up to lr whatever the
    # size of its gradient, so near-zero gradients, e.g. of conv biases before instance norm, move
    # either way): the trained nets agree to ~1e-2 (one pass agrees to 1e-5: the test above).
    for x_direct, x_fast in zip(results["direct"][0], results["winograd"][0]):
        assert torch.allclose(x_direct, x_fast, atol=3e-2), (x_direct - x_fast).abs().max()
    for key in ("loss_G", "loss_cycle_a", "loss_D_a"):
        want = results["direct"][1][key]
        assert abs(results["winograd"][1][key] - want) < 1e-3 * max(1.0, abs(want))
    saved = {conv: ckpt.load_file(ckpt.list_checkpoints(tmp_path / conv)[-1]) for conv in ("direct", "winograd")}
    for name in ("G_ab", "G_ba", "D_a", "D_b"):
        assert list(saved["winograd"]["nets"][name]) == list(saved["direct"]["nets"][name])
    resumed = CycleGANTrainer(wide(a, b, conv="direct"), tmp_path / "winograd",
                              progress=False)
    resumed.resume()
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 3
