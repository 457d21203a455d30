"""Export: ONNX / TorchScript / safetensors parity with PyTorch, metadata round trip, CLI use."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import facecycle_cmd
from tiny import tiny_run_dir

SIZES = [(32, 32), (50, 70), (33, 45), (9, 13)]  # (H, W): multiples of 4, odd, below the crop size
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts", "safetensors": ".safetensors"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def exports(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The a2b generator of the tiny run in every format."""
    from facecycle.inference.export import export_generator
    from facecycle.inference.loading import load_generator

    generator = load_generator(run_dir, "a2b", "cpu")
    out = tmp_path_factory.mktemp("exports")
    return {fmt: export_generator(generator, out / f"g{suffix}", fmt) for fmt, suffix in SUFFIX.items()}


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_exported_output_equals_pytorch(fmt: str, exports: dict[str, Path], run_dir: Path) -> None:
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_tensor

    reference = load_generator(run_dir, "a2b", "cpu")
    exported = load_generator(exports[fmt], "a2b", "cpu")
    assert exported.direction == "a2b" and exported.step == 2 and exported.channels == 3
    torch.manual_seed(0)
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w) * 2 - 1
        expected = translate_tensor(reference, x)
        assert (translate_tensor(exported, x) - expected).abs().max().item() < 1e-3, (h, w)
        if fmt != "safetensors":
            # The graph itself pads: calling it directly on an odd size gives the same result.
            raw = exported.net(x)
            assert tuple(raw.shape) == (2, 3, h, w)
            assert (raw.clamp(-1, 1) - expected).abs().max().item() < 1e-3, (h, w)


def test_onnx_runs_in_plain_onnxruntime_on_any_size(exports: dict[str, Path], run_dir: Path) -> None:
    """What a user without facecycle does: onnxruntime only, names and shapes from the file."""
    import onnxruntime as ort

    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_tensor

    session = ort.InferenceSession(str(exports["onnx"]), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "image" and out.name == "translated"
    assert inp.shape[0] == "batch" and inp.shape[1] == 3 and inp.shape[2:] == ["height", "width"]
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 37, 61)).astype(np.float32)
    y = session.run(None, {"image": x})[0]
    expected = translate_tensor(load_generator(run_dir, "a2b", "cpu"), torch.from_numpy(x)).numpy()
    assert y.shape == x.shape and np.abs(np.clip(y, -1, 1) - expected).max() < 1e-3


