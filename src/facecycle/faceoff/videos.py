"""Face-off translation stage: one input (video or photo folder) through one generator.

For a video: detect every frame, link the faces into tracks, pick the person to replace
(`--face-reference`, else the main person), fill that track's short detection gaps with
interpolated landmarks, translate and paste it back frame by frame (audio kept), then
measure the output's flicker against the input. Photo folders are translated photo by photo.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from facecycle.errors import DataError
from facecycle.faces.paste_masks import DEFAULT_REGIONS


@dataclass(frozen=True)
class PasteSettings:
    """Paste-back and video settings shared by both directions (JSON-able: they key the stage)."""

    color_match: str = "lab"
    mask: str = "face"
    regions: tuple[str, ...] = DEFAULT_REGIONS
    feather: float = 0.04
    grow: float = 0.03
    smooth: float = 0.6
    temporal: float = 0.0
    max_gap: int = 5
    max_faces: int = 4
    margin: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


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
    from facecycle.inference.face_selection import sample_frames, select_track
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


def translate_input(source: Path, out_dir: Path, name: str, crop_fn: Callable[[np.ndarray], np.ndarray],
                    crop_size: int, settings: PasteSettings, reference: np.ndarray | None,
                    measure: bool = True) -> dict:
    """Translate `source` into `out_dir` (`<name>.mp4` for a video, `<name>/` PNGs for photos).

    Returns a JSON-able summary: output path, frame/face counts, fps, audio, tracking, flicker."""
    from facecycle.faces.video import is_video

    out_dir.mkdir(parents=True, exist_ok=True)
    if is_video(source):
        return _video(source, out_dir / f"{name}.mp4", crop_fn, crop_size, settings, reference, measure)
    return _photos(source, out_dir / name, crop_fn, crop_size, settings)


def _video(source: Path, dst: Path, crop_fn, crop_size: int, settings: PasteSettings,
           reference: np.ndarray | None, measure: bool) -> dict:
    from facecycle.evaluation.flicker import video_flicker
    from facecycle.faces.faceoff import translate_video

    target = track_target(source, settings, reference)
    stats = translate_video(source, dst, crop_fn, smooth=settings.smooth, size=crop_size, margin=settings.margin,
                            max_faces=settings.max_faces, feather=settings.feather, grow=settings.grow,
                            color_match=settings.color_match, mask=settings.mask,  # type: ignore[arg-type]
                            regions=tuple(settings.regions), temporal=settings.temporal,
                            faces_per_frame=target["faces_per_frame"], interpolated=target["interpolated"])
    summary = {"input": str(source), "output": str(dst), "kind": "video", "frames": stats.frames, "fps": stats.fps,
               "audio": stats.audio, "faces_translated": stats.faces_translated,
               "frames_without_face": stats.frames_without_face, "frames_interpolated": stats.frames_interpolated,
               "size": list(stats.size), "notes": stats.notes, "selection": target["selection"],
               "tracks": target["tracks"], "track_stats": target["track_stats"]}
    if measure:
        summary["flicker"] = video_flicker(source, dst, faces_per_frame=target["faces_per_frame"])
    return summary


def _photos(source: Path, dst: Path, crop_fn, crop_size: int, settings: PasteSettings) -> dict:
    from facecycle.data.images import IMAGE_EXTENSIONS, load_image
    from facecycle.faces.faceoff import translate_faces
    from facecycle.faces.landmarks import FaceDetector
    from PIL import Image

    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    written, no_face = 0, 0
    with FaceDetector(mode="image", max_faces=settings.max_faces) as detector:
        for src in files:
            rgb = np.asarray(load_image(src, 3))
            result = translate_faces(rgb, crop_fn, detector=detector, size=crop_size, margin=settings.margin,
                                     max_faces=1, feather=settings.feather, grow=settings.grow,
                                     color_match=settings.color_match, mask=settings.mask,  # type: ignore[arg-type]
                                     regions=tuple(settings.regions))
            no_face += not result.faces
            rel = src.relative_to(source).with_suffix(".png") if source.is_dir() else Path(src.stem + ".png")
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(result.image).save(dst / rel)
            written += 1
    return {"input": str(source), "output": str(dst), "kind": "photos", "frames": written,
            "frames_without_face": no_face}
