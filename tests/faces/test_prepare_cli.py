"""`facecycle prepare faces|split` through the real CLI in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import facecycle_cmd

pytest.importorskip("mediapipe")


def run(cli_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(facecycle_cmd(*args), env=cli_env, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def raw_folder(tmp_path: Path, shared_faces: Path) -> Path:
    """3 face photos in two subfolders, a flat image, a broken JPEG, a non-image file."""
    root = tmp_path / "raw"
    for rel in ["anger/Colin_Powell_0030.jpg", "happiness/" + sorted(p.name for p in (shared_faces / "happiness").iterdir())[0],
                "neutral/" + sorted(p.name for p in (shared_faces / "neutral").iterdir())[0]]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_faces / rel, root / rel)
    Image.fromarray(np.full((90, 120, 3), (30, 140, 200), np.uint8)).save(root / "flat.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_prepare_faces_cli(cli_env, raw_folder, tmp_path):
    pytest.importorskip("av")
    from test_faces_video import REPEAT, make_clip

    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(raw_folder.glob("*/*.jpg"))[1:3]]
    make_clip(raw_folder / "clip.mp4", photos + [np.full_like(photos[0], 90)])  # 3 x REPEAT frames
    out = tmp_path / "prepared"
    res = run(cli_env, "prepare", "faces", "--input", str(raw_folder), "--output", str(out),
              "--size", "128", "--masks", "--regions", "mouth", "--every", str(REPEAT))
    assert res.returncode == 0, res.stderr
    assert "wrote 5 aligned face(s)" in res.stdout and "unreadable: 1" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["images_read"] == 4 and report["videos_read"] == 1 and report["frames_read"] == 3
    assert report["faces_written"] == 5
    assert report["no_face"] == [f"{raw_folder / 'clip.mp4'}#frame={2 * REPEAT}", str(raw_folder / "flat.png")]
    frames = sorted(p.name for p in (out / "images" / "clip").iterdir())
    assert frames == ["frame_000000.png", f"frame_{REPEAT:06d}.png"]
    assert [u["file"] for u in report["unreadable"]] == [str(raw_folder / "broken.jpg")]
    assert report["skipped_other"] == [str(raw_folder / "notes.txt")]
    images = sorted(p.relative_to(out / "images") for p in (out / "images").rglob("*.png"))
    assert Path("anger/Colin_Powell_0030.png") in images and len(images) == 5
    # Masks mirror the images exactly: same relative names and stems (what the trainer reads).
    assert sorted(p.relative_to(out / "masks") for p in (out / "masks").rglob("*.png")) == images
    assert sorted(p.relative_to(out / "masks_mouth") for p in (out / "masks_mouth").rglob("*.png")) == images
    crop = Image.open(out / "images" / images[0])
    mask = np.asarray(Image.open(out / "masks" / images[0]))
    assert crop.size == (128, 128) and crop.mode == "RGB" and mask.shape == (128, 128) and mask[64, 64] == 255
    meta = json.loads((out / "meta" / images[0].with_suffix(".json")).read_text())
    assert meta["source"]["file"] == str(raw_folder / "anger/Colin_Powell_0030.jpg")
    assert len(meta["face"]["landmarks"]) == 478 and len(meta["face"]["blendshapes"]) == 52
    assert np.asarray(meta["matrix"]).shape == (2, 3)
    # The stored matrix takes the stored 5 points onto the stored crop positions.
    m, p5 = np.asarray(meta["matrix"]), np.asarray(meta["face"]["points5"])
    np.testing.assert_allclose(p5 @ m[:, :2].T + m[:, 2], meta["points5_crop"], atol=0.01)


def test_prepare_faces_without_any_face_fails_clearly(cli_env, tmp_path):
    folder = tmp_path / "empty_faces"
    folder.mkdir()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(folder / "wall.png")
    res = run(cli_env, "prepare", "faces", "--input", str(folder), "--output", str(tmp_path / "o"))
    assert res.returncode == 2
    assert "no face found" in res.stderr and "Traceback" not in res.stderr
    assert json.loads((tmp_path / "o" / "report.json").read_text())["no_face"] == [str(folder / "wall.png")]


def test_prepare_split_cli(cli_env, shared_faces, tmp_path):
    labels = tmp_path / "labels.csv"
    rows = (shared_faces / "labels.csv").read_text().splitlines()
    picked = [r for r in rows[1:] if r.endswith(",neutral")][:10] + [r for r in rows[1:] if r.endswith(",happiness")][:10]
    picked += ["neutral/Nobody_0001.jpg,neutral", "happiness/x.jpg,happiness,extra", "sadness/y.jpg,sadness"]
    labels.write_text("\n".join(["image,emotion", *picked]) + "\n")
    out = tmp_path / "split"
    res = run(cli_env, "prepare", "split", "--input", str(shared_faces), "--labels", str(labels),
              "--column", "emotion", "--a", "neutral", "--b", "happiness", "--output", str(out),
              "--test-fraction", "0.2", "--seed", "3", "--link")
    assert res.returncode == 0, res.stderr
    counts = {d: len(list((out / d).rglob("*.jpg"))) for d in ("trainA", "testA", "trainB", "testB")}
    assert counts == {"trainA": 8, "testA": 2, "trainB": 8, "testB": 2}
    assert all(p.is_symlink() for p in (out / "trainA").rglob("*.jpg"))
    report = json.loads((out / "split.json").read_text())
    assert report["malformed"] == [{"line": 23, "reason": "3 fields, header has 2"}]
    assert report["missing"] == ["neutral/Nobody_0001.jpg"] and report["other_label"] == 1
    assert "1 malformed" in res.stdout
    # Same seed, same split; an existing split is not silently mixed into.
    again = run(cli_env, "prepare", "split", "--input", str(shared_faces), "--labels", str(labels),
                "--column", "emotion", "--a", "neutral", "--b", "happiness", "--output", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_prepare_split_celeba_attr_format(tmp_path):
    from facecycle.faces.split import split_dataset

    images = tmp_path / "img_align_celeba"
    images.mkdir()
    lines = ["6", "5_o_Clock_Shadow Male Smiling"]
    for i in range(1, 7):
        name = f"{i:06d}.jpg"
        Image.fromarray(np.full((8, 8, 3), i * 30, np.uint8)).save(images / name)
        lines.append(f"{name}  -1 {'1' if i % 2 else '-1'}  1")
    lines.append("000007.jpg -1 1")  # malformed: too few values
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    report = split_dataset(images, tmp_path / "list_attr_celeba.txt", tmp_path / "out", attr="Male",
                           test_fraction=0.0)
    assert report.counts == {"trainA": 3, "trainB": 3}
    assert sorted(p.name for p in (tmp_path / "out" / "trainB").iterdir()) == ["000001.jpg", "000003.jpg", "000005.jpg"]
    assert [m["line"] for m in report.malformed] == [9]
