"""Evaluation report: `metrics.json` plus a self-contained-folder `report.html`.

    write_report("runs/x/eval", result, samples={"input": real_a, "output": fake_b,
                 "reconstruction": rec_a}, stats_path="runs/x/stats.jsonl")

The HTML shows, in order: warnings (small samples etc.), a metric table with the number
of images behind each value and which way is better (as `facecycle.evaluation.metrics.REGISTRY`
declares it), a sample grid (one row per image, one column per role) and
the loss curves of the run (every numeric key of `stats.jsonl` starting with "loss",
against "step"). Images are PNG files next to the HTML.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from facecycle.data.images import make_grid
from facecycle.errors import require
from facecycle.evaluation.metrics import score_direction

MAX_GRID_ROWS = 8


def read_stats(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a `stats.jsonl`; blank and malformed lines (e.g. a line cut by a crash) are skipped."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def loss_series(records: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """`{key: (steps, values)}` for every finite numeric key starting with "loss"."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, rec in enumerate(records):
        step = rec.get("step", i)
        for key, value in rec.items():
            if key.startswith("loss") and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(float(step))
                ys.append(float(value))
    return series


def plot_losses(stats_path: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> list[str]:
    """Render the loss curves of a run to a PNG (one panel per loss); returns the keys plotted."""
    series = loss_series(read_stats(stats_path))
    if not series:
        return []
    matplotlib = require("matplotlib", "eval", "loss-curve plots")
    matplotlib.use("Agg", force=True)  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    keys = sorted(series)
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs, ys = series[key]
        ax.plot(xs, ys, linewidth=1.2)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return keys


def sample_grid(samples: Mapping[str, torch.Tensor], out_png: str | os.PathLike[str], max_rows: int = MAX_GRID_ROWS) -> None:
    """Grid PNG: one row per image, columns in `samples` order, all resized to the first's size.

    samples: label -> `(N, C, H, W)` float in [-1, 1] (C = 1 or 3).
    """
    batches = [b.detach().float().cpu() for b in samples.values()]
    h, w = batches[0].shape[-2:]
    batches = [b if b.shape[-2:] == (h, w) else F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False) for b in batches]
    rows = min(max_rows, min(b.shape[0] for b in batches))
    make_grid([[b[i] for b in batches] for i in range(rows)]).save(out_png)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _better(score: str) -> str:
    """"higher" or "lower" for a reported score; empty when no metric declares it."""
    higher = score_direction(score)
    return "" if higher is None else "higher" if higher else "lower"


def write_report(
    out_dir: str | os.PathLike[str],
    result: Mapping[str, Any],
    samples: Mapping[str, torch.Tensor] | None = None,
    stats_path: str | os.PathLike[str] | None = None,
    title: str = "facecycle evaluation",
) -> Path:
    """Write `metrics.json`, `report.html` and its PNGs into `out_dir`; returns the HTML path.

    result: what `evaluate_translations` returns (any JSON-ready dict with "metrics",
        "samples", "warnings", "unavailable", "counts" works; missing parts are skipped).
    samples: optional label -> `(N, C, H, W)` images in [-1, 1] for the sample grid.
    stats_path: optional `stats.jsonl` of the training run for the loss curves.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}.warn{background:#fff3cd;padding:8px 12px;"
             "border-left:4px solid #e0a800}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]

    warnings = list(result.get("warnings", []))
    parts.append("<section id='warnings'><h2>Warnings</h2>")
    parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in warnings] or ["<p>None.</p>"]
    parts.append("</section>")

    counts = result.get("counts", {})
    metrics = result.get("metrics", {})
    sample_counts = result.get("samples", {})
    parts.append("<section id='metrics'><h2>Metrics</h2>")
    if counts:
        parts.append("<p>Images: " + ", ".join(f"{html.escape(k)} {_fmt(v)}" for k, v in counts.items()) + "</p>")
    parts.append("<table><tr><th>metric</th><th>value</th><th>samples</th><th>better</th></tr>")
    parts += [f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td><td>{_fmt(sample_counts.get(k))}</td><td>{_better(k)}</td></tr>"
              for k, v in metrics.items()]
    parts += [f"<tr><td>{html.escape(k)}</td><td>unavailable</td><td>{html.escape(str(why))}</td><td></td></tr>"
              for k, why in result.get("unavailable", {}).items()]
    parts.append("</table></section>")

    parts.append("<section id='samples'><h2>Samples</h2>")
    if samples:
        sample_grid(samples, out / "samples.png")
        parts.append("<p>Columns: " + ", ".join(html.escape(k) for k in samples) + "</p><img src='samples.png' alt='sample grid'>")
    else:
        parts.append("<p>No samples given.</p>")
    parts.append("</section>")

    parts.append("<section id='losses'><h2>Loss curves</h2>")
    keys = plot_losses(stats_path, out / "losses.png") if stats_path is not None and Path(stats_path).is_file() else []
    if keys:
        parts.append(f"<p>From {html.escape(str(stats_path))}: {', '.join(html.escape(k) for k in keys)}</p><img src='losses.png' alt='loss curves'>")
    else:
        parts.append("<p>No training statistics (stats.jsonl) with loss values.</p>")
    parts.append("</section></body></html>")

    page = out / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page


def write_index(out_dir: str | os.PathLike[str], results: Mapping[str, Mapping[str, Any]],
                title: str = "facecycle evaluation") -> Path:
    """One `report.html` at the top of `out_dir` for several directions (a2b, b2a).

    It holds one metric table with a column per direction, each direction's sample grid, and
    links to the per-direction reports `out_dir/<direction>/report.html` (written first by
    `write_report`). Returns the page's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    directions = list(results)
    names: list[str] = []
    for result in results.values():
        names += [k for k in list(result.get("metrics", {})) + list(result.get("unavailable", {})) if k not in names]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}.warn{background:#fff3cd;padding:8px 12px;"
             "border-left:4px solid #e0a800}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<p>Per direction: " + ", ".join(f"<a href='{d}/report.html'>{html.escape(d)}</a>" for d in directions)
             + " (sample grids, loss curves, metrics.json).</p>"]
    warnings = [(d, w) for d, r in results.items() for w in r.get("warnings", [])]
    parts.append("<section id='warnings'><h2>Warnings</h2>")
    parts += [f"<p class='warn'>{html.escape(d)}: {html.escape(w)}</p>" for d, w in warnings] or ["<p>None.</p>"]
    parts.append("</section><section id='metrics'><h2>Metrics</h2><table><tr><th>metric</th>"
                 + "".join(f"<th>{html.escape(d)}</th>" for d in directions) + "<th>better</th></tr>")
    for name in names:
        cells = []
        for result in results.values():
            if name in result.get("metrics", {}):
                cells.append(_fmt(result["metrics"][name]))
            elif name in result.get("unavailable", {}):
                cells.append("unavailable: " + html.escape(str(result["unavailable"][name])))
            else:
                cells.append("")
        parts.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells)
                     + f"<td>{_better(name)}</td></tr>")
    parts.append("</table></section><section id='samples'><h2>Samples</h2>")
    for direction in directions:
        if (out / direction / "samples.png").is_file():
            parts.append(f"<h3>{html.escape(direction)}</h3><img src='{direction}/samples.png' alt='{direction} samples'>")
    parts.append("</section></body></html>")
    page = out / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
