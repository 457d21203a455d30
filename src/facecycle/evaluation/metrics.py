"""One call that evaluates a set of translations with any of the metrics in this package.

    from facecycle.evaluation.metrics import evaluate_translations
    result = evaluate_translations(real_a, fake_b, real_b, reconstructions=rec_a,
                                   metrics=["fid", "kid", "lpips", "ssim", "identity"])
    result["metrics"]["fid"], result["samples"]["fid"], result["warnings"]

Roles: `inputs` are the source images (domain A), `outputs` their translations
(G_ab(inputs), same order), `targets` real images of the target domain (unpaired, any
number), `reconstructions` G_ba(outputs) (same order as inputs). Each may be a folder, a
list of paths, one `(N, C, H, W)` tensor or a list of `(C, H, W)` tensors, in [-1, 1].
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from facecycle.errors import DataError, FacecycleError
from facecycle.evaluation.inputs import Images, to_batch

#: Every metric name `evaluate_translations` accepts, with what it measures.
METRICS: dict[str, str] = {
    "fid": "FID outputs vs targets (and inputs vs targets as a baseline); lower is better",
    "kid": "KID x100 outputs vs targets (unbiased, better for small sets); lower is better",
    "lpips": "LPIPS (AlexNet) input vs output (content change) and input vs reconstruction",
    "ssim": "SSIM input vs output and input vs reconstruction (cycle consistency)",
    "ms_ssim": "MS-SSIM input vs output and input vs reconstruction",
    "psnr": "PSNR (dB) input vs reconstruction",
    "identity": "dlib identity distance input vs output, fraction under 0.6 (same person)",
    "expression": "rate of outputs classified as target_expression (inputs as baseline)",
    "au": "mean change of the target expression's Action-Unit proxies (MediaPipe blendshapes)",
    "inception_score": "unavailable offline: the FID network has no ImageNet logits",
}
DEFAULT_METRICS = ("fid", "kid", "lpips", "ssim", "psnr")

# Score names (as evaluate_translations reports them) for which larger means better.
_HIGHER_IS_BETTER = ("ssim", "ms_ssim", "psnr", "rate", "au_change")


def higher_is_better(score: str) -> bool:
    """Direction of a reported score, e.g. "ab/psnr_cycle" -> True, "ab/kid_x100" -> False.

    FID, KID, LPIPS and identity distance are distances (lower is better); SSIM, MS-SSIM, PSNR,
    rates and AU changes toward the target are similarities (higher is better).
    """
    name = score.rsplit("/", 1)[-1]
    if name.startswith(("fid", "kid", "lpips", "identity_distance")):
        return False
    return any(part in name for part in _HIGHER_IS_BETTER)


def check_metric_names(metrics: Iterable[str]) -> list[str]:
    """Validated, de-duplicated metric names; unknown names raise an error listing the choices."""
    names = list(dict.fromkeys(metrics))
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise FacecycleError(f"unknown metric(s) {', '.join(unknown)}; choose from: {', '.join(METRICS)}")
    return names


def _paired(a: torch.Tensor, b: torch.Tensor, what: str) -> torch.Tensor:
    """`b` brought to `a`'s size for a per-pair metric; counts must match."""
    if a.shape[0] != b.shape[0]:
        raise DataError(f"{what}: paired metrics need as many images as inputs ({a.shape[0]}), got {b.shape[0]}")
    if a.shape[-2:] != b.shape[-2:]:
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    if a.shape[1] != b.shape[1]:
        from facecycle.evaluation.inputs import convert_channels

        b = convert_channels(b, a.shape[1])
    return b


def _mean(values: torch.Tensor | np.ndarray) -> float:
    return float(np.asarray(values, np.float64).mean())


