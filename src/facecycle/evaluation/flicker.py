"""Temporal consistency of translated videos: how much the output flickers inside the face.

Two figures, both in grey levels (0-255, mean over RGB) and both *relative to the input*, so a
face that really moves or talks is not counted as flicker:

flicker          mean over consecutive frame pairs of
                 mean|out_t - out_{t-1}| - mean|in_t - in_{t-1}|, inside the face region
                 (the union of both frames' face masks). 0 means the output changes no more
                 than the input did; a generator that repaints the face differently every
                 frame scores high.
flicker_warp     the same with motion compensated: Farneback optical flow measured on the
                 *input* frames warps frame t-1 onto frame t, and the residual
                 mean|x_t - warp(x_{t-1})| of the output minus that of the input is averaged.
                 Real motion is explained by the flow, so what remains is change the input
                 did not have.

Lower is better for both; negative means the output is calmer than the input (a generator
that smooths away sensor noise). Frame pairs whose input changes by more than `cut` grey levels
inside the face (a scene cut, a different photo) are skipped and counted as `flicker_cuts`:
across a cut every pixel is new and no change counts as flicker. `video_flicker` finds the face regions itself (tracked on the input
video), so `facecycle evaluate --video-in --video-out` needs no model.
"""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from facecycle.errors import DataError, require


DEFAULT_CUT = 20.0


Frame = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]  # (input, output, mask)


def _pair_values(frames: Iterable[Frame], flow: bool, cut: float) -> dict[str, list[float]]:
    """Per-pair figures over a stream of (input, output, mask) frames; only the previous frame is
    held, so a long video is measured in constant memory."""
    from facecycle.faces.temporal import backward_flow, warp_with_flow

    values: dict[str, list[float]] = {"change_in": [], "change_out": [], "warp_in": [], "warp_out": [], "cuts": []}
    previous: Frame | None = None
    for t, current in enumerate(frames):
        if previous is not None:
            _one_pair(previous, current, t, values, flow, cut, backward_flow, warp_with_flow)
        previous = current
    return values


def _one_pair(previous: Frame, current: Frame, t: int, values: dict[str, list[float]], flow: bool, cut: float,
              backward_flow, warp_with_flow) -> None:
    (in0, out0, m0), (in1, out1, m1) = previous, current
    if m0 is None and m1 is None:
        return
    region = (m0 if m0 is not None else False) | (m1 if m1 is not None else False)
    if not region.any():
        return
    i0, i1 = in0.astype(np.float32), in1.astype(np.float32)
    o0, o1 = out0.astype(np.float32), out1.astype(np.float32)
    change_in = float(np.abs(i1 - i0).mean(axis=2)[region].mean())
    if change_in > cut:
        values["cuts"].append(t)
        return
    values["change_in"].append(change_in)
    values["change_out"].append(float(np.abs(o1 - o0).mean(axis=2)[region].mean()))
    if flow:
        f = backward_flow(in1, in0)
        values["warp_in"].append(float(np.abs(i1 - warp_with_flow(i0, f)).mean(axis=2)[region].mean()))
        values["warp_out"].append(float(np.abs(o1 - warp_with_flow(o0, f)).mean(axis=2)[region].mean()))


def _summary(v: dict[str, list[float]], flow: bool) -> dict[str, float | int | None]:
    def mean(key: str) -> float | None:
        return float(np.mean(v[key])) if v[key] else None

    def diff(a: str, b: str) -> float | None:
        return float(np.mean(np.subtract(v[a], v[b]))) if v[a] else None

    return {
        "flicker": diff("change_out", "change_in"),
        "flicker_warp": diff("warp_out", "warp_in") if flow else None,
        "flicker_output_change": mean("change_out"),
        "flicker_input_change": mean("change_in"),
        "flicker_output_warp_error": mean("warp_out"),
        "flicker_input_warp_error": mean("warp_in"),
        "flicker_pairs": len(v["change_in"]),
        "flicker_cuts": len(v["cuts"]),
    }


