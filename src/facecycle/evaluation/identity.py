"""Identity preservation: dlib's 128-d face embeddings (the `face_recognition` model).

Pipeline per image, as `face_recognition.face_encodings` does it: dlib's HOG frontal face
detector (upsampled once, so faces down to ~40 px are found), the 5-point shape predictor,
then the ResNet embedding of the aligned 150x150 chip. Two embeddings closer than 0.6
(Euclidean) are the same person by the model's published threshold (99.38 % on LFW).

Model files come from the `face-recognition-models` package, located without importing it
(its `__init__` needs `pkg_resources`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facecycle.errors import require
from facecycle.evaluation._assets import find_asset
from facecycle.evaluation.inputs import to_uint8_images

SAME_PERSON_THRESHOLD = 0.6
EMBEDDING_DIM = 128


@functools.lru_cache(maxsize=1)
def _models(model_dir: str | None):
    dlib = require("dlib", "eval", "identity embeddings")

    def model(name: str) -> str:
        override = None if model_dir is None else Path(model_dir) / name
        return str(find_asset(f"models/{name}", "face_recognition_models", "face-recognition-models", f"dlib model {name}", override=override))

    return (
        dlib,
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(model("shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(model("dlib_face_recognition_resnet_model_v1.dat")),
    )


@dataclass(frozen=True)
class Embeddings:
    """`vectors`: `(N, 128)` float64, NaN rows where no face was found; `found`: `(N,)` bool."""

    vectors: np.ndarray
    found: np.ndarray


def embed_faces(images: torch.Tensor, upsample: int = 1, whole_image_fallback: bool = False, model_dir: str | os.PathLike[str] | None = None) -> Embeddings:
    """dlib identity embedding of the largest face in each image.

    images: `(N, C, H, W)` float in [-1, 1], C = 1 (repeated to RGB) or 3.
    whole_image_fallback: when the detector finds no face, treat the whole image as the
        face box (right for already-aligned face crops that the HOG detector misses, e.g.
        heavily stylised translations); otherwise the row is NaN and `found` is False.
    """
    dlib, detector, predictor, encoder = _models(None if model_dir is None else str(model_dir))
    vectors = np.full((images.shape[0], EMBEDDING_DIM), np.nan)
    found = np.zeros(images.shape[0], bool)
    for i, rgb in enumerate(to_uint8_images(images, channels=3)):
        boxes = list(detector(rgb, upsample))
        if boxes:
            box = max(boxes, key=lambda r: r.area())
        elif whole_image_fallback:
            box = dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
        else:
            continue
        shape = predictor(rgb, box)
        vectors[i] = np.asarray(encoder.compute_face_descriptor(rgb, shape, 0), np.float64)
        found[i] = True
    return Embeddings(vectors, found)


def identity_distances(x: torch.Tensor, y: torch.Tensor, **kwargs: object) -> np.ndarray:
    """Per-pair embedding distance, `(N,)` float64, NaN where either image has no face.

    x, y: `(N, C, H, W)` float in [-1, 1] (e.g. inputs and their translations).
    """
    ex, ey = embed_faces(x, **kwargs), embed_faces(y, **kwargs)  # type: ignore[arg-type]
    return np.linalg.norm(ex.vectors - ey.vectors, axis=1)


def identity_summary(distances: np.ndarray, threshold: float = SAME_PERSON_THRESHOLD) -> dict[str, float | int | None]:
    """Aggregate per-pair distances (NaN = no face in one of the pair).

    Returns `identity_distance` (mean over pairs with faces), `identity_same_rate`
    (fraction of those pairs under `threshold`), `identity_pairs` (pairs with faces) and
    `identity_no_face` (pairs skipped). Means are None when no pair had faces.
    """
    valid = distances[~np.isnan(distances)]
    return {
        "identity_distance": float(valid.mean()) if valid.size else None,
        "identity_same_rate": float((valid < threshold).mean()) if valid.size else None,
        "identity_pairs": int(valid.size),
        "identity_no_face": int(distances.size - valid.size),
    }
