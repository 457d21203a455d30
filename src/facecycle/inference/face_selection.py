"""Pick which person's face track to replace: `--face-reference photo.jpg`.

Decision (issue 13): the identity embedding used here is the *evaluation* metric network of
`facecycle.evaluation.identity` (dlib's face_recognition ResNet). Using it to choose which
face in a video the user wants replaced is allowed: it only answers "which of these tracks is
the person in this photo", exactly what the user asked for. It must never enter a training
loss, and must never choose training data beyond restricting the crops to that same
requested person: a metric that also shaped training (or curated its data by looks) would
no longer measure anything. Nothing in `facecycle.training` imports this module.

Without a reference the main person is taken: the track with the most detections, ties
broken by the larger mean face area.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facecycle.errors import DataError
from facecycle.faces.landmarks import Face
from facecycle.faces.paste_masks import PasteSettings
from facecycle.faces.tracking import Track

SAMPLES_PER_TRACK = 5


@dataclass(frozen=True)
class Selection:
    """index: the chosen track; distances: per track, the median embedding distance to the
    reference (empty without a reference); reason: one line for logs and the report."""

    index: int
    distances: tuple[float, ...]
    reason: str


def face_chip(image: np.ndarray, face: Face, grow: float = 0.35) -> np.ndarray:
    """(h, w, 3) uint8 crop of `image` around the face box grown by `grow` per side, so the
    embedding's own detector sees the whole head (a tight box cuts the chin and brows)."""
    x0, y0, x1, y1 = (float(v) for v in face.box)
    gx, gy = grow * (x1 - x0), grow * (y1 - y0)
    h, w = image.shape[:2]
    a, b = int(max(0, x0 - gx)), int(min(w, x1 + gx))
    c, d = int(max(0, y0 - gy)), int(min(h, y1 + gy))
    return np.ascontiguousarray(image[c:d, a:b])


def embed_chips(chips: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 128) float64 identity embeddings of face chips (NaN rows where no face is found)."""
    import torch
    from PIL import Image

    from facecycle.data.images import pil_to_tensor
    from facecycle.evaluation.identity import embed_faces

    if not chips:
        return np.zeros((0, 128))
    # One size for the batch; 160 px keeps dlib's HOG detector (faces >= ~40 px) comfortable.
    batch = torch.stack([pil_to_tensor(Image.fromarray(c).resize((160, 160), Image.BILINEAR)) for c in chips])
    return embed_faces(batch, whole_image_fallback=True).vectors


def reference_embedding(path: str | Path) -> np.ndarray:
    """(128,) embedding of the largest face in the reference photo; DataError when none."""
    from facecycle.data.images import load_image
    from facecycle.faces.landmarks import FaceDetector

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--face-reference {path} does not exist; give a photo of the person to replace")
    rgb = np.asarray(load_image(path, channels=3))
    with FaceDetector(mode="image", max_faces=1) as detector:
        faces = detector.detect(rgb)
    if not faces:
        raise DataError(f"no face found in the reference photo {path}; use a clear, frontal photo of the person")
    vector = embed_chips([face_chip(rgb, faces[0])])[0]
    if np.isnan(vector).any():
        raise DataError(f"the identity network found no face in the reference photo {path}; use a larger, frontal photo")
    return vector


def main_track(tracks: Sequence[Track]) -> int:
    """Index of the main person: most detections, then largest mean face area."""
    return max(range(len(tracks)), key=lambda k: (tracks[k].detections, tracks[k].mean_area()))


def select_track(tracks: Sequence[Track], frames: dict[int, np.ndarray] | None = None,
                 reference: np.ndarray | None = None) -> Selection:
    """Choose the track to replace.

    tracks:    from `link_tracks`; must not be empty.
    frames:    {frame index: (H, W, 3) uint8 RGB} holding at least the frames `sample_frames`
               asked for (needed only with a reference).
    reference: (128,) embedding from `reference_embedding`, or None for the main person.
    """
    if not tracks:
        raise DataError("no face was found in any frame of the video, so there is nothing to replace")
    if reference is None:
        k = main_track(tracks)
        return Selection(k, (), f"main person: track {k} of {len(tracks)} ({tracks[k].detections} detections)")
    distances = []
    for track in tracks:
        picks = sample_frames(track)
        chips = [face_chip(frames[i], track.faces[i]) for i in picks if frames and i in frames]  # type: ignore[arg-type]
        vectors = embed_chips(chips)
        d = np.linalg.norm(vectors - reference[None], axis=1) if len(vectors) else np.array([np.nan])
        distances.append(float(np.nanmedian(d)) if np.isfinite(d).any() else float("inf"))
    from facecycle.evaluation.identity import SAME_PERSON_THRESHOLD

    k = int(np.argmin(distances))
    reason = f"reference match: track {k} of {len(tracks)} (median identity distance {distances[k]:.3f})"
    if not distances[k] < SAME_PERSON_THRESHOLD:
        # Still the best guess, but say so: a wrong reference photo must not pass silently.
        reason += (f"; warning: no face in the video is the reference person by the {SAME_PERSON_THRESHOLD} "
                   "threshold, check the reference photo")
    return Selection(k, tuple(distances), reason)


def sample_frames(track: Track, count: int = SAMPLES_PER_TRACK) -> list[int]:
    """Up to `count` detected frame indices spread evenly over the track."""
    detected = [i for i, d in enumerate(track.detected) if d]
    if len(detected) <= count:
        return detected
    return [detected[int(round(j))] for j in np.linspace(0, len(detected) - 1, count)]


def frames_at(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """{index: (H, W, 3) uint8 RGB} of the wanted decoded frames of a video."""
    from facecycle.faces.video import iter_frames

    out = {}
    for index, _, rgb in iter_frames(path):
        if index in wanted:
            out[index] = rgb
    return out


def track_target(video: Path, settings: PasteSettings, reference: np.ndarray | None) -> dict:
    """Faces to replace in each frame of `video`: {"faces_per_frame", "interpolated", "selection",
    "tracks", "track_stats"} (the last three JSON-able)."""
    from facecycle.faces.tracking import detect_video, fill_gaps, link_tracks

    per_frame = detect_video(video, max_faces=settings.max_faces)
    # Link across longer gaps than are filled: a person who reappears where they were is the
    # same track (so the gap is counted as given up) rather than a new person.
    tracks = link_tracks(per_frame, max(3 * settings.max_gap, 15))
    if not tracks:
        raise DataError(f"no face found in any of the {len(per_frame)} frames of {video}; "
                        "use footage where the face is visible and at least ~60 px wide")
    frames = None
    if reference is not None:
        frames = frames_at(video, {i for t in tracks for i in sample_frames(t)})
    selection = select_track(tracks, frames, reference)
    track = tracks[selection.index]
    detected = list(track.detected)
    stats = fill_gaps(track, settings.max_gap)
    faces = [[f] if f is not None else [] for f in track.faces]
    interpolated = [f is not None and not d for f, d in zip(track.faces, detected)]
    return {"faces_per_frame": faces, "interpolated": interpolated,
            "selection": {"track": selection.index, "reason": selection.reason,
                          "distances": [round(d, 4) for d in selection.distances]},
            "tracks": len(tracks), "track_stats": asdict(stats)}
