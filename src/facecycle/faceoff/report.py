"""The face-off report page: `DIR/report/index.html` with frame strips and the metrics.

Per direction, a strip image shows evenly spaced frames: the input on top, the swapped
output below. The tables list frame counts, fps, audio, tracking (detected, interpolated,
given-up frames), the reference selection and the flicker figures
(`facecycle.evaluation.flicker`), plus the training state.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

STRIP_FRAMES = 6
STRIP_HEIGHT = 160


def _frames(path: Path, count: int) -> list[np.ndarray]:
    """`count` evenly spaced (H, W, 3) uint8 frames of a video or photo folder."""
    from facecycle.data.images import IMAGE_EXTENSIONS, load_image
    from facecycle.faces.video import is_video, iter_frames

    if path.is_file() and is_video(path):
        # Two passes (count, then keep the picks) so a long video is never held in memory.
        total = sum(1 for _ in iter_frames(path))
        picks = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()) if total else set()
        return [rgb for i, _, rgb in iter_frames(path) if i in picks]
    else:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        frames = [np.asarray(load_image(p, 3)) for p in files[: 4 * count]]
    if not frames:
        return []
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return [frames[i] for i in picks]


def _fit(rgb: np.ndarray, height: int) -> Image.Image:
    image = Image.fromarray(rgb)
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.BILINEAR)


def write_strip(source: Path, output: Path, dst: Path, count: int = STRIP_FRAMES, height: int = STRIP_HEIGHT) -> bool:
    """Save a 2-row strip (inputs over outputs) as PNG; False when there is nothing to show."""
    ins, outs = _frames(source, count), _frames(output, count)
    n = min(len(ins), len(outs))
    if n == 0:
        return False
    tiles = [[_fit(f, height) for f in row[:n]] for row in (ins, outs)]
    width = sum(t.width for t in tiles[0]) + 4 * (n - 1)
    strip = Image.new("RGB", (width, 2 * height + 4), (255, 255, 255))
    for r, row in enumerate(tiles):
        x = 0
        for tile in row:
            strip.paste(tile, (x, r * (height + 4)))
            x += tile.width + 4
    dst.parent.mkdir(parents=True, exist_ok=True)
    strip.save(dst)
    return True


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def write_report(out: Path, directions: dict[str, dict], training: dict, data: dict, settings: dict,
                 held_out: dict[str, dict] | None = None) -> Path:
    """Write `out/index.html` (+ strip PNGs) and `out/summary.json`; returns the page's path.

    directions: {"a2b": translate summary, "b2a": ...} from `videos.translate_input`.
    held_out:   {"a2b": metrics, ...} of the held-out crops (`facecycle evaluate`), if scored.
    """
    out.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html><meta charset='utf-8'><title>facecycle face-off</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f4f4f4}"
             "img{max-width:100%}</style>", "<h1>facecycle face-off</h1>"]
    for direction, summary in directions.items():
        title = {"a2b": "Video A with B's faces (A &rarr; B)", "b2a": "Video B with A's faces (B &rarr; A)"}.get(direction, direction)
        parts.append(f"<h2>{title}</h2>")
        strip = f"{direction}_strip.png"
        if write_strip(Path(summary["input"]), Path(summary["output"]), out / strip):
            parts.append(f"<p>Top: input frames; bottom: output.</p><img src='{strip}' alt='{direction} frames'>")
        rel = Path(summary["output"])
        parts.append(f"<p>Output: <a href='{html.escape(str(Path('..') / rel.parent.name / rel.name))}'>"
                     f"{html.escape(str(rel))}</a></p>")
        rows = {k: summary.get(k) for k in ("frames", "fps", "audio", "faces_translated", "frames_without_face",
                                           "frames_interpolated", "tracks") if k in summary}
        if "selection" in summary:
            rows["selected face"] = summary["selection"]["reason"]
        if "track_stats" in summary:
            ts = summary["track_stats"]
            rows["track: detected / interpolated / missing frames"] = f"{ts['detected']} / {ts['interpolated']} / {ts['missing']}"
        parts.append(_table(rows))
        flicker = summary.get("flicker")
        if flicker:
            parts.append("<h3>Temporal consistency (grey levels, lower is better)</h3>")
            parts.append(_table(flicker))
    if held_out:
        parts.append("<h2>Held-out crops</h2><p>The last frames of each input, never trained on "
                     "(<a href='../eval/report.html'>full evaluation report</a>).</p>")
        for direction, metrics in held_out.items():
            parts.append(f"<h3>{html.escape(direction)}</h3>" + _table(metrics))
    parts.append("<h2>Training</h2>" + _table(training))
    parts.append("<h2>Data</h2>" + _table(data))
    parts.append("<h2>Settings</h2>" + _table(settings))
    page = out / "index.html"
    page.write_text("\n".join(parts) + "\n")
    (out / "summary.json").write_text(json.dumps({"directions": directions, "training": training, "data": data,
                                                  "settings": settings, "held_out": held_out or {}},
                                                 indent=2, default=str) + "\n")
    return page
