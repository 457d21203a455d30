"""Binary face / region masks in the aligned crop frame.

Masks are (size, size) uint8 with 255 inside and 0 outside, saved as single-channel
("L") PNGs whose pixels line up with the aligned crop of the same name. Regions come from
the MediaPipe polygons in `facecycle.faces.regions`:

    face   the face oval (forehead to chin, cheek to cheek; hair and ears excluded)
    eyes   both eye openings
    brows  both eyebrows
    mouth  the outer lip contour

Faces found only by the Haar fallback have no landmarks; `template_face_mask` gives an
ellipse fitted to the mean MediaPipe face oval in the canonical template frame instead.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from facecycle.errors import require
from facecycle.faces import regions
from facecycle.faces.align import DEFAULT_MARGIN, DEFAULT_SIZE, transform_points

REGION_NAMES: tuple[str, ...] = tuple(regions.REGIONS)

# Ellipse (centre x, centre y, semi-axis x, semi-axis y) in the unit face square of
# `facecycle.faces.align.TEMPLATE_5`: the bounding ellipse of the mean aligned MediaPipe
# face oval over 300 shared facial_expressions photos.
TEMPLATE_FACE_ELLIPSE = (0.500, 0.626, 0.356, 0.414)

_SUBPIXEL_BITS = 4  # fillPoly fixed-point precision: 1/16 px vertices, so masks do not snap to the grid


def polygon_mask(polygons: Iterable[np.ndarray], size: int) -> np.ndarray:
    """Union of filled polygons ((N, 2) float pixel points each) as a (size, size) uint8 0/255 mask."""
    cv2 = require("cv2", "faces", "face masks")
    mask = np.zeros((size, size), np.uint8)
    scaled = [np.round(np.asarray(p, np.float64) * (1 << _SUBPIXEL_BITS)).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, scaled, 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask


def region_mask(landmarks_crop: np.ndarray, size: int, region: str = "face") -> np.ndarray:
    """Mask of one named region from (478, 2) landmarks already in crop pixels."""
    if region not in regions.REGIONS:
        raise ValueError(f"unknown mask region {region!r}; choose from {', '.join(REGION_NAMES)}")
    lm = np.asarray(landmarks_crop, np.float32)
    return polygon_mask([lm[list(poly)] for poly in regions.REGIONS[region]], size)


def template_face_mask(size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Elliptical face mask in the canonical crop frame (for faces without landmarks)."""
    cx, cy, ax, ay = TEMPLATE_FACE_ELLIPSE
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    unit = np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)
    return polygon_mask([(unit + margin) / (1 + 2 * margin) * size], size)


def face_masks(landmarks: np.ndarray | None, matrix: np.ndarray, size: int,
               names: Iterable[str] = ("face",), margin: float = DEFAULT_MARGIN) -> dict[str, np.ndarray]:
    """Masks for `names` in the crop frame of `matrix`.

    landmarks: (478, 2) image-pixel landmarks (`Face.landmarks`) or None (Haar face: only
               "face" is available, as the template ellipse; `margin` must match the crop's).
    matrix:    (2, 3) image -> crop, from `align_face`.
    Returns {name: (size, size) uint8 0/255}.
    """
    names = list(names)
    if landmarks is None:
        unknown = [n for n in names if n != "face"]
        if unknown:
            raise ValueError(f"region masks {unknown} need landmarks; this face has none (Haar fallback)")
        return {"face": template_face_mask(size, margin)} if names else {}
    in_crop = transform_points(landmarks, matrix)
    return {name: region_mask(in_crop, size, name) for name in names}
