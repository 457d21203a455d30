"""Face mode of `translate`: detect and align faces in whole photos/videos, translate the aligned
crops with a generator, paste them back (facecycle.faces.faceoff does the geometry)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from facecycle.data.images import IMAGE_EXTENSIONS, load_image
from facecycle.errors import DataError
from facecycle.inference.loading import LoadedGenerator
from facecycle.inference.translate import default_work_size, output_path, translate_image


def crop_translator(generator: LoadedGenerator, precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:
    """`(S, S, 3)` uint8 RGB aligned crop -> translated crop of the same shape.

    A grayscale model translates the crop's luminance and keeps its colours; an attention model
    runs at its training size and composes at the crop's size (`translate_image`).
    """

    def translate_crop(crop: np.ndarray) -> np.ndarray:
        out = translate_image(generator, Image.fromarray(crop), precision=precision)
        return np.asarray(out.convert("RGB"))

    return translate_crop


def translate_faces_in_paths(generator: LoadedGenerator, input_path: str | Path, output_dir: str | Path,
                             margin: float = 0.25, color_match: str = "none", max_faces: int = 4,
                             smooth: float = 0.6, precision: str = "fp32", mask: str = "face",
                             regions: tuple[str, ...] = ("eyes", "brows", "mouth"), feather: float = 0.04,
                             grow: float = 0.03, temporal: float = 0.0, reference: str | Path | None = None,
                             max_gap: int = 5) -> dict[str, list]:
    """Photos (any image format) and videos (mp4/mov/avi/mkv/webm) below `input_path`.

    mask, regions, feather, grow: paste mask (see `facecycle.faces.paste_masks`).
    temporal: video flicker reduction strength (see `facecycle.faces.temporal`).
    reference: photo of the one person to replace in videos (tracked, gaps up to `max_gap`
    frames interpolated; see `facecycle.inference.face_selection`); photos still translate their
    largest `max_faces` faces.

    Crops are aligned at the model's training size (`generator.crop_size`) with `margin`, which
    must match how the training faces were prepared (`prepare faces` uses 0.25). Photos are
    written as PNG, videos as .mp4 with the same frame count, rate and audio.
    Returns {"written", "no_face", "failed"}.
    """
    from facecycle.faces.faceoff import translate_faces, translate_video
    from facecycle.faces.landmarks import FaceDetector
    from facecycle.faces.video import VIDEO_EXTENSIONS, is_video

    root = Path(input_path)
    if not root.exists():
        raise DataError(f"input does not exist: {root}")
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
    if not files:
        raise DataError(f"no image or video found in {root}")
    fn = crop_translator(generator, precision)
    paste = dict(mask=mask, regions=tuple(regions), feather=feather, grow=grow)
    embedding = None
    if reference is not None:
        from facecycle.inference.face_selection import reference_embedding

        embedding = reference_embedding(reference)
    # Attention models compose at full resolution, so their crops are aligned (and pasted back)
    # at up to 256 px instead of the training size: what the mask leaves alone stays sharp.
    size = max(generator.crop_size, 256) if default_work_size(generator) else generator.crop_size
    written: list[Path] = []
    no_face: list[Path] = []
    failed: list[tuple[Path, str]] = []
    with FaceDetector(mode="image", max_faces=max_faces) as detector:
        for src in files:
            try:
                if is_video(src):
                    dst = output_path(src, root, Path(output_dir), ".mp4")
                    tracked = {}
                    if embedding is not None:
                        from facecycle.faces.paste_masks import PasteSettings
                        from facecycle.inference.face_selection import track_target

                        target = track_target(src, PasteSettings(max_gap=max_gap, max_faces=max_faces), embedding)
                        tracked = {"faces_per_frame": target["faces_per_frame"], "interpolated": target["interpolated"]}
                        print(f"{src}: {target['selection']['reason']}")
                    stats = translate_video(src, dst, fn, smooth=smooth, size=size, margin=margin,
                                            max_faces=max_faces, color_match=color_match,  # type: ignore[arg-type]
                                            temporal=temporal, **paste, **tracked)
                    print(f"{src}: {stats.frames} frames at {stats.fps:.2f} fps, {stats.faces_translated} faces, "
                          f"{stats.frames_without_face} frames without a face, {stats.frames_interpolated} "
                          f"interpolated, audio {stats.audio}")
                else:
                    image = np.asarray(load_image(src, 3))
                    result = translate_faces(image, fn, detector=detector, size=size, margin=margin,
                                             max_faces=max_faces, color_match=color_match,  # type: ignore[arg-type]
                                             **paste)
                    if not result.faces:
                        no_face.append(src)
                    dst = output_path(src, root, Path(output_dir), ".png")
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(result.image).save(dst)
                written.append(dst)
            except DataError as exc:
                failed.append((src, str(exc)))
    return {"written": written, "no_face": no_face, "failed": failed}
