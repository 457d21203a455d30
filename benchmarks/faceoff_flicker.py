"""Flicker before/after temporal blending on a face-off of two clips made from real photos.

    python benchmarks/faceoff_flicker.py --out runs/faceoff_flicker --steps 400

Builds two clips from the shared facial_expressions sample (person A: George W. Bush, person B:
Jennifer Capriati; four photos each, every photo held for 15 frames while it drifts a few
pixels, with sensor noise of sigma 2 grey levels added per frame, 15 fps, H.264 + AAC), then
runs `facecycle faceoff` on them once per `--temporal` value. Extraction, split and training
are reused after the first value (stage manifests), so every row translates with the same
model. A last row per direction pastes the *untranslated* aligned crop back through the same
pipeline (identity "generator", same tracking, colour match and encoder): the floor that
resampling and re-encoding alone give. Prints a Markdown table (QUALITY.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's clip helpers

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "facial_expressions"
PEOPLE = {"a": "George_W_Bush", "b": "Jennifer_Capriati"}
FPS, HOLD, NOISE = 15, 15, 2.0


def make_clip(data: Path, person: str, path: Path, photos: int = 4, seed: int = 0) -> None:
    from faceoff_clips import place, write_clip

    from facecycle.data.images import load_image

    files = sorted(data.rglob(f"{person}_*.jpg"))[:photos]
    if len(files) < photos:
        raise SystemExit(f"need {photos} photos of {person} in {data}")
    rng = np.random.default_rng(seed)
    frames = []
    for k, f in enumerate(files):
        rgb = np.asarray(load_image(f, channels=3))
        for i in range(HOLD):
            frame = place(rgb, rgb.shape[0] + 16, k * HOLD + i, background=128).astype(np.float32)
            frames.append((frame + rng.normal(0, NOISE, frame.shape)).clip(0, 255).astype(np.uint8))
    write_clip(path, frames, fps=FPS)


def floor_rows(out: Path, clips: dict[str, Path]) -> list[str]:
    """Flicker of an identity paste-back (no generator) of each clip, at the model's paste size."""
    from facecycle.evaluation.flicker import video_flicker
    from facecycle.faces.paste_masks import PasteSettings
    from facecycle.inference.face_selection import track_target
    from facecycle.faces.faceoff import translate_video

    rows = []
    for direction, key in (("a2b", "a"), ("b2a", "b")):
        target = track_target(clips[key], PasteSettings(), None)
        dst = out / f"identity_{direction}.mp4"
        translate_video(clips[key], dst, lambda crop: crop, size=256, color_match="lab",
                        faces_per_frame=target["faces_per_frame"])
        f = video_flicker(clips[key], dst, faces_per_frame=target["faces_per_frame"])
        rows.append(f"| {direction} | identity paste (no generator) | {f['flicker']:.3f} | {f['flicker_warp']:.3f} | "
                    f"{f['flicker_output_change']:.2f} | {f['flicker_input_change']:.2f} |")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "faceoff_flicker")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--temporal", default="0,0.6", help="comma-separated --temporal values to compare")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clips = {k: args.out / f"{k}.mp4" for k in PEOPLE}
    for k, person in PEOPLE.items():
        if not clips[k].is_file():
            make_clip(args.data, person, clips[k])
    rows = []
    for value in [v.strip() for v in args.temporal.split(",") if v.strip()]:
        cmd = [sys.executable, "-m", "facecycle", "faceoff", "--video-a", str(clips["a"]), "--video-b", str(clips["b"]),
               "--out", str(args.out / "faceoff"), "--steps", str(args.steps), "--temporal", value, "--quiet"]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        summary = json.loads((args.out / "faceoff" / "report" / "summary.json").read_text())
        for direction, s in summary["directions"].items():
            f = s["flicker"]
            rows.append(f"| {direction} | {value} | {f['flicker']:.3f} | {f['flicker_warp']:.3f} | "
                        f"{f['flicker_output_change']:.2f} | {f['flicker_input_change']:.2f} |")
    rows += floor_rows(args.out, clips)
    print("| direction | --temporal | flicker | flicker_warp | output change | input change |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
