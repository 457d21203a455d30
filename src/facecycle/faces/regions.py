"""MediaPipe FaceMesh (478-point) landmark indices for the regions the pipeline uses.

Pure data, no imports, so masks can be rebuilt from a saved JSON without mediapipe.

Naming: MediaPipe names eyes from the *subject's* point of view ("right eye" is on the
image's left for a frontal face). Here every name says which side of the **image** the
part is on, which is what alignment templates and masks care about.
Each polygon is an ordered, closed ring of indices (the last point joins the first),
chained from `mediapipe.tasks.python.vision.FaceLandmarksConnections`.
"""

from __future__ import annotations

NUM_LANDMARKS = 478

# Face oval, clockwise from the forehead top (10) down the image-right side to the chin (152).
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)

# Eye openings (lid contours): lower lid outer->inner corner, then upper lid inner->outer.
EYE_IMAGE_LEFT: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_IMAGE_RIGHT: tuple[int, ...] = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)

BROW_IMAGE_LEFT: tuple[int, ...] = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
BROW_IMAGE_RIGHT: tuple[int, ...] = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)

# Outer lip contour: lower lip from the image-left corner (61) to the image-right corner (291),
# then the upper lip back.
MOUTH_OUTER: tuple[int, ...] = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)

NOSE_TIP = 1
MOUTH_CORNER_IMAGE_LEFT = 61
MOUTH_CORNER_IMAGE_RIGHT = 291

# Region name -> polygons; a region mask is the union of its filled polygons.
REGIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "face": (FACE_OVAL,),
    "eyes": (EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT),
    "brows": (BROW_IMAGE_LEFT, BROW_IMAGE_RIGHT),
    "mouth": (MOUTH_OUTER,),
}
