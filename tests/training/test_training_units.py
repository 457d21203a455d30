"""Image pool replay, LR schedule values, transforms, sampler determinism, config handling."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from facecycle.config import Config, apply_overrides, resolve
from facecycle.data.transforms import TransformSpec, apply_transform
from facecycle.data.unpaired import UnpairedSampler
from facecycle.errors import ConfigError
from facecycle.training.pool import ImagePool
from facecycle.training.schedule import LinearDecaySchedule, linear_decay_factor


def _images(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1)


def test_pool_fills_then_replays_half() -> None:
    pool = ImagePool(size=3, seed=0)
    out = pool.query(_images([1, 2, 3]))
    assert out.flatten().tolist() == [1, 2, 3]  # filling: returned as is
    seen_old = 0
    n = 2000
    for i in range(n):
        value = 100.0 + i
        got = pool.query(_images([value])).item()
        if got != value:
            seen_old += 1
            assert got < value  # a stored, earlier image
        assert len(pool.images) == 3
    assert 0.45 < seen_old / n < 0.55  # 50 % replay


def test_pool_size_zero_is_off_and_state_round_trips() -> None:
    off = ImagePool(size=0)
    batch = _images([1, 2])
    assert off.query(batch) is batch
    pool = ImagePool(size=2, seed=3)
    pool.query(_images([1, 2]))
    clone = ImagePool(size=2, seed=99)
    clone.load_state_dict(pool.state_dict())
    stream = _images([5, 6, 7, 8, 9])
    assert pool.query(stream).flatten().tolist() == clone.query(stream).flatten().tolist()


def test_linear_decay_values() -> None:
    assert [linear_decay_factor(s, 10, 4) for s in range(11)] == [1, 1, 1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert linear_decay_factor(5, 10, 0) == 1.0
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = LinearDecaySchedule(opt, total_steps=10, decay_steps=4)
    lrs = []
    for _ in range(10):
        lrs.append(sched.lr)
        sched.step()
    assert lrs == pytest.approx([2e-4] * 7 + [1.5e-4, 1e-4, 0.5e-4])
    restored = LinearDecaySchedule(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4), 10, 4)
    state = LinearDecaySchedule(opt, 10, 4).state_dict()
    state["step_count"] = 8
    restored.load_state_dict(state)
    assert restored.lr == pytest.approx(1e-4)


def test_train_transform_crops_flips_and_mask_follows() -> None:
    image = Image.new("RGB", (50, 40))
    image.paste((255, 0, 0), (0, 0, 25, 40))  # left half red
    mask = Image.new("L", (50, 40))
    mask.paste(255, (0, 0, 25, 40))
    spec = TransformSpec(load_size=36, crop_size=32, flip=True, train=True)
    flipped = 0
    for seed in range(40):
        out, out_mask = apply_transform(image, spec, random.Random(seed), mask)
        assert out.size == (32, 32) and out_mask.size == (32, 32)
        red_left = out.getpixel((0, 16))[0] > 128
        assert (out_mask.getpixel((0, 16)) > 128) == red_left  # mask has the same geometry
        flipped += not red_left
    assert 10 < flipped < 30
    eval_out, _ = apply_transform(image, TransformSpec(36, 32, True, train=False), random.Random(0))
    eval_again, _ = apply_transform(image, TransformSpec(36, 32, True, train=False), random.Random(1))
    assert eval_out.size == (32, 32) and eval_out.tobytes() == eval_again.tobytes()


def test_sampler_is_deterministic_resumable_and_shards() -> None:
    full = list(UnpairedSampler(5, 3, seed=7, epoch=2))
    assert len(full) == 5 and full == list(UnpairedSampler(5, 3, seed=7, epoch=2))
    assert sorted(a for a, _, _ in full) == [0, 1, 2, 3, 4]
    assert list(UnpairedSampler(5, 3, seed=7, epoch=2, start=3)) == full[3:]
    assert full != list(UnpairedSampler(5, 3, seed=7, epoch=3))
    ranks = [list(UnpairedSampler(6, 4, seed=1, epoch=0, rank=r, world_size=2)) for r in range(2)]
    merged = [item for pair in zip(*ranks) for item in pair]
    assert merged == list(UnpairedSampler(6, 4, seed=1, epoch=0))


def test_config_precedence_and_errors(tmp_path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  steps: 50\nloss:\n  identity: 0\n")
    config = resolve(preset, overrides=["train.steps=70", "model.gen_blocks=6"], flags={"train.batch_size": 4})
    assert (config.train.steps, config.train.batch_size, config.model.gen_blocks, config.loss.identity) == (70, 4, 6, 0.0)
    assert config.identity_a == 0.0
    assert Config().identity_a == 5.0  # 0.5 x cycle weight 10
    assert resolve(overrides=["loss.identity_mode=absolute", "loss.identity=2"]).identity_b == 2.0
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve(overrides=["train.stepz=3"])
    with pytest.raises(ConfigError, match="train.steps expects int"):
        resolve(overrides=["train.steps=many"])
    with pytest.raises(ConfigError, match="unknown generator 'resnot'; choose one of: (.*, )?resnet, unet"):
        resolve(overrides=["model.generator=resnot"])
    with pytest.raises(ConfigError, match="section.key"):
        apply_overrides({}, ["steps=3"])
    assert Config.from_dict(Config().to_dict()) == Config()
