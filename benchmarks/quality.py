"""Time-to-quality benchmark: real photos, neutral <-> happy, the face recipe against the paper
defaults at the same wall-clock budget, side by side in one invocation.

    python benchmarks/quality.py --minutes 30 --out runs/quality        # full protocol (~45 min)
    python benchmarks/quality.py --minutes 2 --evals 1,2 --max-eval 40  # smoke run

Protocol (fixed and deterministic):

* Data: `../shared/data/facial_expressions` (or `--data DIR`): `neutral` is domain A, `happiness`
  domain B. Files sorted by path; every 4th one (index % 4 == 0) is held out (100 + 100), the rest
  trains (300 + 300). Images are grayscale, so every variant trains with `data.channels=1`.
* Variants (`--variant NAME=PRESET[,key=value...]`, default `paper` and `faces`): `paper` is
  `paper_cyclegan` (ResNet-9, width 64, batch 1, identity 0.5, LR decay over the second half)
  scaled to the benchmark's `--size`, with load size 286/256 of it as in the paper; `faces` is the
  face recipe (`configs/faces.yaml`). Each variant trains in its own process pinned to its own
  core with one thread, all at the same time, so they get the same wall clock on the same machine.
* Budget: `--minutes` of training time per variant (evaluation excluded). The total number of
  steps is planned from a warm probe, re-planned once from the first segment while the LR is still
  constant (the schedule then stays constant-then-linear-decay), and a snapshot is taken at each of
  `--evals` minutes. The x axis of every curve is the measured training time of that snapshot.
* Evaluation: `facecycle evaluate` on each snapshot with the held-out sets: target-expression rate
  (the independent 7-class classifier; inputs' rate beside it), identity distance (dlib) and
  same-person fraction, KID and FID against the real held-out target photos, LPIPS input->output.
  None of these networks is used in training.

Writes `OUT/results.json`, `OUT/report.md` (tables), `OUT/curves.png` and `OUT/grid_{a2b,b2a}.png`
(held-out inputs, each variant's output and the recipe's mask).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "facial_expressions"
DEFAULT_VARIANTS = ("paper=paper_cyclegan", "faces=faces")
METRICS = "fid,kid,lpips,identity,expression"
# Scores shown in the tables, in order: (key in metrics.json, label).
SHOWN = [("expression_target_rate", "target rate"), ("expression_target_rate_inputs", "inputs' rate"),
         ("identity_distance", "identity dist"), ("identity_same_rate", "same person"),
         ("kid_x100", "KID x100"), ("fid", "FID"), ("lpips_input_output", "LPIPS in->out")]


# ---- data -------------------------------------------------------------------------------------


def split_data(data: Path, out: Path) -> dict[str, Path]:
    """Symlink the fixed split into out/{trainA,trainB,testA,testB}; returns those folders."""
    labels = data / "labels.csv"
    if not labels.is_file():
        raise SystemExit(f"{labels} not found: pass --data with the facial_expressions sample")
    with labels.open(newline="") as f:
        rows = list(csv.DictReader(f))
    folders = {}
    for domain, emotion in (("A", "neutral"), ("B", "happiness")):
        files = sorted(r["image"] for r in rows if r["emotion"] == emotion)
        for part in ("train", "test"):
            folder = out / f"{part}{domain}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            folders[f"{part}{domain}"] = folder
        for i, name in enumerate(files):
            part = "test" if i % 4 == 0 else "train"
            (folders[f"{part}{domain}"] / Path(name).name).symlink_to((data / name).resolve())
    return folders


# ---- one variant: train within the budget, snapshot, evaluate ------------------------------------


def variant_config(spec: str, folders: dict[str, Path], size: int, seed: int):
    from facecycle.config import resolve

    name, _, rest = spec.partition("=")
    preset, *overrides = rest.split(",")
    flags = {"data.data_a": str(folders["trainA"]), "data.data_b": str(folders["trainB"]),
             "data.channels": 1, "data.crop_size": size, "train.seed": seed,
             "train.log_every": 50, "train.keep_checkpoints": 2}
    if preset == "paper_cyclegan":  # the paper's 286 -> 256 jitter, scaled
        flags["data.load_size"] = round(size * 286 / 256)
    config = resolve(preset, overrides=overrides, flags=flags)
    if preset != "paper_cyclegan" and config.data.load_size < size:
        config = resolve(preset, overrides=overrides, flags={**flags, "data.load_size": size})
    return name, config


def train_variant(spec: str, folders: dict[str, Path], out: Path, minutes: float, evals: list[float],
                  size: int, seed: int) -> dict:
    """Train one variant for `minutes` of training time; snapshot at each of `evals` minutes."""
    import tempfile

    import torch

    from facecycle.config import with_values
    from facecycle.runtime import checkpoints as ckpt
    from facecycle.training.budget import calibrate_steps_per_second, fit_within
    from facecycle.training.trainer import CycleGANTrainer

    torch.set_num_threads(1)
    name, config = variant_config(spec, folders, size, seed)
    run_dir = out / name / "run"
    snapshots = out / name / "snapshots"
    shutil.rmtree(out / name, ignore_errors=True)
    snapshots.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as probe:
        rate = calibrate_steps_per_second(config, Path(probe), probe_steps=12)
    budget = minutes * 60
    steps = max(int(rate * budget), len(evals) + 1)
    config = with_values(config, train={"steps": steps, "decay_steps": int(steps * config.decay_steps / config.train.steps),
                                        "sample_every": max(steps // 6, 1), "checkpoint_every": 10**9})
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    trainer = CycleGANTrainer(config, run_dir, progress=False)
    records = []

    def snapshot(mark: float, elapsed: float) -> None:
        snap = snapshots / f"min{mark / 60:g}.pt"
        shutil.copy2(ckpt.list_checkpoints(run_dir)[-1], snap)
        records.append({"mark": mark / 60, "minutes": elapsed / 60, "step": trainer.step, "snapshot": str(snap)})
        print(f"[{name}] {elapsed / 60:.1f} min, step {trainer.step}/{trainer.config.train.steps}", flush=True)

    summary = fit_within(trainer, budget, rate, marks=[m * 60 for m in evals[:-1]], on_mark=snapshot)
    snapshot(evals[-1] * 60, summary["seconds"])
    return {"name": name, "spec": spec, "planned_steps": trainer.config.train.steps,
            "batch_size": trainer.config.train.batch_size, "records": records}


def evaluate_variant(result: dict, folders: dict[str, Path], out: Path, max_eval: int) -> None:
    """`facecycle evaluate` on every snapshot (a subprocess each, on this process's core)."""
    for record in result["records"]:
        eval_dir = out / result["name"] / "eval" / f"min{record['mark']:g}"
        cmd = [sys.executable, "-m", "facecycle", "evaluate", "--checkpoint", record["snapshot"],
               "--data-a", str(folders["testA"]), "--data-b", str(folders["testB"]), "--out", str(eval_dir),
               "--metrics", METRICS, "--target-expression", "happy", "--source-expression", "neutral",
               "--max-images", str(max_eval), "--device", "cpu", "--feature-cache", str(out / "feature_cache")]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        record["metrics"] = json.loads((eval_dir / "metrics.json").read_text())


def worker(args: argparse.Namespace) -> None:
    folders = {k: args.out / "data" / k for k in ("trainA", "trainB", "testA", "testB")}
    evals = [float(m) for m in args.evals.split(",")]
    result = train_variant(args.worker, folders, args.out, args.minutes, evals, args.size, args.seed)
    evaluate_variant(result, folders, args.out, args.max_eval)
    (args.out / result["name"] / "result.json").write_text(json.dumps(result, indent=2))


# ---- the side-by-side report -------------------------------------------------------------------


def table(results: list[dict], direction: str) -> str:
    lines = [f"| variant | minutes | step | " + " | ".join(label for _, label in SHOWN) + " |",
             "|---" * (3 + len(SHOWN)) + "|"]
    for result in results:
        for r in result["records"]:
            m = r["metrics"][direction]
            cells = ["-" if m.get(key) is None else f"{m[key]:.3f}" if abs(m[key]) < 10 else f"{m[key]:.1f}"
                     for key, _ in SHOWN]
            lines.append(f"| {result['name']} | {r['minutes']:.1f} | {r['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("expression_target_rate", "target-expression rate ↑"), ("identity_distance", "identity distance ↓"),
            ("kid_x100", "KID x100 ↓"), ("lpips_input_output", "LPIPS input→output")]
    fig, axes = plt.subplots(2, len(keys), figsize=(4 * len(keys), 6.5), squeeze=False)
    for row, direction in enumerate(("a2b", "b2a")):
        for col, (key, label) in enumerate(keys):
            ax = axes[row][col]
            for result in results:
                xs = [r["minutes"] for r in result["records"]]
                ys = [r["metrics"][direction].get(key) for r in result["records"]]
                ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=result["name"])
            ax.set_title(f"{direction}: {label}", fontsize=9)
            ax.set_xlabel("training minutes")
            ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def mask_curves(results: list[dict], out: Path, path: Path) -> bool:
    """Mean and spread (std over pixels) of the attention masks against training minutes, from each
    run's stats.jsonl; False when no variant has a mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facecycle.training.logging import read_stats

    fig, ax = plt.subplots(figsize=(6, 3.5))
    drawn = False
    for result in results:
        records = [r for r in read_stats(out / result["name"] / "run") if "loss_mask_mean" in r]
        if not records:
            continue
        last = result["records"][-1]
        minutes = [r["step"] / last["step"] * last["minutes"] for r in records]  # steps -> minutes, linear
        mean = [r["loss_mask_mean"] for r in records]
        std = [r["loss_mask_std"] for r in records]
        ax.plot(minutes, mean, label=f"{result['name']} mean")
        ax.fill_between(minutes, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
        drawn = True
    if drawn:
        ax.set_xlabel("training minutes"); ax.set_ylabel("mask A (mean ± std over pixels)")
        ax.grid(alpha=0.3); ax.legend(fontsize=8); fig.tight_layout(); fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def grids(results: list[dict], folders: dict[str, Path], out: Path, count: int = 8) -> list[str]:
    """Rows of held-out faces: input | each variant's final output (| its mask, attention models).
    Returns the column labels."""
    import torch

    from facecycle.data.images import load_image, make_grid, pil_to_tensor
    from facecycle.inference.loading import load_generator
    from facecycle.models.attention import is_attention

    for direction, source in (("a2b", folders["testA"]), ("b2a", folders["testB"])):
        files = sorted(source.iterdir())[:: max(len(list(source.iterdir())) // count, 1)][:count]
        columns: list[list[torch.Tensor]] = []
        labels = ["input"]
        size = None
        for result in results:
            gen = load_generator(result["records"][-1]["snapshot"], direction, "cpu")
            size = gen.crop_size
            x = torch.stack([pil_to_tensor(load_image(f, 1).resize((size, size))) for f in files])
            if not columns:
                columns.append(list(x))
            with torch.no_grad():
                if is_attention(gen.net):
                    fake, mask = gen.net(x, with_mask=True)
                    columns += [list(fake), list(mask * 2 - 1)]
                    labels += [result["name"], f"{result['name']} mask"]
                else:
                    columns.append(list(gen.net(x)))
                    labels.append(result["name"])
        rows = [[col[i] for col in columns] for i in range(len(files))]
        grid = make_grid(rows)
        grid.resize((grid.width * 2, grid.height * 2)).save(out / f"grid_{direction}.png")
    return labels


def report(results: list[dict], out: Path, args: argparse.Namespace, labels: list[str]) -> str:
    cols = " | ".join(labels)
    text = [f"# Time-to-quality: neutral <-> happy, {args.minutes:g} min per variant, {args.size} px",
            "", f"Command: `python benchmarks/quality.py {' '.join(sys.argv[1:])}`", ""]
    for r in results:
        text.append(f"- **{r['name']}** (`{r['spec']}`): {r['records'][-1]['step']} steps of batch "
                    f"{r['batch_size']} (planned {r['planned_steps']})")
    for direction, what in (("a2b", "neutral → happy (target: happy)"), ("b2a", "happy → neutral (target: neutral)")):
        text += ["", f"## {what}", "", table(results, direction)]
    text += ["", "![curves](curves.png)", "", "![masks](masks.png)", "", f"Grids (columns: {cols}):", "",
             "![a2b](grid_a2b.png) ![b2a](grid_b2a.png)", ""]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training minutes per variant")
    parser.add_argument("--evals", default=None, help="minutes at which to evaluate (default 5,10,20,MINUTES)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-eval", type=int, default=100, help="held-out images per domain to evaluate")
    parser.add_argument("--variant", action="append", default=None,
                        help="NAME=PRESET[,section.key=value...]; repeat (default: paper and faces)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evals is None:
        args.evals = ",".join(f"{m:g}" for m in (5, 10, 20) if m < args.minutes) + f",{args.minutes:g}"
    if args.worker:
        return worker(args)
    args.out.mkdir(parents=True, exist_ok=True)
    folders = split_data(args.data, args.out / "data")
    variants = args.variant or list(DEFAULT_VARIANTS)
    cores = sorted(os.sched_getaffinity(0))
    procs = []
    for i, spec in enumerate(variants):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--worker", spec, "--minutes", str(args.minutes), "--evals", args.evals,
               "--out", str(args.out), "--size", str(args.size), "--seed", str(args.seed),
               "--max-eval", str(args.max_eval)]
        core = cores[i % len(cores)]
        procs.append(subprocess.Popen(["taskset", "-c", str(core), *cmd], env=env))
        print(f"variant {spec} on core {core}", flush=True)
    if any(p.wait() for p in procs):
        raise SystemExit("a variant failed; see its output above")
    results = [json.loads((args.out / spec.partition("=")[0] / "result.json").read_text()) for spec in variants]
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    curves(results, args.out / "curves.png")
    mask_curves(results, args.out, args.out / "masks.png")
    labels = grids(results, folders, args.out)
    (args.out / "report.md").write_text(report(results, args.out, args, labels))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
