"""`train.compile` off|on|auto (issue 15): config values (old booleans included), the decision
per device and toolchain, and a real torch.compile run: within float tolerance of eager, same
checkpoint keys (no `_orig_mod.`), resumable eagerly."""

from __future__ import annotations

import warnings

import pytest
import torch

from facecycle.config import Config
from facecycle.errors import ConfigError
from facecycle.runtime import checkpoints as ckpt
from facecycle.training.compile import compile_decision
from facecycle.training.trainer import CycleGANTrainer
from test_speed_trainer import data, tiny  # noqa: F401  (fixture)


@pytest.mark.parametrize("raw, expected", [(True, "on"), (False, "off"), ("on", "on"), ("OFF", "off"),
                                           ("auto", "auto"), ("true", "on"), (0, "off")])
def test_compile_setting_reads_old_booleans_and_new_modes(raw, expected) -> None:
    assert Config.from_dict({"train": {"compile": raw}}).validate().train.compile == expected


def test_unknown_compile_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.compile must be off, on or auto"):
        Config.from_dict({"train": {"compile": "fast"}}).validate()


def test_decision_per_device_and_toolchain(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr("facecycle.training.compile.cxx_compiler", lambda: "/usr/bin/g++")
    assert compile_decision("off", cpu)[0] is False
    assert compile_decision("on", cpu)[0] is True
    assert compile_decision("auto", cpu)[0] is False  # measured: no gain on the CPU (BENCHMARKS.md)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object() if name == "triton" else None)
    assert compile_decision("auto", cuda)[0] is True
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    use, why = compile_decision("auto", cuda)
    assert use is False and "Triton" in why
    monkeypatch.setattr("facecycle.training.compile.cxx_compiler", lambda: None)
    use, why = compile_decision("on", cpu)
    assert use is False and "C++ compiler" in why


def test_on_without_a_compiler_warns_and_trains_eagerly(data, tmp_path, monkeypatch) -> None:  # noqa: F811
    a, b = data
    monkeypatch.setattr("facecycle.training.compile.cxx_compiler", lambda: None)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler.*running eagerly"):
        trainer = CycleGANTrainer(tiny(a, b, steps=1, compile="on"), tmp_path / "run", progress=False)
    assert trainer.compiled is False and trainer.train_fwd["G_ab"] is trainer.G_ab
    trainer.fit()
    assert trainer.step == 1


@pytest.mark.slow
def test_compiled_training_matches_eager_and_checkpoints_stay_plain(data, tmp_path) -> None:  # noqa: F811
    """Real inductor compile (needs a C++ compiler): one generator pass compiled vs eager (outputs
    and weight gradients to float tolerance), then 2 training steps each from the same seed."""
    from facecycle.training.compile import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("no C++ compiler for torch.compile's CPU backend")
    a, b = data
    torch.manual_seed(0)
    trainer = CycleGANTrainer(tiny(a, b, steps=3, compile="on"), tmp_path / "on", progress=False)
    assert trainer.compiled
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    passes = {}
    for name, forward in (("eager", trainer.G_ab), ("compiled", trainer.train_fwd["G_ab"])):
        trainer.G_ab.zero_grad(set_to_none=True)
        out = forward(x)
        out.square().mean().backward()
        passes[name] = (out.detach(), [p.grad.clone() for p in trainer.G_ab.parameters()])
    assert torch.allclose(passes["eager"][0], passes["compiled"][0], atol=1e-5)
    for g_eager, g_compiled in zip(passes["eager"][1], passes["compiled"][1]):
        assert torch.allclose(g_eager, g_compiled, rtol=1e-3, atol=1e-6), (g_eager - g_compiled).abs().max()
    trainer.G_ab.zero_grad(set_to_none=True)

    probe = torch.rand(2, 3, 32, 32) * 2 - 1
    results = {}
    for mode in ("off", "on"):
        torch.manual_seed(0)
        trainer = CycleGANTrainer(tiny(a, b, steps=3, log_every=2, compile=mode), tmp_path / mode, progress=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            last = trainer.fit(until_step=2)
        # An eager fallback would void the comparison.
        assert not [w for w in caught if "running eagerly" in str(w.message)], [str(w.message) for w in caught]
        with torch.no_grad():
            outputs = [trainer.G_ab(probe), trainer.G_ba(probe), trainer.D_a(probe)[0], trainer.D_b(probe)[0]]
        results[mode] = (outputs, last)
    # Two Adam steps amplify rounding differences (Adam divides by the gradient's own scale, so
    # near-zero gradients, e.g. of conv biases before instance norm, move by up to lr either way):
    # the trained nets agree to ~1e-3, not to the 1e-5 of a single pass.
    for x_off, x_on in zip(results["off"][0], results["on"][0]):
        assert torch.allclose(x_off, x_on, atol=1e-2), (x_off - x_on).abs().max()
    for key in ("loss_G", "loss_cycle_a", "loss_D_a"):
        assert abs(results["off"][1][key] - results["on"][1][key]) < 1e-3 * max(1.0, abs(results["off"][1][key]))
    saved = {mode: ckpt.load_file(ckpt.list_checkpoints(tmp_path / mode)[-1]) for mode in ("off", "on")}
    for name in ("G_ab", "G_ba", "D_a", "D_b"):
        assert list(saved["on"]["nets"][name]) == list(saved["off"]["nets"][name])
        assert not any("_orig_mod" in key for key in saved["on"]["nets"][name])
    # A compiled run resumes eagerly (and vice versa: the keys are the same).
    resumed = CycleGANTrainer(tiny(a, b, steps=3, log_every=2, compile="off"), tmp_path / "on", progress=False)
    resumed.resume()
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 3
