"""The flicker metric: a jittered translation ranks worse than a smooth one; temporal blending
lowers it; `facecycle evaluate --video-in/--video-out` reports it."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

pytest.importorskip("cv2")

from facecycle.evaluation.flicker import flicker_metrics  # noqa: E402

from conftest import facecycle_cmd  # noqa: E402


def moving_frames(n: int = 12, size: int = 64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A smoothly shaded disc ("face") drifting a few pixels per frame, and its masks."""
    import cv2

    rng = np.random.default_rng(0)
    # Smooth shading like skin (low-frequency noise upsampled), not per-pixel noise.
    texture = cv2.resize(rng.uniform(60, 200, (6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size]
    frames, masks = [], []
    for i in range(n):
        cx, cy = size / 2 + 4 * np.sin(i / 3), size / 2 + 3 * np.cos(i / 4)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (size / 3) ** 2
        shifted = np.roll(texture, (int(round(cy - size / 2)), int(round(cx - size / 2))), axis=(0, 1))
        frame = np.where(disc[..., None], shifted, 30.0)
        frames.append(frame.clip(0, 255).astype(np.uint8))
        masks.append(disc)
    return frames, masks


def test_jittered_output_ranks_worse_than_smooth() -> None:
    frames, masks = moving_frames()
    rng = np.random.default_rng(1)
    # "Translations": the same colour change every frame (smooth) vs. a per-frame random one (jitter).
    smooth = [np.where(m[..., None], (f.astype(int) + 20).clip(0, 255), f).astype(np.uint8) for f, m in zip(frames, masks)]
    jitter = [np.where(m[..., None], (f.astype(int) + 20 + rng.integers(-12, 13, 3)).clip(0, 255), f).astype(np.uint8)
              for f, m in zip(frames, masks)]
    same = flicker_metrics(frames, frames, masks)
    s, j = flicker_metrics(frames, smooth, masks), flicker_metrics(frames, jitter, masks)
    assert same["flicker"] == pytest.approx(0, abs=1e-6) and same["flicker_warp"] == pytest.approx(0, abs=1e-6)
    assert s["flicker_pairs"] == j["flicker_pairs"] == len(frames) - 1
    assert j["flicker"] > s["flicker"] + 3 and j["flicker_warp"] > s["flicker_warp"] + 3
    assert abs(s["flicker"]) < 1.5  # a steady edit changes no more than the input did


def test_frames_without_face_are_skipped_and_lengths_checked() -> None:
    frames, masks = moving_frames(4)
    none = flicker_metrics(frames, frames, [None] * 4)
    assert none["flicker"] is None and none["flicker_pairs"] == 0
    with pytest.raises(ValueError, match="equally long"):
        flicker_metrics(frames, frames[:3], masks)


@pytest.fixture(scope="module")
def avatar_clip(tmp_path_factory):
    pytest.importorskip("av")
    pytest.importorskip("mediapipe")
    from faceoff_clips import avatar_frames, write_clip

    path = tmp_path_factory.mktemp("clip") / "avatar.mp4"
    write_clip(path, avatar_frames(3, ["neutral", "happy"], 16))
    return path


def noisy_translator(seed: int = 0):
    """A stand-in generator that repaints the crop with fresh noise on every call: pure flicker."""
    rng = np.random.default_rng(seed)

    def fn(crop: np.ndarray) -> np.ndarray:
        return (crop.astype(int) + 25 + rng.integers(-20, 21, crop.shape)).clip(0, 255).astype(np.uint8)

    return fn


def test_temporal_blending_reduces_flicker_and_evaluate_reports_it(avatar_clip, tmp_path, cli_env) -> None:
    from facecycle.evaluation.flicker import video_flicker
    from facecycle.faces.faceoff import translate_video

    figures = {}
    for temporal in (0.0, 0.6):
        out = tmp_path / f"t{temporal}.mp4"
        stats = translate_video(avatar_clip, out, noisy_translator(), size=64, temporal=temporal, color_match="none")
        assert stats.frames == 16
        figures[temporal] = video_flicker(avatar_clip, out)
    assert figures[0.0]["flicker"] > 1.0
    assert figures[0.6]["flicker"] < 0.8 * figures[0.0]["flicker"]
    assert figures[0.6]["flicker_warp"] < 0.8 * figures[0.0]["flicker_warp"]
    proc = subprocess.run(facecycle_cmd("evaluate", "--video-in", str(avatar_clip), "--video-out", str(tmp_path / "t0.0.mp4"),
                                        "--out", str(tmp_path / "eval")), env=cli_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["video"]
    assert metrics["flicker"] == pytest.approx(figures[0.0]["flicker"], rel=1e-6)
    assert "flicker" in proc.stdout


def test_cuts_are_skipped_not_counted_as_flicker() -> None:
    frames, masks = moving_frames(8)
    cut = frames[:4] + [(255 - f).astype(np.uint8) for f in frames[4:]]  # a different "shot" from frame 4
    result = flicker_metrics(cut, cut, masks)
    assert result["flicker_cuts"] == 1 and result["flicker_pairs"] == 6


def test_video_flicker_refuses_videos_of_different_lengths(avatar_clip, tmp_path) -> None:
    from facecycle.errors import DataError
    from facecycle.evaluation.flicker import video_flicker
    from faceoff_clips import read_clip, write_clip

    frames, _, _ = read_clip(avatar_clip)
    short = tmp_path / "short.mp4"
    write_clip(short, frames[:-3], audio=False)
    with pytest.raises(DataError, match="has 13 frames.*has 16"):
        video_flicker(avatar_clip, short)
