"""Training loop, image pools, LR schedules, checkpoints."""
