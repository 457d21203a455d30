"""--face-reference picks the right person in a two-person clip (real photos side by side)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("mediapipe")
pytest.importorskip("dlib")

from facecycle.data.images import load_image  # noqa: E402
from facecycle.faces.paste_masks import PasteSettings  # noqa: E402
from facecycle.inference.face_selection import reference_embedding, track_target  # noqa: E402

from faceoff_clips import photo_frames, side_by_side, write_clip  # noqa: E402


def _rgb(path) -> np.ndarray:
    return np.asarray(load_image(path, channels=3))


@pytest.fixture(scope="module")
def two_person_clip(shared_faces, tmp_path_factory):
    """Colin Powell on the left, Jennifer Capriati on the right, both moving a little; 8 frames."""
    left = photo_frames(_rgb(shared_faces / "anger" / "Colin_Powell_0030.jpg"), 8)
    right = photo_frames(_rgb(shared_faces / "anger" / "Jennifer_Capriati_0007.jpg"), 8)
    path = tmp_path_factory.mktemp("two") / "two.mp4"
    write_clip(path, [side_by_side(a, b[:, ::-1].copy()) for a, b in zip(left, right)])
    return path, left[0].shape[1]


@pytest.mark.parametrize("reference, side", [("anger/Jennifer_Capriati_0009.jpg", "right"),
                                             ("anger/Colin_Powell_0007.jpg", "left")])
def test_reference_picks_the_person_in_the_photo(shared_faces, two_person_clip, reference, side) -> None:
    video, half = two_person_clip
    # A *different* photo of the person: the match is by identity, not by pixels.
    target = track_target(video, PasteSettings(), reference_embedding(shared_faces / reference))
    assert target["tracks"] == 2
    faces = [f[0] for f in target["faces_per_frame"] if f]
    assert len(faces) == 8
    centres = [float(f.box[0] + f.box[2]) / 2 for f in faces]
    assert all((c > half) == (side == "right") for c in centres)
    d = target["selection"]["distances"]
    assert min(d) < 0.6 < max(d)  # the chosen track is the same person by dlib's threshold, the other is not


def test_without_reference_the_main_person_is_taken(two_person_clip) -> None:
    video, _ = two_person_clip
    target = track_target(video, PasteSettings(), None)
    assert target["selection"]["reason"].startswith("main person")
    assert sum(bool(f) for f in target["faces_per_frame"]) == 8


def test_reference_without_a_face_is_a_clear_error(tmp_path) -> None:
    from PIL import Image

    from facecycle.errors import DataError

    Image.new("RGB", (120, 120), (30, 90, 160)).save(tmp_path / "sky.png")
    with pytest.raises(DataError, match="no face found in the reference photo"):
        reference_embedding(tmp_path / "sky.png")
    with pytest.raises(DataError, match="does not exist"):
        reference_embedding(tmp_path / "missing.jpg")


def test_failed_detections_get_interpolated_landmarks(tmp_path) -> None:
    """Frames where the face is hidden (a grey block over it) are filled from the track."""
    from faceoff_clips import avatar_frames

    frames = avatar_frames(5, ["neutral", "happy"], 14)
    for i in (6, 7):  # two frames: the face disappears (detection fails)
        frames[i] = np.full_like(frames[i], 200)
    for i in (10, 11, 12):  # a gap longer than max_gap: given up
        frames[i] = np.full_like(frames[i], 200)
    path = tmp_path / "gap.mp4"
    write_clip(path, frames)
    target = track_target(path, PasteSettings(max_gap=2), None)
    stats = target["track_stats"]
    assert (stats["interpolated"], stats["gaps_given_up"]) == (2, 1)
    assert target["interpolated"][6] and target["interpolated"][7]
    assert target["faces_per_frame"][6] and not target["faces_per_frame"][11] and target["faces_per_frame"][13]


def test_training_crops_keep_only_the_reference_person(shared_faces, two_person_clip, tmp_path) -> None:
    """With a reference, the extract stage keeps one crop per frame: the requested person's."""
    import json

    from facecycle.faceoff.data import keep_reference_person
    from facecycle.faces.prepare import prepare_faces

    video, half = two_person_clip
    prepare_faces(video, tmp_path / "faces", size=96, all_faces=True, every=2)
    kept = keep_reference_person(tmp_path / "faces", reference_embedding(shared_faces / "anger" / "Colin_Powell_0007.jpg"))
    assert len(kept) == 4  # frames 0, 2, 4, 6
    for crop in kept:
        meta = json.loads((tmp_path / "faces" / "meta" / crop.relative_to(tmp_path / "faces" / "images")).with_suffix(".json").read_text())
        box = meta["face"]["box"]
        assert (box[0] + box[2]) / 2 < half  # Colin Powell is on the left


def test_a_reference_nobody_in_the_video_matches_is_flagged(shared_faces, two_person_clip) -> None:
    video, _ = two_person_clip
    stranger = sorted((shared_faces / "happiness").glob("George_W_Bush_*.jpg"))[0]
    target = track_target(video, PasteSettings(), reference_embedding(stranger))
    assert "warning: no face in the video is the reference person" in target["selection"]["reason"]
