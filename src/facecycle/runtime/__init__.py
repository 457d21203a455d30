"""Low-level runtime support shared by training and inference: checkpoint files and device choice.

Nothing here imports training, evaluation or inference; those layers import this one.
"""

RUN_CONFIG = "config.yaml"
"""A run directory's resolved config, beside `checkpoints/` (kept here, free of torch, so the
CLI's parsers can name it without importing torch)."""
