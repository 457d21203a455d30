"""The web demo in a real headless Chromium: upload, drag-and-drop, before/after, download, errors.

Needs the Debian `chromium` package (or FACECYCLE_CHROMIUM=/path/to/chrome) and the Python
`playwright` package; its bundled browsers are never downloaded. Skipped where either is
missing. Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from serve_helpers import CHROMIUM_ARGS, chromium_path, serving
from tiny import photo, tiny_run_dir

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tiny_run_dir(tmp_path_factory), "1") as url:
        yield url


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An odd-sized real photo (the astronaut's face from scikit-image), or a synthetic one."""
    path = tmp_path_factory.mktemp("upload") / "portrait.jpg"
    try:
        from skimage import data

        image = Image.fromarray(data.astronaut()[20:260, 120:330]).resize((181, 203), Image.BICUBIC)
    except ImportError:
        image = photo((181, 203))
    image.save(path, quality=92)
    return path


def natural_size(page, selector: str) -> tuple[int, int]:
    return tuple(page.eval_on_selector(selector, "img => [img.naturalWidth, img.naturalHeight]"))


def wait_for_result(page) -> None:
    page.wait_for_function("document.getElementById('after').classList.contains('ready')", timeout=30_000)


def test_upload_shows_before_and_after_and_downloads(browser, server: str, face_photo: Path, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    requests_outside: list[str] = []
    page.on("request", lambda r: requests_outside.append(r.url)
            if not r.url.startswith((server, "blob:", "data:")) else None)
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#direction option').length === 2")
    assert page.is_hidden("#faces-opt") and page.is_hidden("#expression-opt")  # features off on this server
    assert "resnet generator" in page.inner_text("#model")

    page.set_input_files("#file", str(face_photo))
    wait_for_result(page)
    width, height = Image.open(face_photo).size
    assert natural_size(page, "#before") == (width, height)
    assert natural_size(page, "#after") == (width, height)
    assert page.inner_text("#after-size") == f"{width} × {height}"
    assert page.is_hidden("#error")

    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == "portrait_a2b.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert Image.open(saved).size == (width, height)

    # Another direction re-translates the same photo (a new result object URL each time).
    for direction in ("b2a", "a2b"):
        previous = page.get_attribute("#after", "src")
        page.select_option("#direction", direction)
        page.wait_for_function("(old) => { const a = document.getElementById('after');"
                               " return a.classList.contains('ready') && a.src !== old; }", arg=previous)
        assert natural_size(page, "#after") == (width, height)
        assert page.get_attribute("#download", "download") == f"portrait_{direction}.png"
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_demo.png"), full_page=True)
    assert requests_outside == []  # nothing loaded from the network
    page.close()


def test_drag_and_drop(browser, server: str) -> None:
    page = browser.new_page()
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#direction option').length === 2")
    import io

    buffer = io.BytesIO()
    photo((64, 47), seed=4).save(buffer, format="PNG")
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    }""", base64.b64encode(buffer.getvalue()).decode())
    wait_for_result(page)
    assert natural_size(page, "#after") == (64, 47)
    assert "dropped.png" in page.inner_text("#drop")
    page.close()


def test_errors_are_shown_on_the_page(browser, server: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 600})
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#direction option').length === 2")

    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    page.set_input_files("#file", str(not_image))
    page.wait_for_selector("#error.show")
    assert "not an image" in page.inner_text("#error")
    assert page.is_hidden("#after") and page.get_attribute("#download", "aria-disabled") == "true"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_demo_error.png"))

    too_big = tmp_path / "huge.png"
    too_big.write_bytes(bytes(1_300_000))  # over the server's 1 MB limit: refused before uploading
    page.set_input_files("#file", str(too_big))
    page.wait_for_function("document.getElementById('error').textContent.includes('1.0 MB')")
    assert "accepts uploads up to 1.0 MB" in page.inner_text("#error")

    # The page recovers: a good photo clears the error.
    good = tmp_path / "ok.png"
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(good)
    page.set_input_files("#file", str(good))
    wait_for_result(page)
    assert page.is_hidden("#error") and natural_size(page, "#after") == (40, 30)
    page.close()
