"""Shared functional tensor ops used by more than one layer (losses and evaluation metrics).

Ground-level: these modules import only torch, never another facecycle package.
"""
