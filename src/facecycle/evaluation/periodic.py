"""Evaluation during training that can never take the training run down with it.

    evaluator = PeriodicEvaluator(held_out_a, held_out_b, metrics=("kid", "ssim"))
    ...
    if step % every == 0:
        scores = evaluator(G_ab, G_ba)        # {"ab/kid_x100": ..., "ba/ssim_cycle": ...} or None
        if scores: logger.log(step, scores)

(A report's FID once crashed a training run hours in; a metric failure is now a logged
warning and a None.)
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
import torch
from torch import nn

from facecycle.evaluation.metrics import check_metric_names, evaluate_translations, higher_is_better

log = logging.getLogger(__name__)


def translate_in_eval(generator: nn.Module, images: torch.Tensor, batch_size: int,
                      condition: torch.Tensor | None = None) -> torch.Tensor:
    """`generator` over `images` `(N, C, H, W)` in [-1, 1] (CPU), batch by batch on the generator's
    device, in eval mode without gradients (its train/eval mode is restored); returns `(N, C, H, W)`
    float32 on the CPU. `condition`: a `(K,)` target in [0, 1] for a conditional G(x, c), the same
    for every image."""
    params = next(generator.parameters(), None)
    device = params.device if params is not None else torch.device("cpu")
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            out = []
            for i in range(0, images.shape[0], batch_size):
                x = images[i : i + batch_size].to(device)
                if condition is None:
                    out.append(generator(x).float().cpu())
                else:
                    c = condition.to(device=device, dtype=x.dtype).reshape(1, -1).expand(x.shape[0], -1)
                    out.append(generator(x, c).float().cpu())
            return torch.cat(out)
    finally:
        generator.train(was_training)


class PeriodicEvaluator:
    """Scores both translation directions on a fixed held-out sample.

    Args:
        held_out_a, held_out_b: `(N, C, H, W)` float in [-1, 1], real images of domains A
            and B (kept on the CPU; moved batch by batch to the generators' device).
        metrics: names from `facecycle.evaluation.metrics.METRICS`; validated here, so a
            typo fails at construction, before training starts.
        batch_size: generator and metric batch size.
        target_expression_ab / _ba: target expression of each direction for "expression"
            and "au" (e.g. "happy" / "neutral").

    Calling it with `(G_ab, G_ba)` returns a flat `{"ab/<metric>": float, "ba/<metric>": ...}`
    (None values dropped), or None after logging the error if anything at all fails.
    FID features of the real sets are computed once, on the first call.
    """

    def __init__(
        self,
        held_out_a: torch.Tensor,
        held_out_b: torch.Tensor,
        metrics: Iterable[str] = ("kid", "lpips", "ssim"),
        batch_size: int = 8,
        target_expression_ab: str | None = None,
        target_expression_ba: str | None = None,
    ) -> None:
        self.metrics = check_metric_names(metrics)
        self.real = {"a": held_out_a.detach().float().cpu(), "b": held_out_b.detach().float().cpu()}
        self.batch_size = batch_size
        self.targets = {"ab": target_expression_ab, "ba": target_expression_ba}
        self._features: dict[str, np.ndarray] = {}

    def _real_features(self, domain: str) -> np.ndarray | None:
        if not {"fid", "kid"} & set(self.metrics):
            return None
        if domain not in self._features:
            from facecycle.evaluation.fid import InceptionFeatures

            self._features[domain] = InceptionFeatures(batch_size=self.batch_size)(self.real[domain])
        return self._features[domain]

    def evaluate(self, G_ab: nn.Module, G_ba: nn.Module) -> dict[str, float]:
        """Like calling the evaluator, but lets errors propagate (for tests and debugging)."""
        scores: dict[str, float] = {}
        for direction, (src, dst, forward, backward) in {"ab": ("a", "b", G_ab, G_ba), "ba": ("b", "a", G_ba, G_ab)}.items():
            fake = translate_in_eval(forward, self.real[src], self.batch_size)
            rec = translate_in_eval(backward, fake, self.batch_size)
            result = evaluate_translations(
                self.real[src], fake, self.real[dst], reconstructions=rec, metrics=self.metrics,
                target_expression=self.targets[direction], batch_size=self.batch_size,
                target_features=self._real_features(dst), input_features=self._real_features(src),
            )
            for key, value in result["metrics"].items():
                if value is not None:
                    scores[f"{direction}/{key}"] = float(value)
        return scores

    @staticmethod
    def higher_is_better(score: str) -> bool:
        """Direction of one of this evaluator's scores ("ab/psnr_cycle" -> True), as its metric declares it."""
        return higher_is_better(score)

    def __call__(self, G_ab: nn.Module, G_ba: nn.Module) -> dict[str, float] | None:
        try:
            return self.evaluate(G_ab, G_ba)
        except Exception:  # noqa: BLE001 - by contract a metric failure must not stop training
            log.exception("periodic evaluation failed; training continues without these scores")
            return None
