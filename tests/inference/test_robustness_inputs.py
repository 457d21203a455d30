"""Hostile and odd inputs (robustness issue): foreign TorchScript, pixel bombs, EXIF rotation,
tiny images in a folder, many image sizes in one folder, busy server."""

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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run_dir(tmp_path_factory)


class Foreign(torch.nn.Module):
    """A TorchScript module that facecycle did not write: it returns its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0


def foreign_torchscript(run_dir: Path, folder: Path) -> Path:
    """A `.ts` carrying a real export's facecycle.json, as an attacker would copy it (B12)."""
    from facecycle.inference.export import export_generator
    from facecycle.inference.exported import read_metadata
    from facecycle.inference.loading import load_generator

    real = export_generator(load_generator(run_dir, "a2b", "cpu"), folder / "real.ts", "torchscript")
    meta = read_metadata(real)
    path = folder / "foreign.ts"
    torch.jit.save(torch.jit.script(Foreign()), str(path), _extra_files={"facecycle.json": json.dumps(meta)})
    return path


def test_foreign_torchscript_is_refused_unless_trusted(run_dir: Path, tmp_path: Path, cli_env: dict) -> None:
    from facecycle import Translator
    from facecycle.errors import CheckpointError

    foreign = foreign_torchscript(run_dir, tmp_path)
    Translator.load(tmp_path / "real.ts")  # exported by this installation: loads
    with pytest.raises(CheckpointError, match="TorchScript, which is code"):
        Translator.load(foreign)
    trusted = Translator.load(foreign, trust_torchscript=True)
    image = Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    assert np.array_equal(np.asarray(trusted.translate(image)), np.asarray(image))  # it is the foreign module

    photo = tmp_path / "in.png"
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(photo)
    cmd = facecycle_cmd("translate", "--checkpoint", str(foreign), "--input", str(photo), "--output", str(tmp_path / "o"))
    refused = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "--trust-torchscript" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "o").exists()
    allowed = subprocess.run(cmd + ["--trust-torchscript"], env=cli_env, capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "o" / "in.png").is_file()


def test_pixel_limit_is_read_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B5/B6: an 8000x8000 PNG of one colour is 60 KB on disk; it is refused before decoding,
    with a message naming the file, its size and how to raise the limit."""
    from facecycle.data.images import load_image, usable_images
    from facecycle.errors import DataError

    bomb = tmp_path / "bomb.png"
    Image.new("L", (8000, 8000), 7).save(bomb)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(DataError, match=r"bomb\.png is 8000x8000 .*FACECYCLE_MAX_PIXELS"):
        load_image(bomb)
    Image.new("RGB", (30, 20), (1, 2, 3)).save(tmp_path / "ok.png")
    with pytest.warns(UserWarning, match=r"bomb\.png \(8000x8000 is over the 50 MP limit"):
        assert usable_images(tmp_path, "folder") == [tmp_path / "ok.png"]
    monkeypatch.setenv("FACECYCLE_MAX_PIXELS", "500")
    with pytest.raises(DataError, match="30x20"):
        load_image(tmp_path / "ok.png")
    monkeypatch.setenv("FACECYCLE_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match="FACECYCLE_MAX_PIXELS must be a number"):
        load_image(tmp_path / "ok.png")


def test_decompression_bomb_beyond_pil_ceiling_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B6: PIL's own DecompressionBombError (not an OSError) becomes the same clear DataError."""
    from facecycle.data.images import load_image
    from facecycle.errors import DataError

    path = tmp_path / "big.png"
    Image.new("L", (300, 300), 0).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # PIL refuses above 2x this
    monkeypatch.setenv("FACECYCLE_MAX_PIXELS", "10000000")
    with pytest.raises(DataError, match=r"cannot read image .*big\.png"):
        load_image(path)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """B8: a phone portrait stored sideways (Orientation=6) is processed upright."""
    from facecycle.data.images import load_image

    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "portrait.jpg"
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.size == (20, 40)  # upright: taller than wide
    upright = np.asarray(image)
    assert upright[:20].mean() > 200 and upright[20:].mean() < 50  # the white half is now on top


def test_translate_folder_skips_tiny_images(run_dir: Path, tmp_path: Path) -> None:
    """B7: a 1x1 PNG among good images is reported, the rest is translated."""
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_folder

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    for i in range(2):
        Image.fromarray(np.full((24, 30, 3), 40 * i, np.uint8)).save(folder / f"good{i}.png")
    result = translate_folder(load_generator(run_dir, "a2b", "cpu"), folder, tmp_path / "out")
    assert sorted(p.name for p in result["written"]) == ["good0.png", "good1.png"]
    assert [(p.name, "1x1" in why) for p, why in result["failed"]] == [("dot.png", True)]


def test_translate_folder_holds_at_most_one_batch(run_dir: Path, tmp_path: Path) -> None:
    """B14: with every image a different size, results are written while the folder is still
    being read (the old code held all of them until the end). Deleting the last input when the
    first result is written shows it: that file is then reported missing."""
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_folder

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((20 + i, 20 + i, 3), 30 * i, np.uint8)).save(folder / f"img{i}.png")
    last = folder / "img5.png"

    def on_item(src: Path, dst: Path) -> None:
        last.unlink(missing_ok=True)

    result = translate_folder(load_generator(run_dir, "a2b", "cpu"), folder, tmp_path / "out", batch_size=2,
                              on_item=on_item)
    assert len(result["written"]) == 5
    assert [p.name for p, _ in result["failed"]] == ["img5.png"]


def test_serve_answers_busy_beyond_max_waiting(run_dir: Path) -> None:
    """B13: beyond `max_waiting` admitted requests the server answers 503 at once."""
    import threading

    from fastapi.testclient import TestClient

    from facecycle import Translator
    from facecycle.serve.app import ServeOptions, TranslatorPipeline, create_app

    pipeline = TranslatorPipeline(Translator.load(run_dir))
    release = threading.Event()
    entered = threading.Event()
    original = pipeline.__call__

    class Slow(TranslatorPipeline):  # the real pipeline, held until the test lets it go
        def __call__(self, image, direction, options):  # type: ignore[override]
            entered.set()
            release.wait(30)
            return original(image, direction, options)

    slow = Slow.__new__(Slow)
    slow.__dict__.update(pipeline.__dict__)
    client = TestClient(create_app(slow, ServeOptions(max_waiting=1)))
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 24, 3), 100, np.uint8)).save(buffer, format="PNG")
    files = {"file": ("a.png", buffer.getvalue(), "image/png")}
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(r=client.post("/api/translate", files=files)))
    worker.start()
    assert entered.wait(30)
    busy = client.post("/api/translate", files=files)
    assert busy.status_code == 503 and "busy" in busy.json()["error"]
    release.set()
    worker.join(60)
    assert first["r"].status_code == 200
    assert client.post("/api/translate", files=files).status_code == 200  # the slot is free again
