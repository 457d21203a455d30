"""Short test videos made on the spot: avatars changing expression, real photos moving a little,
two faces side by side; H.264 with a sine audio track (PyAV)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

RATE = 16000


def avatar_frames(seed: int, expressions: Sequence[str], frames: int, size: int = 96, canvas: int = 128,
                  background: int = 200) -> list[np.ndarray]:
    """`frames` (canvas, canvas, 3) uint8 frames of one avatar identity whose expression cycles
    through `expressions` (a few frames each) while the head drifts by a few pixels."""
    from dataclasses import replace

    from facecycle.data.avatars import random_identity, render_avatar, sample_expression

    rng = np.random.default_rng(seed)
    identity = random_identity(rng)
    faces = []
    for name in expressions:
        mouth, eyebrows, eyes = sample_expression(name, rng)
        spec = replace(identity, mouth=mouth, eyebrows=eyebrows, eyes=eyes)
        faces.append(np.asarray(render_avatar(spec, size).convert("RGB")))
    per = max(1, frames // len(expressions))
    out = []
    for i in range(frames):
        face = faces[min(i // per, len(faces) - 1)]
        out.append(place(face, canvas, i, background))
    return out


def place(face: np.ndarray, canvas: int, i: int, background: int = 200, amplitude: float = 3.0) -> np.ndarray:
    """The face on a flat canvas, shifted by a slow sinusoidal drift of about `amplitude` px."""
    frame = np.full((canvas, canvas, 3), background, np.uint8)
    h, w = face.shape[:2]
    dx = int(round(amplitude * np.sin(i / 3.0)))
    dy = int(round(amplitude * np.cos(i / 4.0)))
    x0 = max(0, min(canvas - w, (canvas - w) // 2 + dx))
    y0 = max(0, min(canvas - h, (canvas - h) // 2 + dy))
    frame[y0 : y0 + h, x0 : x0 + w] = face
    return frame


def photo_frames(photo: np.ndarray, frames: int, canvas: int | None = None) -> list[np.ndarray]:
    """A real photo animated with small shifts (a few px), on a canvas a little larger than it."""
    h = photo.shape[0]
    canvas = canvas or h + 16
    return [place(photo, canvas, i, background=128) for i in range(frames)]


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two frames next to each other (heights must match): a two-person frame."""
    return np.concatenate([left, right], axis=1)


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: int = 10, audio: bool = True) -> None:
    """H.264 mp4 of `frames` at `fps`, with a 440 Hz AAC track when `audio`."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt, video.options = "yuv420p", {"preset": "ultrafast", "crf": "12"}
        stream = None
        if audio:
            stream = out.add_stream("aac", rate=RATE)
            stream.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if stream is not None:
            samples = int(len(frames) / fps * RATE)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / RATE)).astype(np.float32)
            for start in range(0, samples, 1024):
                af = av.AudioFrame.from_ndarray(wave[start : start + 1024][None], format="flt", layout="mono")
                af.sample_rate, af.pts = RATE, start
                out.mux(stream.encode(af))
            out.mux(stream.encode(None))


def read_clip(path: Path) -> tuple[list[np.ndarray], float, list[str]]:
    """(frames, fps, ["video:h264", "audio:aac", ...]) of a video file."""
    import av

    with av.open(str(path)) as c:
        rate = float(c.streams.video[0].average_rate)
        kinds = [f"{s.type}:{s.codec_context.name}" for s in c.streams]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames, rate, kinds
