"""The uint8 memmap cache: same batches as the folder pipeline, masks, skipped files, CLI, training."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_blobs
from tiny import tiny_config
from facecycle.config import Config
from facecycle.data.cache import CachedDomain, build_cache, index_path, masks_path
from facecycle.errors import DataError
from facecycle.runtime import checkpoints as ckpt
from facecycle.training.trainer import CycleGANTrainer


def tiny(data_a: Path, data_b: Path, masks_a: Path | None = None, **train) -> Config:
    return tiny_config(data_a, data_b, data={"masks_a": str(masks_a) if masks_a else None},
                       train={"batch_size": 2, "device": "cpu", "steps": 4, "log_every": 1, "sample_every": 100, **train})


def write_masks(images: list[Path], root: Path, mask_root: Path) -> None:
    rng = np.random.default_rng(5)
    for p in images:
        m = (mask_root / p.relative_to(root)).with_suffix(".png")
        m.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        w, h = Image.open(p).size
        Image.fromarray((rng.random((h, w)) > 0.5).astype(np.uint8) * 255).save(m)


@pytest.fixture()
def domains(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b, ma = tmp_path / "A", tmp_path / "B", tmp_path / "MA"
    images = write_blobs(a, 5, (40, 40), seed=1, bright=False)
    write_blobs(b, 6, (36, 44), seed=2, bright=True, ext=".jpg")
    write_masks(images, a, ma)
    return a, b, ma


def test_cache_batches_are_bit_identical_to_folder_batches(domains, tmp_path) -> None:
    a, b, ma = domains
    build_cache(a, tmp_path / "a.npy", 36, masks=ma, workers=1)
    build_cache(b, tmp_path / "b.npy", 36, workers=2)  # process pool path
    folder = CycleGANTrainer(tiny(a, b, ma), tmp_path / "r1", progress=False)
    cached = CycleGANTrainer(tiny(tmp_path / "a.npy", tmp_path / "b.npy"), tmp_path / "r2", progress=False)
    assert isinstance(cached.domain_a.images, np.memmap)  # never loaded into RAM as a whole
    # 6 positions / batch 2 = 3 batches per epoch: 7 batches cross two epoch boundaries
    for x, y in zip(itertools.islice(folder.batches(), 7), itertools.islice(cached.batches(), 7)):
        assert sorted(x) == sorted(y) == ["a", "b", "mask_a"]
        for key in x:
            assert x[key].shape == y[key].shape and x[key].dtype == y[key].dtype
            assert torch.equal(x[key], y[key]), key
    assert (folder.epoch, folder.batch_in_epoch) == (cached.epoch, cached.batch_in_epoch) == (2, 1)
    # Both the flip and the no-flip branch were compared above.
    import random

    from facecycle.data.cache import crop_params
    from facecycle.data.transforms import TransformSpec
    from facecycle.data.unpaired import item_seed

    drawn = [crop_params(random.Random(item_seed(0, 0, p)), TransformSpec(36, 32)) for p in range(6)]
    assert any(f for _, _, f in drawn) and not all(f for _, _, f in drawn)


def test_cache_of_another_size_is_resized_on_the_device(domains, tmp_path) -> None:
    a, b, _ = domains
    build_cache(a, tmp_path / "a.npy", 48, workers=1)
    build_cache(b, tmp_path / "b.npy", 48, workers=1)
    folder = CycleGANTrainer(tiny(a, b), tmp_path / "r1", progress=False)
    cached = CycleGANTrainer(tiny(tmp_path / "a.npy", tmp_path / "b.npy"), tmp_path / "r2", progress=False)
    for x, y in zip(itertools.islice(folder.batches(), 3), itertools.islice(cached.batches(), 3)):
        assert x["a"].shape == y["a"].shape == (2, 3, 32, 32)
        assert (x["a"] - y["a"]).abs().mean() < 0.05  # same crops and flips, resampled twice


def test_cache_files_index_and_unreadable_images(domains, tmp_path) -> None:
    a, _, ma = domains
    (a / "sub").mkdir()
    (a / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="has no mask"):
        build_cache(a, tmp_path / "c.npy", 20, masks=ma, workers=1)
    index = build_cache(a, tmp_path / "c.npy", 20, channels=1, workers=1)
    assert index["count"] == 5 and len(index["files"]) == 5
    assert [Path(p).name for p, _ in index["skipped"]] == ["broken.png"]
    on_disk = json.loads(index_path(tmp_path / "c.npy").read_text())
    assert on_disk["files"] == [f"img_{i:03d}.png" for i in range(5)]
    arr = np.load(tmp_path / "c.npy", mmap_mode="r")
    assert arr.dtype == np.uint8 and arr.shape[1:] == (20, 20, 1)
    assert not masks_path(tmp_path / "c.npy").exists()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary leftovers
    domain = CachedDomain(tmp_path / "c.npy", "A")
    assert len(domain) == 5 and domain.files[0] == a.resolve() / "img_000.png"


def test_cache_errors_are_clear(domains, tmp_path) -> None:
    a, b, _ = domains
    with pytest.raises(DataError, match="prepare cache"):
        CachedDomain(tmp_path / "missing.npy", "A")
    build_cache(a, tmp_path / "a.npy", 36, workers=1)
    with pytest.raises(DataError, match="one domain is a cache"):
        CycleGANTrainer(tiny(tmp_path / "a.npy", b), tmp_path / "r", progress=False)
    build_cache(b, tmp_path / "g.npy", 36, channels=1, workers=1)
    with pytest.raises(DataError, match="1 channel"):
        CycleGANTrainer(tiny(tmp_path / "a.npy", tmp_path / "g.npy"), tmp_path / "r", progress=False)
    with pytest.raises(DataError, match=r"\.npy"):
        build_cache(a, tmp_path / "a.bin", 36)


def test_prepare_cache_command_then_train_and_resume(domains, tmp_path, capsys) -> None:
    from facecycle.commands.prepare_cache import add_cache_parser

    a, b, _ = domains
    parser = argparse.ArgumentParser()
    add_cache_parser(parser.add_subparsers())
    for name, folder in (("a", a), ("b", b)):
        args = parser.parse_args(["cache", "--input", str(folder), "--output", str(tmp_path / f"{name}.npy"),
                                  "--size", "36", "--workers", "1"])
        assert args.func(args) == 0
    assert "cached 5 image(s) at 36x36x3" in capsys.readouterr().out
    config = tiny(tmp_path / "a.npy", tmp_path / "b.npy", checkpoint_every=2)
    run = tmp_path / "run"
    first = CycleGANTrainer(config, run, progress=False)
    first.fit(until_step=2)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step_00000002.pt"]
    assert first.write_samples().is_file()  # fixed samples come from the cache
    straight = CycleGANTrainer(config, tmp_path / "straight", progress=False)
    straight.fit()
    resumed = CycleGANTrainer(config, run, progress=False)
    resumed.resume()
    resumed.fit()
    assert resumed.step == straight.step == 4
    assert (resumed.epoch, resumed.batch_in_epoch) == (straight.epoch, straight.batch_in_epoch)
    for x, y in zip(resumed.G_ab.parameters(), straight.G_ab.parameters()):
        assert torch.allclose(x, y, atol=1e-6)
