"""Translate the faces inside whole photos and videos ("face-off"): detect, align, translate
the aligned crop, paste it back.

The model side is one callable, `translate_crop_fn(crop) -> crop`, taking and returning a
(size, size, 3) uint8 RGB aligned crop, so this module knows nothing about torch. Typical
wiring for `facecycle translate --faces`::

    def fn(crop):                                  # (S, S, 3) uint8 -> (S, S, 3) uint8
        x = pil_to_tensor(Image.fromarray(crop))[None]
        return tensor_to_uint8(G_ab(x)[0])
    result = translate_faces(rgb, fn, size=256, margin=0.25)   # same size/margin as `prepare faces`
    Image.fromarray(result.image).save(out)
    stats = translate_video("in.mp4", "out.mp4", fn, size=256)

`size`, `margin` and `border` must match the crops the model was trained on (the defaults
match `facecycle prepare faces`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from facecycle.errors import DataError, require
from facecycle.faces.align import DEFAULT_MARGIN, DEFAULT_SIZE, Border, align_face
from facecycle.faces.landmarks import Face, FaceDetector, as_rgb_uint8, face_from_landmarks
from facecycle.faces.paste import ColorMatch, paste_face
from facecycle.faces.paste_masks import DEFAULT_REGIONS, paste_mask
from facecycle.faces.temporal import TemporalBlender
from facecycle.faces.video import open_video

CropFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class FaceoffResult:
    """image: (H, W, 3) uint8 RGB with every translated face pasted in.
    faces: the faces that were translated (image pixel coordinates), largest first."""

    image: np.ndarray
    faces: list[Face]


@dataclass
class VideoStats:
    """What `translate_video` did: frame counts, faces, the output's rate and audio handling."""

    frames: int = 0
    frames_without_face: int = 0
    frames_interpolated: int = 0  # faces from a track's interpolated landmarks (detection failed there)
    faces_translated: int = 0
    fps: float = 0.0
    audio: str = "none"  # "none" | "copied" | "re-encoded"
    size: tuple[int, int] = (0, 0)  # output (width, height)
    notes: list[str] = field(default_factory=list)


def _check_crop(out: np.ndarray, size: int) -> np.ndarray:
    out = np.asarray(out)
    if out.shape != (size, size, 3) or out.dtype != np.uint8:
        raise ValueError(
            f"translate_crop_fn must return a ({size}, {size}, 3) uint8 RGB crop, got shape {out.shape} "
            f"dtype {out.dtype}; convert model output with facecycle.data.images.tensor_to_uint8"
        )
    return out


def paste_translated(image: np.ndarray, faces: list[Face], translate_crop_fn: CropFn, *,
                     size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN, border: Border = "constant",
                     feather: float = 0.04, grow: float = 0.03, color_match: ColorMatch = "none",
                     mask: str = "face", regions: tuple[str, ...] = DEFAULT_REGIONS,
                     temporal: TemporalBlender | None = None) -> np.ndarray:
    """Translate and paste the given `faces` (already detected, e.g. smoothed video faces).

    image: (H, W, 3) uint8 RGB. Returns a new (H, W, 3) uint8 array. Faces are pasted
    smallest first so the largest (nearest) face ends on top where faces overlap.
    mask, regions: paste mask mode and its regions (see `facecycle.faces.paste_masks`);
    feather (blur) and grow (padding) soften and widen it.
    temporal: blend each translated crop with the face's previous output (video flicker
    reduction, see `facecycle.faces.temporal`); the caller calls `next_frame()` per frame.
    """
    result = np.array(image, copy=True)
    for face in sorted(faces, key=lambda f: f.area):
        aligned = align_face(image, face.points5, size, margin, border)
        translated = _check_crop(translate_crop_fn(aligned.crop), size)
        if temporal is not None:
            translated = temporal(face.box, aligned.matrix, aligned.crop, translated)
        weights = paste_mask(mask, face.landmarks, aligned.matrix, size, margin, regions)
        paste_face(result, translated, aligned.matrix, weights, feather=feather, grow=grow,
                   color_match=color_match, out=result)
    return result


def translate_faces(image: np.ndarray, translate_crop_fn: CropFn, *, detector: FaceDetector | None = None,
                    size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN, max_faces: int = 4,
                    border: Border = "constant", feather: float = 0.04, grow: float = 0.03,
                    color_match: ColorMatch = "none", mask: str = "face",
                    regions: tuple[str, ...] = DEFAULT_REGIONS) -> FaceoffResult:
    """Translate every face (up to `max_faces`, largest first) in one photo.

    image:             (H, W, 3) RGB or (H, W) grey uint8; grey comes back as 3-channel RGB.
    translate_crop_fn: (size, size, 3) uint8 aligned crop -> same shape/dtype.
    detector:          reuse one across many photos; default: a new IMAGE-mode MediaPipe one.
    feather, grow:     paste mask softness and growth, fractions of `size` (see paste.feather_mask).
    color_match:       "none" | "rgb" | "lab" | "reinhard" | "histogram": match the translated
                       face's colours to the original face's (see `paste.match_color`).
    mask, regions:     paste mask mode (see `facecycle.faces.paste_masks`).
    A photo without faces comes back unchanged with `faces == []`.
    """
    rgb = as_rgb_uint8(image)
    own = detector is None
    det = detector or FaceDetector(mode="image", max_faces=max_faces)
    try:
        faces = det.detect(rgb)[:max_faces]
    finally:
        if own:
            det.close()
    out = paste_translated(rgb, faces, translate_crop_fn, size=size, margin=margin, border=border,
                           feather=feather, grow=grow, color_match=color_match, mask=mask, regions=regions)
    return FaceoffResult(image=out, faces=faces)


