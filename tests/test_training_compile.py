"""`train.compile` off|on|auto (issue 15): config values (old booleans included), the decision
per device and toolchain, and a real torch.compile run: within float tolerance of eager, same
checkpoint keys (no `_orig_mod.`), resumable eagerly."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from facecycle.config import Config
from facecycle.errors import ConfigError
from facecycle.training import checkpoint as ckpt
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
    assert trainer.compiled is False and trainer._train_fwd["G_ab"] is trainer.G_ab
    trainer.fit()
    assert trainer.step == 1


@pytest.mark.slow
def test_compiled_training_matches_eager_and_checkpoints_stay_plain(data, tmp_path) -> None:  # noqa: F811
    """Real inductor compile (needs a C++ compiler): 2 steps compiled vs eager from the same seed."""
    from facecycle.training.compile import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("no C++ compiler for torch.compile's CPU backend")
    a, b = data
    probe = torch.rand(2, 3, 32, 32) * 2 - 1
    results = {}
    for mode in ("off", "on"):
        torch.manual_seed(0)
        trainer = CycleGANTrainer(tiny(a, b, steps=3, compile=mode), tmp_path / mode, progress=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(until_step=2)
        # An eager fallback would void the comparison.
        assert not [w for w in caught if "running eagerly" in str(w.message)], [str(w.message) for w in caught]
        assert trainer.compiled is (mode == "on")
        with torch.no_grad():
            results[mode] = [trainer.G_ab(probe), trainer.G_ba(probe), trainer.D_a(probe)[0], trainer.D_b(probe)[0]]
    for x, y in zip(results["off"], results["on"]):
        assert torch.allclose(x, y, atol=1e-4), (x - y).abs().max()
    saved = {mode: ckpt.load_file(ckpt.list_checkpoints(tmp_path / mode)[-1]) for mode in ("off", "on")}
    for name in ("G_ab", "G_ba", "D_a", "D_b"):
        assert list(saved["on"]["nets"][name]) == list(saved["off"]["nets"][name])
        assert not any("_orig_mod" in key for key in saved["on"]["nets"][name])
    # A compiled run resumes eagerly (and vice versa: the keys are the same).
    resumed = CycleGANTrainer(tiny(a, b, steps=3, compile="off"), tmp_path / "on", progress=False)
    resumed.resume()
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 3
