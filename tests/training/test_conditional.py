"""Conditional translation (issue 6): labels, conditioning, losses, CLI train/resume/translate, annotate."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image

from conftest import facecycle_cmd, write_blobs
from facecycle.config import resolve
from facecycle.data.expressions import target_vector
from facecycle.data.labels import read_labels
from facecycle.errors import ConfigError, DataError
from facecycle.losses import GAN_LOSSES
from facecycle.losses.stargan import (ConditionalWeights, condition_loss, critic_objective, flipped_targets,
                                      generator_objective, sample_targets, total_variation)
from facecycle.models.conditional_nets import (ConditionalPatchDiscriminator, ConditionalResnetGenerator,
                                               concat_condition, tile_condition)
from facecycle.runtime.checkpoints import list_checkpoints, load_file

TINY = ["--size", "32", "--quiet", "--set", "model.gen_width=8", "--set", "model.disc_width=8",
        "--set", "model.gen_blocks=1", "--set", "train.log_every=1", "--batch-size", "2"]


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(facecycle_cmd(*args), env=env, capture_output=True, text=True, timeout=240)
    if check and proc.returncode != 0:
        raise AssertionError(f"facecycle {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# ---- labels -------------------------------------------------------------------------------------


def test_openface_presence_and_intensity_columns_with_bad_rows(tmp_path: Path) -> None:
    write_blobs(tmp_path / "faces", 4, (16, 16), seed=0, bright=True)
    # OpenFace FeatureExtraction style: leading spaces in names, a success column, _r and _c units.
    lines = [
        "image, success, AU06_r, AU12_r, AU06_c, AU12_c",
        "img_000.png, 1, 2.5, 0.0, 1, 0",
        "img_001.png, 1, 0.0, 5.0, 0, 1",
        "img_002.png, 0, 0.0, 0.0, 0, 0",          # line 4: no face tracked -> skipped
        "img_003.png, 1, abc, 1.0, 1, 1",          # line 5: not a number (only matters for intensity)
        "img_003.png, 1, 1.0",                     # line 6: too few fields
        "gone.png, 1, 1.0, 1.0, 1, 1",             # line 7: missing file
        "img_003.png, 1, 7.0, 1.0, 2, 1",          # line 8: out of range for both kinds
        "",
    ]
    labels = tmp_path / "openface.csv"
    labels.write_text("\n".join(lines))
    presence = read_labels(labels, "presence", image_root=tmp_path / "faces")
    assert presence.columns == ["AU06", "AU12"]
    assert [p.name for p in presence.paths] == ["img_000.png", "img_001.png", "img_003.png"]
    assert presence.values.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert presence.skipped_no_face == [4]
    assert [n for n, _ in presence.malformed] == [6, 8]
    assert "AU06_c = 2" in dict(presence.malformed)[8]
    assert presence.missing == [(7, "gone.png")]

    intensity = read_labels(labels, "intensity", columns="AU12,AU06", image_root=tmp_path / "faces")
    assert intensity.columns == ["AU12", "AU06"]  # the requested order
    assert np.allclose(intensity.values, [[0.0, 0.5], [1.0, 0.0]])  # /5
    assert [n for n, _ in intensity.malformed] == [5, 6, 8]
    assert "is not a number" in dict(intensity.malformed)[5]
    assert "outside [0, 5]" in dict(intensity.malformed)[8]
    summary = intensity.summary()
    assert "line 5" in summary and "gone.png" in summary

    with pytest.raises(DataError, match="not in"):
        read_labels(labels, "presence", columns="AU01", image_root=tmp_path / "faces")
    only_r = tmp_path / "only_r.csv"
    only_r.write_text("image,AU06_r\nimg_000.png,1.0\n")
    with pytest.raises(DataError, match="label_kind=intensity"):
        read_labels(only_r, "presence", image_root=tmp_path / "faces")


def test_categorical_labels_one_hot_and_malformed_rows(tmp_path: Path) -> None:
    write_blobs(tmp_path / "img", 3, (16, 16), seed=0, bright=True)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,emotion\nimg/img_000.png,happiness\nimg/img_001.png,sadness\nimg/img_002.png\n"
                      "img/img_002.png,\nimg/img_002.png,happiness\n")
    table = read_labels(labels, "categorical")  # paths relative to the labels file's folder
    assert table.columns == ["happiness", "sadness"]
    assert table.values.tolist() == [[1, 0], [0, 1], [1, 0]]
    assert [n for n, _ in table.malformed] == [4, 5]


def test_shared_expression_labels_read_as_categorical(shared_faces: Path) -> None:
    table = read_labels(shared_faces / "labels.csv", "categorical", image_root=shared_faces)
    assert table.columns == ["anger", "disgust", "happiness", "neutral", "sadness", "surprise"]
    assert len(table) == 1162 and not table.malformed and not table.missing
    assert table.values.sum(axis=1).tolist() == [1.0] * len(table)
    assert table.values[:, table.columns.index("happiness")].sum() == 400


def test_rows_outside_the_image_folder_are_left_out(tmp_path: Path) -> None:
    for folder in ("images", "test"):
        write_blobs(tmp_path / folder, 2, (16, 16), seed=1, bright=False)
    (tmp_path / "labels.csv").write_text("image,AU12_c\nimages/img_000.png,1\nimages/img_001.png,0\n"
                                         "test/img_000.png,1\n")
    table = read_labels(tmp_path / "labels.csv", "presence", image_root=tmp_path / "images")
    assert len(table) == 2 and table.outside == 1 and not table.missing


# ---- networks and losses ------------------------------------------------------------------------


def test_condition_tiling_and_network_shapes() -> None:
    c = torch.tensor([[0.0, 1.0, 0.5]])
    tiled = tile_condition(c, 4, 5)
    assert tiled.shape == (1, 3, 4, 5) and torch.equal(tiled[0, :, 3, 4], c[0])
    assert concat_condition(torch.zeros(1, 2, 4, 5), c).shape == (1, 5, 4, 5)
    x, cond = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3)
    for where in ("input", "bottleneck", "both"):
        g = ConditionalResnetGenerator(3, 3, condition_dim=3, width=8, blocks=1, condition_at=where)
        assert g(x, cond).shape == (2, 3, 32, 32)
        assert g.down[1].in_channels == (6 if where != "bottleneck" else 3)
        assert (g.fuse is not None) == (where != "input")
        # the condition changes the output
        assert not torch.allclose(g(x, cond), g(x, 1 - cond))
    g = ConditionalResnetGenerator(3, 3, condition_dim=3, width=8, blocks=1, attention_mask=True)
    out, mask = g.generate(x, cond)
    mask = mask.detach()
    assert mask.shape == (2, 1, 32, 32) and float(mask.min()) >= 0 and float(mask.max()) <= 1
    h = g.up(g.body(g.fuse(concat_condition(g.down(concat_condition(x, cond)), cond))))
    assert torch.allclose(out, mask * x + (1 - mask) * g.color(h), atol=1e-6)
    with pytest.raises(ValueError, match="expects 3"):
        g(x, torch.rand(2, 4))
    d = ConditionalPatchDiscriminator(3, condition_dim=3, width=8, layers=3)
    logits, predicted = d(x)
    assert predicted.shape == (2, 3) and logits[0].shape[:2] == (2, 1)
    assert d(torch.rand(1, 3, 48, 40))[1].shape == (1, 3)  # any size: the head is averaged


def test_condition_loss_exact_values() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected_bce = (math.log(2) + math.log(1 + math.e**2) + math.log(1 + math.e**-1) + math.log(2)) / 4
    assert condition_loss(logits, target, "presence").item() == pytest.approx(expected_bce, rel=1e-6)
    assert condition_loss(logits, target, "intensity").item() == pytest.approx((1 + 4 + 1 + 1) / 4)


def test_critic_objective_with_condition_head_exact() -> None:
    wgan = GAN_LOSSES.get("wgan-gp")()
    weights = ConditionalWeights(condition=10.0)
    real = [torch.full((2, 1, 2, 2), 3.0)]
    fake = [torch.full((2, 1, 2, 2), -1.0)]
    cond_logits = torch.zeros(2, 2)  # BCE = ln 2 whatever the target
    total, terms = critic_objective(wgan, [1.0], real, fake, cond_logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                                    "presence", weights, gp=torch.tensor(0.5), gp_weight=10.0)
    assert terms["D_gan"].item() == pytest.approx(-4.0)
    assert terms["D_cond"].item() == pytest.approx(math.log(2))
    assert total.item() == pytest.approx(-4.0 + 10 * math.log(2) + 10 * 0.5)
    # the head's gradient reaches a real critic through the condition term
    d = ConditionalPatchDiscriminator(3, condition_dim=2, width=4, layers=1)
    x = torch.rand(2, 3, 16, 16)
    logits, cond = d(x)
    loss, _ = critic_objective(wgan, [1.0], logits, [l.detach() * 0 for l in logits], cond,
                               torch.ones(2, 2), "presence", ConditionalWeights(condition=1.0))
    loss.backward()
    assert d.condition_head.weight.grad is not None and d.condition_head.weight.grad.abs().sum() > 0


def test_generator_objective_exact_with_mask_terms() -> None:
    wgan = GAN_LOSSES.get("wgan-gp")()
    weights = ConditionalWeights(condition=10.0, cycle=10.0, identity=2.0, mask_l1=0.1, mask_tv=0.5)
    real = torch.zeros(1, 1, 2, 2)
    rec = torch.full((1, 1, 2, 2), 0.5)
    idt = torch.full((1, 1, 2, 2), 0.25)
    mask = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # mean 0.5, TV: dx 1, dy 0
    total, terms = generator_objective(wgan, [1.0], [torch.full((1, 1, 2, 2), 2.0)], torch.zeros(1, 3),
                                       torch.ones(1, 3), "presence", weights, real, rec, idt, mask, mask)
    assert total_variation(mask).item() == pytest.approx(1.0)
    assert terms["G_gan"].item() == pytest.approx(-2.0)
    assert terms["mask"].item() == pytest.approx(1.0) and terms["mask_tv"].item() == pytest.approx(2.0)
    expected = -2.0 + 10 * math.log(2) + 10 * 0.5 + 2 * 0.25 + 0.1 * 1.0 + 0.5 * 2.0
    assert total.item() == pytest.approx(expected, rel=1e-6)
    _, terms = generator_objective(wgan, [1.0], [torch.zeros(1, 1, 1, 1)], torch.zeros(1, 3), torch.ones(1, 3),
                                   "presence", ConditionalWeights(identity=0.0), real, rec, idt)
    assert "idt" not in terms and "mask" not in terms


def test_target_sampling_follows_training_labels_with_noise_on_active_units() -> None:
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    torch.manual_seed(0)
    targets = sample_targets(labels, 500, noise=0.1)
    rows = {tuple(int(v > 0) for v in t) for t in targets}
    assert rows == {(1, 0, 0), (0, 1, 1), (0, 0, 0)}  # only combinations seen in training
    active = targets[targets > 0]
    assert float(active.min()) >= 0.9 and float(active.max()) <= 1.0 and float(active.std()) > 0.01
    intens = sample_targets(torch.tensor([[0.5, 0.0]]), 200, noise=0.1)
    assert float(intens[:, 0].min()) >= 0.4 and float(intens[:, 0].max()) <= 0.6 and float(intens[:, 1].abs().max()) == 0
    assert torch.equal(sample_targets(torch.eye(2), 50, categorical=True).sum(1), torch.ones(50))
    assert flipped_targets(torch.tensor([1.0, 0.0])).tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_target_strings_and_expression_presets() -> None:
    units = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU12", "AU15", "AU26"]
    assert target_vector(units, "presence", "AU06=1,au12").tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert target_vector(units, "presence", expression="happy").tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert target_vector(units, "presence", expression="surprise").tolist() == [1, 1, 0, 1, 0, 0, 0, 1]
    assert target_vector(units, "intensity", "AU12=2.5").tolist()[5] == pytest.approx(0.5)
    assert target_vector(units, "presence", "AU12=0", expression="joy").tolist()[5] == 0
    with pytest.raises(ConfigError, match="AU14.*its units are: AU01, AU02"):
        target_vector(units, "presence", expression="contempt")
    with pytest.raises(ConfigError, match="AU07.*not a condition"):
        target_vector(units, "presence", "AU07=1")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        target_vector(units, "presence", "AU12=3")
    with pytest.raises(ConfigError, match="--target"):
        target_vector(units, "presence")
    classes = ["anger", "happiness", "neutral"]
    assert target_vector(classes, "categorical", expression="joy").tolist() == [0, 1, 0]
    assert target_vector(classes, "categorical", "anger").tolist() == [1, 0, 0]


def test_conditional_presets_validate_and_modes_do_not_mix() -> None:
    au = resolve("conditional_au")
    assert au.is_conditional and au.loss.gan == "wgan-gp" and au.loss.condition == 10 and au.loss.cycle_a == 10
    assert au.train.batch_size == 32 and au.optim.lr_g == 2e-4 and au.data.label_kind == "presence"
    assert resolve("conditional_avatars").is_conditional
    with pytest.raises(ConfigError, match="does not work with train.mode=cyclegan"):
        resolve(overrides=["model.generator=conditional_resnet"])
    with pytest.raises(ConfigError, match="does not work with train.mode=conditional"):
        resolve("conditional_au", overrides=["model.generator=resnet"])
    with pytest.raises(ConfigError, match="label_kind"):
        resolve("conditional_au", overrides=["data.label_kind=sometimes"])


# ---- end to end through the CLI -----------------------------------------------------------------


@pytest.fixture(scope="module")
def avatars(tmp_path_factory) -> Path:
    from facecycle.data.avatars import build_conditional_dataset

    out = tmp_path_factory.mktemp("cond_avatars") / "avatars"
    build_conditional_dataset(out, n=10, size=32, seed=5, n_test=4)
    return out


@pytest.mark.parametrize("preset", ["conditional_au", "conditional_avatars"])
def test_conditional_presets_train_two_steps(preset: str, avatars: Path, tmp_path: Path) -> None:
    from facecycle.training.trainer import ConditionalTrainer

    config = resolve(preset, overrides=[
        f"data.images={avatars / 'images'}", f"data.labels={avatars / 'labels.csv'}", "data.crop_size=48",
        "data.load_size=48", "model.gen_width=4", "model.disc_width=4", "model.gen_blocks=1", "train.steps=2",
        "train.batch_size=2", "train.log_every=1"])
    torch.set_num_threads(1)
    trainer = ConditionalTrainer(config, tmp_path / "run", progress=False)
    before = [p.detach().clone() for p in trainer.G.parameters()]
    last = trainer.fit()
    assert trainer.step == 2 and math.isfinite(last["loss_G"]) and math.isfinite(last["loss_D"])
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(before, trainer.G.parameters()))


def _conditional_state(trainer) -> dict[str, torch.Tensor]:
    """Weights, optimizer moments and the global RNG of a trainer, for bitwise comparisons."""
    out = {f"{n}.{k}": v.detach().clone() for n, net in trainer.nets.items() for k, v in net.state_dict().items()}
    for name, opt in (("G", trainer.opt_G), ("D", trainer.opt_D)):
        for i, state in enumerate(opt.state.values()):
            out.update({f"opt{name}.{i}.{k}": v.detach().clone() for k, v in state.items()})
    out["rng"] = torch.get_rng_state()
    return out


def test_conditional_resume_is_bitwise_exact(avatars: Path, tmp_path: Path) -> None:
    """Train 5 steps straight vs 2 steps, a fresh trainer resumed from that checkpoint, then 3 more:
    identical weights, optimizer state and RNG (targets, GP mixing), with an extra critic step
    (n_critic 2) and an epoch boundary (10 images: 5 batches of 2 an epoch, 2 batches a step)."""
    from facecycle.training.trainer import ConditionalTrainer

    config = resolve("conditional_avatars", overrides=[
        f"data.images={avatars / 'images'}", f"data.labels={avatars / 'labels.csv'}", "data.crop_size=32",
        "data.load_size=36", "model.gen_width=4", "model.disc_width=4", "model.gen_blocks=1", "train.steps=5",
        "train.batch_size=2", "train.log_every=2", "train.sample_every=100", "train.checkpoint_every=100",
        "optim.n_critic=2", "train.device=cpu"])
    torch.set_num_threads(1)
    straight = ConditionalTrainer(config, tmp_path / "straight", progress=False)
    straight.fit()
    first = ConditionalTrainer(config, tmp_path / "sliced", progress=False)
    first.fit(until_step=2)
    assert [p.name for p in list_checkpoints(tmp_path / "sliced")] == ["step_00000002.pt"]
    resumed = ConditionalTrainer(config, tmp_path / "sliced", progress=False)
    resumed.resume()
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (2, 0, 4)
    resumed.fit()
    assert resumed.step == straight.step == 5 and resumed.epoch == straight.epoch == 1
    a, b = _conditional_state(straight), _conditional_state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    state = load_file(list_checkpoints(tmp_path / "sliced")[-1])
    assert state["mode"] == "conditional" and state["counters"]["world_size"] == 1


def test_checkpoints_written_before_the_shared_loop_resume(avatars: Path, blob_domains, tmp_path: Path) -> None:
    """Conditional checkpoints of the old trainer (plain Adam param groups, no world_size/scaler/best)
    and CycleGAN ones (no `mode` key) still resume, with the fused optimizer of this run."""
    from facecycle.errors import CheckpointError
    from facecycle.runtime.checkpoints import atomic_save
    from facecycle.training.trainer import ConditionalTrainer
    from facecycle.training.trainer import CycleGANTrainer

    torch.set_num_threads(1)
    config = resolve("conditional_avatars", overrides=[
        f"data.images={avatars / 'images'}", f"data.labels={avatars / 'labels.csv'}", "data.crop_size=32",
        "data.load_size=32", "model.gen_width=4", "model.disc_width=4", "model.gen_blocks=1", "train.steps=2",
        "train.batch_size=2", "train.sample_every=100", "train.device=cpu"])
    ConditionalTrainer(config, tmp_path / "cond", progress=False).fit(until_step=1)
    path = list_checkpoints(tmp_path / "cond")[-1]
    state = load_file(path)
    for opt in state["optimizers"].values():
        for group in opt["param_groups"]:
            group.update(fused=None, foreach=None)
    for key in ("scaler", "best"):
        del state[key]
    for key in ("world_size", "positions_in_epoch"):
        del state["counters"][key]
    atomic_save(state, path)
    trainer = ConditionalTrainer(config, tmp_path / "cond", progress=False)
    trainer.resume()
    assert trainer.step == 1 and trainer.opt_G.param_groups[0]["fused"]
    trainer.fit()
    assert trainer.step == 2 and all(torch.isfinite(p).all() for p in trainer.G.parameters())
    a, b = blob_domains
    plain = resolve(overrides=["data.crop_size=32", "data.load_size=32", "model.gen_width=4", "model.disc_width=4",
                               "model.gen_blocks=1", "train.steps=2", "train.sample_every=100"],
                    flags={"data.data_a": str(a), "data.data_b": str(b)})
    with pytest.raises(CheckpointError, match="from a conditional run"):  # each mode refuses the other's
        CycleGANTrainer(plain, tmp_path / "cond", progress=False).resume()

    CycleGANTrainer(plain, tmp_path / "plain", progress=False).fit(until_step=1)
    path = list_checkpoints(tmp_path / "plain")[-1]
    state = load_file(path)
    assert state["mode"] == "cyclegan"
    del state["mode"]
    atomic_save(state, path)
    resumed = CycleGANTrainer(plain, tmp_path / "plain", progress=False)
    resumed.resume()
    resumed.fit()
    assert resumed.step == 2
    with pytest.raises(CheckpointError, match="not from a conditional run"):
        ConditionalTrainer(config, tmp_path / "plain", progress=False).resume()


def test_conditional_shares_the_loop_features(avatars: Path, tmp_path: Path, capsys) -> None:
    """bf16 autocast and fused Adam like CycleGAN mode; the evaluator hook gets G and keeps best.pt
    by train.best_metric (the CycleGAN default reads as mean/kid_x100)."""
    from facecycle.training.trainer import ConditionalTrainer

    config = resolve("conditional_avatars", overrides=[
        f"data.images={avatars / 'images'}", f"data.labels={avatars / 'labels.csv'}", "data.crop_size=32",
        "data.load_size=32", "model.gen_width=4", "model.disc_width=4", "model.gen_blocks=1", "train.steps=2",
        "train.batch_size=2", "train.sample_every=100", "train.device=cpu", "train.precision=bf16",
        "train.eval_every=1"])
    torch.set_num_threads(1)
    trainer = ConditionalTrainer(config, tmp_path / "run", progress=False)
    seen: list[tuple[nn.Module, ...]] = []
    trainer.evaluator = lambda *nets: seen.append(nets) or {"mean/kid_x100": 3.0 - len(seen)}
    assert trainer.opt_G.defaults.get("fused") and trainer.opt_D.defaults.get("fused")
    last = trainer.fit()
    assert trainer.step == 2 and math.isfinite(last["loss_G"]) and trainer.config.train.precision == "bf16"
    assert "not available" not in capsys.readouterr().err
    assert len(seen) == 2 and all(nets == (trainer.G,) for nets in seen)
    best = load_file(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["best"]["metric"] == "mean/kid_x100" and best["best"]["step"] == 2  # KID: lower is better
    assert best["best"]["value"] == pytest.approx(1.0)


def test_train_two_steps_resume_and_translate_with_targets(avatars: Path, tmp_path: Path, cli_env) -> None:
    data = ["--config", "conditional_avatars", "--data", str(avatars / "images"), "--labels",
            str(avatars / "labels.csv"), *TINY]
    straight, sliced = tmp_path / "straight", tmp_path / "sliced"
    proc = run(["train", *data, "--run-dir", str(straight), "--steps", "2"], cli_env)
    assert "10 labelled images, 13 presence condition(s)" in proc.stdout
    run(["train", *data, "--run-dir", str(sliced), "--steps", "2", "--until-step", "1"], cli_env)
    assert [p.name for p in list_checkpoints(sliced)] == ["step_00000001.pt"]
    proc = run(["train", "--run-dir", str(sliced), "--resume", "--quiet"], cli_env)
    assert "at step 1" in proc.stdout
    s1, s2 = load_file(list_checkpoints(straight)[-1]), load_file(list_checkpoints(sliced)[-1])
    assert s1["counters"] == s2["counters"] and s2["counters"]["step"] == 2
    assert s2["mode"] == "conditional" and s2["condition"]["columns"][:3] == ["AU01", "AU02", "AU04"]
    for net in ("G", "D"):
        for key, value in s1["nets"][net].items():
            assert torch.allclose(value, s2["nets"][net][key], atol=1e-6), f"{net}.{key} differs after resume"
    records = [json.loads(line) for line in (sliced / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert {"loss_G", "loss_D", "loss_G_cond", "loss_D_cond", "loss_cycle", "loss_gp"} <= set(records[-1])
    assert "label_columns: AU01,AU02,AU04" in (sliced / "config.yaml").read_text()
    assert (sliced / "samples" / "step_00000002.png").is_file()
    grid = Image.open(sliced / "samples" / "step_00000002.png")
    assert grid.width > 14 * 32  # real | own labels | 13 flipped units

    out = tmp_path / "out"
    proc = run(["translate", "--checkpoint", str(sliced), "--input", str(avatars / "test"), "--output",
                str(out / "joy"), "--expression", "joy"], cli_env)
    assert "to AU06=1,AU12=1" in proc.stdout
    assert sorted(p.name for p in (out / "joy").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    run(["translate", "--checkpoint", str(sliced), "--input", str(avatars / "test" / "000000.png"),
         "--output", str(out / "t"), "--target", "AU01=1,AU15=1"], cli_env)
    a = np.asarray(Image.open(out / "t" / "000000.png"), np.float32)
    b = np.asarray(Image.open(out / "joy" / "000000.png"), np.float32)
    assert a.shape == (32, 32, 3) and np.abs(a - b).max() > 0  # another target, another image
    bad = run(["translate", "--checkpoint", str(sliced), "--input", str(avatars / "test"), "--output",
               str(out / "x"), "--expression", "contempt"], cli_env, check=False)
    assert bad.returncode == 2 and "AU14" in bad.stderr and "AU01, AU02, AU04" in bad.stderr
    from facecycle.inference.loading import load_generator

    with pytest.raises(ConfigError, match="--target"):
        load_generator(sliced, device="cpu")


def test_translate_faces_with_a_conditional_model(avatars: Path, shared_faces: Path, tmp_path: Path) -> None:
    from facecycle.config import resolve as resolve_config
    from facecycle.inference.faces import translate_faces_in_paths
    from facecycle.inference.loading import load_generator
    from facecycle.training.trainer import ConditionalTrainer

    config = resolve_config("conditional_avatars", overrides=[
        f"data.images={avatars / 'images'}", f"data.labels={avatars / 'labels.csv'}", "data.crop_size=32",
        "data.load_size=32", "model.gen_width=8", "model.disc_width=8", "model.gen_blocks=1",
        "train.steps=1", "train.batch_size=2"])
    torch.set_num_threads(1)
    trainer = ConditionalTrainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    generator = load_generator(tmp_path / "run", device="cpu", expression="sadness")
    assert generator.condition_columns[0] == "AU01" and generator.net(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    photo = tmp_path / "photos" / "face.jpg"
    photo.parent.mkdir()
    shutil.copy(sorted((shared_faces / "happiness").iterdir())[0], photo)
    result = translate_faces_in_paths(generator, photo.parent, tmp_path / "faces_out")
    assert len(result["written"]) == 1 and not result["failed"] and not result["no_face"]
    before = np.asarray(Image.open(photo).convert("RGB"), np.float32)
    after = np.asarray(Image.open(result["written"][0]).convert("RGB"), np.float32)
    assert after.shape == before.shape and np.abs(after - before).mean() > 0.5  # the face was replaced


def test_target_on_a_cyclegan_checkpoint_is_an_error(blob_domains, tmp_path: Path) -> None:
    from facecycle.inference.loading import load_generator
    from facecycle.training.trainer import CycleGANTrainer

    a, b = blob_domains
    plain = resolve(overrides=["data.crop_size=32", "data.load_size=32", "model.gen_width=4", "model.disc_width=4",
                               "model.gen_blocks=1", "train.steps=1"], flags={"data.data_a": str(a), "data.data_b": str(b)})
    torch.set_num_threads(1)
    CycleGANTrainer(plain, tmp_path / "plain", progress=False).fit()
    with pytest.raises(ConfigError, match="conditional models only"):
        load_generator(tmp_path / "plain", device="cpu", expression="joy")
    assert load_generator(tmp_path / "plain", device="cpu").target is None


def test_prepare_annotate_real_photos(shared_faces: Path, tmp_path: Path, cli_env) -> None:
    photos = tmp_path / "photos"
    chosen = {"happy": sorted((shared_faces / "happiness").iterdir())[:2],
              "neutral": sorted((shared_faces / "neutral").iterdir())[:2]}
    for name, files in chosen.items():
        (photos / name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, photos / name / f.name)
    write_blobs(photos / "noface", 1, (64, 64), seed=0, bright=True)
    (photos / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "au.csv"
    proc = run(["prepare", "annotate", "--input", str(photos), "--output", str(out)], cli_env)
    assert "4 of 6 image(s) annotated" in proc.stdout and "broken.png" in proc.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5  # the unreadable file has no row
    by_dir: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_dir.setdefault(row["image"].split("/")[0], []).append(row)
    assert by_dir["noface"][0]["success"] == "0"
    smile = {k: np.mean([float(r["AU12_r"]) for r in v]) for k, v in by_dir.items()}
    assert smile["happy"] > smile["neutral"] + 1.0  # mouthSmile -> AU12 on a 0-5 scale
    assert any(r["AU12_c"] == "1" for r in by_dir["happy"]) and all(r["AU12_c"] == "0" for r in by_dir["neutral"])
    table = read_labels(out, "presence", image_root=photos)
    assert len(table) == 4 and len(table.skipped_no_face) == 1 and "AU12" in table.columns
    intens = read_labels(out, "intensity", image_root=photos)
    assert float(intens.values.max()) <= 1.0


# ---- does it learn? (slow) --------------------------------------------------------------------------


def _avatar_tensors(root: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    rows = [r for r in csv.DictReader((root / "labels.csv").open()) if r["image"].startswith(prefix)]
    units = [c for c in rows[0] if c.endswith("_c")]
    x = np.stack([np.asarray(Image.open(root / r["image"]).convert("RGB"), np.float32) / 127.5 - 1 for r in rows])
    y = np.array([[float(r[c]) for c in units] for r in rows], np.float32)
    return torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y), [r["expression"] for r in rows]


def _unit_estimator(x: torch.Tensor, y: torch.Tensor, steps: int = 400) -> torch.nn.Module:
    """An independent AU reader: a small CNN trained on *other* avatar renders against their exact
    ground-truth units (MediaPipe blendshapes do see most cartoon faces, but their scores are
    unreliable there: smiles on neutral mouths, jawOpen on closed ones)."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(32 * 16, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for step in range(steps):
        i = torch.randint(0, len(x), (32,))
        batch = x[i].flip(3) if step % 2 else x[i]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(batch), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.slow
