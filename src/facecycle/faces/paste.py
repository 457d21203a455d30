"""Paste a (translated) aligned crop back into the photo it came from.

The crop is warped back with the inverse of its alignment transform and blended through a
feathered mask, so only the face changes and no seam shows. Optional colour matching
(`match_color`: mean/std in RGB, Lab or Reinhard's l-alpha-beta, or histogram matching) moves
the crop's colour statistics inside the mask onto those of the original face: generators often shift skin tone or brightness slightly, which is far more
visible after pasting than in the crop on its own.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from facecycle.errors import require
from facecycle.faces.align import warp_from_crop, warp_to_crop

ColorMatch = Literal["none", "rgb", "lab", "reinhard", "histogram"]
COLOR_MATCHES: tuple[str, ...] = ("none", "rgb", "lab", "reinhard", "histogram")


def feather_mask(mask: np.ndarray, feather: float = 0.04, grow: float = 0.0) -> np.ndarray:
    """Soft blending weights from a binary crop-frame mask.

    mask:    (S, S) uint8 0/255 (or None-like full square handled by the caller).
    feather: Gaussian blur sigma as a fraction of S (0 = hard edge).
    grow:    dilate (>0) or erode (<0) first, as a fraction of S. Growing a face-oval mask a
             little lets the translated jaw line and forehead in; eroding keeps the blend
             off the crop's border.
    Returns (S, S) float32 in [0, 1].
    """
    cv2 = require("cv2", "faces", "face paste-back")
    size = mask.shape[0]
    m = (np.asarray(mask) > 127).astype(np.uint8)
    radius = int(round(abs(grow) * size))
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        m = cv2.dilate(m, kernel) if grow > 0 else cv2.erode(m, kernel)
    weights = m.astype(np.float32)
    sigma = feather * size
    if sigma > 0:
        weights = cv2.GaussianBlur(weights, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    return np.clip(weights, 0.0, 1.0)


def square_mask(size: int, inset: float = 0.06) -> np.ndarray:
    """(size, size) uint8 mask of the whole crop minus an `inset` border (fraction of size),
    for pasting the full crop when no face mask is available."""
    mask = np.zeros((size, size), np.uint8)
    b = int(round(inset * size))
    mask[b : size - b, b : size - b] = 255
    return mask


def _weighted_stats(a: np.ndarray, w: np.ndarray, total: float) -> tuple[np.ndarray, np.ndarray]:
    mean = (a * w).sum(axis=(0, 1)) / total
    std = np.sqrt(((a - mean) ** 2 * w).sum(axis=(0, 1)) / total)
    return mean, std


# Reinhard et al. 2001, "Color Transfer between Images": RGB -> LMS -> log10 -> l-alpha-beta,
# a decorrelated opponent space where a per-channel mean/std transfer does not shift hues.
_RGB2LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
_LMS2LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array([[1, 1, 1], [1, 1, -2], [1, -1, 0]])


def _to_lalphabeta(rgb: np.ndarray) -> np.ndarray:
    lms = np.maximum(rgb.astype(np.float64) / 255.0, 1 / 255.0) @ _RGB2LMS.T
    return np.log10(lms) @ _LMS2LAB.T


def _from_lalphabeta(lab: np.ndarray) -> np.ndarray:
    lms = 10.0 ** (lab @ np.linalg.inv(_LMS2LAB).T)
    return np.clip(lms @ np.linalg.inv(_RGB2LMS).T * 255.0, 0, 255).round().astype(np.uint8)


def _match_histogram(crop: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-channel weighted histogram matching: each crop level goes to the reference level of the
    same weighted cumulative share, so the face's whole tone distribution (not only mean/std) moves."""
    out = np.empty_like(crop)
    w = weights.ravel().astype(np.float64)
    for c in range(3):
        src_hist = np.bincount(crop[..., c].ravel(), weights=w, minlength=256)
        ref_hist = np.bincount(reference[..., c].ravel(), weights=w, minlength=256)
        src_cdf = np.cumsum(src_hist) / max(src_hist.sum(), 1e-9)
        ref_cdf = np.cumsum(ref_hist) / max(ref_hist.sum(), 1e-9)
        lut = np.interp(src_cdf, ref_cdf, np.arange(256))
        out[..., c] = np.clip(lut, 0, 255).round().astype(np.uint8)[crop[..., c]]
    return out


