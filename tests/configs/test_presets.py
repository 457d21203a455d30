"""Every shipped preset resolves, dry-runs through the CLI and trains 2 real steps at a tiny size."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import facecycle_cmd, write_blobs
from facecycle.config import preset_names, resolve
from facecycle.data.images import list_images
from facecycle.training.trainer import CycleGANTrainer

PRESETS = preset_names()
# Conditional presets train with ConditionalTrainer: see tests/training/test_conditional.py.
CYCLEGAN_PRESETS = [p for p in PRESETS if not resolve(p).is_conditional]


def tiny_overrides(preset: str) -> list[str]:
    config = resolve(preset)
    deep = max(config.model.disc_layers, config.model.disc_layers_2 if config.model.discriminator == "dual" else 0)
    size = 96 if deep >= 5 else 32  # a 5-layer PatchGAN needs >= 96 px
    if config.model.discriminator == "face":
        size = 64  # its mouth branch sees 45 % of the height: >= 54 px
    return [f"data.crop_size={size}", f"data.load_size={size + 4}", "model.gen_width=4", "model.disc_width=4",
            "model.gen_blocks=1", "model.gen_depth=5", "train.steps=2", "train.log_every=1", "train.sample_every=2"]


@pytest.fixture(scope="module")
def domains(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    root = tmp_path_factory.mktemp("presets")
    a, b = root / "A", root / "B"
    write_blobs(a, 6, (40, 40), seed=3, bright=False)
    write_blobs(b, 6, (40, 40), seed=4, bright=True)
    masks = {}
    for name, folder in (("A", a), ("B", b)):
        mask_dir = root / f"masks_{name}"
        mask_dir.mkdir()
        for path in list_images(folder):
            mask = Image.new("L", (40, 40), 0)
            mask.paste(255, (10, 10, 30, 30))
            mask.save(mask_dir / f"{path.stem}.png")
        masks[name] = mask_dir
    return a, b, masks["A"], masks["B"]


def test_presets_exist_for_every_report() -> None:
    expected = {"paper_cyclegan", "faceoff_baseline", "faceoff_wgan", "faceoff_ssim", "faceoff_unet", "faceoff_mask",
                "faceoff_d5", "faceoff_dual", "selfie2anime", "gender_resnet6_idt5", "gender_resnet6_idt10",
                "gender_resnet9_idt5", "gender_resnet9_idt10", "sad2happy", "sad2happy_no_identity",
                "sad2happy_no_cycle", "sad2happy_no_cycle_a", "sad2happy_no_cycle_identity", "demo"}
    assert expected <= set(PRESETS)
    for name in PRESETS:  # each documents what it reproduces
        text = (Path(resolve.__globals__["PRESET_DIR"]) / f"{name}.yaml").read_text()
        assert text.startswith("#"), name


@pytest.mark.parametrize("preset", CYCLEGAN_PRESETS)
def test_preset_trains_two_steps(preset: str, domains, tmp_path) -> None:
    a, b, masks_a, masks_b = domains
    flags = {"data.data_a": str(a), "data.data_b": str(b)}
    if resolve(preset).loss.mask_weight > 0:
        flags.update({"data.masks_a": str(masks_a), "data.masks_b": str(masks_b)})
    config = resolve(preset, overrides=tiny_overrides(preset), flags=flags)
    torch.set_num_threads(1)
    trainer = CycleGANTrainer(config, tmp_path / "run", progress=False)
    before = [p.detach().clone() for p in trainer.G_ab.parameters()]
    trainer.fit()
    assert trainer.step == 2
    assert (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()
    changed = any(not torch.equal(p0, p1) for p0, p1 in zip(before, trainer.G_ab.parameters()))
    assert changed, "the generator did not update"


def test_preset_by_name_dry_runs_through_cli(cli_env, tmp_path) -> None:
    proc = subprocess.run(facecycle_cmd("train", "--config", "faceoff_dual", "--run-dir", str(tmp_path / "r"),
                                        "--data-a", "x", "--data-b", "y", "--dry-run"),
                          env=cli_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "discriminator: dual" in proc.stdout and "disc_layers_2: 5" in proc.stdout
    proc = subprocess.run(facecycle_cmd("train", "--config", "nope", "--run-dir", str(tmp_path / "r"), "--dry-run"),
                          env=cli_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "shipped presets:" in proc.stderr and "faceoff_dual" in proc.stderr


def test_wgan_clipping_holds_after_a_step(domains, tmp_path) -> None:
    a, b, _, _ = domains
    config = resolve("faceoff_wgan", overrides=tiny_overrides("faceoff_wgan") + ["loss.clip=0.005"],
                     flags={"data.data_a": str(a), "data.data_b": str(b)})
    trainer = CycleGANTrainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    for p in list(trainer.D_a.parameters()) + list(trainer.D_b.parameters()):
        assert p.abs().max().item() <= 0.005 + 1e-9
    assert isinstance(trainer.opt_D, torch.optim.RMSprop)
    assert trainer.batch_in_epoch == 2 * config.optim.n_critic or trainer.epoch > 0  # n_critic batches per step
