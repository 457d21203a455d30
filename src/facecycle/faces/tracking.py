"""Face tracks across the frames of a video, with short detection gaps filled by interpolation.

A video is first detected frame by frame (`detect_video`), then the detections are linked
into tracks (`link_tracks`): a face joins the track whose last face is nearest (box centres
closer than half a box width), allowing up to `max_gap` frames without a detection in
between. A track's frames without a detection *inside* a gap of at most `max_gap` frames get
landmarks interpolated linearly between the detections on either side (`fill_gaps`): a
blink, a hand or motion blur then no longer makes the original face flash through for a
frame. Longer gaps, and frames before the first / after the last detection, are given up on
and left without a face (counted as `missing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facecycle.faces.landmarks import Face, FaceDetector, face_from_landmarks
from facecycle.faces.video import iter_frames

DEFAULT_MAX_GAP = 5


@dataclass
class Track:
    """One person's face over time. `faces[i]` is the face in frame `i` (None: none known);
    `detected[i]` says whether it was measured (True) or interpolated/absent (False)."""

    faces: list[Face | None]
    detected: list[bool]

    @property
    def detections(self) -> int:
        return int(sum(self.detected))

    def frames_with_face(self) -> int:
        return sum(f is not None for f in self.faces)

    def mean_area(self) -> float:
        areas = [f.area for f, d in zip(self.faces, self.detected) if d and f is not None]
        return float(np.mean(areas)) if areas else 0.0


@dataclass
class TrackStats:
    """Per track: frames with a detection, frames filled by interpolation, frames given up on."""

    frames: int = 0
    detected: int = 0
    interpolated: int = 0
    missing: int = 0
    gaps_given_up: int = 0  # gaps longer than max_gap (their frames are in `missing`)
    notes: list[str] = field(default_factory=list)


def detect_video(path: str | Path, *, max_faces: int = 4, detector: FaceDetector | None = None,
                 progress: Callable[[int], None] | None = None) -> list[list[Face]]:
    """Faces of every frame of `path`: one list per decoded frame, largest face first.

    Uses a VIDEO-mode MediaPipe detector (tracking between frames, steadier landmarks) unless
    one is given. Frame times come from the stream; equal or missing times are nudged forward
    because the detector needs strictly increasing timestamps.
    """
    own = detector is None
    det = detector or FaceDetector(mode="video", max_faces=max_faces)
    per_frame: list[list[Face]] = []
    last_ts = -1
    try:
        for index, t, rgb in iter_frames(path):
            ts = max(last_ts + 1, int(round(t * 1000)))
            last_ts = ts
            per_frame.append(det.detect(rgb, timestamp_ms=ts if det.mode == "video" else None))
            if progress is not None:
                progress(index + 1)
    finally:
        if own:
            det.close()
    return per_frame


def _centre(face: Face) -> np.ndarray:
    return (face.box[:2] + face.box[2:]) / 2


def link_tracks(faces_per_frame: list[list[Face]], max_gap: int = DEFAULT_MAX_GAP) -> list[Track]:
    """Link per-frame detections into tracks (see the module docstring), longest first.

    Greedy per frame: faces are taken largest first and each joins the nearest unclaimed
    track seen within the last `max_gap + 1` frames; a face near no track starts a new one.
    """
    n = len(faces_per_frame)
    tracks: list[Track] = []
    last_seen: list[int] = []
    for i, faces in enumerate(faces_per_frame):
        claimed: set[int] = set()
        for face in faces:
            best, best_d = None, 0.5 * float(face.box[2] - face.box[0])
            for k, track in enumerate(tracks):
                if k in claimed or i - last_seen[k] > max_gap + 1:
                    continue
                d = float(np.linalg.norm(_centre(track.faces[last_seen[k]]) - _centre(face)))  # type: ignore[arg-type]
                if d < best_d:
                    best, best_d = k, d
            if best is None:
                tracks.append(Track(faces=[None] * n, detected=[False] * n))
                last_seen.append(i)
                best = len(tracks) - 1
            claimed.add(best)
            tracks[best].faces[i] = face
            tracks[best].detected[i] = True
            last_seen[best] = i
    return sorted(tracks, key=lambda t: t.detections, reverse=True)


def _interpolate(a: Face, b: Face, w: float) -> Face:
    """Face a fraction `w` of the way from `a` to `b` (landmarks when both have them)."""
    if a.landmarks is not None and b.landmarks is not None:
        return face_from_landmarks((1 - w) * a.landmarks + w * b.landmarks, a.blendshapes if w < 0.5 else b.blendshapes)
    return Face(box=((1 - w) * a.box + w * b.box).astype(np.float32),
                points5=((1 - w) * a.points5 + w * b.points5).astype(np.float32), source="haar")


def fill_gaps(track: Track, max_gap: int = DEFAULT_MAX_GAP) -> TrackStats:
    """Fill the track's detection gaps of at most `max_gap` frames in place; returns the counts."""
    stats = TrackStats(frames=len(track.faces), detected=track.detections)
    known = [i for i, d in enumerate(track.detected) if d]
    for a, b in zip(known, known[1:]):
        gap = b - a - 1
        if gap == 0:
            continue
        if gap > max_gap:
            stats.gaps_given_up += 1
            continue
        for i in range(a + 1, b):
            track.faces[i] = _interpolate(track.faces[a], track.faces[b], (i - a) / (b - a))  # type: ignore[arg-type]
            stats.interpolated += 1
    stats.missing = stats.frames - stats.detected - stats.interpolated
    if stats.gaps_given_up:
        stats.notes.append(f"{stats.gaps_given_up} gap(s) longer than {max_gap} frames left without a face")
    return stats
