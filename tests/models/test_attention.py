"""Attention-guided generators in CycleGAN mode: composition, heads, mask regularisers, and the
model going everywhere a model goes (train + resume, samples, export parity, Translator)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import facecycle_cmd, write_blobs
from tiny import tiny_flags, tiny_model
from facecycle.config import Config, with_values
from facecycle.losses.attention import MaskWeights, mask_regularizer
from facecycle.models.attention import AttentionGenerator, compose, is_attention
from facecycle.build import build_generator

TINY = tiny_flags("model.attention_mask=true", "train.log_every=1")


def attention_config(generator: str = "resnet", channels: int = 3) -> Config:
    c = Config()
    return with_values(c, data={"crop_size": 32, "load_size": 32, "channels": channels},
                       model={"generator": generator, "gen_width": 8, "gen_blocks": 2, "attention_mask": True})


def _mask_conv(net: AttentionGenerator) -> torch.nn.Conv2d:
    convs = [m for m in net.base.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    return convs[-1]


@pytest.mark.parametrize("generator", ["resnet", "unet"])
def test_closed_mask_returns_the_input_exactly(generator: str) -> None:
    net = build_generator(attention_config(generator)).eval()
    assert is_attention(net)
    last = _mask_conv(net)
    with torch.no_grad():  # mask channel: tanh(-1e4) = -1 exactly, so A = 0 everywhere
        last.weight[:, -1].zero_() if isinstance(last, torch.nn.ConvTranspose2d) else last.weight[-1].zero_()
        last.bias[-1] = -1e4
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    fake, mask = net(x, with_mask=True)
    assert torch.count_nonzero(mask) == 0
    assert torch.equal(fake, x)
    # compose() itself: an open mask gives the content, a closed one the input, bit for bit.
    content = torch.rand_like(x)
    assert torch.equal(compose(x, content, torch.ones(2, 1, 32, 32)), content)
    assert torch.equal(compose(x, content, torch.zeros(2, 1, 32, 32)), x)


@pytest.mark.parametrize("generator", ["resnet", "unet"])
def test_face_prior_keeps_the_outside_of_the_face_exactly(generator: str, tmp_path: Path) -> None:
    """model.mask_prior=face: corners and forehead are the input's own pixels whatever the network
    says; inside the face the mask is the network's; the prior survives a safetensors export."""
    from facecycle.inference.export import export_generator
    from facecycle.inference.loading import LoadedGenerator, load_generator

    config = with_values(attention_config(generator), model={"mask_prior": "face"})
    net = build_generator(config).eval()
    last = _mask_conv(net)
    with torch.no_grad():  # mask channel fully open: A = 1 before the prior
        last.weight[:, -1].zero_() if isinstance(last, torch.nn.ConvTranspose2d) else last.weight[-1].zero_()
        last.bias[-1] = 1e4
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    fake, mask = net(x, with_mask=True)
    assert mask[0, 0, 0, 0] == 0 and mask[0, 0, 1, 16] == 0  # corner, top of the forehead
    assert torch.equal(fake[..., :2, :], x[..., :2, :])
    assert mask[0, 0, 20, 16] > 0.99  # the middle of the lower face is fully open
    gen = LoadedGenerator(net=net, direction="a2b", channels=3, size_multiple=net.size_multiple, crop_size=32,
                          config=config.to_dict(), source=Path("."))
    path = export_generator(gen, tmp_path / "g.safetensors", "safetensors")
    again = load_generator(path, "a2b", "cpu").net
    assert torch.equal(again(x, with_mask=True)[1], mask)


def test_mask_prior_needs_an_attention_model() -> None:
    from facecycle.errors import ConfigError

    with pytest.raises(ConfigError, match="mask_prior needs model.attention_mask"):
        with_values(Config(), model={"mask_prior": "face"}).validate()


@pytest.mark.parametrize("generator", ["resnet", "unet"])
def test_gradients_reach_content_and_mask_heads(generator: str) -> None:
    net = build_generator(attention_config(generator))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    fake, mask = net(x, with_mask=True)
    assert fake.shape == x.shape and mask.shape == (2, 1, 32, 32)
    assert 0 <= mask.min() and mask.max() <= 1
    (fake - 0.3).abs().mean().backward()
    last = _mask_conv(net)
    channel_dim = 1 if isinstance(last, torch.nn.ConvTranspose2d) else 0
    grad = last.weight.grad.abs().sum(dim=[d for d in range(4) if d != channel_dim])
    assert grad.shape[0] == 4 and (grad[:3] > 0).all(), "no gradient to the content head"
    assert grad[3] > 0, "no gradient to the mask head"


