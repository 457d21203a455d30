"""Similarity alignment of a face to a canonical 5-point template, and the inverse warp.

Template. `TEMPLATE_5` holds the 5 points (order as `Face.points5`: image-left eye centre,
image-right eye centre, nose tip, image-left mouth corner, image-right mouth corner) in a
*unit face square* `[0, 1]^2`, x right, y down:

    eyes          (0.3422, 0.4601)  (0.6578, 0.4601)
    nose tip      (0.5000, 0.6592)
    mouth corners (0.3605, 0.8153)  (0.6395, 0.8153)

It is the widely used insightface/ArcFace 112x112 template (divided by 112) refitted to
MediaPipe's points: the generalised Procrustes mean of 300 shared facial_expressions photos,
made left-right symmetric and placed in the ArcFace frame by a similarity fit. The refit
matters because MediaPipe's eye centres (eyelid mean) and mouth corners sit slightly
differently from ArcFace's annotation; residuals of the eyes drop to ~2 px at size 256.

That square is tight (chin near the bottom edge, forehead cut). `margin` adds that fraction
of the square's side on every side, so a crop of side `size` maps template point `t` to
`(t + margin) / (1 + 2 * margin) * size` pixels. With the default margin 0.25 and size 256
the eyes land at y = 121 px, 54 px apart, and the whole head with some hair fits.

The matrix `M` (2x3 float64) maps image pixels to crop pixels: `[x', y'] = M @ [x, y, 1]`,
using the pixel-centre convention of `facecycle.faces.landmarks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from facecycle.errors import require

TEMPLATE_5 = np.array(
    [[0.3422, 0.4601], [0.6578, 0.4601], [0.5000, 0.6592], [0.3605, 0.8153], [0.6395, 0.8153]], np.float64
)
DEFAULT_SIZE = 256
DEFAULT_MARGIN = 0.25
Border = Literal["reflect", "replicate", "constant"]


@dataclass(frozen=True)
class AlignedFace:
    """crop: (size, size, C) uint8, same channels as the source image.
    matrix: (2, 3) float64, source image pixels -> crop pixels (see module docstring).
    """

    crop: np.ndarray
    matrix: np.ndarray


def template_points(size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(5, 2) float64 pixel positions of the template points in a `size` x `size` crop."""
    if size < 8:
        raise ValueError(f"crop size must be at least 8 pixels, got {size}")
    if not 0 <= margin <= 2:
        raise ValueError(f"margin must be within [0, 2] (a fraction of the face square), got {margin}")
    return (TEMPLATE_5 + margin) / (1 + 2 * margin) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    `src` (N, 2) points onto `dst` (N, 2), N >= 2 (Umeyama 1991). Returns (2, 3) float64.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (N, 2) point arrays with N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("alignment points are all at the same place")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    # The sign fix keeps a proper rotation: a mirrored face must not be "aligned" by flipping it.
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / var_s)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def alignment_matrix(points5: np.ndarray, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(2, 3) matrix taking image pixels to the crop so `points5` best match the template."""
    return similarity_transform(np.asarray(points5, np.float64), template_points(size, margin))


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix: crop pixels -> image pixels."""
    m = np.asarray(matrix, np.float64)
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))
    return inv[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points; returns (N, 2) float32."""
    p = np.asarray(points, np.float64)
    return (p @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]).astype(np.float32)


def _border(cv2, border: Border) -> int:
    return {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE,
            "constant": cv2.BORDER_CONSTANT}[border]


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int, border: Border = "reflect") -> np.ndarray:
    """Resample `image` (H, W[, C]) uint8 into a `size` x `size` crop through `matrix`.

    When the face is shrunk by more than ~1.5x, the source region is first reduced with
    area averaging; bilinear warping alone would alias (jagged hair, moire on fabric).
    `border`: how pixels outside the photo are filled (reflect suits training crops).
    """
    cv2 = require("cv2", "faces", "face alignment")
    m = np.asarray(matrix, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 1 / 1.5:
        h, w = image.shape[:2]
        corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]]), invert(m))
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 3
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = image[y0:y1, x0:x1]
            rw, rh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            small = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
            # Compose: image -> region (shift) -> small (scale per axis, pixel-centre aware) -> crop.
            sx, sy = rw / (x1 - x0), rh / (y1 - y0)
            to_small = np.array([[sx, 0, (0.5 * sx - 0.5) - sx * x0], [0, sy, (0.5 * sy - 0.5) - sy * y0], [0, 0, 1]])
            m = m @ np.linalg.inv(to_small)
            image = small
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=_border(cv2, border))
    return out.reshape(size, size, -1) if image.ndim == 3 else out


def align_face(image: np.ndarray, points5: np.ndarray, size: int = DEFAULT_SIZE,
               margin: float = DEFAULT_MARGIN, border: Border = "reflect") -> AlignedFace:
    """Aligned square crop of one face.

    image:   (H, W, C) or (H, W) uint8.
    points5: (5, 2) face points in image pixels (`Face.points5`).
    Returns the crop ((size, size, C) uint8) and the image->crop matrix.
    """
    matrix = alignment_matrix(points5, size, margin)
    return AlignedFace(crop=warp_to_crop(image, matrix, size, border), matrix=matrix)


def warp_from_crop(crop: np.ndarray, matrix: np.ndarray, image_shape: tuple[int, ...],
                   interpolation: Literal["linear", "cubic"] = "linear"
                   ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Inverse warp: bring a crop (or a crop-frame mask) back into the image frame.

    crop:        (S, S[, C]) uint8 or float32 in the crop frame of `matrix`.
    matrix:      (2, 3) image -> crop (as returned by `align_face`).
    image_shape: shape of the original image; only (H, W) is used.
    Returns `(patch, (x0, y0, x1, y1))`: the warped values for the image region
    `image[y0:y1, x0:x1]`, the part of the image the crop covers (empty when it is off-image).
    Pixels of the region outside the crop are 0. Working on that region, not the whole
    frame, keeps paste-back cheap on 1080p video.
    """
    cv2 = require("cv2", "faces", "face paste-back")
    h, w = image_shape[:2]
    size_y, size_x = crop.shape[:2]
    corners = transform_points(np.array([[0, 0], [size_x, 0], [0, size_y], [size_x, size_y]]), invert(matrix))
    x0, y0 = (max(0, v) for v in np.floor(corners.min(axis=0)).astype(int) - 1)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    x1, y1 = min(w, int(x1)), min(h, int(y1))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0) + crop.shape[2:], crop.dtype), (0, 0, 0, 0)
    # Shift so the region's top-left is the output origin; WARP_INVERSE_MAP samples the crop
    # at matrix @ (x, y), i.e. it uses the forward matrix directly with no inversion error.
    shifted = np.asarray(matrix, np.float64).copy()
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], np.float64)
    flags = (cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    patch = cv2.warpAffine(crop, shifted, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if crop.ndim == 3 and patch.ndim == 2:
        patch = patch[:, :, None]
    return patch, (int(x0), int(y0), int(x1), int(y1))