class LandmarkSmoother:
    """Temporal smoothing of face points across video frames, per tracked face.

    Each new face is matched to the nearest face of the previous frame (box centres closer
    than half a box width); its points become `w * previous + (1 - w) * current` with
    `w = smooth * max(0, 1 - motion / 0.1)`, where `motion` is the median point displacement
    in eye distances. Detector jitter (~1 % of the eye distance) is therefore averaged out
    while real head motion (10 %+ per frame) passes straight through, so the pasted face
    neither trembles nor lags behind the head. `smooth = 0` turns smoothing off.
    """

    def __init__(self, smooth: float = 0.6) -> None:
        if not 0 <= smooth < 1:
            raise ValueError(f"smooth must be within [0, 1), got {smooth}")
        self.smooth = smooth
        self._previous: list[Face] = []

    def __call__(self, faces: list[Face]) -> list[Face]:
        out, taken = [], set()
        for face in faces:
            match = self._match(face, taken)
            if match is not None:
                taken.add(match)
                face = self._blend(self._previous[match], face)
            out.append(face)
        self._previous = out
        return out

    def reset(self) -> None:
        self._previous = []

    def _match(self, face: Face, taken: set[int]) -> int | None:
        centre = (face.box[:2] + face.box[2:]) / 2
        best, best_d = None, 0.5 * float(face.box[2] - face.box[0])
        for i, prev in enumerate(self._previous):
            d = float(np.linalg.norm((prev.box[:2] + prev.box[2:]) / 2 - centre))
            if i not in taken and d < best_d:
                best, best_d = i, d
        return best

    def _blend(self, prev: Face, cur: Face) -> Face:
        if (prev.landmarks is None) != (cur.landmarks is None):
            return cur
        eye_distance = max(1.0, float(np.linalg.norm(cur.points5[1] - cur.points5[0])))
        a, b = (prev.landmarks, cur.landmarks) if cur.landmarks is not None else (prev.points5, cur.points5)
        motion = float(np.median(np.linalg.norm(b - a, axis=1))) / eye_distance
        w = self.smooth * max(0.0, 1.0 - motion / 0.1)
        mixed = (w * a + (1 - w) * b).astype(np.float32)
        if cur.landmarks is not None:
            return face_from_landmarks(mixed, cur.blendshapes, cur.depth)
        box = (w * prev.box + (1 - w) * cur.box).astype(np.float32)
        return Face(box=box, points5=mixed, source=cur.source)


