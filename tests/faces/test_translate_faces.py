"""`translate --faces` end to end through the CLI: a real photo and a short video with audio."""

from __future__ import annotations

import subprocess

import numpy as np
from PIL import Image

from conftest import facecycle_cmd
from tiny import train
from faceoff_clips import read_clip
from test_faces_video import make_clip


def test_translate_faces_on_photo_and_video(tmp_path, cli_env, blob_domains) -> None:
    from skimage.data import astronaut

    a, b = blob_domains
    run_dir = tmp_path / "run"
    train(a, b, run_dir, cli_env, "--steps", "1")
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo = astronaut()  # (512, 512, 3) real photo with one face
    Image.fromarray(photo).save(inputs / "astronaut.jpg")
    Image.new("RGB", (80, 60), (40, 120, 200)).save(inputs / "sky.png")  # no face: reported, not fatal
    frames = [np.asarray(Image.fromarray(photo).resize((160, 160))) for _ in range(6)]
    make_clip(inputs / "talk.mp4", frames)
    out = tmp_path / "out"
    proc = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(run_dir), "--input", str(inputs),
                                        "--output", str(out), "--faces"),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no face found in" in proc.stderr and "sky.png" in proc.stderr
    photo = np.asarray(Image.open(inputs / "astronaut.jpg").convert("RGB"))  # as decoded from disk (JPEG)
    result = np.asarray(Image.open(out / "astronaut.png").convert("RGB"))
    assert result.shape == photo.shape
    changed = np.abs(result.astype(int) - photo.astype(int)).sum(axis=2) > 30
    ys, xs = np.nonzero(changed)
    # The (untrained) model changed the face region and left the image corners alone.
    assert changed.mean() > 0.005 and not changed[:40, :40].any() and not changed[-40:, -40:].any()
    assert 100 < ys.mean() < 300 and 120 < xs.mean() < 320  # the astronaut's face is around (y 190, x 230)
    assert np.array_equal(np.asarray(Image.open(out / "sky.png")), np.asarray(Image.open(inputs / "sky.png")))
    video_frames, fps, streams = read_clip(out / "talk.mp4")
    in_frames, in_fps, _ = read_clip(inputs / "talk.mp4")
    assert len(video_frames) == len(in_frames) and abs(fps - in_fps) < 1e-6
    assert any(s.startswith("audio") for s in streams)


def test_translate_faces_replaces_only_the_reference_person(tmp_path, cli_env, blob_domains, shared_faces) -> None:
    """--face-reference on a two-person clip: only the referenced person's half changes; the new
    paste options (regions mask, histogram colour match, temporal blending) are accepted."""
    from facecycle.data.images import load_image
    from faceoff_clips import photo_frames, side_by_side, write_clip

    a, b = blob_domains
    run_dir = tmp_path / "run"
    train(a, b, run_dir, cli_env, "--steps", "1")
    left = photo_frames(np.asarray(load_image(shared_faces / "anger" / "Colin_Powell_0030.jpg", 3)), 6)
    right = photo_frames(np.asarray(load_image(shared_faces / "anger" / "Jennifer_Capriati_0007.jpg", 3)), 6)
    clip = tmp_path / "in" / "two.mp4"
    clip.parent.mkdir()
    write_clip(clip, [side_by_side(x, y) for x, y in zip(left, right)])
    out = tmp_path / "out"
    proc = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(run_dir), "--input", str(clip.parent),
                                        "--output", str(out), "--faces", "--face-reference",
                                        str(shared_faces / "anger" / "Jennifer_Capriati_0009.jpg"),
                                        "--mask", "hull", "--color-match", "histogram", "--temporal", "0.5"),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "reference match" in proc.stdout
    frames_in, _, _ = read_clip(clip)
    frames_out, _, _ = read_clip(out / "two.mp4")
    half = left[0].shape[1]
    diff = [np.abs(x.astype(int) - y.astype(int)).mean(axis=2) for x, y in zip(frames_in, frames_out)]
    changed_left = np.mean([d[:, :half] > 30 for d in diff])
    changed_right = np.mean([d[:, half:] > 30 for d in diff])
    assert changed_right > 0.02 and changed_left < 0.002
