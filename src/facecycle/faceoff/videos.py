"""Face-off translation stage: one input (video or photo folder) through one generator.

For a video: `inference.face_selection.track_target` detects every frame, links the faces
into tracks, picks the person to replace (`--face-reference`, else the main person) and fills
that track's short detection gaps with interpolated landmarks; this stage then translates and
pastes it back frame by frame (audio kept), and measures the output's flicker against the
input. Photo folders are translated photo by photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from facecycle.faces.paste_masks import PasteSettings


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
    from facecycle.inference.face_selection import track_target

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
