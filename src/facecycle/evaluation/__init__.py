"""Evaluation: FID/KID, LPIPS, SSIM/MS-SSIM/PSNR, identity, expression, reports.

Heavy dependencies (the Inception network, dlib, LiteRT, MediaPipe, matplotlib) load only
when the metric that needs them runs. Entry points:

- `evaluate_translations` (metrics.py): all metrics for one set of translations.
- `PeriodicEvaluator` (periodic.py): never-raising scores during training.
- `write_report` (report.py): metrics.json + report.html.
- `video_flicker` (flicker.py): temporal consistency of a translated video (no model needed).
- `AssetMissingError`: a metric's offline asset file (network weights) is not installed.
"""

from facecycle.evaluation._assets import AssetMissingError
from facecycle.evaluation.metrics import DEFAULT_METRICS, METRICS, evaluate_translations
from facecycle.evaluation.periodic import PeriodicEvaluator
from facecycle.evaluation.report import write_report

__all__ = [
    "AssetMissingError", "DEFAULT_METRICS", "METRICS", "PeriodicEvaluator", "evaluate_translations", "write_report",
]
