"""Training and evaluation against bad settings and damaged files (robustness issue rows B4, B9,
B10, B11, B15-B20): a clear error before anything is written, nothing good lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facecycle.cli import main
from tiny import TINY_TRAIN

TINY = TINY_TRAIN


def train(blob_domains: tuple[Path, Path], run: Path, *extra: str) -> int:
    a, b = blob_domains
    return main(["train", "--data-a", str(a), "--data-b", str(b), "--run-dir", str(run), *TINY, *extra])


@pytest.mark.parametrize("setting", ["optim.lr_g=-1", "optim.lr_g=.nan", "optim.lr_d=.inf", "optim.beta1=2",
                                     "model.gen_dropout=1.5", "model.gen_width=0", "train.seed=-1"])
def test_out_of_range_settings_are_config_errors(setting: str, blob_domains, tmp_path: Path, capsys) -> None:
    """B15: each is refused before the run folder is made, naming the key."""
    assert train(blob_domains, tmp_path / "run", "--steps", "2", "--set", setting) == 2
    assert f"{setting.split('=')[0]} must be" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unet_depth_larger_than_the_size_is_a_config_error(blob_domains, tmp_path: Path, capsys) -> None:
    """B20: a pinned gen_depth with a smaller size names the sizes that fit."""
    assert train(blob_domains, tmp_path / "run", "--steps", "1", "--set", "model.generator=unet",
                 "--set", "model.gen_depth=6") == 2
    err = capsys.readouterr().err
    assert "multiple of 2^6 = 64" in err and "--size 64" in err


def test_refused_resume_leaves_the_run_as_it_was(blob_domains, tmp_path: Path, capsys) -> None:
    """B9: --resume with another architecture is refused and config.yaml is untouched, so a plain
    --resume still works afterwards."""
    run = tmp_path / "run"
    assert train(blob_domains, run, "--steps", "4", "--until-step", "2") == 0
    before = (run / "config.yaml").read_text()
    assert train(blob_domains, run, "--steps", "4", "--resume", "--set", "model.gen_blocks=3") == 2
    assert "gen_blocks" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == before
    assert train(blob_domains, run, "--steps", "4", "--resume") == 0


def test_restart_before_the_first_checkpoint_starts_a_fresh_log(blob_domains, tmp_path: Path) -> None:
    """B18: a run killed before its first checkpoint left stats.jsonl; starting again replaces it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "stats.jsonl").write_text(json.dumps({"step": 1, "loss_G": 9.0}) + "\n" + json.dumps({"step": 2}) + "\n")
    assert train(blob_domains, run, "--steps", "2") == 0
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and 9.0 not in [json.loads(x).get("loss_G") for x in
                                                       (run / "stats.jsonl").read_text().splitlines()]


def test_divergence_before_any_checkpoint_says_so(blob_domains, tmp_path: Path, capsys) -> None:
    """B17: no 'last good checkpoint is intact' when there is none."""
    assert train(blob_domains, tmp_path / "run", "--steps", "8", "--set", "loss.cycle_a=1e39",
                 "--set", "train.max_bad_steps=2") == 2
    err = capsys.readouterr().err
    assert "No checkpoint was written yet" in err and "is intact" not in err


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    """B16: a checkpoint with inf weights is refused and the good ones stay."""
    from facecycle.errors import TrainingDiverged
    from facecycle.runtime import checkpoints as ckpt

    good = {"format": 1, "config": {}, "nets": {"G_ab": {"w": torch.ones(3)}}}
    ckpt.save_checkpoint(tmp_path, 1, good, keep=1)
    bad = {"format": 1, "config": {}, "nets": {"G_ab": {"w": torch.tensor([1.0, float("inf"), 0.0])}}}
    with pytest.raises(TrainingDiverged, match=r"G_ab are not finite.*step_00000001\.pt, is intact"):
        ckpt.save_checkpoint(tmp_path, 2, bad, keep=1)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000001.pt"]


def test_disk_full_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B4: a write that fails says how much space is left and that the previous files are intact.
    /dev/full is a real device that fails every write with ENOSPC."""
    from facecycle.errors import CheckpointError
    from facecycle.runtime import checkpoints as ckpt

    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available on this system")
    real_mkstemp = ckpt.tempfile.mkstemp

    def mkstemp_on_full_device(*args, **kwargs):  # the temporary file is /dev/full itself
        fd, name = real_mkstemp(*args, **kwargs)
        import os

        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(name, os.O_WRONLY), name

    monkeypatch.setattr(ckpt.tempfile, "mkstemp", mkstemp_on_full_device)
    with pytest.raises(CheckpointError, match=r"MiB free on that disk.*previous checkpoints are intact"):
        ckpt.atomic_save({"w": torch.zeros(1000)}, tmp_path / "step_00000001.pt")
    assert not (tmp_path / "step_00000001.pt").exists()


def test_checkpoint_without_config_is_a_clear_error(tmp_path: Path) -> None:
    """B11: format/nets but no config."""
    from facecycle.errors import CheckpointError
    from facecycle.inference.loading import load_generator

    path = tmp_path / "partial.pt"
    torch.save({"format": 1, "nets": {"G_ab": {"w": torch.zeros(1)}}}, path)
    with pytest.raises(CheckpointError, match="not a complete facecycle checkpoint.*config"):
        load_generator(path)


def test_object_array_cache_is_refused(tmp_path: Path) -> None:
    """B19: an object-dtype .npy is never unpickled; the error says to rebuild the cache."""
    from facecycle.data.cache import CACHE_FORMAT, CACHE_VERSION, CachedDomain, index_path
    from facecycle.errors import DataError

    path = tmp_path / "a.npy"
    np.save(path, np.array([object()]), allow_pickle=True)
    index_path(path).write_text(json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "root": str(tmp_path),
                                            "size": 8, "channels": 3, "count": 1, "files": ["x.png"]}))
    with pytest.raises(DataError, match="rebuild it"):
        CachedDomain(path, "A")


def test_evaluate_skips_a_truncated_jpeg(tmp_path: Path) -> None:
    """B10: half a JPEG in the held-out folder is skipped with a warning, as in training."""
    from facecycle.evaluation.held_out import load_sample

    folder = tmp_path / "A"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"img{i}.jpg", quality=95)
    whole = (folder / "img1.jpg").read_bytes()
    (folder / "img1.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match=r"img1\.jpg"):
        batch, files = load_sample(folder, 3, 32, 3, "held-out A folder")
    assert batch.shape == (2, 3, 32, 32) and [f.name for f in files] == ["img0.jpg", "img2.jpg"]