def flicker_metrics(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
                    masks: Sequence[np.ndarray | None], flow: bool = True,
                    cut: float = DEFAULT_CUT) -> dict[str, float | int | None]:
    """Flicker figures of a translated clip (see the module docstring).

    inputs, outputs: equally long sequences of (H, W, 3) uint8 RGB frames, same sizes.
    masks:           per frame, (H, W) bool face region or None (no face in that frame).
    cut:             input change (grey levels) above which a pair is a cut and skipped.
    Returns flicker, flicker_warp (None without flow), their parts (flicker_output_change,
    flicker_input_change, ...), flicker_pairs (frame pairs measured) and flicker_cuts (pairs
    skipped as cuts). Means are None when no pair was measured.
    """
    if not (len(inputs) == len(outputs) == len(masks)):
        raise ValueError(f"inputs, outputs and masks must be equally long, got {len(inputs)}, {len(outputs)}, {len(masks)}")
    if inputs and inputs[0].shape != outputs[0].shape:
        raise ValueError(f"input frames {inputs[0].shape} and output frames {outputs[0].shape} differ in size")
    return _summary(_pair_values(zip(inputs, outputs, masks), flow, cut), flow)


def face_region(faces: Sequence, shape: tuple[int, ...], grow: float = 0.1) -> np.ndarray | None:
    """(H, W) bool union of the faces' landmark face ovals (box for Haar faces), each grown by
    `grow` of its box width so the pasted mask's feathered rim is inside; None without faces."""
    cv2 = require("cv2", "faces", "face regions")
    from facecycle.faces.regions import FACE_OVAL

    present = [f for f in faces if f is not None]
    if not present:
        return None
    mask = np.zeros(shape[:2], np.uint8)
    for face in present:
        if face.landmarks is not None:
            poly = np.round(face.landmarks[list(FACE_OVAL)]).astype(np.int32)
            cv2.fillPoly(mask, [poly], 1)
        else:
            x0, y0, x1, y1 = (int(round(float(v))) for v in face.box)
            mask[max(0, y0):y1, max(0, x0):x1] = 1
        r = max(1, int(round(grow * float(face.box[2] - face.box[0]))))
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return mask.astype(bool)


def video_flicker(input_video: str | Path, output_video: str | Path, *, max_faces: int = 4,
                  faces_per_frame: Sequence[Sequence] | None = None, flow: bool = True,
                  cut: float = DEFAULT_CUT) -> dict[str, float | int | None]:
    """Flicker of `output_video` (a translation of `input_video`, same frame count and size).

    The face region is found on the input (VIDEO-mode detection, tracks with short gaps
    filled) unless `faces_per_frame` gives it. Frames are streamed (two at a time in memory).
    Raises DataError when the two videos differ in frame count or size, or no frame has a face.
    """
    from facecycle.faces.video import iter_frames

    for p in (input_video, output_video):
        if not Path(p).is_file():
            raise DataError(f"video not found: {p}")
    if faces_per_frame is None:
        from facecycle.faces.tracking import detect_video, fill_gaps, link_tracks

        detected = detect_video(input_video, max_faces=max_faces)
        tracks = link_tracks(detected)
        for track in tracks:
            fill_gaps(track)
        faces_per_frame = [[t.faces[i] for t in tracks if t.faces[i] is not None] for i in range(len(detected))]
    counts = {"in": 0, "out": 0, "faces": 0}

    def frames() -> Iterator[Frame]:
        for a, b in zip_longest(iter_frames(input_video), iter_frames(output_video)):
            counts["in"] += a is not None
            counts["out"] += b is not None
            if a is None or b is None:
                continue  # one video is longer: count the rest, measure nothing (an error below)
            rgb_in, rgb_out = a[2], b[2]
            h, w = rgb_in.shape[:2]
            rgb_out = rgb_out[:h, :w]  # the writer pads odd sizes by one pixel
            if rgb_out.shape != rgb_in.shape:
                raise DataError(f"{output_video} frames are {rgb_out.shape[:2]}, {input_video} frames {(h, w)}")
            i = counts["in"] - 1
            mask = face_region(faces_per_frame[i] if i < len(faces_per_frame) else [], rgb_in.shape)  # type: ignore[index]
            counts["faces"] += mask is not None
            yield rgb_in, rgb_out, mask

    values = _pair_values(frames(), flow, cut)
    if counts["in"] != counts["out"]:
        raise DataError(f"{output_video} has {counts['out']} frames, {input_video} has {counts['in']}: "
                        "flicker compares a translation with its own input video")
    if not counts["faces"]:
        raise DataError(f"no face found in {input_video}, so there is no face region to measure flicker in")
    return _summary(values, flow)
