"""In-training evaluation of a conditional generator G(x, c), never fatal to the run.

    targets = expression_targets(columns, kind)            # {"joy": (K,) in [0, 1], "neutral": ...}
    evaluator = ConditionalPeriodicEvaluator(held_out, targets, metrics=("kid", "lpips"))
    scores = evaluator(G)    # {"joy/kid_x100": ..., "neutral/lpips_input_output": ..., "mean/kid_x100": ...} or None

Each held-out image `(N, C, H, W)` is translated to every target; per target the registry
metrics (`facecycle.evaluation.metrics`) score the translations: `kid`/`fid` against the held-out
reals themselves (realism: do the edited faces still look like real faces of this data?),
`lpips`/`ssim`/`ms_ssim` input vs output (how much the edit changes), `identity` (dlib distance
input vs output), `expression` (rate of outputs the expression classifier reads as the target;
inputs as baseline) and `au` (MediaPipe blendshape proxies of the target's units). `psnr` needs a
reconstruction: G(G(x, target), the image's own labels) is not computed here (the held-out images
have no labels), so it is unavailable. "mean/<score>" is the mean over the targets that report
the score, what `train.best_metric` usually names.

The target vectors come from the caller (commands compute them with
`facecycle.data.expressions.expression_targets`), so this module never imports inference. The
metric networks only judge: nothing here feeds a loss or chooses training data.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from facecycle.data.expressions import classifier_expression
from facecycle.errors import ConfigError
from facecycle.evaluation.metrics import check_metric_names, evaluate_translations, higher_is_better
from facecycle.evaluation.periodic import translate_in_eval

log = logging.getLogger(__name__)

#: Prefix of the scores averaged over every target.
MEAN = "mean"
# Baselines that compare the held-out reals with themselves when the reals are also the targets.
_SELF_BASELINES = ("fid_inputs", "kid_inputs_x100")


class ConditionalPeriodicEvaluator:
    """Scores a conditional generator on a fixed held-out sample, once per target.

    Args:
        held_out: `(N, C, H, W)` float in [-1, 1], real images (kept on the CPU; moved batch by
            batch to the generator's device). They are the inputs and, for `kid`/`fid`, the
            real distribution the outputs are compared with.
        targets: `{name: (K,) tensor in [0, 1]}` (network units), e.g. from
            `facecycle.data.expressions.expression_targets`. Names are score prefixes: no "/",
            and not "mean".
        metrics: names from `facecycle.evaluation.metrics.METRICS`; validated here, so a typo fails
            at construction, before training starts.
        batch_size: generator and metric batch size.
        judged_as: `{name: classifier class}` for `expression`/`au` (default: each name's
            `classifier_expression`, e.g. "joy" -> "happy"; None -> those metrics are skipped for it).

    Calling it with `G` (`G(x, c)`: `(B, C, H, W)`, `(B, K)` -> `(B, C, H, W)`) returns a flat
    `{"<target>/<score>": float, "mean/<score>": float}` (None values dropped), or None after
    logging the error if anything at all fails. FID features of the reals are computed once.
    """

    def __init__(
        self,
        held_out: torch.Tensor,
        targets: Mapping[str, torch.Tensor],
        metrics: Iterable[str] = ("kid", "lpips"),
        batch_size: int = 8,
        judged_as: Mapping[str, str | None] | None = None,
    ) -> None:
        self.metrics = check_metric_names(metrics)
        if held_out.ndim != 4 or held_out.shape[0] == 0:
            raise ConfigError(f"held-out images must be a non-empty (N, C, H, W) batch, got shape {tuple(held_out.shape)}")
        if not targets:
            raise ConfigError("conditional evaluation needs at least one target (e.g. {'joy': vector})")
        self.real = held_out.detach().float().cpu()
        self.targets: dict[str, torch.Tensor] = {}
        for name, vector in targets.items():
            if "/" in name or name == MEAN or not name:
                raise ConfigError(f"evaluation target name {name!r} cannot prefix scores: use a name without '/' "
                                  f"other than '{MEAN}'")
            v = torch.as_tensor(vector).detach().float().reshape(-1).cpu()
            if not bool(((v >= 0) & (v <= 1)).all()):
                raise ConfigError(f"evaluation target {name!r} must hold values in [0, 1] (network units)")
            self.targets[name] = v
        sizes = {v.numel() for v in self.targets.values()}
        if len(sizes) != 1:
            raise ConfigError(f"evaluation targets differ in length ({sorted(sizes)}); give one value per condition")
        self.batch_size = batch_size
        judged = dict(judged_as or {})
        self.judged_as = {name: judged[name] if name in judged else classifier_expression(name) for name in self.targets}
        self._features: np.ndarray | None = None

    def _real_features(self) -> np.ndarray | None:
        if not {"fid", "kid"} & set(self.metrics):
            return None
        if self._features is None:
            from facecycle.evaluation.fid import InceptionFeatures

            self._features = InceptionFeatures(batch_size=self.batch_size)(self.real)
        return self._features

    def evaluate(self, G: nn.Module) -> dict[str, float]:
        """Like calling the evaluator, but lets errors propagate (for tests and debugging)."""
        scores: dict[str, float] = {}
        per_score: dict[str, list[float]] = {}
        features = self._real_features()
        for name, target in self.targets.items():
            fake = translate_in_eval(G, self.real, self.batch_size, condition=target)
            result = evaluate_translations(
                self.real, fake, self.real if features is not None else None, metrics=self.metrics,
                target_expression=self.judged_as[name], batch_size=self.batch_size,
                target_features=features, input_features=features,
            )
            for key, value in result["metrics"].items():
                if value is None or (features is not None and key in _SELF_BASELINES):
                    continue
                scores[f"{name}/{key}"] = float(value)
                per_score.setdefault(key, []).append(float(value))
        for key, values in per_score.items():
            scores[f"{MEAN}/{key}"] = float(np.mean(values))
        return scores

    def score_names(self) -> list[str]:
        """The prefixes a score of this evaluator can carry: each target's name, then "mean"."""
        return [*self.targets, MEAN]

    @staticmethod
    def higher_is_better(score: str) -> bool:
        """Direction of one of this evaluator's scores ("mean/kid_x100" -> False), as its metric declares it."""
        return higher_is_better(score)

    def __call__(self, G: nn.Module) -> dict[str, float] | None:
        try:
            return self.evaluate(G)
        except Exception:  # noqa: BLE001 - by contract a metric failure must not stop training
            log.exception("periodic evaluation failed; training continues without these scores")
            return None


__all__ = ["MEAN", "ConditionalPeriodicEvaluator"]