def evaluate_translations(
    inputs: Images,
    outputs: Images,
    targets: Images | None = None,
    reconstructions: Images | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    *,
    target_expression: str | None = None,
    size: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    fid_weights: str | None = None,
    target_features: np.ndarray | None = None,
    input_features: np.ndarray | None = None,
) -> dict[str, Any]:
    """Evaluate translations with the named metrics.

    Args:
        inputs, outputs, targets, reconstructions: see the module docstring. `targets` is
            needed by "fid"/"kid", `target_expression` (e.g. "happy") by "expression"/"au".
        metrics: names from `METRICS`.
        size: `(H, W)` to resize every loaded image to (needed when files differ in size).
        device: where the FID Inception runs (LPIPS, dlib and the classifiers run on CPU).
        target_features, input_features: precomputed FID features `(N, 2048)` of targets /
            inputs, so a caller evaluating repeatedly against fixed sets computes them once.

    Returns a JSON-ready dict:
        "metrics":     name -> float (or None when undefined, e.g. no face found anywhere)
        "samples":     name -> number of images/pairs the value is based on
        "counts":      images given per role
        "warnings":    list of strings (small samples, images without faces, ...)
        "unavailable": name -> reason, for metrics asked for but not computable
    """
    names = check_metric_names(metrics)
    x = to_batch(inputs, size=size, what="inputs")
    y = _paired(x, to_batch(outputs, size=size, what="outputs"), "outputs")
    t = None if targets is None else to_batch(targets, size=size, what="targets")
    r = None if reconstructions is None else _paired(x, to_batch(reconstructions, size=size, what="reconstructions"), "reconstructions")
    result: dict[str, Any] = {
        "metrics": {}, "samples": {}, "warnings": [], "unavailable": {},
        "counts": {"inputs": x.shape[0], "outputs": y.shape[0], "targets": 0 if t is None else t.shape[0],
                   "reconstructions": 0 if r is None else r.shape[0]},
    }
    out, samples, warn, unavailable = result["metrics"], result["samples"], result["warnings"], result["unavailable"]

    def put(name: str, value: Any, n: int | str) -> None:
        out[name] = value
        samples[name] = n

    if "fid" in names or "kid" in names:
        if t is None:
            for m in ("fid", "kid"):
                if m in names:
                    unavailable[m] = "needs target-domain images (targets=...)"
        else:
            from facecycle.evaluation import fid as fidlib

            extractor = fidlib.InceptionFeatures(fid_weights, device=device, batch_size=batch_size)
            f_out = extractor(y)
            f_tgt = target_features if target_features is not None else extractor(t)
            f_in = input_features if input_features is not None else extractor(x)
            pair = f"{len(f_out)} vs {len(f_tgt)}"
            if "fid" in names:
                put("fid", fidlib.fid_from_features(f_out, f_tgt), pair)
                put("fid_inputs", fidlib.fid_from_features(f_in, f_tgt), f"{len(f_in)} vs {len(f_tgt)}")
                note = fidlib.sample_size_warning(len(f_out), len(f_tgt), "fid")
                if note:
                    warn.append(note)
            if "kid" in names:
                mean, std = fidlib.kid_from_features(f_out, f_tgt)
                put("kid_x100", 100 * mean, pair)
                put("kid_x100_std", 100 * std, pair)
                put("kid_inputs_x100", 100 * fidlib.kid_from_features(f_in, f_tgt)[0], f"{len(f_in)} vs {len(f_tgt)}")
                note = fidlib.sample_size_warning(len(f_out), len(f_tgt), "kid")
                if note:
                    warn.append(note)

    n = x.shape[0]
    if "lpips" in names:
        from facecycle.evaluation.lpips import lpips_distance

        put("lpips_input_output", _mean(lpips_distance(x, y, batch_size=batch_size)), n)
        if r is not None:
            put("lpips_cycle", _mean(lpips_distance(x, r, batch_size=batch_size)), n)

    for name in ("ssim", "ms_ssim", "psnr"):
        if name not in names:
            continue
        from facecycle.ops import ssim as ssim_mod

        fn = getattr(ssim_mod, name)
        with torch.no_grad():
            if name != "psnr":
                put(f"{name}_input_output", _mean(fn(x, y)), n)
            if r is not None:
                put(f"{name}_cycle", _mean(fn(x, r)), n)
            elif name == "psnr":
                unavailable["psnr"] = "needs reconstructions (PSNR input vs output says nothing about a translation)"

    if "identity" in names:
        from facecycle.evaluation.identity import identity_distances, identity_summary

        summary = identity_summary(identity_distances(x, y))
        for key in ("identity_distance", "identity_same_rate"):
            put(key, summary[key], summary["identity_pairs"])
        if summary["identity_no_face"]:
            warn.append(f"identity: {summary['identity_no_face']} of {n} input/output pairs had no detectable face and were skipped")

    if "expression" in names or "au" in names:
        if target_expression is None:
            for m in ("expression", "au"):
                if m in names:
                    unavailable[m] = "needs target_expression (e.g. 'happy')"
        else:
            from facecycle.evaluation import expression as ex

            if "expression" in names:
                p_out, found = ex.expression_probabilities(y)
                p_in, _ = ex.expression_probabilities(x)
                put("expression_target_rate", ex.target_expression_rate(p_out, target_expression), n)
                put("expression_target_rate_inputs", ex.target_expression_rate(p_in, target_expression), n)
                if not found.all():
                    warn.append(f"expression: no face box in {int((~found).sum())} of {n} outputs; classified the whole image")
            if "au" in names:
                change = ex.au_change(ex.blendshape_aus(x), ex.blendshape_aus(y), target_expression)
                pairs = int(change.pop("au_pairs") or 0)
                for key, value in change.items():
                    put(key, value, pairs)
                if pairs < n:
                    warn.append(f"au: {n - pairs} of {n} input/output pairs had no MediaPipe face and were skipped")

    if "inception_score" in names:
        from facecycle.evaluation.fid import inception_score

        unavailable["inception_score"] = inception_score()[1]
    return result
