"""Score a trained model on held-out images: translate both ways, then `evaluation` measures.

Above both `inference` (loading, translating) and `evaluation` (metrics, reports): what
`facecycle evaluate` and the face-off's held-out stage run.
"""

from __future__ import annotations

from pathlib import Path


def cached_features(images, cache_dir: Path, device, batch_size: int):
    """Inception pool features `(N, 2048)` of `images` `(N, C, H, W)` in [-1, 1], read from or written to
    `cache_dir/inception_<sha256 of the pixels>.npy` (plain arrays, loaded without pickle)."""
    import hashlib
    import os

    import numpy as np

    from facecycle.evaluation import fid as fidlib

    key = hashlib.sha256(images.contiguous().numpy().tobytes() + str(tuple(images.shape)).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"inception_{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    features = fidlib.InceptionFeatures(None, device=device, batch_size=batch_size)(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, features)
    os.replace(tmp, path)  # atomic: concurrent evaluations never read half a file
    return features


def evaluate_checkpoint(checkpoint: str | Path, data_a: str | Path, data_b: str | Path, out: str | Path,
                        directions: list[str], metrics: list[str], max_images: int = 500,
                        expressions: dict[str, str | None] | None = None, device: str = "auto",
                        batch_size: int = 16, feature_cache: str | Path | None = None) -> dict:
    """Evaluate the given directions; writes `out/<direction>/{metrics.json,report.html}`,
    `out/metrics.json` (all directions) and `out/report.html` (one page for all directions);
    returns {direction: evaluate_translations result}."""
    import json

    import torch

    from facecycle.evaluation.held_out import load_sample
    from facecycle.evaluation.metrics import check_metric_names, evaluate_translations
    from facecycle.evaluation.report import write_index, write_report
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_tensor
    from facecycle.runtime.checkpoints import resolve_checkpoint
    from facecycle.runtime.device import resolve_device

    metrics = check_metric_names(metrics)
    dev = resolve_device(device)
    source = resolve_checkpoint(checkpoint)
    generators = {d: load_generator(source, d, dev) for d in ("a2b", "b2a")}
    size, channels = generators["a2b"].crop_size, generators["a2b"].channels
    real = {"a": load_sample(data_a, max_images, size, channels, "domain A folder")[0],
            "b": load_sample(data_b, max_images, size, channels, "domain B folder")[0]}
    stats = source.parent.parent / "stats.jsonl" if source.parent.name == "checkpoints" else None
    results: dict = {}
    out = Path(out)
    for direction in directions:
        src, dst = ("a", "b") if direction == "a2b" else ("b", "a")
        back = "b2a" if direction == "a2b" else "a2b"
        batches = [real[src][i:i + batch_size] for i in range(0, len(real[src]), batch_size)]
        fake = torch.cat([translate_tensor(generators[direction], b) for b in batches])
        rec = torch.cat([translate_tensor(generators[back], fake[i:i + batch_size]) for i in range(0, len(fake), batch_size)])
        features = {}
        if feature_cache is not None and ("fid" in metrics or "kid" in metrics):
            features = {"target_features": cached_features(real[dst], Path(feature_cache), dev, batch_size),
                        "input_features": cached_features(real[src], Path(feature_cache), dev, batch_size)}
        result = evaluate_translations(real[src], fake, real[dst], reconstructions=rec, metrics=metrics,
                                       target_expression=(expressions or {}).get(direction), device=dev,
                                       batch_size=batch_size, **features)
        result["checkpoint"] = {"path": str(source), "step": generators[direction].step, "direction": direction}
        write_report(out / direction, result, samples={"input": real[src], "translated": fake, "reconstructed": rec},
                     stats_path=stats if stats and stats.is_file() else None,
                     title=f"facecycle evaluation: {direction} ({source.name})")
        results[direction] = result
    (out / "metrics.json").write_text(json.dumps({d: r["metrics"] for d, r in results.items()}, indent=2) + "\n")
    write_index(out, results, title=f"facecycle evaluation ({source.name})")
    return results
