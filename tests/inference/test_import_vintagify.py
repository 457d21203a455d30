"""A real third-party generator: vintagify's (PyPI, MIT) affine-instance-norm ResNet, imported and
compared output for output with vintagify's own model code. Skips where the wheel is absent
(`pip install --no-deps vintagify==0.1.2`; its code imports torchvision, which we never install,
so its generator module is loaded from its file without running the package's __init__)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from facecycle.inference.reference import detect_architecture, write_imported_model
from facecycle.inference.translator import Translator


def vintagify_dir():
    spec = importlib.util.find_spec("vintagify")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vintagify is not installed (pip install --no-deps vintagify==0.1.2)")
    from pathlib import Path

    return Path(list(spec.submodule_search_locations)[0])


def test_vintagify_generator_imports_and_matches_its_own_code(tmp_path) -> None:
    root = vintagify_dir()
    weights = root / "resources" / "G_A2B_epoch33.pth"
    spec = importlib.util.spec_from_file_location("vintagify_generator", root / "generator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.ResnetGenerator()  # as vintagify.inference builds it: 3 -> 3, ngf 64, 9 blocks
    theirs.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    theirs.eval()

    arch = detect_architecture(torch.load(weights, map_location="cpu", weights_only=True), weights)
    assert (arch.generator, arch.blocks, arch.width, arch.norm) == ("resnet", 9, 64, "instance_affine")
    write_imported_model(tmp_path / "vintage", {"a2b": weights}, crop_size=512)
    translator = Translator.load(tmp_path / "vintage", device="cpu")
    assert translator.info()["model"]["norm"] == "instance_affine"
    x = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = theirs(x)
    assert expected.std() > 0.05
    torch.testing.assert_close(translator.generators["a2b"].net(x), expected, rtol=1e-4, atol=1e-5)
