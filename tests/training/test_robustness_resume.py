"""Exact resume for every source of randomness and every way a run stops (robustness issue B1-B3).

Bit-identity is the claim here, so weights are compared with torch.equal: both runs happen in
this process's machine with the same kernels, one thread each."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import torch

from conftest import facecycle_cmd
from facecycle.runtime.checkpoints import list_checkpoints, load_file
from tiny import TINY_TRAIN

TINY = TINY_TRAIN
# Randomness beyond the data order: dropout in G, the WGAN-GP interpolation draws.
RANDOM = ["--set", "loss.gan=wgan-gp", "--set", "model.gen_dropout=0.5"]


def train(blob_domains: tuple[Path, Path], run: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    a, b = blob_domains
    cmd = facecycle_cmd("train", "--data-a", str(a), "--data-b", str(b), "--run-dir", str(run), *TINY, *extra)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def resume(run: Path, env: dict) -> None:
    done = subprocess.run(facecycle_cmd("train", "--run-dir", str(run), "--resume", "--quiet"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def assert_same_weights(run_1: Path, run_2: Path) -> None:
    s1, s2 = load_file(list_checkpoints(run_1)[-1]), load_file(list_checkpoints(run_2)[-1])
    assert s1["counters"]["step"] == s2["counters"]["step"]
    for net, weights in s1["nets"].items():
        for key, value in weights.items():
            assert torch.equal(value, s2["nets"][net][key]), f"{net}.{key} differs after the stop and resume"


def test_until_step_resume_is_exact_with_dropout_and_wgan_gp(blob_domains, tmp_path: Path, cli_env: dict) -> None:
    """B1: each new DataLoader iterator used to draw from the global RNG, so dropout and the
    gradient-penalty draws shifted after a resume (6 images: an epoch every 6 steps)."""
    straight, sliced = tmp_path / "straight", tmp_path / "sliced"
    train(blob_domains, straight, cli_env, "--steps", "9", *RANDOM)
    train(blob_domains, sliced, cli_env, "--steps", "9", "--until-step", "4", *RANDOM)
    resume(sliced, cli_env)
    assert_same_weights(straight, sliced)


def start(blob_domains, run: Path, env: dict, steps: int) -> subprocess.Popen:
    a, b = blob_domains
    cmd = facecycle_cmd("train", "--data-a", str(a), "--data-b", str(b), "--run-dir", str(run), *TINY,
                        "--steps", str(steps), "--set", "train.checkpoint_every=1000", *RANDOM)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(run: Path, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    stats = run / "stats.jsonl"
    while time.time() < deadline:
        if stats.exists() and len(stats.read_text().splitlines()) >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{run} did not reach {count} logged steps")


def test_sigterm_saves_the_finished_step_and_resume_is_exact(blob_domains, tmp_path: Path, cli_env: dict) -> None:
    """B2: SIGTERM (preemption) mid-run: the step in progress completes, is saved, and the
    resumed run ends with the weights of the uninterrupted one."""
    steps = 40
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    proc = start(blob_domains, stopped, cli_env, steps)
    wait_for_steps(stopped, 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    saved = load_file(list_checkpoints(stopped)[-1])["counters"]["step"]
    assert 3 <= saved < steps, "the stop must land mid-run for this test to mean anything"
    resume(stopped, cli_env)
    train(blob_domains, straight, cli_env, "--steps", str(steps), "--set", "train.checkpoint_every=1000", *RANDOM)
    assert_same_weights(straight, stopped)


def test_second_ctrl_c_does_not_tear_the_save(blob_domains, tmp_path: Path, cli_env: dict) -> None:
    """B3: two SIGINTs 20 ms apart: one clean stop with a loadable checkpoint, no traceback."""
    run = tmp_path / "run"
    proc = start(blob_domains, run, cli_env, 400)
    wait_for_steps(run, 2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert load_file(list_checkpoints(run)[-1])["counters"]["step"] >= 2
