"""Datasets and image I/O."""
