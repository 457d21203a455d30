"""`facecycle demo` end to end in a real subprocess, on a tiny budget: data, training, page."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from conftest import facecycle_cmd

pytest.importorskip("py_avataaars", reason="the demo draws its faces with the [demo] extra")


@pytest.mark.slow
def test_demo_writes_a_page_with_grids_masks_and_facts(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = subprocess.run(
        facecycle_cmd("--threads", "1", "demo", "--out", str(out), "--minutes", "0.6", "--images", "6", "--quiet",
                      "--set", "model.gen_width=8", "--set", "model.disc_width=8"),
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    page = (out / "index.html").read_text()
    facts = json.loads((out / "demo.json").read_text())
    # the recipe and the --set changes are what trained, and every held-out face was translated both ways
    assert facts["recipe"].startswith("faces model.gen_width=16")  # the recipe at demo size ...
    assert facts["recipe"].endswith("model.gen_width=8 model.disc_width=8")  # ... then the user's changes
    assert facts["held-out images a2b"] == facts["held-out images b2a"] == 16
    assert facts["training steps"] >= 2
    for name in re.findall(r'<img src="([^"]+)"', page):
        with Image.open(out / name) as image:
            assert image.width > 64 and image.height > 64, name
    assert "frown &rarr; smile" in page and "mask" in page
    # the held-out grids are input | output | mask triples, the masks really written per image
    assert len(list((out / "masks_a2b").glob("*.png"))) == 16
    with Image.open(out / "grid_a2b.png") as grid, Image.open(out / "data" / "testA" / "000000.png") as face:
        assert face.size == (64, 64)
        assert grid.width >= 2 * 4 * 3 * 64  # x2, 4 columns of triples


def test_demo_rejects_an_unknown_setting(tmp_path: Path) -> None:
    run = subprocess.run(facecycle_cmd("demo", "--out", str(tmp_path / "d"), "--set", "model.no_such=1"),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "no_such" in run.stderr
    assert not (tmp_path / "d" / "run").exists()
