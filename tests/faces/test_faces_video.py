"""translate_video on a real H.264 clip made from face photos, with a generated audio track."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("mediapipe")

from facecycle.data.images import list_images, load_image  # noqa: E402
from facecycle.faces.faceoff import translate_video  # noqa: E402
from faceoff_clips import read_clip  # noqa: E402

FPS, REPEAT, RATE = 10, 3, 16000


def make_clip(path: Path, frames: list[np.ndarray], audio_codec: str = "aac") -> int:
    """H.264 clip, each photo held REPEAT frames, plus a 440 Hz sine track; returns frame count."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt, video.options = "yuv420p", {"preset": "ultrafast"}
        audio = out.add_stream(audio_codec, rate=RATE)
        audio.layout = "mono"
        n = len(frames) * REPEAT
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i // REPEAT], format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(n / FPS * RATE)
        wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / RATE)
        for start in range(0, samples, 1024):
            chunk = wave[start : start + 1024]
            if audio_codec == "aac":
                af = av.AudioFrame.from_ndarray(chunk.astype(np.float32)[None], format="flt", layout="mono")
            else:
                af = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None], format="s16", layout="mono")
            af.sample_rate, af.pts = RATE, start
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))
    return n


@pytest.fixture(scope="module")
def photos(shared_faces: Path) -> list[np.ndarray]:
    files = list_images(shared_faces / "happiness")[:4]
    faces = [np.asarray(load_image(p, channels=3)) for p in files]
    return faces + [np.full_like(faces[0], 128)]  # last photo: no face


def test_translate_video_keeps_frames_rate_and_audio(tmp_path, photos):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    n = make_clip(src, photos)
    stats = translate_video(src, dst, lambda crop: crop, smooth=0.6)
    frames_in, _, _ = read_clip(src)
    frames_out, rate, kinds = read_clip(dst)
    assert len(frames_out) == len(frames_in) == n == stats.frames
    assert rate == pytest.approx(FPS)
    assert kinds == ["video:h264", "audio:aac"] and stats.audio == "copied"
    assert stats.frames_without_face == REPEAT  # the grey frames are counted, not dropped
    assert stats.faces_translated == n - REPEAT
    # Identity translation: each frame comes back close to the input (x264 at crf 18 plus
    # two bilinear resamplings inside the face: ~40 dB measured; 32 dB leaves room).
    for a, b in zip(frames_in, frames_out):
        mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) > 32


def test_translate_video_reencodes_audio_and_pastes(tmp_path, photos):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mp4"
    make_clip(src, photos[:2], audio_codec="pcm_s16le")
    stats = translate_video(src, dst, lambda crop: 255 - crop, reencode_audio=True, smooth=0.0)
    frames_out, _, kinds = read_clip(dst)
    assert kinds == ["video:h264", "audio:aac"] and stats.audio == "re-encoded"
    assert stats.frames == len(frames_out) == 2 * REPEAT and stats.frames_without_face == 0
    # The inverted face really was pasted: the frame centre is near the negative, the corners
    # near the original.
    out, orig = frames_out[0].astype(int), photos[0].astype(int)
    centre, corner = np.s_[108:148, 108:148], np.s_[:8, :8]
    assert np.abs(out[centre] - (255 - orig[centre])).mean() < 0.5 * np.abs(out[centre] - orig[centre]).mean()
    assert np.abs(out[corner] - orig[corner]).mean() < 10
