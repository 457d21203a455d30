"""Inference backends (issue 15): ONNX Runtime vs PyTorch parity, the export cache, `auto`'s
choices, the CLI flag in a real subprocess, and a clear error without onnxruntime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import facecycle_cmd, write_blobs
from tiny import tiny_run_dir

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run_dir(tmp_path_factory)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """facecycle's own folder (the ONNX cache lives in it) for this test only."""
    monkeypatch.setenv("FACECYCLE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_onnxruntime_matches_torch_and_caches_the_export(run_dir: Path, home: Path) -> None:
    from facecycle.inference.backends import with_backend
    from facecycle.inference.exported import OnnxGenerator
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_tensor

    reference = load_generator(run_dir, "a2b", "cpu")
    ort_gen = with_backend(reference, "onnxruntime")
    assert isinstance(ort_gen.net, OnnxGenerator) and reference.net is not ort_gen.net
    assert (ort_gen.direction, ort_gen.channels, ort_gen.step) == (reference.direction, reference.channels, 2)
    cached = sorted((home / "onnx").glob("a2b-*.onnx"))
    assert len(cached) == 1
    torch.manual_seed(0)
    for shape in [(1, 3, 32, 32), (3, 3, 33, 45), (2, 3, 9, 13)]:
        x = torch.rand(*shape) * 2 - 1
        diff = (translate_tensor(ort_gen, x) - translate_tensor(reference, x)).abs().max().item()
        assert diff < 1e-4, (shape, diff)
    # Same weights again: the cached file is reused, not rewritten.
    stamp = cached[0].stat().st_mtime_ns
    with_backend(load_generator(run_dir, "a2b", "cpu"), "onnxruntime")
    assert sorted((home / "onnx").glob("*.onnx")) == cached and cached[0].stat().st_mtime_ns == stamp
    # Other weights: another cache entry.
    other = load_generator(run_dir, "b2a", "cpu")
    with_backend(other, "onnxruntime")
    assert len(list((home / "onnx").glob("*.onnx"))) == 2


def test_auto_and_strict_choices(run_dir: Path, home: Path) -> None:
    from facecycle.errors import ConfigError
    from facecycle.inference.backends import with_backend
    from facecycle.inference.exported import OnnxGenerator
    from facecycle.inference.loading import load_generator

    generator = load_generator(run_dir, "a2b", "cpu")
    assert with_backend(generator, "torch") is generator
    assert isinstance(with_backend(generator, "auto").net, OnnxGenerator)  # CPU, fp32, plain ResNet
    assert with_backend(generator, "auto", precision="bf16") is generator  # bf16 is PyTorch's
    with pytest.raises(ConfigError, match="fp32 only"):
        with_backend(generator, "onnxruntime", precision="bf16")
    assert isinstance(with_backend(generator, "onnxruntime", precision="auto").net, OnnxGenerator)
    with pytest.raises(ConfigError, match="unknown backend"):
        with_backend(generator, "tensorrt")


def test_missing_onnxruntime_names_the_extra(run_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facecycle.errors import MissingExtraError
    from facecycle.inference.backends import with_backend
    from facecycle.inference.loading import load_generator

    generator = load_generator(run_dir, "a2b", "cpu")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"facecycle\[export\]") as info:
        with_backend(generator, "onnxruntime")
    assert "--backend onnxruntime" in str(info.value)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "onnxruntime" else object())
    assert with_backend(generator, "auto") is generator  # auto quietly keeps PyTorch


def test_translator_api_backend(run_dir: Path, home: Path) -> None:
    from facecycle.inference.exported import OnnxGenerator
    from facecycle.inference.translator import Translator

    rgb = np.random.default_rng(0).integers(0, 256, (36, 52, 3), dtype=np.uint8)
    plain = Translator.load(run_dir, device="cpu")
    fast = Translator.load(run_dir, device="cpu", backend="onnxruntime")
    assert all(isinstance(g.net, OnnxGenerator) for g in fast.generators.values())
    for direction in ("a2b", "b2a"):
        a = np.asarray(plain.translate(rgb, direction=direction), dtype=np.int16)
        b = np.asarray(fast.translate(rgb, direction=direction), dtype=np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1  # float rounding may flip one 8-bit level


def test_cli_backend_flag(run_dir: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    images = tmp_path / "in"
    write_blobs(images, 3, (40, 36), seed=5, bright=False)
    env = dict(cli_env, FACECYCLE_HOME=str(tmp_path / "home"))
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        done = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(run_dir), "--input", str(images),
                                            "--output", str(out), "--backend", backend),
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs[backend] = [np.asarray(Image.open(p), dtype=np.int16) for p in sorted(out.glob("*.png"))]
    assert len(list((tmp_path / "home" / "onnx").glob("*.onnx"))) == 1
    assert len(outputs["torch"]) == len(outputs["onnxruntime"]) == 3
    for a, b in zip(outputs["torch"], outputs["onnxruntime"]):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1
    bad = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(run_dir), "--input", str(images),
                                       "--output", str(tmp_path / "x"), "--backend", "onnxruntime",
                                       "--precision", "bf16"), env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "fp32 only" in bad.stderr and "Traceback" not in bad.stderr


def test_serve_with_onnxruntime_backend(run_dir: Path, home: Path) -> None:
    """`serve --backend onnxruntime`: the flag parses, and the app answers with ORT's translation."""
    pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")
    import io

    from facecycle.cli import build_parser
    from facecycle.inference.translator import Translator
    from serve_helpers import client_for, png_bytes

    args = build_parser().parse_args(["serve", "--checkpoint", str(run_dir), "--backend", "onnxruntime"])
    assert args.backend == "onnxruntime"
    translator = Translator.load(run_dir, device="cpu", backend=args.backend)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 44, 3), dtype=np.uint8))
    with client_for(translator) as client:
        response = client.post("/api/translate", files={"file": ("a.png", png_bytes(image), "image/png")})
    assert response.status_code == 200, response.text
    served = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.int16)
    expected = np.asarray(Translator.load(run_dir, device="cpu").translate(image), dtype=np.int16)
    assert served.shape == expected.shape and np.abs(served - expected).max() <= 1


def test_attention_generators_stay_on_torch(home: Path) -> None:
    from facecycle.config import Config
    from facecycle.errors import ConfigError
    from facecycle.inference.backends import with_backend
    from facecycle.inference.loading import LoadedGenerator
    from facecycle.build import build_generator

    config = Config.from_dict({"data": {"crop_size": 32, "load_size": 36},
                               "model": {"gen_width": 8, "gen_blocks": 1, "attention_mask": True}}).validate()
    net = build_generator(config).eval()
    generator = LoadedGenerator(net, "a2b", 3, 4, 32, config.to_dict(), Path("x.pt"))
    assert with_backend(generator, "auto") is generator  # its mask and full-size composition need PyTorch
    with pytest.raises(ConfigError, match="AttentionGenerator"):
        with_backend(generator, "onnxruntime")
    assert not (home / "onnx").exists()
