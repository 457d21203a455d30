"""Flicker reduction for translated video faces: flow-guided temporal blending of the crop.

A generator translates every frame on its own, so small input changes (noise, compression,
sub-pixel landmark jitter) become visible frame-to-frame changes of the painted face:
flicker. `TemporalBlender` blends each translated crop with the previous *output* crop,
moved into the current crop's frame in two steps: first the known alignment change
(`M_t @ inverse(M_{t-1})`), then the residual motion measured by Farneback optical flow between
the two aligned *input* crops. Where the warped previous input agrees with the current input
(nothing new happened there), the previous output is trusted with weight `strength`; where
they differ (a mouth opens, a head turns, the flow failed) the confidence
`exp(-(error / tau)^2)` drops and the fresh translation passes through, so motion does not
smear or lag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facecycle.errors import require
from facecycle.faces.align import invert

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def backward_flow(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 Farneback flow from `current` to `previous` (both (H, W, 3) uint8 RGB):
    pixel (x, y) of `current` was at (x, y) + flow[y, x] in `previous`."""
    cv2 = require("cv2", "faces", "optical flow")
    a = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    return cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK)


def warp_with_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Pull `image` (H, W, C) along a backward `flow` (H, W, 2): out[y, x] = image[(x, y) + flow]."""
    cv2 = require("cv2", "faces", "optical flow")
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class _State:
    centre: np.ndarray
    matrix: np.ndarray
    crop_in: np.ndarray
    crop_out: np.ndarray


class TemporalBlender:
    """Blend each face's translated crop with its previous output (see the module docstring).

    strength: weight of the warped previous output where the input did not change, in [0, 1);
              0 turns blending off. tau: input difference (grey levels, 0-255) at which the
              confidence has fallen to 1/e.
    Faces are matched to the previous frame's by box centre (closer than half a box width),
    like `LandmarkSmoother`; call `next_frame()` after each frame.
    """

    def __init__(self, strength: float = 0.6, tau: float = 8.0) -> None:
        if not 0 <= strength < 1:
            raise ValueError(f"temporal strength must be within [0, 1), got {strength}")
        self.strength, self.tau = strength, tau
        self._previous: list[_State] = []
        self._current: list[_State] = []

    def next_frame(self) -> None:
        self._previous, self._current = self._current, []

    def reset(self) -> None:
        self._previous, self._current = [], []

    def __call__(self, box: np.ndarray, matrix: np.ndarray, crop_in: np.ndarray, translated: np.ndarray) -> np.ndarray:
        """box: (4,) face box in image pixels; matrix: (2, 3) image -> crop; crop_in, translated:
        (S, S, 3) uint8 aligned input and its translation. Returns the blended (S, S, 3) uint8."""
        centre = (np.asarray(box[:2]) + np.asarray(box[2:])) / 2
        prev = self._match(centre, float(box[2] - box[0]))
        out = translated
        if prev is not None and self.strength > 0:
            out = self._blend(prev, matrix, crop_in, translated)
        self._current.append(_State(centre, np.asarray(matrix, np.float64), crop_in, out))
        return out

    def _match(self, centre: np.ndarray, width: float) -> _State | None:
        best, best_d = None, 0.5 * width
        for state in self._previous:
            d = float(np.linalg.norm(state.centre - centre))
            if d < best_d:
                best, best_d = state, d
        return best

    def _blend(self, prev: _State, matrix: np.ndarray, crop_in: np.ndarray, translated: np.ndarray) -> np.ndarray:
        cv2 = require("cv2", "faces", "temporal blending")
        size = crop_in.shape[0]
        # previous crop pixels -> image -> current crop pixels
        inv = np.vstack([invert(prev.matrix), [0, 0, 1]])
        rel = (np.vstack([matrix, [0, 0, 1]]) @ inv)[:2]
        moved_in = cv2.warpAffine(prev.crop_in, rel, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        moved_out = cv2.warpAffine(prev.crop_out, rel, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        flow = backward_flow(crop_in, moved_in)
        warped_in = warp_with_flow(moved_in, flow).astype(np.float32)
        warped_out = warp_with_flow(moved_out, flow).astype(np.float32)
        error = np.abs(crop_in.astype(np.float32) - warped_in).mean(axis=2)
        # A small blur keeps single noisy pixels from punching holes in the confidence.
        error = cv2.GaussianBlur(error, (0, 0), sigmaX=max(1.0, size / 64))
        weight = (self.strength * np.exp(-((error / self.tau) ** 2)))[..., None]
        t = translated.astype(np.float32)
        return np.clip(t + weight * (warped_out - t) + 0.5, 0, 255).astype(np.uint8)
