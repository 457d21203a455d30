"""dlib identity embeddings on real faces: same person close, different people far."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facecycle.evaluation.identity import SAME_PERSON_THRESHOLD, embed_faces, identity_distances, identity_summary
from facecycle.evaluation.inputs import to_batch


def test_mirror_image_is_the_same_person_and_others_are_not(shared_faces: Path) -> None:
    bush = to_batch([sorted(shared_faces.glob("*/George_W_Bush_*.jpg"))[0]], channels=1)
    powell = to_batch([sorted(shared_faces.glob("*/Colin_Powell_*.jpg"))[0]], channels=1)
    mirror = identity_distances(bush, bush.flip(-1))
    different = identity_distances(bush, powell)
    assert mirror[0] < SAME_PERSON_THRESHOLD
    assert different[0] > SAME_PERSON_THRESHOLD


def test_no_face_is_reported_not_guessed(shared_faces: Path) -> None:
    face = to_batch([sorted(shared_faces.glob("*/George_W_Bush_*.jpg"))[0]], channels=3)
    blank = torch.zeros_like(face)  # flat grey: nothing to detect
    emb = embed_faces(torch.cat([face, blank]))
    assert emb.found.tolist() == [True, False]
    assert np.isnan(emb.vectors[1]).all() and np.isfinite(emb.vectors[0]).all()
    summary = identity_summary(identity_distances(torch.cat([face, face]), torch.cat([face.flip(-1), blank])))
    assert summary["identity_pairs"] == 1 and summary["identity_no_face"] == 1
    assert summary["identity_same_rate"] == 1.0
    assert identity_summary(np.array([np.nan]))["identity_distance"] is None
