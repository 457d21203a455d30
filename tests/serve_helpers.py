"""Helpers for the tests that talk to `facecycle serve`: a TestClient on a Translator, a real
server subprocess on a free port, and the headless Chromium the browser tests drive.

Importing this skips the importing test (module) where the serve extra (fastapi, httpx) is absent.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from conftest import facecycle_cmd

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def client_for(translator, pipeline=None, **limits):
    """A TestClient; use it as a context manager so that requests share one event loop and
    worker threads (a fresh thread per request costs torch a slow thread-pool start)."""
    from fastapi.testclient import TestClient

    from facecycle.serve.app import ServeOptions, TranslatorPipeline, create_app

    options = ServeOptions(**limits)
    return TestClient(create_app(pipeline or TranslatorPipeline(translator, options.max_size), options))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(url + "/api/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not start in time")


@contextlib.contextmanager
def serving(checkpoint: Path, max_upload_mb: str) -> Iterator[str]:
    """`facecycle serve` in a real subprocess on a free localhost port; yields its base URL."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(facecycle_cmd("serve", "--checkpoint", str(checkpoint), "--port", str(port),
                                             "--max-upload-mb", max_upload_mb),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium_path() -> str:
    for candidate in (os.environ.get("FACECYCLE_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no Chromium found (apt-get install chromium, or set FACECYCLE_CHROMIUM)")
