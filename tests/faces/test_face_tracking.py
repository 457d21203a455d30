"""Face tracks: linking detections across frames, interpolating short gaps, giving up on long ones."""

from __future__ import annotations

import numpy as np
import pytest

from facecycle.faces.landmarks import Face
from facecycle.faces.tracking import fill_gaps, link_tracks


def face_at(x: float, y: float, w: float = 40.0) -> Face:
    """A Haar-style face (box + 5 points) centred at (x, y)."""
    box = np.array([x - w / 2, y - w / 2, x + w / 2, y + w / 2], np.float32)
    points = np.array([[x - 8, y - 5], [x + 8, y - 5], [x, y + 3], [x - 6, y + 10], [x + 6, y + 10]], np.float32)
    return Face(box=box, points5=points, source="haar")


def test_two_people_become_two_tracks_and_a_short_gap_is_interpolated() -> None:
    frames = []
    for i in range(10):
        faces = [face_at(50 + i, 60)]  # left person, drifting right
        if i not in (4, 5):  # right person: detection fails in frames 4 and 5
            faces.append(face_at(200 + 2 * i, 60))
        frames.append(faces)
    tracks = link_tracks(frames, max_gap=3)
    assert len(tracks) == 2 and tracks[0].detections == 10 and tracks[1].detections == 8
    right = tracks[1]
    stats = fill_gaps(right, max_gap=3)
    assert (stats.detected, stats.interpolated, stats.missing, stats.gaps_given_up) == (8, 2, 0, 0)
    # Linear between frame 3 (x = 206) and frame 6 (x = 212).
    centre4 = float(right.faces[4].box[0] + right.faces[4].box[2]) / 2
    assert centre4 == pytest.approx(208, abs=1e-3)
    assert not right.detected[4] and right.faces[4] is not None


def test_a_gap_longer_than_max_gap_is_given_up() -> None:
    frames = [[face_at(50, 60)] if i < 2 or i > 8 else [] for i in range(12)]
    tracks = link_tracks(frames, max_gap=8)
    assert len(tracks) == 1
    stats = fill_gaps(tracks[0], max_gap=3)
    assert (stats.detected, stats.interpolated, stats.missing, stats.gaps_given_up) == (5, 0, 7, 1)
    assert all(tracks[0].faces[i] is None for i in range(2, 9))


def test_faces_far_apart_in_time_start_a_new_track() -> None:
    frames = [[face_at(50, 60)]] + [[] for _ in range(6)] + [[face_at(50, 60)]]
    assert len(link_tracks(frames, max_gap=2)) == 2
