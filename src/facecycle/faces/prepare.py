"""`facecycle prepare faces`: photos and videos -> aligned face crops (+ metadata, masks).

Output layout (OUTPUT = the --output folder)::

    OUTPUT/images/<rel>.png        aligned crop, size x size RGB
    OUTPUT/meta/<rel>.json         source file/frame, face box, 5 points, 478 landmarks,
                                   blendshapes, image->crop matrix, crop size/margin
    OUTPUT/masks/<rel>.png         (--masks) face-oval mask, "L" 0/255, same frame as the crop
    OUTPUT/masks_<region>/<rel>.png (--regions eyes,brows,mouth) region masks
    OUTPUT/report.json             every input file and what happened to it

`<rel>` is the input file's path relative to the input folder without its extension
(`anger/Colin_Powell_0030`); for a video it is `<video stem>/frame_000123`; with
--all-faces `_f<k>` (k = 0 for the largest face) is appended. So `--data-a OUTPUT/images
--masks-a OUTPUT/masks` gives the trainer masks with the same relative names and stems.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from facecycle.data.images import IMAGE_EXTENSIONS, load_image
from facecycle.errors import DataError
from facecycle.faces.align import DEFAULT_MARGIN, DEFAULT_SIZE, Border, align_face, template_points, transform_points
from facecycle.faces.landmarks import Backend, Face, FaceDetector
from facecycle.faces.masks import REGION_NAMES, face_masks
from facecycle.faces.video import VIDEO_EXTENSIONS, is_video, iter_frames


@dataclass
class PrepareReport:
    """Counts and per-file lists; written as OUTPUT/report.json. Nothing is dropped silently:
    every input file ends up in exactly one of `with_faces`, `no_face`, `unreadable`."""

    input: str
    output: str
    settings: dict[str, Any]
    images_read: int = 0
    videos_read: int = 0
    frames_read: int = 0
    faces_written: int = 0
    faces_approximate: int = 0  # Haar fallback (no landmarks): check these crops
    approximate: list[str] = field(default_factory=list)  # their crop names; they get no region masks
    with_faces: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)  # images, or "video.mp4#frame=12"
    unreadable: list[dict[str, str]] = field(default_factory=list)
    skipped_other: list[str] = field(default_factory=list)  # files that are neither image nor video
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"read {self.images_read} image(s), {self.videos_read} video(s) ({self.frames_read} frames sampled)",
            f"wrote {self.faces_written} aligned face(s) to {self.output}"
            + (f" ({self.faces_approximate} approximate from the Haar fallback: face mask is an ellipse, "
               "no region masks; listed in report.json)" if self.faces_approximate else ""),
            f"no face found: {len(self.no_face)}; unreadable: {len(self.unreadable)}"
            + (f"; not images/videos: {len(self.skipped_other)}" if self.skipped_other else ""),
        ]
        for item in self.unreadable[:5]:
            lines.append(f"  unreadable {item['file']}: {item['error']}")
        for item in self.no_face[:5]:
            lines.append(f"  no face {item}")
        if len(self.no_face) > 5:
            lines.append(f"  ... {len(self.no_face) - 5} more in report.json")
        return "\n".join(lines)


def _inputs(root: Path) -> tuple[list[Path], list[Path]]:
    """(media files, other files) below `root`, sorted; a single file is its own list."""
    if not root.exists():
        raise DataError(f"input does not exist: {root}")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    media = {e for e in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS}
    keep = [p for p in files if p.suffix.lower() in media]
    other = [p for p in files if p.suffix.lower() not in media and not p.name.startswith(".")]
    return keep, other


def prepare_faces(input_path: str | Path, output: str | Path, *, size: int = DEFAULT_SIZE,
                  margin: float = DEFAULT_MARGIN, masks: bool = False, regions: tuple[str, ...] = (),
                  every: int = 1, all_faces: bool = False, border: Border = "constant",
                  backend: Backend = "mediapipe", min_confidence: float = 0.5,
                  model_path: str | Path | None = None,
                  progress: Callable[[str], None] | None = None) -> PrepareReport:
    """Detect, align and save faces from a folder of photos/videos or one file.

    input_path: folder (searched recursively) or a single image/video file.
    size, margin, border: crop geometry (see `facecycle.faces.align`).
    masks: also write face-oval masks; regions: extra region masks from REGION_NAMES.
    every: use every N-th video frame. all_faces: every face, not only the largest.
    Returns the report (also written to OUTPUT/report.json). Raises DataError when the
    input is missing or holds no image/video at all.
    """
    bad = [r for r in regions if r not in REGION_NAMES or r == "face"]
    if bad:
        raise DataError(f"unknown region mask(s) {bad}; choose from {', '.join(r for r in REGION_NAMES if r != 'face')}")
    if every < 1:
        raise DataError("--every must be at least 1")
    root, out = Path(input_path), Path(output)
    files, other = _inputs(root)
    if not files:
        raise DataError(f"{root} holds no image ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                        f"or video ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    base = root if root.is_dir() else root.parent
    settings = dict(size=size, margin=margin, masks=masks, regions=list(regions), every=every,
                    all_faces=all_faces, border=border, backend=backend, min_confidence=min_confidence)
    report = PrepareReport(input=str(root), output=str(out), settings=settings,
                           skipped_other=[str(p) for p in other])
    start = time.perf_counter()
    max_faces = 8 if all_faces else 1
    mask_names = (["face"] if masks else []) + list(regions)
    writer = _Writer(out, size, margin, border, all_faces, mask_names)
    with FaceDetector(mode="image", max_faces=max_faces, backend=backend,
                      min_confidence=min_confidence, model_path=model_path) as detector:
        for path in files:
            rel = path.relative_to(base).with_suffix("")
            if progress:
                progress(str(path))
            if is_video(path):
                _video(path, rel, every, detector, writer, report)
                continue
            try:
                rgb = np.asarray(load_image(path, channels=3))
            except DataError as exc:
                report.unreadable.append({"file": str(path), "error": str(exc)})
                continue
            report.images_read += 1
            faces = detector.detect(rgb)
            if not faces:
                report.no_face.append(str(path))
                continue
            report.with_faces.append(str(path))
            writer.write(rgb, faces, rel, {"file": str(path), "frame": None, "time": None}, report)
    report.seconds = round(time.perf_counter() - start, 2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _video(path: Path, rel: Path, every: int, detector: FaceDetector, writer: "_Writer",
           report: PrepareReport) -> None:
    # IMAGE mode on purpose: sampled frames are far apart in time, so tracking would not help
    # and a fresh detection per frame keeps each crop independent.
    frames_with_face = 0
    try:
        for index, t, rgb in iter_frames(path, every):
            report.frames_read += 1
            faces = detector.detect(rgb)
            if not faces:
                report.no_face.append(f"{path}#frame={index}")
                continue
            frames_with_face += 1
            writer.write(rgb, faces, rel / f"frame_{index:06d}",
                         {"file": str(path), "frame": index, "time": round(t, 4)}, report)
    except DataError as exc:
        report.unreadable.append({"file": str(path), "error": str(exc)})
        return
    report.videos_read += 1
    if frames_with_face:
        report.with_faces.append(str(path))


class _Writer:
    def __init__(self, out: Path, size: int, margin: float, border: Border, all_faces: bool,
                 mask_names: list[str]) -> None:
        self.out, self.size, self.margin, self.border = out, size, margin, border
        self.all_faces, self.mask_names = all_faces, mask_names

    def _save(self, folder: str, rel: Path, suffix: str) -> Path:
        path = self.out / folder / rel.parent / (rel.name + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, rgb: np.ndarray, faces: list[Face], rel: Path, source: dict[str, Any],
              report: PrepareReport) -> None:
        chosen = faces if self.all_faces else faces[:1]
        h, w = rgb.shape[:2]
        for k, face in enumerate(chosen):
            name = rel.parent / (rel.name + (f"_f{k}" if self.all_faces else ""))
            aligned = align_face(rgb, face.points5, self.size, self.margin, self.border)
            Image.fromarray(aligned.crop).save(self._save("images", name, ".png"))
            # Haar faces have no landmarks: their face mask is the template ellipse and they get
            # no region masks (listed in the report rather than given empty masks).
            names = self.mask_names if not face.approximate else [n for n in self.mask_names if n == "face"]
            for region, mask in face_masks(face.landmarks, aligned.matrix, self.size, names, self.margin).items():
                folder = "masks" if region == "face" else f"masks_{region}"
                Image.fromarray(mask).save(self._save(folder, name, ".png"))
            meta = {
                "source": {**source, "width": w, "height": h, "face_index": k, "faces_in_image": len(faces)},
                "crop": {"size": self.size, "margin": self.margin, "border": self.border,
                         "outside_fraction": round(_outside_fraction(aligned.matrix, w, h, self.size), 4)},
                "matrix": np.round(aligned.matrix, 6).tolist(),
                "points5_crop": np.round(transform_points(face.points5, aligned.matrix), 3).tolist(),
                "template5_crop": np.round(template_points(self.size, self.margin), 3).tolist(),
                "face": face.to_dict(),
            }
            self._save("meta", name, ".json").write_text(json.dumps(meta))
            report.faces_written += 1
            if face.approximate:
                report.faces_approximate += 1
                report.approximate.append(str(name))


def _outside_fraction(matrix: np.ndarray, w: int, h: int, size: int, step: int = 8) -> float:
    """Share of the crop that falls outside the source photo (border fill), on a coarse grid."""
    from facecycle.faces.align import invert

    g = np.arange(step / 2, size, step)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    src = transform_points(grid, invert(matrix))
    inside = (src[:, 0] >= -0.5) & (src[:, 0] <= w - 0.5) & (src[:, 1] >= -0.5) & (src[:, 1] <= h - 0.5)
    return float(1.0 - inside.mean())


def iter_prepared(output: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(crop image path, metadata dict) for every face of a `prepare faces` output folder."""
    out = Path(output)
    for meta_path in sorted((out / "meta").rglob("*.json")):
        rel = meta_path.relative_to(out / "meta").with_suffix(".png")
        yield out / "images" / rel, json.loads(meta_path.read_text())
