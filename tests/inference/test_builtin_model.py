"""The built-in `smile` model works right after install, with no training: Translator, the CLI
(`translate --model smile --faces`) and `serve` with no checkpoint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import facecycle_cmd
from facecycle.zoo import BUILTIN_MODELS

SMILE = BUILTIN_MODELS["smile"]


@pytest.fixture(scope="module")
def portrait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real colour photo with one face (scikit-image's astronaut, public domain) as a JPEG."""
    skdata = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).save(path, quality=95)
    return path


def test_smile_ships_with_the_package() -> None:
    assert SMILE.available(), f"missing {[str(SMILE.path(d)) for d in SMILE.files]}"
    total = sum(SMILE.path(d).stat().st_size for d in SMILE.files)
    assert total < 25 * 2**20
    card = SMILE.card.read_text()
    assert "target-expression rate" in card and "neutral -> happy" in card


def test_translator_loads_smile_and_edits_only_inside_the_mask() -> None:
    """Both directions load from safetensors (data only); a grayscale face changes where the mask
    opens and keeps the input's own pixels outside the face (the mask prior)."""
    from facecycle import Translator

    translator = Translator.load("smile")
    assert translator.directions == ("a2b", "b2a") and translator.info()["source"] == SMILE.files["a2b"]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96]
    face = 128 + 60 * np.exp(-((xx - 48) ** 2 + (yy - 52) ** 2) / 900.0) + rng.normal(0, 6, (96, 96))
    image = Image.fromarray(face.clip(0, 255).astype(np.uint8))
    for direction in ("a2b", "b2a"):
        out = np.asarray(translator.translate(image, direction=direction)).astype(int)
        source = np.asarray(image).astype(int)
        assert out.shape == source.shape
        assert np.array_equal(out[:8, :8], source[:8, :8])  # a corner: outside the face, untouched
        assert np.abs(out - source).max() > 10  # and something did change


def test_cli_translate_with_the_builtin_model_on_a_photo(portrait: Path, tmp_path: Path, cli_env: dict) -> None:
    pytest.importorskip("mediapipe")
    done = subprocess.run(facecycle_cmd("translate", "--model", "smile", "--input", str(portrait),
                                        "--output", str(tmp_path / "out"), "--faces"),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = np.asarray(Image.open(tmp_path / "out" / "astronaut.png").convert("RGB")).astype(int)
    source = np.asarray(Image.open(portrait).convert("RGB")).astype(int)
    assert result.shape == source.shape
    face = np.abs(result[100:180, 180:270] - source[100:180, 180:270]).mean()  # her face
    corner = np.abs(result[:80, :80] - source[:80, :80]).mean()  # the wall behind her
    assert face > 0.5 and corner < 0.5


def test_serve_without_a_checkpoint_serves_smile() -> None:
    import httpx

    from serve_helpers import free_port, wait_until_up
    import os

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(facecycle_cmd("serve", "--port", str(port)), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        info = httpx.get(url + "/api/info", timeout=10).json()
        assert info["source"] == SMILE.files["a2b"] and info["directions"] == ["a2b", "b2a"]
        buffer = __import__("io").BytesIO()
        Image.new("RGB", (64, 64), (120, 100, 90)).save(buffer, format="PNG")
        reply = httpx.post(url + "/api/translate", files={"file": ("x.png", buffer.getvalue(), "image/png")}, timeout=60)
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    finally:
        process.terminate()
        process.wait(timeout=10)
