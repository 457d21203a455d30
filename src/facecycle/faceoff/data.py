"""Face-off data stages: extract and align the faces of each input, then split train/held-out.

Held-out faces are the *last* `holdout` share of each input's frames (sorted by name, which
is frame order for videos), not a random sample: neighbouring video frames are near
duplicates, so a random split would leak training frames into the held-out set.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from facecycle.data.images import IMAGE_EXTENSIONS
from facecycle.errors import DataError
from facecycle.faces.video import VIDEO_EXTENSIONS, is_video


def check_input(path: str | Path, name: str) -> Path:
    """The input video or folder, or DataError saying what is wrong and what to pass."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{name} {p} does not exist; pass a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) "
                        "or a folder of frames/photos")
    if p.is_file() and not is_video(p) and p.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{name} {p} is neither a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) nor a folder of images")
    if p.is_dir() and not any(f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS for f in p.rglob("*")):
        raise DataError(f"{name} folder {p} holds no image or video")
    return p


def extract(source: Path, out: Path, *, size: int, margin: float, every: int, all_faces: bool,
            progress: Callable[[str], None] | None = None) -> dict:
    """`prepare faces` on one input into `out`; returns the report's counts.

    Raises DataError when not a single face was found (training would have nothing to learn)."""
    from facecycle.faces.prepare import prepare_faces

    report = prepare_faces(source, out, size=size, margin=margin, every=every, all_faces=all_faces, progress=progress)
    if report.faces_written == 0:
        raise DataError(f"no face found in {source} ({report.frames_read + report.images_read} frame(s)/photo(s) "
                        "read); use footage where one face is clearly visible and at least ~60 px wide")
    return {"faces": report.faces_written, "frames": report.frames_read, "images": report.images_read,
            "no_face": len(report.no_face), "approximate": report.faces_approximate}


def crops(prepared: Path) -> list[Path]:
    """Every aligned crop of a `prepare faces` output, in name (= frame) order."""
    return sorted((prepared / "images").rglob("*.png"))


def keep_reference_person(prepared: Path, reference: np.ndarray) -> list[Path]:
    """With several faces per frame (`all_faces`), keep in each frame only the crop nearest to
    the reference person (identity embedding; see `facecycle.inference.face_selection` for why
    it is allowed here and nowhere else in training). Frames whose best match is not the same person
    by the embedding's threshold are dropped."""
    from PIL import Image

    from facecycle.evaluation.identity import SAME_PERSON_THRESHOLD
    from facecycle.inference.face_selection import embed_chips

    frames: dict[str, list[Path]] = {}
    for crop in crops(prepared):
        meta = json.loads((prepared / "meta" / crop.relative_to(prepared / "images")).with_suffix(".json").read_text())
        src = meta["source"]
        frames.setdefault(f"{src['file']}#{src['frame']}", []).append(crop)
    kept = []
    for group in frames.values():
        vectors = embed_chips([np.asarray(Image.open(p).convert("RGB")) for p in group])
        d = np.linalg.norm(vectors - reference[None], axis=1)
        d = np.where(np.isnan(d), np.inf, d)
        if d.min() < SAME_PERSON_THRESHOLD:
            kept.append(group[int(np.argmin(d))])
    return sorted(kept)


def split(files: dict[str, list[Path]], out: Path, holdout: float) -> dict[str, int]:
    """Copy each domain's crops into `out/train<D>` and `out/test<D>` (D = A, B).

    files: {"A": [...], "B": [...]}, each in frame order; the last `holdout` share (at least
    one crop when a domain has three or more) becomes the held-out set.
    """
    counts = {}
    for domain, paths in files.items():
        if len(paths) < 2:
            raise DataError(f"only {len(paths)} face(s) found for {domain}: training needs at least 2; "
                            "use a longer video or lower --every")
        n_test = 0 if holdout <= 0 or len(paths) < 3 else max(1, int(math.floor(holdout * len(paths))))
        for rank, src in enumerate(paths):
            folder = f"{'test' if rank >= len(paths) - n_test else 'train'}{domain}"
            dst = out / folder / f"{rank:06d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            counts[folder] = counts.get(folder, 0) + 1
    return counts
