"""LPIPS port: zero on identical images, monotone in distortion, safe weight loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from facecycle.evaluation._assets import load_numpy_pickle
from facecycle.evaluation.inputs import to_batch
from facecycle.evaluation.lpips import lpips_distance


@pytest.fixture(scope="module")
def faces(shared_faces: Path) -> torch.Tensor:
    return to_batch(sorted((shared_faces / "neutral").glob("*.jpg"))[:4], channels=1, size=(96, 96))


def test_identical_images_have_zero_distance(faces: torch.Tensor) -> None:
    d = lpips_distance(faces, faces.clone())
    assert d.shape == (4,)
    assert torch.all(d.abs() < 1e-6)


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_distance_grows_with_distortion_strength(faces: torch.Tensor, net: str) -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(faces.shape, generator=g)
    if net == "vgg16":  # ~15x slower than AlexNet on CPU: fewer, smaller images
        faces, noise = faces[:2, :, :64, :64], noise[:2, :, :64, :64]
    values = [lpips_distance(faces, (faces + s * noise).clamp(-1, 1), net=net).mean().item() for s in (0.02, 0.1, 0.3, 0.6)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0


def test_grayscale_equals_repeated_rgb(faces: torch.Tensor) -> None:
    other = faces.flip(0)
    assert torch.allclose(lpips_distance(faces, other), lpips_distance(faces.repeat(1, 3, 1, 1), other.repeat(1, 3, 1, 1)), atol=1e-5)


def test_weight_loader_refuses_anything_but_numpy(tmp_path: Path) -> None:
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"a": print}))  # a pickle naming an arbitrary callable
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_numpy_pickle(evil)
