"""DistributedDataParallel through a real `torchrun` (2 CPU processes, gloo).

Equivalence: 2 ranks x batch B == 1 process x batch 2B on the union of the two shards (instance
norm, LSGAN/L1 batch means, pool_size 0 because the pool's replays are drawn per rank).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import facecycle_cmd, write_blobs
from tiny import tiny_flags, tiny_raw
from facecycle.config import Config
from facecycle.runtime.checkpoints import list_checkpoints, load_file
from facecycle.training.trainer import CycleGANTrainer

WORKER = r'''
import json, sys
import torch
torch.set_num_threads(1)
from facecycle.config import Config
from facecycle.training.distributed import distributed_context
from facecycle.training.trainer import CycleGANTrainer

raw, out = json.loads(sys.argv[1]), sys.argv[2]
with distributed_context() as (rank, world_size):
    assert world_size == 2
    for name, overrides in (("lsgan", {}), ("wgangp", {"loss": {"gan": "wgan-gp"}})):
        cfg = json.loads(json.dumps(raw))
        for section, values in overrides.items():
            cfg[section].update(values)
        trainer = CycleGANTrainer(Config.from_dict(cfg).validate(), f"{out}/run_{name}", rank, world_size,
                                  progress=False)
        trainer.fit()
        state = {f"{n}.{k}": v.detach().clone() for n, net in trainer.nets.items() for k, v in net.state_dict().items()}
        state.update({f"grad.{n}.{i}": p.grad.clone() for n, net in trainer.nets.items()
                      for i, p in enumerate(net.parameters()) if p.grad is not None})
        torch.save(state, f"{out}/{name}_rank{rank}.pt")
'''


def tiny_lsgan(a: Path, b: Path, batch: int) -> dict:
    return tiny_raw(a, b, loss={"gan": "lsgan"}, optim={},
                    train={"batch_size": batch, "pool_size": 0, "steps": 2, "device": "cpu", "log_every": 1,
                           "sample_every": 100, "checkpoint_every": 100})


def torchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_two_ranks_equal_one_process_on_the_union(tmp_path, cli_env) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    write_blobs(a, 8, (40, 40), seed=1, bright=False)
    write_blobs(b, 8, (36, 44), seed=2, bright=True)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    torchrun(str(script), json.dumps(tiny_lsgan(a, b, batch=2)), str(tmp_path), env=cli_env)

    torch.set_num_threads(1)
    for name in ("lsgan", "wgangp"):
        r0 = torch.load(tmp_path / f"{name}_rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{name}_rank1.pt", weights_only=True)
        assert r0.keys() == r1.keys()
        for key in r0:  # DDP keeps the replicas bit-identical
            assert torch.equal(r0[key], r1[key]), f"{name}: {key} differs between ranks"
            assert torch.isfinite(r0[key]).all()
    # Only rank 0 wrote: one stats line per step, one checkpoint.
    steps = [json.loads(line)["step"] for line in (tmp_path / "run_lsgan" / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert load_file(list_checkpoints(tmp_path / "run_lsgan")[-1])["counters"]["world_size"] == 2

    single = CycleGANTrainer(Config.from_dict(tiny_lsgan(a, b, batch=4)).validate(), tmp_path / "single", progress=False)
    single.fit()
    ref = {f"{n}.{k}": v for n, net in single.nets.items() for k, v in net.state_dict().items()}
    ref.update({f"grad.{n}.{i}": p.grad for n, net in single.nets.items()
                for i, p in enumerate(net.parameters()) if p.grad is not None})
    assert ref.keys() == r0.keys()
    r0 = torch.load(tmp_path / "lsgan_rank0.pt", weights_only=True)
    # Conv biases right before an affine-free instance norm have a gradient that is exactly 0 in
    # exact arithmetic, i.e. pure rounding noise, which Adam turns into +-lr steps of random sign:
    # they cannot change any output and are left out of the comparison (found by their gradient).
    params = {f"{n}.{k}": f"grad.{n}.{i}" for n, net in single.nets.items()
              for i, (k, _) in enumerate(net.named_parameters())}
    null_space = {key for key, grad in params.items() if ref[grad].abs().max() < 1e-4}
    assert null_space and all(k.endswith(".bias") for k in null_space)
    compared = 0
    for key, value in ref.items():
        if key in null_space or (key.startswith("grad.") and key in {params[k] for k in null_space}):
            continue
        scale = value.abs().max().item()
        err = (value - r0[key]).abs().max().item()
        # one Adam step moves a weight by about lr = 2e-4; gradients agree to float rounding
        tol = 3e-3 * scale if key.startswith("grad.") else 5e-5
        assert err <= tol, f"{key}: 2 ranks x batch 2 vs 1 process x batch 4 differ by {err:.3g} (scale {scale:.3g})"
        compared += 1
    assert compared > 60


def test_torchrun_cli_writes_once_and_resumes_with_another_process_count(tmp_path, cli_env) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    write_blobs(a, 6, (40, 40), seed=1, bright=False)
    write_blobs(b, 5, (36, 44), seed=2, bright=True)
    run = tmp_path / "run"
    common = tiny_flags("train.log_every=1", "model.norm=batch")
    proc = torchrun("-m", "facecycle", "train", "--data-a", str(a), "--data-b", str(b), "--run-dir", str(run),
                    "--steps", "4", "--until-step", "2", *common, env=cli_env)
    assert "2 process(es)" in proc.stdout
    state = load_file(list_checkpoints(run)[-1])
    assert state["counters"]["step"] == 2 and state["counters"]["world_size"] == 2
    assert state["counters"]["positions_in_epoch"] == 4  # 2 ranks x 2 batches of 1
    proc = subprocess.run(facecycle_cmd("train", "--run-dir", str(run), "--resume", "--quiet"), env=cli_env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "at step 2" in proc.stdout
    state = load_file(list_checkpoints(run)[-1])
    # 6 positions per epoch: 4 consumed by the 2 ranks, then positions 4 and 5 by the single process.
    assert (state["counters"]["step"], state["counters"]["epoch"], state["counters"]["batch_in_epoch"]) == (4, 0, 6)
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_conditional_model_trains_and_resumes_under_torchrun(tmp_path, cli_env) -> None:
    """Conditional mode under the real 2-process gloo torchrun: DDP keeps G and D identical on
    both ranks, rank 0 alone writes, and a resume (again 2 processes) continues the same run."""
    from facecycle.data.avatars import build_conditional_dataset

    data = build_conditional_dataset(tmp_path / "avatars", n=8, size=32, seed=5, n_test=0)["out_dir"]
    run = tmp_path / "run"
    common = ["--config", "conditional_avatars", "--data", str(data / "images"), "--labels", str(data / "labels.csv"),
              "--size", "32", "--quiet", "--batch-size", "2", "--set", "model.gen_width=4", "--set",
              "model.disc_width=4", "--set", "model.gen_blocks=1", "--set", "train.log_every=1", "--set",
              "train.device=cpu"]
    proc = torchrun("-m", "facecycle", "train", *common, "--run-dir", str(run), "--steps", "3", "--until-step", "2",
                    env=cli_env)
    assert "(2 process(es)): 8 labelled images" in proc.stdout
    first = load_file(list_checkpoints(run)[-1])
    assert first["mode"] == "conditional" and first["counters"]["world_size"] == 2
    assert first["counters"]["step"] == 2 and first["counters"]["positions_in_epoch"] == 8  # 2 ranks x 2 x 2 images
    proc = torchrun("-m", "facecycle", "train", "--run-dir", str(run), "--resume", "--quiet", env=cli_env)
    assert "at step 2" in proc.stdout
    last = load_file(list_checkpoints(run)[-1])
    assert (last["counters"]["step"], last["counters"]["epoch"]) == (3, 1)
    for net in ("G", "D"):
        changed = [not torch.equal(first["nets"][net][k], v) for k, v in last["nets"][net].items()
                   if v.is_floating_point()]
        assert any(changed), f"{net} did not train after the resume"
        assert all(torch.isfinite(v).all() for v in last["nets"][net].values() if v.is_floating_point())
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # rank 0 only, one record per step


CONDITIONAL_WORKER = r'''
import json, sys
import torch
torch.set_num_threads(1)
from facecycle.config import resolve
from facecycle.training.trainer import ConditionalTrainer
from facecycle.training.distributed import distributed_context

overrides, out = json.loads(sys.argv[1]), sys.argv[2]
with distributed_context() as (rank, world_size):
    assert world_size == 2
    config = resolve("conditional_avatars", overrides=overrides)
    first = ConditionalTrainer(config, f"{out}/run", rank, world_size, progress=False)
    assert first.distributed and set(first.train_fwd) == {"G", "D"}
    first.fit(until_step=2)
    resumed = ConditionalTrainer(config, f"{out}/run", rank, world_size, progress=False)
    resumed.resume()
    assert resumed.step == 2
    resumed.fit()
    state = {f"{n}.{k}": v.detach().clone() for n, net in resumed.nets.items() for k, v in net.state_dict().items()}
    torch.save(state, f"{out}/cond_rank{rank}.pt")
'''


def test_conditional_replicas_stay_identical_across_a_resume(tmp_path, cli_env) -> None:
    """DDP really wraps the conditional G and D: both ranks see other images and draw other targets,
    yet after training, resuming from rank 0's checkpoint and training on, their weights are equal."""
    from facecycle.data.avatars import build_conditional_dataset

    data = build_conditional_dataset(tmp_path / "avatars", n=8, size=32, seed=5, n_test=0)["out_dir"]
    overrides = [f"data.images={data / 'images'}", f"data.labels={data / 'labels.csv'}", "data.crop_size=32",
                 "data.load_size=32", "model.gen_width=4", "model.disc_width=4", "model.gen_blocks=1",
                 "train.steps=3", "train.batch_size=2", "train.sample_every=100", "train.device=cpu"]
    script = tmp_path / "worker.py"
    script.write_text(CONDITIONAL_WORKER)
    torchrun(str(script), json.dumps(overrides), str(tmp_path), env=cli_env)
    r0 = torch.load(tmp_path / "cond_rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "cond_rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys() and any(k.startswith("G.") for k in r0)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"{key} differs between ranks"
        assert torch.isfinite(r0[key].float()).all()
    assert load_file(list_checkpoints(tmp_path / "run")[-1])["counters"]["step"] == 3
