"""Speed features that must not change behaviour: non-finite skipping (immediate and deferred,
sync-free), channels_last, bf16, compile fallback, batched inference, the bench command."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import pytest
import torch

from conftest import write_blobs
from tiny import tiny_config, tiny_overrides
from facecycle.config import Config
from facecycle.runtime import checkpoints as ckpt
from facecycle.training.trainer import CycleGANTrainer, TrainingDiverged


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "A", tmp_path / "B"
    write_blobs(a, 4, (40, 40), seed=1, bright=False)
    write_blobs(b, 4, (36, 44), seed=2, bright=True)
    return a, b


def tiny(a: Path, b: Path, model: Optional[dict] = None, **train) -> Config:
    """The tiny one-block model (with `model` settings on top) and a short CPU run (`train` on top)."""
    values = {"batch_size": 2, "device": "cpu", "steps": 20, "log_every": 10, "sample_every": 100,
              "checkpoint_every": 2, "pool_size": 3, "max_bad_steps": 3, **train}
    return tiny_config(a, b, blocks=1, model=model or {}, train=values)


def snapshot(trainer: CycleGANTrainer) -> dict[str, torch.Tensor]:
    out = {f"{n}.{k}": v.detach().clone() for n, net in trainer.nets.items() for k, v in net.state_dict().items()}
    for name, opt in (("G", trainer.opt_G), ("D", trainer.opt_D)):
        for i, state in enumerate(opt.state.values()):
            out.update({f"opt{name}.{i}.{k}": v.detach().clone() for k, v in state.items()})
    return out


def poison(trainer: CycleGANTrainer, steps: set[int]) -> None:
    """G_ab returns NaN images at the given (1-based) steps."""
    forward = trainer.train_fwd["G_ab"]

    def bad_forward(x: torch.Tensor) -> torch.Tensor:
        out = forward(x)
        return out * float("nan") if trainer.step + 1 in steps else out

    trainer.train_fwd["G_ab"] = bad_forward


@pytest.mark.parametrize("check_every", [1, 4])
def test_non_finite_steps_are_skipped_then_stop_the_run_with_weights_intact(data, tmp_path, check_every) -> None:
    a, b = data
    run = tmp_path / "run"
    trainer = CycleGANTrainer(tiny(a, b), run, progress=False)
    trainer.finite_check_every = check_every  # 4: flags stay on the device, read every 4 steps (CUDA mode)
    trainer.fit(until_step=2)
    good = snapshot(trainer)
    pools = [img.clone() for img in trainer.pool_a.images]
    poison(trainer, set(range(3, 100)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingDiverged, match="3 consecutive steps") as info:
            trainer.fit()
    assert "last good checkpoint" in str(info.value)
    after = snapshot(trainer)
    assert after.keys() == good.keys()
    for key, value in good.items():  # no update of G, D or their Adam moments/step counts leaked through
        assert torch.equal(value, after[key]), key
    assert all(torch.equal(x, y) for x, y in zip(pools, trainer.pool_a.images))
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in records if r.get("skipped")]
    assert skipped == [3, 4, 5]
    assert all(r["loss_G"] == "nan" for r in records if r.get("skipped"))
    newest = ckpt.load_file(ckpt.list_checkpoints(run)[-1])
    assert newest["counters"]["step"] <= 4  # nothing saved after the run was declared diverged
    for name, net in newest["nets"].items():
        for key, value in net.items():
            assert torch.equal(value, good[f"{name}.{key}"])


@pytest.mark.parametrize("check_every", [1, 3])
def test_one_bad_step_is_skipped_and_training_goes_on(data, tmp_path, check_every) -> None:
    a, b = data
    trainer = CycleGANTrainer(tiny(a, b, steps=6, log_every=3), tmp_path / "run", progress=False)
    trainer.finite_check_every = check_every
    poison(trainer, {2})
    with pytest.warns(UserWarning, match="step 2: non-finite"):
        last = trainer.fit()
    assert trainer.step == 6 and trainer.bad_steps == 0
    assert all(torch.isfinite(p).all() for net in trainer.nets.values() for p in net.parameters())
    assert all(torch.isfinite(img).all() for img in trainer.pool_a.images + trainer.pool_b.images)
    records = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("skipped")] == [2]
    window = next(r for r in records if r["step"] == 3 and "images_per_s" in r)
    assert isinstance(window["loss_G"], float)  # the skipped step is left out of the average
    assert isinstance(last["loss_cycle_a"], float)


def test_channels_last_matches_contiguous_and_bf16_trains(data, tmp_path) -> None:
    a, b = data
    results = {}
    probe = torch.rand(2, 3, 32, 32) * 2 - 1
    for name, train in {"plain": {}, "cl": {"channels_last": True}, "bf16": {"precision": "bf16", "channels_last": True}}.items():
        torch.manual_seed(0)
        trainer = CycleGANTrainer(tiny(a, b, steps=2, **train), tmp_path / name, progress=False)
        last = trainer.fit()
        with torch.no_grad():
            # Outputs, not weights: conv biases before instance norm get pure-noise gradients.
            outputs = [trainer.G_ab(probe), trainer.G_ba(probe), trainer.D_a(probe)[0], trainer.D_b(probe)[0]]
        results[name] = (outputs, last)
        if name != "plain":
            weight = trainer.G_ab.net[1].weight
            assert weight.is_contiguous(memory_format=torch.channels_last)  # kept through fused Adam
    for x, y in zip(results["plain"][0], results["cl"][0]):
        assert torch.allclose(x, y, atol=1e-4)
    bf16_last = results["bf16"][1]
    assert all(isinstance(bf16_last[k], float) for k in ("loss_G", "loss_cycle_a", "loss_D_a"))
    assert abs(bf16_last["loss_cycle_a"] - results["plain"][1]["loss_cycle_a"]) < 0.05


def test_compile_failure_falls_back_to_eager_with_a_warning(data, tmp_path, monkeypatch) -> None:
    a, b = data

    def broken_compile(fn, *args, **kwargs):
        def call(*a, **k):
            raise ImportError("no C++ compiler (simulated)")
        return call

    # As where a C++ compiler exists (else train.compile=on warns and stays eager before trying).
    monkeypatch.setattr("facecycle.training.compile.cxx_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(torch, "compile", broken_compile)
    trainer = CycleGANTrainer(tiny(a, b, steps=1, compile=True), tmp_path / "run", progress=False)
    with pytest.warns(UserWarning, match="compil.*running eagerly"):
        trainer.fit()
    assert trainer.step == 1

    def refusing_compile(fn, *args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python (simulated)")

    monkeypatch.setattr(torch, "compile", refusing_compile)
    with pytest.warns(UserWarning, match="cannot compile G_ab"):
        CycleGANTrainer(tiny(a, b, steps=1, compile=True), tmp_path / "run2", progress=False)


def test_batched_inference_equals_one_by_one_and_bf16_keeps_sizes(tmp_path) -> None:
    from facecycle.inference.loading import LoadedGenerator
    from facecycle.inference.translate import translate_tensor
    from facecycle.models.generators import ResnetGenerator

    torch.manual_seed(0)
    net = ResnetGenerator(width=8, blocks=2).eval()
    gen = LoadedGenerator(net, "a2b", 3, 4, 32, {}, tmp_path)
    x = torch.rand(3, 3, 30, 34) * 2 - 1
    batched = translate_tensor(gen, x)
    single = torch.cat([translate_tensor(gen, x[i : i + 1]) for i in range(3)])
    assert batched.shape == x.shape and torch.allclose(batched, single, atol=1e-5)  # instance norm: per image
    low = translate_tensor(gen, x, precision="bf16")
    assert low.shape == x.shape and low.dtype == torch.float32
    assert (low - batched).abs().mean() < 0.02


def test_bench_case_reports_speed_memory_and_flops() -> None:
    from facecycle.commands.bench import run_case

    common = {"size": 32, "batch_size": 2, "iters": 1, "warmup": 1, "device": "cpu", "flops": True,
              "overrides": tiny_overrides(blocks=1)}
    train = run_case({"case": "train", "precision": "bf16", "channels_last": True, **common})
    infer = run_case({"case": "infer", "precision": "fp32", "channels_last": False, **common})
    for r in (train, infer):
        assert r["s_per_iter"] > 0 and r["images_per_s"] > 0 and r["peak_mem_gib"] > 0
    # A training step is 6 generator passes plus backward; inference is one pass of the same G.
    assert train["gflop_per_iter"] > 6 * infer["gflop_per_iter"]
