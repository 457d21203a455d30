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

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from facecycle.errors import DataError, FacecycleError
from facecycle.evaluation.inputs import Images, to_batch


@dataclass
class _Run:
    """One `evaluate_translations` call: the image batches, the options and the result being filled."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None
    r: torch.Tensor | None
    result: dict[str, Any]
    target_expression: str | None
    device: str | torch.device
    batch_size: int
    fid_weights: str | None
    target_features: np.ndarray | None
    input_features: np.ndarray | None
    _inception: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Number of inputs (= outputs, = reconstructions when given)."""
        return int(self.x.shape[0])

    def put(self, name: str, value: Any, n: int | str) -> None:
        """Report score `name` with the number of images/pairs it is based on."""
        self.result["metrics"][name] = value
        self.result["samples"][name] = n

    def warn(self, text: str) -> None:
        self.result["warnings"].append(text)

    def unavailable(self, metric: str, why: str) -> None:
        self.result["unavailable"][metric] = why

    def inception(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FID Inception features of (outputs, targets, inputs), computed once for FID and KID."""
        if self._inception is None:
            from facecycle.evaluation import fid as fidlib

            assert self.t is not None
            extractor = fidlib.InceptionFeatures(self.fid_weights, device=self.device, batch_size=self.batch_size)
            f_out = extractor(self.y)
            f_tgt = self.target_features if self.target_features is not None else extractor(self.t)
            f_in = self.input_features if self.input_features is not None else extractor(self.x)
            self._inception = (f_out, f_tgt, f_in)
        return self._inception


def _fid(run: _Run) -> None:
    if run.t is None:
        return run.unavailable("fid", "needs target-domain images (targets=...)")
    from facecycle.evaluation import fid as fidlib

    f_out, f_tgt, f_in = run.inception()
    run.put("fid", fidlib.fid_from_features(f_out, f_tgt), f"{len(f_out)} vs {len(f_tgt)}")
    run.put("fid_inputs", fidlib.fid_from_features(f_in, f_tgt), f"{len(f_in)} vs {len(f_tgt)}")
    note = fidlib.sample_size_warning(len(f_out), len(f_tgt), "fid")
    if note:
        run.warn(note)


def _kid(run: _Run) -> None:
    if run.t is None:
        return run.unavailable("kid", "needs target-domain images (targets=...)")
    from facecycle.evaluation import fid as fidlib

    f_out, f_tgt, f_in = run.inception()
    pair = f"{len(f_out)} vs {len(f_tgt)}"
    mean, std = fidlib.kid_from_features(f_out, f_tgt)
    run.put("kid_x100", 100 * mean, pair)
    run.put("kid_x100_std", 100 * std, pair)
    run.put("kid_inputs_x100", 100 * fidlib.kid_from_features(f_in, f_tgt)[0], f"{len(f_in)} vs {len(f_tgt)}")
    note = fidlib.sample_size_warning(len(f_out), len(f_tgt), "kid")
    if note:
        run.warn(note)


def _lpips(run: _Run) -> None:
    from facecycle.evaluation.lpips import lpips_distance

    run.put("lpips_input_output", _mean(lpips_distance(run.x, run.y, batch_size=run.batch_size)), run.n)
    if run.r is not None:
        run.put("lpips_cycle", _mean(lpips_distance(run.x, run.r, batch_size=run.batch_size)), run.n)


def _similarity(name: str) -> Callable[[_Run], None]:
    """SSIM / MS-SSIM / PSNR (from `facecycle.ops.ssim`) input vs output and input vs reconstruction."""

    def compute(run: _Run) -> None:
        from facecycle.ops import ssim as ssim_mod

        fn = getattr(ssim_mod, name)
        with torch.no_grad():
            if name != "psnr":
                run.put(f"{name}_input_output", _mean(fn(run.x, run.y)), run.n)
            if run.r is not None:
                run.put(f"{name}_cycle", _mean(fn(run.x, run.r)), run.n)
            elif name == "psnr":
                run.unavailable("psnr", "needs reconstructions (PSNR input vs output says nothing about a translation)")

    return compute


def _identity(run: _Run) -> None:
    from facecycle.evaluation.identity import identity_distances, identity_summary

    summary = identity_summary(identity_distances(run.x, run.y))
    for key in ("identity_distance", "identity_same_rate"):
        run.put(key, summary[key], summary["identity_pairs"])
    if summary["identity_no_face"]:
        run.warn(f"identity: {summary['identity_no_face']} of {run.n} input/output pairs had no detectable face and were skipped")


def _expression(run: _Run) -> None:
    if run.target_expression is None:
        return run.unavailable("expression", "needs target_expression (e.g. 'happy')")
    from facecycle.evaluation import expression as ex

    p_out, found = ex.expression_probabilities(run.y)
    p_in, _ = ex.expression_probabilities(run.x)
    run.put("expression_target_rate", ex.target_expression_rate(p_out, run.target_expression), run.n)
    run.put("expression_target_rate_inputs", ex.target_expression_rate(p_in, run.target_expression), run.n)
    if not found.all():
        run.warn(f"expression: no face box in {int((~found).sum())} of {run.n} outputs; classified the whole image")


def _au(run: _Run) -> None:
    if run.target_expression is None:
        return run.unavailable("au", "needs target_expression (e.g. 'happy')")
    from facecycle.evaluation import expression as ex

    change = ex.au_change(ex.blendshape_aus(run.x), ex.blendshape_aus(run.y), run.target_expression)
    pairs = int(change.pop("au_pairs") or 0)
    for key, value in change.items():
        run.put(key, value, pairs)
    if pairs < run.n:
        run.warn(f"au: {run.n - pairs} of {run.n} input/output pairs had no MediaPipe face and were skipped")


def _inception_score(run: _Run) -> None:
    from facecycle.evaluation.fid import inception_score

    run.unavailable("inception_score", inception_score()[1])


@dataclass(frozen=True)
class Metric:
    """A metric `evaluate_translations` accepts by `name`.

    `compute` adds its scores to a run; `higher_is_better` declares the direction of every score
    it reports (score name -> True when larger means better); a key ending in "*" covers a family
    of scores named by that prefix (e.g. "au_change_*").
    """

    name: str
    description: str
    compute: Callable[[_Run], None]
    higher_is_better: Mapping[str, bool]

    def direction(self, score: str) -> bool | None:
        """The declared direction of `score`, or None when this metric does not report it."""
        if score in self.higher_is_better:
            return self.higher_is_better[score]
        for key, higher in self.higher_is_better.items():
            if key.endswith("*") and score.startswith(key[:-1]):
                return higher
        return None


#: Every metric `evaluate_translations` accepts, in the order their scores are computed and reported.
REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("fid", "FID outputs vs targets (and inputs vs targets as a baseline); lower is better", _fid,
           {"fid": False, "fid_inputs": False}),
    Metric("kid", "KID x100 outputs vs targets (unbiased, better for small sets); lower is better", _kid,
           {"kid_x100": False, "kid_x100_std": False, "kid_inputs_x100": False}),
    Metric("lpips", "LPIPS (AlexNet) input vs output (content change) and input vs reconstruction", _lpips,
           {"lpips_input_output": False, "lpips_cycle": False}),
    Metric("ssim", "SSIM input vs output and input vs reconstruction (cycle consistency)", _similarity("ssim"),
           {"ssim_input_output": True, "ssim_cycle": True}),
    Metric("ms_ssim", "MS-SSIM input vs output and input vs reconstruction", _similarity("ms_ssim"),
           {"ms_ssim_input_output": True, "ms_ssim_cycle": True}),
    Metric("psnr", "PSNR (dB) input vs reconstruction", _similarity("psnr"), {"psnr_cycle": True}),
    Metric("identity", "dlib identity distance input vs output, fraction under 0.6 (same person)", _identity,
           {"identity_distance": False, "identity_same_rate": True}),
    Metric("expression", "rate of outputs classified as target_expression (inputs as baseline)", _expression,
           {"expression_target_rate": True, "expression_target_rate_inputs": True}),
    Metric("au", "mean change of the target expression's Action-Unit proxies (MediaPipe blendshapes)", _au,
           {"au_change_*": True}),
    Metric("inception_score", "unavailable offline: the FID network has no ImageNet logits", _inception_score, {}),
)}

#: Every metric name `evaluate_translations` accepts, with what it measures.
METRICS: dict[str, str] = {name: metric.description for name, metric in REGISTRY.items()}
DEFAULT_METRICS = ("fid", "kid", "lpips", "ssim", "psnr")


def score_direction(score: str) -> bool | None:
    """True when larger is better for a reported score, False when smaller is, None when no
    metric declares it. `score` may carry a direction prefix ("ab/psnr_cycle")."""
    name = score.rsplit("/", 1)[-1]
    for metric in REGISTRY.values():
        higher = metric.direction(name)
        if higher is not None:
            return higher
    return None


def higher_is_better(score: str) -> bool:
    """Direction of a reported score, e.g. "ab/psnr_cycle" -> True, "ab/kid_x100" -> False, as
    its metric declares it in `REGISTRY`; a score no metric reports is an error.

    FID, KID, LPIPS and identity distance are distances (lower is better); SSIM, MS-SSIM, PSNR,
    rates and AU changes toward the target are similarities (higher is better).
    """
    higher = score_direction(score)
    if higher is None:
        raise FacecycleError(f"no metric reports a score called '{score}'; scores are named like "
                             "'ab/kid_x100' or 'ba/ssim_cycle' (see facecycle.evaluation.metrics.REGISTRY)")
    return higher


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
        metrics: names from `METRICS` (the keys of `REGISTRY`).
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
    run = _Run(x, y, t, r, result, target_expression, device, batch_size, fid_weights, target_features, input_features)
    for name, metric in REGISTRY.items():
        if name in names:
            metric.compute(run)
    return result
