"""Video reading helpers on PyAV (FFmpeg libraries bundled in the wheel; no system ffmpeg)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from facecycle.errors import DataError, require

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})


def is_video(path: str | Path) -> bool:
    """True when the file extension is a video container we read."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def open_video(path: str | Path):
    """Open a video file for reading; DataError naming the file when it cannot be decoded."""
    av = require("av", "video", "video input")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise DataError(f"cannot open video {path}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path} has no video stream")
    return container


def iter_frames(path: str | Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield `(frame_index, time_seconds, rgb)` for every `every`-th frame of the first video
    stream; rgb is (H, W, 3) uint8. Frame indices count decoded frames from 0.

    Raises DataError when decoding fails midway (a truncated file), naming the frame.
    """
    if every < 1:
        raise ValueError("every must be at least 1")
    av = require("av", "video", "video input")
    container = open_video(path)
    index = -1
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            index += 1
            if index % every:
                continue
            t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
            yield index, t, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise DataError(f"video {path} is damaged after frame {index}: {exc}") from None
    finally:
        container.close()
