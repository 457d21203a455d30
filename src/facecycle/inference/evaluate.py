"""Score a trained model on held-out images: translate both ways (or, for a conditional model,
to each target expression: `evaluate_conditional`), then `evaluation` measures.

Above both `inference` (loading, translating) and `evaluation` (metrics, reports): what
`facecycle evaluate` and the face-off's held-out stage run.
"""

from __future__ import annotations

import json
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


def _run_stats(source: Path) -> Path | None:
    """The training run's stats.jsonl beside a run's `checkpoints/` folder (for the report's
    curves), None for a checkpoint kept elsewhere."""
    stats = source.parent.parent / "stats.jsonl" if source.parent.name == "checkpoints" else None
    return stats if stats is not None and stats.is_file() else None


def _translate_all(generator, images, batch_size: int):
    """`generator` over `images` `(N, C, H, W)` in [-1, 1], `batch_size` at a time -> `(N, C, H, W)`."""
    import torch

    from facecycle.inference.translate import translate_tensor

    return torch.cat([translate_tensor(generator, images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def _write_summary(out: Path, results: dict, title: str) -> None:
    """`out/metrics.json` (set name -> scores) and `out/report.html` (one page for every set)."""
    from facecycle.evaluation.report import write_index

    (out / "metrics.json").write_text(json.dumps({n: r["metrics"] for n, r in results.items()}, indent=2) + "\n")
    write_index(out, results, title=title)


def evaluate_checkpoint(checkpoint: str | Path, data_a: str | Path, data_b: str | Path, out: str | Path,
                        directions: list[str], metrics: list[str], max_images: int = 500,
                        expressions: dict[str, str | None] | None = None, device: str = "auto",
                        batch_size: int = 16, feature_cache: str | Path | None = None) -> dict:
    """Evaluate the given directions; writes `out/<direction>/{metrics.json,report.html}`,
    `out/metrics.json` (all directions) and `out/report.html` (one page for all directions);
    returns {direction: evaluate_translations result}."""
    from facecycle.errors import ConfigError
    from facecycle.evaluation.held_out import load_sample
    from facecycle.evaluation.metrics import check_metric_names, evaluate_translations
    from facecycle.evaluation.report import write_report
    from facecycle.inference.loading import load_generator, load_model
    from facecycle.runtime.checkpoints import resolve_checkpoint
    from facecycle.runtime.device import resolve_device

    metrics = check_metric_names(metrics)
    dev = resolve_device(device)
    source = resolve_checkpoint(checkpoint)
    first = load_model(source, "a2b", dev)  # the conditional check needs no separate read of the file
    if first.conditional:
        raise ConfigError(f"{source} is a conditional model: it has no a2b/b2a generators; evaluate it per target "
                          "expression with evaluate_conditional (`facecycle evaluate --data DIR --expressions ...`)")
    generators = {"a2b": first, "b2a": load_generator(source, "b2a", dev)}
    size, channels = first.crop_size, first.channels
    real = {"a": load_sample(data_a, max_images, size, channels, "domain A folder")[0],
            "b": load_sample(data_b, max_images, size, channels, "domain B folder")[0]}
    stats = _run_stats(source)
    results: dict = {}
    out = Path(out)
    for direction in directions:
        src, dst = ("a", "b") if direction == "a2b" else ("b", "a")
        back = "b2a" if direction == "a2b" else "a2b"
        fake = _translate_all(generators[direction], real[src], batch_size)
        rec = _translate_all(generators[back], fake, batch_size)
        features = {}
        if feature_cache is not None and ("fid" in metrics or "kid" in metrics):
            features = {"target_features": cached_features(real[dst], Path(feature_cache), dev, batch_size),
                        "input_features": cached_features(real[src], Path(feature_cache), dev, batch_size)}
        result = evaluate_translations(real[src], fake, real[dst], reconstructions=rec, metrics=metrics,
                                       target_expression=(expressions or {}).get(direction), device=dev,
                                       batch_size=batch_size, **features)
        result["checkpoint"] = {"path": str(source), "step": generators[direction].step, "direction": direction}
        write_report(out / direction, result, samples={"input": real[src], "translated": fake, "reconstructed": rec},
                     stats_path=stats, title=f"facecycle evaluation: {direction} ({source.name})")
        results[direction] = result
    _write_summary(out, results, f"facecycle evaluation ({source.name})")
    return results


#: What `facecycle evaluate` measures on a conditional checkpoint when --metrics is not given.
CONDITIONAL_METRICS = ("expression", "identity", "kid", "lpips")


def labelled_with(table, vector) -> list[Path]:
    """Files of a `LabelTable` showing the target `vector` `(K,)` in [0, 1]: every condition the
    target switches on is on in the labels (the class itself, for one-hot classes); an all-zero
    target (neutral) takes the rows with no condition on."""
    import numpy as np

    on = np.asarray(vector, np.float64) > 0
    active = np.asarray(table.values, np.float64) > 0
    rows = active[:, on].all(axis=1) if on.any() else ~active.any(axis=1)
    return [p for p, keep in zip(table.paths, rows) if keep]


def evaluate_conditional(checkpoint: str | Path, data: str | Path, out: str | Path,
                         expressions: list[str] | None = None, metrics: list[str] | tuple[str, ...] = CONDITIONAL_METRICS,
                         labels: str | Path | None = None, max_images: int = 500, device: str = "auto",
                         batch_size: int = 16, feature_cache: str | Path | None = None) -> dict:
    """Evaluate a conditional checkpoint: translate the held-out images of `data` to each named
    expression and score the results with the metric registry (`evaluation.metrics`).

    `expressions`: presets or class names (default: every expression the model takes, see
    `available_expressions`). Per expression: `expression` = rate of outputs the `fer` classifier
    reads as that expression (inputs as baseline), `identity` = dlib distance input -> output and
    same-person fraction, `lpips` = LPIPS input -> output, `fid`/`kid` = outputs vs the real images
    of `labels` (a labels CSV, default the run's `data.labels`) labelled with that expression.
    Writes `out/<expression>/{metrics.json,report.html}`, `out/metrics.json` (expression -> scores)
    and `out/report.html`; returns {expression: evaluate_translations result}. The metric networks
    only judge: nothing here trains.
    """
    from facecycle.data.expressions import available_expressions, classifier_expression, describe_target
    from facecycle.data.labels import read_labels
    from facecycle.errors import ConfigError, DataError
    from facecycle.evaluation.held_out import load_sample
    from facecycle.evaluation.inputs import to_batch
    from facecycle.evaluation.metrics import check_metric_names, evaluate_translations
    from facecycle.evaluation.report import write_report
    from facecycle.inference.loading import load_model
    from facecycle.inference.targets import bind_target
    from facecycle.runtime.checkpoints import resolve_checkpoint
    from facecycle.runtime.device import resolve_device

    metrics = check_metric_names(metrics)
    dev = resolve_device(device)
    source = resolve_checkpoint(checkpoint)
    generator = load_model(source, device=dev)
    if not generator.conditional:
        raise ConfigError(f"{source} is a two-domain CycleGAN: evaluate it with --data-a/--data-b (and --direction)")
    columns, kind = generator.condition_columns, generator.condition_kind or "presence"
    names = list(expressions or available_expressions(columns, kind))
    if not names:
        raise ConfigError(f"no expression preset fits this model's conditions ({', '.join(columns)}); "
                          "pass --expressions with names it takes")
    bound = {name: bind_target(generator, expression=name) for name in names}  # every name checked before any work
    size, channels = generator.crop_size, generator.channels
    real = load_sample(data, max_images, size, channels, "held-out folder")[0]
    labels = labels or generator.config.get("data", {}).get("labels")
    table, no_targets = None, "no labels CSV: pass --labels FILE to compare with real photos of each expression"
    if labels and Path(labels).is_file():
        try:
            table = read_labels(labels, kind, columns=list(columns))
        except DataError as exc:
            no_targets = f"labels {labels} unusable for this model's conditions: {exc}"
    elif labels:
        no_targets = f"labels file not found: {labels}"
    stats = _run_stats(source)
    results: dict = {}
    out = Path(out)
    for name, g in bound.items():
        fake = _translate_all(g, real, batch_size)
        targets, why = None, no_targets
        if table is not None:
            files = labelled_with(table, g.target)
            if len(files) >= 2:
                targets = to_batch(files, channels=channels, size=(size, size), what=f"real '{name}' images")
            else:
                why = f"{len(files)} image(s) of {labels} show '{name}' ({describe_target(g.target, columns, kind)}); need 2"
        features = {}
        if targets is not None and feature_cache is not None and ("fid" in metrics or "kid" in metrics):
            features = {"target_features": cached_features(targets, Path(feature_cache), dev, batch_size),
                        "input_features": cached_features(real, Path(feature_cache), dev, batch_size)}
        judged = classifier_expression(name)
        result = evaluate_translations(real, fake, targets, metrics=metrics, target_expression=judged, device=dev,
                                       batch_size=batch_size, **features)
        for metric in ("fid", "kid"):
            if metric in result["unavailable"] and targets is None:
                result["unavailable"][metric] = why
        for metric in ("expression", "au"):
            if metric in result["unavailable"] and judged is None:
                result["unavailable"][metric] = f"the expression classifier has no class for '{name}'"
        result["target"] = {"expression": name, "classifier_class": judged,
                            "condition": describe_target(g.target, columns, kind)}
        result["checkpoint"] = {"path": str(source), "step": generator.step, "mode": "conditional"}
        write_report(out / name, result, samples={"input": real, "translated": fake},
                     stats_path=stats, title=f"facecycle evaluation: to {name} ({source.name})")
        results[name] = result
    _write_summary(out, results, f"facecycle evaluation of a conditional model ({source.name})")
    return results
