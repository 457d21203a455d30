"""Shared tensor ops used by more than one layer: SSIM/PSNR (losses and evaluation metrics) and the
Winograd 3×3 convolution (training and inference).

Ground-level: these modules import only torch, never another facecycle package.
"""
