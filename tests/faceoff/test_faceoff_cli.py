"""`facecycle faceoff` end to end through the CLI on two short avatar videos made here."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("mediapipe")

from conftest import facecycle_cmd  # noqa: E402
from faceoff_clips import avatar_frames, read_clip, write_clip  # noqa: E402
from tiny import tiny_overrides, tiny_sets  # noqa: E402

TINY = ["--face-size", "64", "--quiet", *tiny_sets("train.checkpoint_every=1000", blocks=1)]


def faceoff(a, b, out, env, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(facecycle_cmd("faceoff", "--video-a", str(a), "--video-b", str(b), "--out", str(out), *TINY,
                                        *extra), env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_faceoff_end_to_end_resumes_and_reuses_stages(tmp_path, cli_env) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_clip(a, avatar_frames(1, ["neutral", "happy", "neutral"], 21), fps=10)
    write_clip(b, avatar_frames(7, ["happy", "sad"], 16), fps=12, audio=False)
    out = tmp_path / "faceoff"

    first = faceoff(a, b, out, cli_env, "--steps", "2")
    assert first.returncode == 0, first.stderr
    assert "reused stages: none" in first.stdout
    for direction, src, fps, audio in (("a2b", a, 10, True), ("b2a", b, 12, False)):
        frames, rate, kinds = read_clip(out / "swapped" / direction / f"{direction}.mp4")
        originals, _, _ = read_clip(src)
        assert len(frames) == len(originals) and rate == pytest.approx(fps)
        assert any(k.startswith("audio:") for k in kinds) == audio
        changed = np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(frames, originals)])
        assert changed > 0.5  # the (barely trained) model painted the faces
    page = (out / "report" / "index.html").read_text()
    assert "flicker_warp" in page and "a2b_strip.png" in page and (out / "report" / "b2a_strip.png").is_file()
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["directions"]["a2b"]["audio"] == "copied"
    assert summary["directions"]["a2b"]["flicker"]["flicker_pairs"] == 20
    assert summary["data"]["split"]["testA"] >= 1 and summary["training"]["step"] == 2
    assert 0 < summary["held_out"]["a2b"]["ssim_input_output"] <= 1 and "Held-out crops" in page

    again = faceoff(a, b, out, cli_env, "--steps", "2")
    assert again.returncode == 0, again.stderr
    assert ("reused stages: extract A, extract B, split, train, evaluate held-out, translate a2b, translate b2a"
            in again.stdout)

    # A longer schedule continues the same run from its checkpoint; only training and translation redo.
    longer = faceoff(a, b, out, cli_env, "--steps", "3")
    assert longer.returncode == 0, longer.stderr
    assert "resumed from" in longer.stdout and "step 3 of 3" in longer.stdout
    assert "reused stages: extract A, extract B, split\n" in longer.stdout
    assert json.loads((out / "report" / "summary.json").read_text())["training"]["step"] == 3

    # Another training config starts a new run; the old one is kept aside, not deleted.
    other = faceoff(a, b, out, cli_env, "--steps", "2", "--set", "loss.cycle_a=5")
    assert other.returncode == 0, other.stderr
    assert "starting a new run" in other.stdout and "resumed from" not in other.stdout
    assert (out / "run.previous" / "checkpoints" / "step_00000003.pt").is_file()


def test_faceoff_missing_video_and_faceless_video_are_clear_errors(tmp_path, cli_env) -> None:
    b = tmp_path / "b.mp4"
    write_clip(b, [np.full((64, 64, 3), 90, np.uint8)] * 4, audio=False)
    missing = faceoff(tmp_path / "nope.mp4", b, tmp_path / "o1", cli_env)
    assert missing.returncode == 2 and "--video-a" in missing.stderr and "does not exist" in missing.stderr
    a = tmp_path / "a.mp4"
    write_clip(a, avatar_frames(2, ["neutral"], 4), audio=False)
    faceless = faceoff(a, b, tmp_path / "o2", cli_env)
    assert faceless.returncode == 2 and "no face found in" in faceless.stderr and str(b) in faceless.stderr


@pytest.mark.slow  # ~12 s alone, 40 s+ on a busy machine: two trainer start-ups at 64 px
def test_minutes_budget_stops_with_a_checkpoint_and_the_next_call_continues(tmp_path) -> None:
    from conftest import write_blobs
    from facecycle.faceoff.train import train_run

    for folder in ("trainA", "trainB"):
        write_blobs(tmp_path / "data" / folder, 4, (64, 64), seed=len(folder), bright=folder.endswith("B"))
    kwargs = dict(config="faces", steps=10_000, minutes=0.02, size=64, device="cpu", quiet=True,
                  overrides=tiny_overrides(blocks=1))
    first = train_run(tmp_path / "data", tmp_path / "run", **kwargs)
    assert not first["complete"] and 0 < first["step"] < 10_000 and first["resumed_from"] is None
    second = train_run(tmp_path / "data", tmp_path / "run", **kwargs)
    assert second["resumed_from"] is not None and second["step"] > first["step"]
    assert second["steps"] == 10_000  # the schedule is unchanged by the time budget


@pytest.mark.slow
def test_faceoff_accepts_a_folder_of_frames(tmp_path, cli_env) -> None:
    from PIL import Image

    folder = tmp_path / "frames_a"
    folder.mkdir()
    for i, frame in enumerate(avatar_frames(1, ["neutral", "happy"], 8)):
        Image.fromarray(frame).save(folder / f"frame_{i:03d}.png")
    b = tmp_path / "b.mp4"
    write_clip(b, avatar_frames(7, ["happy", "sad"], 8), audio=False)
    out = tmp_path / "faceoff"
    proc = faceoff(folder, b, out, cli_env, "--steps", "1")
    assert proc.returncode == 0, proc.stderr
    translated = sorted((out / "swapped" / "a2b" / "a2b").glob("*.png"))
    assert [p.name for p in translated] == [f"frame_{i:03d}.png" for i in range(8)]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["directions"]["a2b"]["kind"] == "photos" and summary["directions"]["a2b"]["frames_without_face"] == 0
    assert (out / "report" / "a2b_strip.png").is_file() and (out / "swapped" / "b2a" / "b2a.mp4").is_file()