@pytest.mark.parametrize("generator,size", [("resnet", (37, 51)), ("unet", (45, 29))])
def test_odd_sizes_are_padded_and_cropped_back(generator: str, size: tuple[int, int]) -> None:
    from facecycle.inference.loading import LoadedGenerator
    from facecycle.inference.translate import translate_tensor

    config = attention_config(generator)
    net = build_generator(config).eval()
    gen = LoadedGenerator(net=net, direction="a2b", channels=3, size_multiple=net.size_multiple, crop_size=32,
                          config=config.to_dict(), source=Path("."))
    x = torch.rand(1, 3, *size) * 2 - 1
    y = translate_tensor(gen, x)
    assert tuple(y.shape) == (1, 3, *size) and torch.isfinite(y).all()


def test_mask_regularizer_values_and_collapse_guard() -> None:
    w = MaskWeights(l1=0.1, tv=0.1, min_area=0.05, floor=10.0)
    closed = torch.zeros(2, 1, 8, 8, requires_grad=True)
    total, terms = mask_regularizer([closed], w)
    # Closed mask: no sparsity, no TV, both floor hinges in full: 10 * (0.05 + 0.05) = 1.
    assert total.item() == pytest.approx(1.0) and terms["mask_floor"].item() == pytest.approx(0.1)
    total.backward()
    assert (closed.grad < 0).all(), "the guard must push a closed mask open"
    # A mask with a quarter open (a block): floor inactive, sparsity 0.1 * 0.25, TV of one edge each way.
    block = torch.zeros(1, 1, 8, 8)
    block[..., :4, :4] = 1
    total, terms = mask_regularizer([block], w)
    tv = 2 * (4 / (8 * 7))  # 4 changes per direction among 8*7 neighbour pairs
    assert terms["mask_floor"].item() == 0
    assert total.item() == pytest.approx(0.1 * 0.25 + 0.1 * tv)
    assert terms["mask_mean"].item() == pytest.approx(0.25) and terms["mask_std"].item() == pytest.approx(0.4330127)
    # A faint mask over everything has area 0.1 but commits to little: mean(A^2) = 0.01 < 0.05.
    faint = torch.full((1, 1, 8, 8), 0.1)
    assert mask_regularizer([faint], w)[1]["mask_floor"].item() == pytest.approx(0.04)
    with pytest.raises(ValueError):
        mask_regularizer([], w)


