"""End-to-end CLI runs in real subprocesses: train, kill -9, resume, translate, bad input."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import facecycle_cmd, write_blobs
from tiny import TINY_TRAIN, run, train
from facecycle.runtime.checkpoints import list_checkpoints, load_file

def test_train_writes_run_and_resume_matches_uninterrupted_run(blob_domains, tmp_path, cli_env) -> None:
    a, b = blob_domains
    straight, sliced = tmp_path / "straight", tmp_path / "sliced"
    train(a, b, straight, cli_env, "--steps", "6", "--set", "train.sample_every=3")
    assert (straight / "config.yaml").is_file() and (straight / "stats.jsonl").is_file()
    assert sorted(p.name for p in (straight / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    train(a, b, sliced, cli_env, "--steps", "6", "--until-step", "4")
    proc = run(["train", "--run-dir", str(sliced), "--resume", "--quiet"], cli_env)
    assert "resumed from" in proc.stdout and "at step 4" in proc.stdout
    s1 = load_file(list_checkpoints(straight)[-1])
    s2 = load_file(list_checkpoints(sliced)[-1])
    assert s1["counters"] == s2["counters"]
    for net in ("G_ab", "G_ba", "D_a", "D_b"):
        for key, value in s1["nets"][net].items():
            assert torch.allclose(value, s2["nets"][net][key], atol=1e-6), f"{net}.{key} differs after resume"
    steps = [r["step"] for r in map(eval_json, (sliced / "stats.jsonl").read_text().splitlines())]
    assert steps == [1, 2, 3, 4, 5, 6]


def eval_json(line: str) -> dict:
    import json

    return json.loads(line)


def test_sigkill_then_resume_continues_counters_lr_and_optimizer(blob_domains, tmp_path, cli_env) -> None:
    a, b = blob_domains
    run_dir = tmp_path / "run"
    args = ["train", "--data-a", str(a), "--data-b", str(b), "--run-dir", str(run_dir), *TINY_TRAIN,
            "--steps", "400", "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=2",
            "--set", "train.decay_steps=400"]
    proc = subprocess.Popen(facecycle_cmd(*args), env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_checkpoints(run_dir)) < 2:
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere in the middle of later steps / checkpoint writes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    checkpoints = list_checkpoints(run_dir)
    assert checkpoints, "no checkpoint before the kill"
    # keep_checkpoints=2; a kill between writing a new checkpoint and pruning the oldest can leave
    # one extra, which the next save removes.
    assert len(checkpoints) <= 3
    before = load_file(checkpoints[-1])  # loads: never a torn file
    killed_at = before["counters"]["step"]
    adam_steps = {int(s["step"]) for s in before["optimizers"]["G"]["state"].values()}
    assert adam_steps == {killed_at}

    resumed = run(["train", "--run-dir", str(run_dir), "--resume", "--quiet", "--until-step", str(killed_at + 2)], cli_env)
    assert f"at step {killed_at}" in resumed.stdout
    after = load_file(list_checkpoints(run_dir)[-1])
    assert after["counters"]["step"] == killed_at + 2
    assert {int(s["step"]) for s in after["optimizers"]["G"]["state"].values()} == {killed_at + 2}
    # LR continues the schedule (decay over all 400 steps), it does not restart at 2e-4.
    expected_lr = 2e-4 * (400 - (killed_at + 2)) / 400
    assert after["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(expected_lr)
    assert after["pools"]["a"]["images"].shape[0] == min(50, killed_at + 2)
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    assert len(list_checkpoints(run_dir)) == 2


def test_translate_odd_sizes_keeps_names_and_sizes(tmp_path, cli_env, blob_domains) -> None:
    a, b = blob_domains
    run_dir = tmp_path / "run"
    train(a, b, run_dir, cli_env, "--steps", "2")
    inputs = tmp_path / "in"
    sizes = {"x/odd.png": (50, 70), "tiny.jpg": (9, 13), "x/y/gray.bmp": (31, 20), "pal.png": (40, 41),
             "rgba.webp": (64, 48)}
    for rel, size in sizes.items():
        path = inputs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        if "gray" in rel:
            image = image.convert("L")
        if "pal" in rel:
            image = image.convert("P")
        if "rgba" in rel:
            image = image.convert("RGBA")
        image.save(path)
    out = tmp_path / "out"
    proc = run(["translate", "--checkpoint", str(run_dir), "--input", str(inputs), "--output", str(out),
                "--batch-size", "2"], cli_env)
    assert "translated 5 image(s)" in proc.stdout
    for rel, size in sizes.items():
        result = out / Path(rel).with_suffix(".png")
        assert result.is_file(), rel
        with Image.open(result) as img:
            assert img.size == size and img.mode == "RGB"


def test_corrupt_image_is_skipped_with_a_warning_naming_it(tmp_path, cli_env) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    write_blobs(a, 3, (32, 32), seed=1, bright=False)
    write_blobs(b, 3, (32, 32), seed=2, bright=True)
    (a / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (a / "notes.jpg").write_text("not an image")
    proc = train(a, b, tmp_path / "run", cli_env, "--steps", "1")
    assert "skipping 2 unreadable image(s)" in proc.stderr
    assert "broken.png" in proc.stderr and "notes.jpg" in proc.stderr
    assert "3 images in A" in proc.stdout


def test_empty_folder_and_wrong_path_fail_with_clear_messages(tmp_path, cli_env, blob_domains) -> None:
    a, _ = blob_domains
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("hi")
    proc = train(a, empty, tmp_path / "run", cli_env, "--steps", "1", check=False)
    assert proc.returncode == 2
    assert f"domain B folder {empty} contains no usable image" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = train(a, tmp_path / "missing", tmp_path / "run", cli_env, "--steps", "1", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "missing" in proc.stderr


def test_resume_with_other_architecture_names_the_setting(tmp_path, cli_env, blob_domains) -> None:
    a, b = blob_domains
    run_dir = tmp_path / "run"
    train(a, b, run_dir, cli_env, "--steps", "2")
    proc = run(["train", "--run-dir", str(run_dir), "--resume", "--quiet", "--set", "model.gen_blocks=3"],
               cli_env, check=False)
    assert proc.returncode == 2
    assert "model.gen_blocks: checkpoint has 2, this run asks for 3" in proc.stderr
    proc = train(a, b, run_dir, cli_env, "--steps", "2", check=False)
    assert proc.returncode == 2 and "already holds checkpoints" in proc.stderr


def test_dry_run_prints_resolved_config_and_writes_nothing(tmp_path, cli_env, blob_domains) -> None:
    a, b = blob_domains
    proc = run(["train", "--data-a", str(a), "--data-b", str(b), "--run-dir", str(tmp_path / "r"), "--size", "128",
                "--set", "loss.identity=0", "--dry-run"], cli_env)
    import yaml

    config = yaml.safe_load(proc.stdout)
    assert config["data"]["crop_size"] == 128 and config["data"]["load_size"] == 143
    assert config["loss"]["identity"] == 0
    assert not (tmp_path / "r").exists()


def test_checkpoint_from_foreign_file_is_a_clear_error(tmp_path, cli_env) -> None:
    bogus = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    proc = run(["translate", "--checkpoint", str(bogus), "--input", str(tmp_path), "--output", str(tmp_path / "o")],
               cli_env, check=False)
    assert proc.returncode == 2 and "not a facecycle checkpoint" in proc.stderr


def test_non_finite_losses_are_skipped_then_stop_the_run(blob_domains, tmp_path, cli_env) -> None:
    a, b = blob_domains
    run_dir = tmp_path / "run"
    # An absurd learning rate blows the weights up after the first update; the losses of the
    # following steps are inf/NaN.
    proc = train(a, b, run_dir, cli_env, "--steps", "20", "--set", "optim.lr_g=1e30", "--set", "optim.lr_d=1e30",
                 "--set", "train.max_bad_steps=3", "--set", "train.checkpoint_every=1", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "consecutive steps had non-finite losses" in proc.stderr and "--resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    records = [eval_json(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r.get("skipped")]
    assert len(skipped) >= 3
    last = load_file(list_checkpoints(run_dir)[-1])  # intact and loadable
    assert last["counters"]["step"] < 20
