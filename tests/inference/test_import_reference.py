"""`facecycle import-reference`: reference CycleGAN generator files -> a facecycle model, output for output.

The reference networks come from `reference_layout` (the reference's module layout, written for
these tests); their state dicts are saved with torch.save like the reference's `save_networks`.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import facecycle_cmd
from reference_layout import RefResnet, RefUnet, randomise
from facecycle.cli import main
from facecycle.errors import CheckpointError
from facecycle.inference.loading import load_generator
from facecycle.inference.reference import detect_architecture, write_imported_model
from facecycle.inference.translator import Translator


def save(net: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def ref_output(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("name,make,side", [
    ("resnet_9blocks", lambda norm: RefResnet(3, 8, 9, norm), 32),
    ("resnet_6blocks", lambda norm: RefResnet(3, 8, 6, norm), 32),
    ("unet_128", lambda norm: RefUnet(3, 4, 7, norm), 128),
    ("unet_256", lambda norm: RefUnet(3, 2, 8, norm), 256),
])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_import_matches_the_reference_network(tmp_path, name, make, side, norm) -> None:
    ref = randomise(make(norm), seed=len(name))
    path = save(ref, tmp_path / "latest_net_G_A.pth")
    arch = detect_architecture(torch.load(path, weights_only=True))
    assert arch.reference_name == name and arch.norm == norm and arch.width == ref.state_dict()[
        "model.1.weight" if name.startswith("resnet") else "model.model.0.weight"].shape[0]
    write_imported_model(tmp_path / "model", {"a2b": path})
    generator = load_generator(tmp_path / "model", "a2b", "cpu")
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = ref_output(ref, x)
    assert expected.std() > 0.05  # not saturated: the comparison sees every layer
    torch.testing.assert_close(generator.net(x), expected, rtol=1e-4, atol=1e-5)


def test_dropout_blocks_and_legacy_instance_norm_statistics(tmp_path) -> None:
    # use_dropout shifts the residual blocks' second conv to index 6; PyTorch 0.4-era reference
    # checkpoints carry running statistics for instance norm, which the reference ignores.
    ref = randomise(RefResnet(1, 8, 6, "instance_stats", dropout=True), seed=3)
    path = save(ref, tmp_path / "G.pth")
    assert any(k.endswith("running_mean") for k in torch.load(path, weights_only=True))
    write_imported_model(tmp_path / "model", {"b2a": path}, crop_size=64)
    translator = Translator.load(tmp_path / "model", device="cpu")
    assert translator.directions == ("b2a",) and translator.direction == "b2a"  # the one direction it holds
    assert translator.channels == 1 and translator.crop_size == 64
    x = torch.rand(1, 1, 24, 20) * 2 - 1
    ref.train()  # instance statistics, dropout off below: what the reference's test.py computes
    for m in ref.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    torch.testing.assert_close(translator.generators["b2a"].net(x), ref_output(ref, x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_cli_import_both_directions_then_translate_export_serve(tmp_path, cli_env) -> None:
    g_a, g_b = randomise(RefResnet(3, 8, 6, "instance"), 1), randomise(RefResnet(3, 8, 6, "instance"), 2)
    folder = tmp_path / "checkpoints" / "horse2zebra"
    save(g_a, folder / "latest_net_G_A.pth")
    save(g_b, folder / "latest_net_G_B.pth")
    save(g_a, folder / "latest_net_D_A.pth")  # discriminators sit in the same folder; they are ignored
    model = tmp_path / "model"
    proc = subprocess.run(facecycle_cmd("import-reference", "--from", str(folder), "--out", str(model)),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resnet_6blocks" in proc.stdout and "a2b and b2a" in proc.stdout

    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (36, 28, 3), dtype=np.uint8))
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo.save(inputs / "p.png")
    x = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = ((ref_output(g_b, x)[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    proc = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(model), "--input", str(inputs),
                                        "--output", str(tmp_path / "out"), "--direction", "b2a"),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = np.asarray(Image.open(tmp_path / "out" / "p.png")).astype(float)
    assert np.abs(got - expected).max() <= 0.51  # equal up to rounding to 8 bits

    translator = Translator.load(model, device="cpu")
    assert translator.directions == ("a2b", "b2a")
    exported = tmp_path / "g_b.safetensors"
    proc = subprocess.run(facecycle_cmd("export", "--checkpoint", str(model), "--direction", "b2a",
                                        "--output", str(exported)), env=cli_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.asarray(Translator.load(exported, device="cpu").translate(photo)),
                          np.asarray(translator.translate(photo, direction="b2a")))

    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")
    from fastapi.testclient import TestClient

    from facecycle.serve.app import ServeOptions, TranslatorPipeline, create_app

    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    options = ServeOptions()
    with TestClient(create_app(TranslatorPipeline(translator, options.max_size), options)) as client:
        response = client.post("/api/translate", files={"file": ("p.png", buffer.getvalue(), "image/png")},
                               data={"direction": "a2b"})
    assert response.status_code == 200, response.text
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(response.content))), np.asarray(translator.translate(photo)))


def test_files_that_do_not_fit_get_clear_errors(tmp_path, cli_env, capsys) -> None:
    # A fork's "resnet_9blocks+" (upsample + conv instead of transposed convs) keeps the key names
    # but not the shapes: the error says what does not fit, never a traceback.
    ref = RefResnet(3, 8, 6, "instance")
    for index in (16, 19):  # the two transposed convs -> 3x3 convs of the same channels
        old = ref.model[index]
        ref.model[index] = torch.nn.Conv2d(old.in_channels, old.out_channels, 3)
    bad = save(ref, tmp_path / "plus.pth")
    with pytest.raises(CheckpointError, match=r"does not match facecycle's resnet generator \(shape net\.16\.weight"):
        write_imported_model(tmp_path / "m1", {"a2b": bad})
    torch.save({"step": torch.tensor(1), "lr": torch.tensor(0.1)}, tmp_path / "other.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_module.pth")
    (tmp_path / "empty").mkdir()
    one = save(RefResnet(3, 8, 6, "instance"), tmp_path / "test_model" / "latest_net_G.pth")
    for args, message in [
        (["--a2b", str(tmp_path / "other.pth")], "not a reference CycleGAN generator"),
        (["--a2b", str(tmp_path / "pickled_module.pth")], "never unpickles code"),
        (["--a2b", str(tmp_path / "missing.pth")], "reference generator file not found"),
        (["--from", str(tmp_path / "empty")], "no latest_net_G_A.pth or latest_net_G_B.pth"),
        (["--from", str(one.parent)], "latest_net_G.pth (a one-direction test model): pass it with --a2b or --b2a"),
        (["--a2b", str(one), "--b2a", str(save(RefUnet(3, 2, 7, "instance"), tmp_path / "u.pth"))],
         "different architectures"),
    ]:
        # The CLI's own entry point in this process (a subprocess per case would only add start-up time)...
        assert main(["import-reference", *args, "--out", str(tmp_path / "m2")]) == 2
        assert message in capsys.readouterr().err, args
    # ... and once as a real subprocess: exit status 2 and the message, no traceback.
    proc = subprocess.run(facecycle_cmd("import-reference", "--a2b", str(tmp_path / "other.pth"), "--out",
                                        str(tmp_path / "m2")), env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a reference CycleGAN generator" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m2").exists()