def test_training_logs_mask_statistics_and_draws_masks(blob_domains: tuple[Path, Path], tmp_path: Path) -> None:
    from facecycle.training.logging import read_stats
    from facecycle.training.trainer import CycleGANTrainer

    a, b = blob_domains
    config = with_values(attention_config(), data={"data_a": str(a), "data_b": str(b), "crop_size": 32, "load_size": 36},
                         model=tiny_model(generator="resnet", attention_mask=True),
                         train={"steps": 3, "log_every": 1, "sample_every": 3, "checkpoint_every": 3})
    trainer = CycleGANTrainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    stats = read_stats(tmp_path / "run")
    assert all(0 < r["loss_mask_mean"] < 1 and r["loss_mask_std"] >= 0 for r in stats if "loss_mask_mean" in r)
    assert sum("loss_mask_mean" in r for r in stats) == 3
    grid = Image.open(tmp_path / "run" / "samples" / "step_00000003.png")
    # 5 columns (real, fake, mask, rec, idt) of 32 px with 2 px padding.
    assert grid.width == 5 * 34 + 2


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    root = tmp_path_factory.mktemp("attention_run")
    write_blobs(root / "A", 6, (40, 40), seed=1, bright=False)
    write_blobs(root / "B", 6, (36, 44), seed=2, bright=True, ext=".jpg")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    straight = root / "straight"
    done = subprocess.run(facecycle_cmd("train", "--data-a", str(root / "A"), "--data-b", str(root / "B"),
                                        "--run-dir", str(straight), "--steps", "4", *TINY), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return straight


def test_attention_run_resumes_exactly(attention_run: Path, tmp_path: Path) -> None:
    import os

    from facecycle.runtime.checkpoints import list_checkpoints, load_file

    root = attention_run.parent
    sliced = tmp_path / "sliced"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for extra in (["--data-a", str(root / "A"), "--data-b", str(root / "B"), "--steps", "4", "--until-step", "2", *TINY],
                  ["--resume", "--quiet"]):
        done = subprocess.run(facecycle_cmd("train", "--run-dir", str(sliced), *extra), env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    s1, s2 = load_file(list_checkpoints(attention_run)[-1]), load_file(list_checkpoints(sliced)[-1])
    assert s1["config"]["model"]["attention_mask"] is True
    for net in ("G_ab", "G_ba", "D_a", "D_b"):
        for key, value in s1["nets"][net].items():
            assert torch.equal(value, s2["nets"][net][key]), f"{net}.{key} differs after resume"


def test_resume_refuses_to_drop_the_mask(attention_run: Path, tmp_path: Path) -> None:
    import os
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(attention_run, copy)
    done = subprocess.run(facecycle_cmd("train", "--run-dir", str(copy), "--resume", "--quiet",
                                        "--set", "model.attention_mask=false"),
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "model.attention_mask" in done.stderr


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torchscript", ".ts"), ("safetensors", ".safetensors")])
def test_attention_export_parity_and_translator(attention_run: Path, tmp_path: Path, fmt: str, suffix: str) -> None:
    from facecycle import Translator
    from facecycle.inference.export import export_generator
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_tensor

    reference = load_generator(attention_run, "a2b", "cpu")
    assert is_attention(reference.net)
    path = export_generator(reference, tmp_path / f"g{suffix}", fmt)
    exported = load_generator(path, "a2b", "cpu")
    torch.manual_seed(0)
    for h, w in [(32, 32), (33, 45)]:
        x = torch.rand(2, 3, h, w) * 2 - 1
        assert (translate_tensor(exported, x) - translate_tensor(reference, x)).abs().max().item() < 1e-3
    image = Image.new("RGB", (44, 36), (120, 60, 30))
    out = Translator.load(path).translate(image)
    assert out.size == image.size


def _loaded(net: torch.nn.Module, config: Config):
    from facecycle.inference.loading import LoadedGenerator

    return LoadedGenerator(net=net.eval(), direction="a2b", channels=config.data.channels,
                           size_multiple=net.size_multiple, crop_size=config.data.crop_size,
                           config=config.to_dict(), source=Path("."))


@pytest.mark.parametrize("bias,expect_input", [(-1e4, True), (1e4, False)])
def test_attention_composes_at_the_inputs_resolution(bias: float, expect_input: bool) -> None:
    """A 32-px attention model on a 128x96 image runs at 32 px and composes at 128x96: where the
    mask is closed the output is the full-resolution input, bit for bit."""
    from facecycle.inference.translate import translate_with_mask

    config = attention_config()
    net = build_generator(config)
    with torch.no_grad():
        last = _mask_conv(net)
        last.weight[-1].zero_()
        last.bias[-1] = bias
    x = torch.rand(1, 3, 96, 128) * 2 - 1
    out, mask = translate_with_mask(_loaded(net, config), x, work_size="auto")
    assert out.shape == x.shape and mask.shape == (1, 1, 96, 128)
    if expect_input:
        assert torch.equal(out, x.clamp(-1, 1))
    else:
        assert (out - x).abs().mean() > 0.05 and torch.equal(mask, torch.ones_like(mask))
    # work_size=None runs the network at the input's size instead (the export formats' behaviour).
    full, _ = translate_with_mask(_loaded(net, config), x, work_size=None)
    assert full.shape == x.shape


def test_grayscale_model_keeps_the_colours_of_a_colour_photo() -> None:
    import numpy as np

    from facecycle.inference.translate import translate_image

    config = attention_config(channels=1)
    net = build_generator(config)
    yy, xx = np.mgrid[0:40, 0:52]
    skin = np.stack([150 + 40 * np.sin(xx / 7), 110 + 30 * np.cos(yy / 5), 90 + 20 * np.sin((xx + yy) / 9)], -1)
    photo = Image.fromarray(skin.astype(np.uint8))
    out = translate_image(_loaded(net, config), photo)
    assert out.mode == "RGB" and out.size == photo.size
    cb_in, cr_in = [np.asarray(c, np.int32) for c in photo.convert("YCbCr").split()[1:]]
    cb_out, cr_out = [np.asarray(c, np.int32) for c in out.convert("YCbCr").split()[1:]]
    # Chroma survives up to rounding (and gamut clipping where the new luminance is extreme).
    assert np.abs(cb_in - cb_out).mean() < 1.5 and np.abs(cr_in - cr_out).mean() < 1.5
    gray = translate_image(_loaded(net, config), photo.convert("L"))
    assert gray.mode == "L"


def test_translate_cli_saves_masks(attention_run: Path, tmp_path: Path) -> None:
    import os

    src = tmp_path / "in"
    write_blobs(src / "sub", 3, (48, 40), seed=5, bright=False)
    done = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(attention_run), "--input", str(src),
                                        "--output", str(tmp_path / "out"), "--save-masks", str(tmp_path / "masks")),
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    masks = sorted((tmp_path / "masks" / "sub").glob("*.png"))
    assert len(masks) == 3
    with Image.open(masks[0]) as m:
        assert m.mode == "L" and m.size == (48, 40)
