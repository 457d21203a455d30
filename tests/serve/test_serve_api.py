"""`facecycle serve`: HTTP status codes and messages (TestClient) and one real uvicorn subprocess."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from serve_helpers import client_for, png_bytes, serving
from tiny import photo, run_dir, translator  # noqa: F401  (run_dir, translator: fixtures)

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")


@pytest.fixture(scope="module")
def client(translator):
    with client_for(translator) as test_client:
        yield test_client


def test_page_is_self_contained(client) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    for marker in ('id="file"', 'id="drop"', 'id="direction"', 'id="before"', 'id="after"', 'id="download"',
                   'id="error"', 'id="faces-opt"', 'id="expression-opt"'):
        assert marker in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html  # works offline


def test_info(client, translator) -> None:
    info = client.get("/api/info").json()
    assert info["directions"] == ["a2b", "b2a"] and info["default_direction"] == "a2b"
    assert info["channels"] == 3 and info["crop_size"] == 32 and info["step"] == 2
    assert info["max_upload_bytes"] == 10 * 1024 * 1024
    assert info["features"] == {"faces": False, "expressions": []}
    assert client.get("/api/health").json() == {"status": "ok"}


@pytest.mark.parametrize("mode,fmt", [("RGB", "PNG"), ("L", "PNG"), ("RGBA", "PNG"), ("RGB", "JPEG")])
def test_translate_returns_png_of_the_upload_size(client, translator, mode: str, fmt: str) -> None:
    image = photo((50, 70), mode)
    data = png_bytes(image, fmt)
    response = client.post("/api/translate", files={"file": ("x", data, "application/octet-stream")},
                           data={"direction": "b2a"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-facecycle-direction"] == "b2a"
    out = Image.open(io.BytesIO(response.content))
    assert out.size == (50, 70)
    expected = translator.translate(Image.open(io.BytesIO(data)), direction="b2a")
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_default_direction(client) -> None:
    response = client.post("/api/translate", files={"file": ("a.png", png_bytes(photo()), "image/png")})
    assert response.status_code == 200 and response.headers["x-facecycle-direction"] == "a2b"


@pytest.mark.parametrize("payload,status,message", [
    (b"hello, not an image", 415, "not an image"),
    (b"%PDF-1.4 fake", 415, "PNG, JPEG"),
    (b"", 400, "empty"),
])
def test_bad_uploads(client, payload: bytes, status: int, message: str) -> None:
    response = client.post("/api/translate", files={"file": ("notes.txt", payload, "image/png")})
    assert response.status_code == status
    assert message in response.json()["error"]
    assert "Traceback" not in response.text


def test_request_errors(client) -> None:
    ok = png_bytes(photo())
    cases = [
        (dict(data={"direction": "b2a"}), 400, "field named 'file'"),
        (dict(files={"file": ("a.png", ok)}, data={"direction": "sideways"}), 400, "choose one of: a2b, b2a"),
        (dict(files={"file": ("a.png", ok)}, data={"faces": "true"}), 400, "face mode is not available"),
        (dict(files={"file": ("a.png", ok)}, data={"expression": "happy"}), 400, "not conditional"),
        (dict(files={"file": ("t.png", png_bytes(photo((6, 40))))}), 400, "at least 8 px"),
        (dict(files={"file": ("t.png", png_bytes(photo())[:200])}), 400, "truncated"),
    ]
    for kwargs, status, message in cases:
        response = client.post("/api/translate", **kwargs)
        assert response.status_code == status, (kwargs.get("data"), response.text)
        assert message in response.json()["error"]
    response = client.post("/api/translate", json={"file": "x"})
    assert response.status_code == 400
    assert client.get("/nowhere").status_code == 404


def test_too_large_uploads_get_413(translator) -> None:
    client = client_for(translator, max_upload_bytes=3000, max_pixels=100_000)
    big = np.random.default_rng(0).integers(0, 255, (60, 60, 3), np.uint8)  # ~11 KB PNG of noise
    data = png_bytes(Image.fromarray(big))
    assert len(data) > 3000
    response = client.post("/api/translate", files={"file": ("big.png", data, "image/png")})
    assert response.status_code == 413
    assert "2.93 KB limit" in response.json()["error"] and "--max-upload-mb" in response.json()["error"]

    # A body far beyond the limit is refused from its Content-Length ...
    huge = b"\x89PNG" + bytes(200_000)
    response = client.post("/api/translate", files={"file": ("huge.png", huge, "image/png")})
    assert response.status_code == 413

    # ... and a chunked body without a length is cut off while streaming.
    def chunks() -> Iterator[bytes]:
        boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        yield boundary
        for _ in range(50):
            yield bytes(10_000)
        yield b"\r\n--xyz--\r\n"

    response = client.post("/api/translate", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert response.status_code == 413

    # A small file that decodes to too many pixels (decompression bomb) is refused too.
    bomb = png_bytes(Image.new("L", (1000, 1000)))
    assert len(bomb) < 3000
    response = client.post("/api/translate", files={"file": ("bomb.png", bomb, "image/png")})
    assert response.status_code == 413 and "megapixels" in response.json()["error"]


def test_feature_hooks_reach_the_pipeline(translator) -> None:
    """A pipeline that declares face mode and expressions gets them per request, and /api/info says so."""
    from facecycle.serve.app import RequestOptions, TranslatorPipeline

    class MirrorFaces(TranslatorPipeline):
        features = {"faces": True, "expressions": ["happy", "sad"]}

        def __call__(self, image: Image.Image, direction: str, options: RequestOptions) -> Image.Image:
            out = self.translator.translate(image, direction=direction)
            if options.faces:
                out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            return out if options.expression != "sad" else out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)

    with client_for(translator, pipeline=MirrorFaces(translator)) as client:
        assert client.get("/api/info").json()["features"] == {"faces": True, "expressions": ["happy", "sad"]}
        image = photo((40, 30))
        plain = np.asarray(translator.translate(image))
        response = client.post("/api/translate", files={"file": ("a.png", png_bytes(image))},
                               data={"faces": "true", "expression": "sad"})
    assert response.status_code == 200
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(response.content))), plain[::-1, ::-1])


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[str]:
    with serving(run_dir, "0.5") as url:
        yield url


def test_real_server_subprocess(server: str) -> None:
    import httpx

    info = httpx.get(server + "/api/info").json()
    assert info["max_upload_bytes"] == 512 * 1024 and info["directions"] == ["a2b", "b2a"]
    response = httpx.post(server + "/api/translate", files={"file": ("odd.png", png_bytes(photo((51, 37))))},
                          data={"direction": "b2a"}, timeout=30)
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (51, 37)
    response = httpx.post(server + "/api/translate", files={"file": ("a.txt", b"plain text")}, timeout=30)
    assert response.status_code == 415 and "not an image" in response.json()["error"]
    response = httpx.post(server + "/api/translate", files={"file": ("big.png", bytes(700_000))}, timeout=30)
    assert response.status_code == 413 and "0.5 MB" in response.json()["error"]


def test_serve_refuses_a_busy_port(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from facecycle.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--checkpoint", str(run_dir), "--port", str(port)]) == 2
    assert "choose another --port" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(run_dir), "--max-upload-mb", "0"]) == 2


def test_face_mode_pastes_translated_faces_and_rejects_photos_without_one(translator) -> None:
    from skimage.data import astronaut

    from facecycle.serve.app import FacePipeline

    photo = Image.fromarray(astronaut()).resize((256, 256))
    with client_for(translator, FacePipeline(translator, max_size=None)) as face_client:
        assert face_client.get("/api/info").json()["features"]["faces"] is True
        upload = io.BytesIO()
        photo.save(upload, format="PNG")
        response = face_client.post("/api/translate", files={"file": ("a.png", upload.getvalue(), "image/png")},
                                    data={"faces": "true"})
        assert response.status_code == 200, response.text
        result = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
        original = np.asarray(photo).astype(int)
        assert result.shape == original.shape
        changed = np.abs(result - original).sum(axis=2) > 30
        assert changed.any() and not changed[:20, :20].any()  # the face changed, the corner did not
        flat = io.BytesIO()
        Image.new("RGB", (64, 64), (30, 90, 200)).save(flat, format="PNG")
        response = face_client.post("/api/translate", files={"file": ("sky.png", flat.getvalue(), "image/png")},
                                    data={"faces": "true"})
        assert response.status_code == 400 and "no face found" in response.json()["error"]
