"""The `winograd` inference backend (issue 15): PyTorch with the wide 3×3 convolutions computed by
Winograd F(2×2, 3×3): equal to PyTorch to float rounding, the caller's generator untouched, what
`auto` picks for generators ONNX Runtime does not run, and the CLI flag in a real subprocess."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from conftest import facecycle_cmd, write_blobs
from facecycle.build import build_generator
from facecycle.config import Config
from facecycle.inference.backends import with_backend
from facecycle.inference.loading import LoadedGenerator
from facecycle.inference.translate import translate_tensor
from facecycle.ops.winograd import WinogradConv2d
from tiny import tiny_run_dir


def _generator(**model) -> LoadedGenerator:
    """A 64-wide, one-block generator: its residual block has the 256 channels Winograd takes."""
    config = Config.from_dict({"data": {"crop_size": 32, "load_size": 36},
                               "model": {"gen_width": 64, "gen_blocks": 1, **model}}).validate()
    torch.manual_seed(0)
    net = build_generator(config).eval()
    return LoadedGenerator(net, "a2b", 3, 4, 32, config.to_dict(), Path("x.pt"))


def _winograd_layers(generator: LoadedGenerator) -> int:
    return sum(type(m) is WinogradConv2d for m in generator.net.modules())


@pytest.mark.parametrize("model", [{}, {"attention_mask": True}])
def test_winograd_matches_torch_and_leaves_the_callers_generator_alone(model) -> None:
    generator = _generator(**model)
    fast = with_backend(generator, "winograd")
    assert fast is not generator and _winograd_layers(fast) == 2 and _winograd_layers(generator) == 0
    x = torch.rand(3, 3, 40, 52) * 2 - 1
    assert torch.allclose(translate_tensor(fast, x), translate_tensor(generator, x), atol=1e-5)


def test_auto_uses_winograd_where_onnxruntime_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    attention = _generator(attention_mask=True)
    assert _winograd_layers(with_backend(attention, "auto")) == 2  # ONNX Runtime cannot run its mask
    assert with_backend(attention, "auto", precision="bf16") is attention  # bf16 stays PyTorch's own
    plain = _generator()
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "onnxruntime" else object())
    assert _winograd_layers(with_backend(plain, "auto")) == 2  # no onnxruntime installed


def test_narrow_generators_have_nothing_to_switch() -> None:
    config = Config.from_dict({"data": {"crop_size": 32, "load_size": 36},
                               "model": {"gen_width": 8, "gen_blocks": 1}}).validate()
    generator = LoadedGenerator(build_generator(config).eval(), "a2b", 3, 4, 32, config.to_dict(), Path("x.pt"))
    assert with_backend(generator, "winograd") is generator


def test_cli_translate_with_the_winograd_backend(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                 cli_env: dict[str, str]) -> None:
    run_dir = tiny_run_dir(tmp_path_factory)
    write_blobs(tmp_path / "in", 2, (40, 40), seed=5, bright=False)
    outputs = {}
    for backend in ("torch", "winograd"):
        out = tmp_path / backend
        done = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(run_dir), "--input", str(tmp_path / "in"),
                                            "--output", str(out), "--backend", backend, "--device", "cpu"),
                              env=cli_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs[backend] = sorted(p.read_bytes() for p in out.rglob("*.png"))
    assert len(outputs["winograd"]) == 2 and outputs["winograd"] == outputs["torch"]  # narrow: nothing switched
