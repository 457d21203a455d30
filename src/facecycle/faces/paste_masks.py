"""Which part of a translated crop is pasted back: the paste mask modes.

Every mode gives a (size, size) uint8 0/255 mask in the aligned crop frame; `paste_face`
then grows it by `grow` ("padding") and blurs it by `feather`. Modes:

    square   the whole aligned square minus a small inset: hair and background change too
             (whole-face styles, cartoons)
    oval     the template face ellipse: needs no landmarks, steady from frame to frame
             (landmark masks wobble with the detector's noise)
    face     the landmark face oval (brows to chin, cheek to cheek); the default
    hull     the convex hull of all 478 landmarks: the oval plus the forehead landmarks
    regions  only the expression regions (eyes, brows, mouth) from the landmarks, so the
             rest of the face stays the original; pick them with `regions`

Faces without landmarks (Haar fallback) fall back to "oval" for the landmark modes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np

from facecycle.errors import require
from facecycle.faces.align import DEFAULT_MARGIN, transform_points
from facecycle.faces.masks import face_masks, polygon_mask, template_face_mask
from facecycle.faces.paste import square_mask

MaskMode = Literal["square", "oval", "face", "hull", "regions"]
MASK_MODES: tuple[str, ...] = ("square", "oval", "face", "hull", "regions")
DEFAULT_REGIONS: tuple[str, ...] = ("eyes", "brows", "mouth")


def paste_mask(mode: str, landmarks: np.ndarray | None, matrix: np.ndarray, size: int,
               margin: float = DEFAULT_MARGIN, regions: Sequence[str] = DEFAULT_REGIONS) -> np.ndarray:
    """(size, size) uint8 0/255 paste mask of `mode` (see the module docstring).

    landmarks: (478, 2) image-pixel landmarks (`Face.landmarks`) or None.
    matrix:    (2, 3) image -> crop, from `align_face`; margin: the crop's alignment margin.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"paste mask must be one of {', '.join(MASK_MODES)}, got {mode!r}")
    if mode == "square":
        return square_mask(size)
    if mode == "oval" or landmarks is None:
        return template_face_mask(size, margin)
    if mode == "face":
        return face_masks(landmarks, matrix, size, ["face"], margin)["face"]
    if mode == "hull":
        cv2 = require("cv2", "faces", "face masks")
        points = transform_points(landmarks, matrix).astype(np.float32)
        return polygon_mask([cv2.convexHull(points)[:, 0, :]], size)
    masks = face_masks(landmarks, matrix, size, list(regions), margin)
    return np.maximum.reduce(list(masks.values())) if masks else np.zeros((size, size), np.uint8)


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