def test_avatar_training_moves_estimated_units_toward_the_target(tmp_path: Path) -> None:
    """Train the conditional_avatars preset briefly on CPU, translate held-out faces to the labels of
    held-out faces with another expression, and read the units with an independent estimator."""
    from facecycle.data.avatars import build_conditional_dataset
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_tensor
    from facecycle.training.trainer import ConditionalTrainer

    torch.set_num_threads(2)
    data = build_conditional_dataset(tmp_path / "train", n=300, size=AVATAR_SIZE, seed=0, n_test=40)["out_dir"]
    other = build_conditional_dataset(tmp_path / "estimator", n=600, size=AVATAR_SIZE, seed=123, n_test=0)["out_dir"]
    x_est, y_est, _ = _avatar_tensors(other, "images/")
    x_test, y_test, expressions = _avatar_tensors(data, "test/")
    estimator = _unit_estimator(x_est, y_est)
    with torch.no_grad():
        accuracy = ((torch.sigmoid(estimator(x_test)) > 0.5).float() == y_test).float().mean().item()
    assert accuracy > 0.9, f"the estimator reads held-out renders with accuracy {accuracy:.3f} only"

    config = resolve("conditional_avatars", overrides=[
        f"data.images={data / 'images'}", f"data.labels={data / 'labels.csv'}", f"train.steps={AVATAR_STEPS}",
        f"data.crop_size={AVATAR_SIZE}", f"data.load_size={AVATAR_SIZE}", "train.checkpoint_every=1000"])
    trainer = ConditionalTrainer(config, tmp_path / "run", progress=False)
    trainer.fit()

    n = len(y_test)
    partner = []
    for i in range(n):  # target: the labels of the next held-out face with another expression
        j = (i + 1) % n
        while expressions[j] == expressions[i]:
            j = (j + 1) % n
        partner.append(j)
    target = y_test[partner]
    fakes, same = [], []
    for i in range(n):
        fakes.append(translate_tensor(load_generator(tmp_path / "run", device="cpu", target=target[i]), x_test[i : i + 1]))
        same.append(translate_tensor(load_generator(tmp_path / "run", device="cpu", target=y_test[i]), x_test[i : i + 1]))
    with torch.no_grad():
        before = torch.sigmoid(estimator(x_test))
        after = torch.sigmoid(estimator(torch.cat(fakes)))
        control = torch.sigmoid(estimator(torch.cat(same)))  # G(x, c_src): same generator, source labels
    on, off = (target == 1) & (y_test == 0), (target == 0) & (y_test == 1)
    report = {
        "dist_target_before": (before - target).abs().mean().item(),
        "dist_target_after": (after - target).abs().mean().item(),
        "dist_target_control": (control - target).abs().mean().item(),
        "on_before": before[on].mean().item(), "on_after": after[on].mean().item(), "on_control": control[on].mean().item(),
        "off_before": before[off].mean().item(), "off_after": after[off].mean().item(),
        "off_control": control[off].mean().item(),
    }
    print("estimated units:", json.dumps({k: round(v, 3) for k, v in report.items()}))
    # Units the target switches on rise, units it switches off fall, beyond what the same
    # generator does with the source labels.
    assert report["on_after"] > report["on_control"] + 0.1, report
    assert report["off_after"] < report["off_control"] - 0.1, report
    assert report["dist_target_after"] < report["dist_target_control"] - 0.03, report


AVATAR_STEPS = 250
AVATAR_SIZE = 32  # the preset trains at 48 px; 32 keeps this CPU test within a few minutes
