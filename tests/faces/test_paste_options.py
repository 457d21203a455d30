"""Paste-back options: Reinhard and histogram colour transfer, and the paste mask modes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from facecycle.faces.paste import match_color  # noqa: E402
from facecycle.faces.paste_masks import MASK_MODES, paste_mask  # noqa: E402


def shaded(size: int = 64, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8 smooth colour image (skin-like shading)."""
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.uniform(70, 190, (5, 5, 3)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["reinhard", "histogram", "lab", "rgb"])
def test_colour_transfer_moves_the_crop_onto_the_reference(mode) -> None:
    reference = shaded()
    # A generator-like colour shift: warmer and flatter.
    crop = (reference.astype(np.float32) * np.array([0.8, 0.9, 0.7]) + np.array([40, 10, 0])).clip(0, 255).astype(np.uint8)
    weights = np.zeros((64, 64), np.float32)
    weights[8:56, 8:56] = 1
    out = match_color(crop, reference, weights, mode)
    inside = weights > 0
    before = np.abs(crop.astype(float) - reference)[inside].mean()
    after = np.abs(out.astype(float) - reference)[inside].mean()
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert after < 0.35 * before, (mode, before, after)


def test_unknown_colour_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="reinhard"):
        match_color(shaded(), shaded(), np.ones((64, 64), np.float32), "magic")  # type: ignore[arg-type]


def test_mask_modes_nest_on_a_real_face() -> None:
    pytest.importorskip("mediapipe")
    from facecycle.faces.align import align_face
    from facecycle.faces.landmarks import FaceDetector

    from faceoff_clips import avatar_frames

    frame = avatar_frames(4, ["happy"], 1, size=160, canvas=192)[0]
    with FaceDetector(mode="image") as detector:
        face = detector.detect(frame)[0]
    size = 96
    matrix = align_face(frame, face.points5, size).matrix
    area = {m: int((paste_mask(m, face.landmarks, matrix, size) > 0).sum()) for m in MASK_MODES}
    assert area["square"] > area["hull"] >= area["face"] > area["regions"] > 0 and area["oval"] > 0
    mouth = paste_mask("regions", face.landmarks, matrix, size, regions=("mouth",))
    assert 0 < (mouth > 0).sum() < area["regions"]
    # Without landmarks (Haar faces) the landmark modes fall back to the template oval.
    assert np.array_equal(paste_mask("face", None, matrix, size), paste_mask("oval", None, matrix, size))
    with pytest.raises(ValueError, match="paste mask"):
        paste_mask("blob", face.landmarks, matrix, size)