def translate_video(in_path: str | Path, out_path: str | Path, translate_crop_fn: CropFn, *,
                    smooth: float = 0.6, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
                    max_faces: int = 4, border: Border = "constant", feather: float = 0.04, grow: float = 0.03,
                    color_match: ColorMatch = "none", crf: int = 18, preset: str = "veryfast",
                    reencode_audio: bool = False, progress: Callable[[int], None] | None = None,
                    mask: str = "face", regions: tuple[str, ...] = DEFAULT_REGIONS, temporal: float = 0.0,
                    faces_per_frame: list[list[Face]] | None = None,
                    interpolated: list[bool] | None = None) -> VideoStats:
    """Translate the faces of every frame of a video and write an H.264 file.

    in_path:  any video PyAV reads (mp4/mov/avi/mkv/webm...).
    out_path: output file; its extension picks the container (.mp4 recommended).
    translate_crop_fn, size, margin, border, feather, grow, color_match: as `translate_faces`.
    smooth:   temporal smoothing of the face points in [0, 1) (see `LandmarkSmoother`).
    mask, regions: paste mask mode (see `facecycle.faces.paste_masks`).
    temporal: flow-guided blending strength of the translated crop in [0, 1) (0 = off; see
              `facecycle.faces.temporal`): reduces flicker.
    faces_per_frame: faces to translate in each decoded frame, e.g. one selected, gap-filled
              track (`facecycle.faces.tracking`); then no detection runs here, but `smooth`
              still applies. `interpolated[i]` marks frames whose face was interpolated
              (counted in `VideoStats.frames_interpolated`).
    crf, preset: x264 quality (lower crf = better, 18 is visually lossless) and speed.
    progress: called with the number of frames done after each frame.

    Output: same frame count and (average) frame rate as the input, yuv420p H.264; odd
    widths/heights are padded by one edge pixel because yuv420p needs even sizes. The first
    audio track is copied packet-for-packet when the output container accepts its codec,
    otherwise (or with `reencode_audio=True`) re-encoded to AAC. Frames without a face are written unchanged and counted in
    `VideoStats.frames_without_face`. Variable frame rate input is written at its average rate.
    """
    av = require("av", "video", "video translation")
    in_path, out_path = Path(in_path), Path(out_path)
    if in_path.resolve() == out_path.resolve():
        raise DataError(f"output video must differ from the input: {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    stats = VideoStats()
    src = open_video(in_path)
    try:
        v_in = src.streams.video[0]
        v_in.thread_type = "AUTO"
        a_in = src.streams.audio[0] if src.streams.audio else None
        rate = v_in.average_rate or v_in.guessed_rate or Fraction(25)
        stats.fps = float(rate)
        width, height = v_in.codec_context.width, v_in.codec_context.height
        pad_w, pad_h = width % 2, height % 2
        stats.size = (width + pad_w, height + pad_h)
        if pad_w or pad_h:
            stats.notes.append(f"padded {width}x{height} to {stats.size[0]}x{stats.size[1]} for yuv420p")
        try:
            dst = av.open(str(out_path), "w")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise DataError(f"cannot write video {out_path}: {exc}") from None
        try:
            v_out = dst.add_stream("libx264", rate=rate)
            v_out.width, v_out.height, v_out.pix_fmt = stats.size[0], stats.size[1], "yuv420p"
            v_out.options = {"crf": str(crf), "preset": preset}
            a_out, copy_audio = None, False
            if a_in is not None:
                copy_audio = not reencode_audio and a_in.codec_context.name in dst.supported_codecs
                if copy_audio:
                    a_out = dst.add_stream_from_template(a_in)
                    stats.audio = "copied"
                else:
                    a_out = dst.add_stream("aac", rate=a_in.codec_context.sample_rate)
                    # Rebuild the layout from the channel count: PCM in Matroska/AVI often has
                    # an "unspecified order" layout ("1 channels") that the AAC encoder refuses.
                    channels = a_in.codec_context.channels
                    a_out.layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
                    a_out.format = "fltp"  # the only sample format FFmpeg's native AAC encoder takes
                    # Muxing the first video packet opens every encoder; AAC refuses to open
                    # without a time base, which PyAV only sets on its first own encode.
                    a_out.time_base = Fraction(1, a_in.codec_context.sample_rate)
                    stats.audio = "re-encoded"
            blender = TemporalBlender(temporal) if temporal > 0 else None
            with FaceDetector(mode="video", max_faces=max_faces) as detector:
                smoother = LandmarkSmoother(smooth)
                last_ts = -1
                streams = [v_in] + ([a_in] if a_in is not None else [])
                for packet in src.demux(*streams):
                    if packet.stream.type == "audio":
                        if packet.dts is None:
                            continue  # demuxer flush packet
                        if copy_audio:
                            packet.stream = a_out
                            dst.mux(packet)
                        else:
                            for aframe in packet.decode():
                                aframe.pts = None  # let the encoder count samples
                                dst.mux(a_out.encode(aframe))
                        continue
                    for frame in packet.decode():
                        rgb = frame.to_ndarray(format="rgb24")
                        t_ms = int(round(float(frame.time) * 1000)) if frame.time is not None else last_ts + 1
                        last_ts = max(last_ts + 1, t_ms)
                        if faces_per_frame is None:
                            found = detector.detect(rgb, timestamp_ms=last_ts)
                        else:
                            found = faces_per_frame[stats.frames] if stats.frames < len(faces_per_frame) else []
                            if interpolated is not None and stats.frames < len(interpolated) and interpolated[stats.frames]:
                                stats.frames_interpolated += 1
                        faces = smoother(found)
                        if faces:
                            rgb = paste_translated(rgb, faces, translate_crop_fn, size=size, margin=margin,
                                                   border=border, feather=feather, grow=grow, color_match=color_match,
                                                   mask=mask, regions=regions, temporal=blender)
                            stats.faces_translated += len(faces)
                        else:
                            stats.frames_without_face += 1
                        if blender is not None:
                            blender.next_frame()
                        if pad_w or pad_h:
                            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                        out_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                        out_frame.pts = stats.frames
                        out_frame.time_base = 1 / rate
                        dst.mux(v_out.encode(out_frame))
                        stats.frames += 1
                        if progress is not None:
                            progress(stats.frames)
            dst.mux(v_out.encode(None))
            if a_out is not None and not copy_audio:
                dst.mux(a_out.encode(None))
        finally:
            dst.close()
    except av.error.FFmpegError as exc:
        raise DataError(f"video translation of {in_path} failed after {stats.frames} frames: {exc}") from None
    finally:
        src.close()
    return stats