def test_metadata_round_trip(exports: dict[str, Path], run_dir: Path) -> None:
    import onnxruntime as ort

    from facecycle.config import Config
    from facecycle.inference.export import quiet_torchscript
    from facecycle.inference.exported import read_metadata
    from facecycle.runtime.checkpoints import load_latest

    _, state = load_latest(run_dir)
    for fmt, path in exports.items():
        meta = read_metadata(path)
        assert meta["format"] == "facecycle-generator/1"
        assert meta["direction"] == "a2b" and meta["channels"] == "3" and meta["value_range"] == "[-1, 1]"
        assert meta["size_multiple"] == "4" and meta["crop_size"] == "32" and meta["step"] == "2"
        assert meta["pads_input"] == ("false" if fmt == "safetensors" else "true")
        assert meta["facecycle_version"] == __import__("facecycle").__version__
        config = json.loads(meta["config"])
        assert config == state["config"]
        assert Config.from_dict(config).model.gen_width == 8
    # Independent readers: onnxruntime's model metadata and torch.jit's extra files.
    custom = ort.InferenceSession(str(exports["onnx"]), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert custom.custom_metadata_map == read_metadata(exports["onnx"])
    extra = {"facecycle.json": ""}
    with quiet_torchscript():
        torch.jit.load(str(exports["torchscript"]), _extra_files=extra)
    assert json.loads(extra["facecycle.json"]) == read_metadata(exports["torchscript"])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_unet_grayscale_with_attention(fmt: str, tmp_path: Path) -> None:
    """A U-Net (size_multiple 32, so small inputs take the replicate-padding branch), one channel,
    self-attention with a non-zero gate, exported for b2a."""
    from facecycle.config import Config, with_values
    from facecycle.inference.export import export_generator
    from facecycle.inference.loading import generator_from_state, load_generator
    from facecycle.inference.translate import translate_tensor
    from facecycle.build import build_generator

    config = with_values(Config(), data={"channels": 1, "crop_size": 32, "load_size": 32},
                         model={"generator": "unet", "gen_width": 8, "gen_depth": 5, "gen_attention": True})
    torch.manual_seed(0)
    net = build_generator(config)
    net.attention.gamma.data.fill_(0.5)
    reference = generator_from_state(config.to_dict(), net.state_dict(), "b2a", tmp_path / "ref", None, "cpu")
    path = export_generator(reference, tmp_path / f"u{SUFFIX[fmt]}")
    exported = load_generator(path, "b2a", "cpu")
    assert exported.size_multiple == 32 and exported.channels == 1 and exported.step is None
    for h, w in [(9, 13), (40, 33), (64, 64)]:
        x = torch.rand(2, 1, h, w) * 2 - 1
        assert (exported.net(x).clamp(-1, 1) - translate_tensor(reference, x)).abs().max().item() < 1e-3, (h, w)


def test_export_only_holds_its_direction(exports: dict[str, Path]) -> None:
    from facecycle import Translator
    from facecycle.errors import CheckpointError, ConfigError

    translator = Translator.load(exports["onnx"])
    assert translator.directions == ("a2b",)
    out = translator.translate(np.zeros((21, 17, 3), np.uint8))
    assert out.size == (17, 21)
    with pytest.raises(ConfigError, match="export b2a"):
        translator.translate(np.zeros((21, 17, 3), np.uint8), direction="b2a")
    with pytest.raises(CheckpointError, match="--direction a2b"):
        Translator.load(exports["torchscript"], direction="b2a")


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from facecycle.errors import CheckpointError
    from facecycle.inference.loading import load_generator

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="facecycle export"):
        load_generator(tmp_path / "other.safetensors")
    (tmp_path / "broken.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read onnx"):
        load_generator(tmp_path / "broken.onnx")


def test_cli_export_then_translate_with_the_export(run_dir: Path, tmp_path: Path, cli_env: dict) -> None:
    """`facecycle export` -> `facecycle translate --checkpoint model.onnx`, same pixels as the checkpoint."""
    from facecycle import Translator

    model = tmp_path / "model.onnx"
    done = subprocess.run(facecycle_cmd("export", "--checkpoint", str(run_dir), "--direction", "b2a",
                                        "--format", "onnx", "--opset", "17", "--output", str(model)),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pads any H x W" in done.stdout and model.is_file()
    inputs = tmp_path / "in"
    inputs.mkdir()
    images = {"odd.png": Image.fromarray(np.random.default_rng(1).integers(0, 255, (27, 41, 3), np.uint8)),
              "gray.png": Image.fromarray(np.random.default_rng(2).integers(0, 255, (30, 30), np.uint8))}
    for name, image in images.items():
        image.save(inputs / name)
    done = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(model), "--direction", "b2a",
                                        "--input", str(inputs), "--output", str(tmp_path / "out")),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reference = Translator.load(run_dir, device="cpu")
    for name, image in images.items():
        out = np.asarray(Image.open(tmp_path / "out" / name), dtype=np.int16)
        expected = np.asarray(reference.translate(image, direction="b2a"), dtype=np.int16)
        assert out.shape == expected.shape and np.abs(out - expected).max() <= 1


def test_cli_export_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from facecycle.cli import main

    assert main(["export", "--checkpoint", str(run_dir), "--format", "torchscript",
                 "--output", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "reserved for training checkpoints" in err and "m.ts" in err
    assert main(["export", "--checkpoint", str(run_dir), "--output", str(tmp_path / "m.bin")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "missing"), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*.tmp"))
