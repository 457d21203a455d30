"""Low-level runtime support shared by training and inference: checkpoint files and device choice.

Nothing here imports training, evaluation or inference; those layers import this one.
"""