def match_color(crop: np.ndarray, reference: np.ndarray, weights: np.ndarray, space: ColorMatch = "lab") -> np.ndarray:
    """Move `crop`'s colour statistics onto `reference`'s (both (S, S, 3) uint8 RGB).

    weights: (S, S) float32 in [0, 1], where the statistics are measured (the face).
    "lab" matches weighted per-channel mean/std in CIE Lab, which separates brightness from
    colour so a lighting change does not tint the skin; "rgb" matches channels directly;
    "reinhard" is the mean/std transfer in Reinhard's log l-alpha-beta space (gain capped at
    [0.2, 5] against flat regions, looser than "lab"'s); "histogram" matches each RGB channel's weighted histogram.
    Returns (S, S, 3) uint8.
    """
    if space == "none":
        return crop
    if space not in COLOR_MATCHES:
        raise ValueError(f"color match must be one of {', '.join(COLOR_MATCHES)}, got {space!r}")
    cv2 = require("cv2", "faces", "colour matching")
    w = weights.astype(np.float64)[..., None]
    total = float(w.sum())
    if total < 1.0:  # no face pixels to measure
        return crop
    if space == "histogram":
        return _match_histogram(np.asarray(crop, np.uint8), np.asarray(reference, np.uint8), weights)
    if space == "reinhard":
        src, ref = _to_lalphabeta(crop), _to_lalphabeta(reference)
        (ms, ss), (mr, sr) = _weighted_stats(src, w, total), _weighted_stats(ref, w, total)
        return _from_lalphabeta((src - ms) * np.clip(sr / np.maximum(ss, 1e-6), 0.2, 5.0) + mr)
    to = (lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2LAB).astype(np.float64)) if space == "lab" else (lambda a: a.astype(np.float64))
    src, ref = to(crop), to(reference)
    (ms, ss), (mr, sr) = _weighted_stats(src, w, total), _weighted_stats(ref, w, total)
    # Cap the gain: on a flat face region a tiny std would otherwise amplify noise wildly.
    gain = np.clip(sr / np.maximum(ss, 1e-3), 0.5, 2.0)
    out = np.clip((src - ms) * gain + mr, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_LAB2RGB) if space == "lab" else out


def paste_face(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None, *,
               feather: float = 0.04, grow: float = 0.0, color_match: ColorMatch = "none",
               out: np.ndarray | None = None) -> np.ndarray:
    """Blend an aligned crop back into `image`.

    image:  (H, W, C) uint8, the photo the crop was aligned from (C = 3 for colour matching).
    crop:   (S, S, C) uint8, e.g. the generator output for the aligned crop.
    matrix: (2, 3) image -> crop, from `align_face`.
    mask:   (S, S) uint8 0/255 crop-frame mask of what to paste (e.g. `face_masks(...)["face"]`);
            None pastes the whole square with a feathered border.
    feather, grow: see `feather_mask`.
    color_match:   one of COLOR_MATCHES (see `match_color`).
    out:    write into this array (may be `image` itself, to paste several faces in turn).
    Returns the (H, W, C) uint8 result; pixels outside the warped mask are exactly `image`.
    """
    image = np.asarray(image)
    crop = np.asarray(crop)
    if crop.ndim != image.ndim or crop.shape[0] != crop.shape[1] or (image.ndim == 3 and crop.shape[2] != image.shape[2]):
        raise ValueError(f"crop {crop.shape} must be square with the same channels as image {image.shape}")
    size = crop.shape[0]
    weights = feather_mask(square_mask(size) if mask is None else mask, feather, grow)
    if color_match != "none":
        reference = warp_to_crop(image, matrix, size)
        crop = match_color(crop, reference, weights, color_match)
    patch, (x0, y0, x1, y1) = warp_from_crop(crop, matrix, image.shape)
    alpha, _ = warp_from_crop(weights, matrix, image.shape)
    result = image.copy() if out is None else out
    if x1 <= x0 or y1 <= y0:
        return result
    region = result[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None] if region.ndim == 3 else alpha
    blended = region + a * (patch.astype(np.float32) - region)
    result[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return result
