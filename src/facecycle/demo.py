"""`facecycle demo`: offline cartoon frown <-> smile, trained on the CPU within a time budget.

Steps: render an unpaired avatar dataset (different identities in A and B), calibrate the
training speed on this machine, fit `train.steps` to the remaining budget (so the LR schedule
still decays to zero), train, translate the held-out faces both ways, and write an HTML page
with before/after grids and loss curves.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Optional

from facecycle.config import Config, resolve, with_values
from facecycle.data.images import make_grid, pil_to_tensor, load_image

DEMO_SIZE = 64
DEMO_PRESET = "faces"  # the face recipe (configs/faces.yaml), as a user would start
# Open frown (A) and open smile (B): one large shape that differs in its curve, so the edit is
# unmistakable at 64 px and learnable in minutes (thin closed-mouth lines are not; see avatars).
DEMO_DOMAINS = ("open_frown", "open_smile")
# The recipe at demo size: a narrower generator and critic take about 1.7x less time per step,
# and in minutes the number of steps decides the result (QUALITY.md, "The demo").
DEMO_SIZE_SETTINGS = ("model.gen_width=16", "model.gen_blocks=4", "model.disc_width=32")


def loss_curve_png(stats: list[dict], path: Path) -> Optional[Path]:
    """Plot every `loss_*` series of stats.jsonl records; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = [r for r in stats if "loss_G" in r]
    if not records:
        return None
    with_mask = any("loss_mask_mean" in r for r in records)
    fig, axes = plt.subplots(1, 3 if with_mask else 2, figsize=(15 if with_mask else 11, 3.6))
    steps = [r["step"] for r in records]
    for key in ("loss_G_ab_gan", "loss_G_ba_gan", "loss_D_a", "loss_D_b"):
        axes[0].plot(steps, [r.get(key, float("nan")) for r in records], label=key[5:])
    for key in ("loss_cycle_a", "loss_cycle_b", "loss_idt_a", "loss_idt_b"):
        if any(key in r for r in records):
            axes[1].plot(steps, [r.get(key, float("nan")) for r in records], label=key[5:])
    axes[0].set_title("adversarial"); axes[1].set_title("reconstruction (L1)")
    if with_mask:  # an attention model's masks: a mean falling to 0 would mean the generators copy
        for key in ("loss_mask_mean", "loss_mask_std"):
            axes[2].plot(steps, [r.get(key, float("nan")) for r in records], label=key[10:])
        axes[2].set_title("attention mask (fraction of pixels changed)")
    for ax in axes:
        ax.set_xlabel("step"); ax.legend(fontsize=8); ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def before_after_grid(inputs: list[Path], outputs: list[Path], path: Path, columns: int = 4,
                      masks: Optional[list[Path]] = None) -> Path:
    """Pairs (input | output [| mask]) laid out `columns` per row, upscaled x2 for viewing."""
    tiles = []
    for k, (i, o) in enumerate(zip(inputs, outputs)):
        tile = [pil_to_tensor(load_image(i)), pil_to_tensor(load_image(o))]
        if masks:
            tile.append(pil_to_tensor(load_image(masks[k])))
        tiles.append(tile)
    rows = []
    for start in range(0, len(tiles), columns):
        row = []
        for tile in tiles[start:start + columns]:
            row += tile
        rows.append(row)
    grid = make_grid(rows, pad=3)
    grid = grid.resize((grid.width * 2, grid.height * 2), resample=0)
    grid.save(path)
    return path


def write_page(out: Path, info: dict) -> Path:
    def img(name: Optional[str], alt: str) -> str:
        return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">' if name else "<p>(not available)</p>"

    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in info["facts"].items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facecycle demo: frown &harr; smile</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
img{{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.2em .8em;border-bottom:1px solid #eee}}.note{{color:#555}}</style></head>
<body><h1>facecycle demo: cartoon frown &harr; smile</h1>
<p class="note">A CycleGAN trained on this machine from two <em>unpaired</em> folders of cartoon faces
(sad, frowning identities in A; different smiling identities in B) with the face recipe (attention-guided
generators: each output is the input, changed only where the mask is white), at demo size
(narrower networks, so that minutes buy enough steps). Below: held-out faces the model never saw,
each shown as <b>before | after | mask</b>.</p>
<h2>frown &rarr; smile (G_ab)</h2>{img(info.get("grid_a2b"), "frown to smile before/after/mask")}
<h2>smile &rarr; frown (G_ba)</h2>{img(info.get("grid_b2a"), "smile to frown before/after/mask")}
<h2>Training samples (real | fake | mask | reconstructed | identity)</h2>{img(info.get("samples"), "training sample grid")}
<h2>Loss curves</h2>{img(info.get("curves"), "loss curves")}
<h2>Run</h2><table>{rows}</table>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path


def run_demo(out_dir: str | Path, minutes: float = 8.0, n_train: int = 300, n_test: int = 16,
             seed: int = 0, progress: bool = True, preset: str | Path = DEMO_PRESET,
             overrides: Optional[list[str]] = None) -> Path:
    """Build data, train for about `minutes` in total, translate held-out faces; returns the page path.

    preset, overrides: the recipe and `--set key=value` changes (data paths and size are the demo's);
    the face recipe gets `DEMO_SIZE_SETTINGS` first, which `overrides` may change again."""
    from facecycle.data.avatars import build_unpaired_dataset
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_folder
    from facecycle.training.logging import read_stats
    from facecycle.training.budget import calibrate_steps_per_second, fit_within
    from facecycle.training.trainer import CycleGANTrainer

    started = time.perf_counter()
    out = Path(out_dir)
    data_dir = out / "data"
    # The settings are checked before anything is rendered or trained: a typo fails at once.
    if str(preset) == DEMO_PRESET:
        overrides = [*DEMO_SIZE_SETTINGS, *(overrides or [])]
    config = resolve(preset, overrides=overrides, flags={
        "data.data_a": str(data_dir / "trainA"), "data.data_b": str(data_dir / "trainB"),
        "data.crop_size": DEMO_SIZE, "data.load_size": DEMO_SIZE + 6, "train.seed": seed})
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] rendering {2 * (n_train + n_test)} cartoon faces (frowning = A, smiling = B) ...", flush=True)
    data = build_unpaired_dataset(data_dir, n_train, n_train, DEMO_SIZE, seed, *DEMO_DOMAINS, n_test=n_test)
    run_dir = out / "run"
    print("[2/4] measuring training speed ...", flush=True)
    import tempfile

    with tempfile.TemporaryDirectory() as probe_dir:
        steps_per_s = calibrate_steps_per_second(config, Path(probe_dir), probe_steps=10)
    # Leave room for translation and the page (measured: about 5 s on a busy 2-core machine).
    train_seconds = max(minutes * 60 - (time.perf_counter() - started) - max(10.0, minutes * 1.5), 10.0)
    steps = max(int(train_seconds * steps_per_s), 20)
    config = with_values(config, train={"steps": steps, "sample_every": max(steps // 4, 1),
                                        "checkpoint_every": 10**9})
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)  # a demo run always starts fresh
    print(f"[3/4] training ~{steps} steps (~{train_seconds / 60:.1f} min at {steps_per_s:.2f} steps/s, "
          f"batch {config.train.batch_size}; re-planned from the measured speed) -> {run_dir}", flush=True)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    trainer = CycleGANTrainer(config, run_dir, progress=progress)
    # 20 segments: the plan follows a machine whose load changes within a twentieth of the budget.
    summary = fit_within(trainer, train_seconds, steps_per_s, segments=20)
    last, train_time, steps = summary["last"], summary["seconds"], trainer.step
    trainer.write_samples()

    print("[4/4] translating held-out faces and writing the page ...", flush=True)
    info: dict = {"facts": {}}
    for direction, source in (("a2b", data["testA"]), ("b2a", data["testB"])):
        generator = load_generator(run_dir, direction, "cpu")
        masks_dir = out / f"masks_{direction}" if config.model.attention_mask else None
        result = translate_folder(generator, source, out / f"translated_{direction}", masks_dir=masks_dir)
        inputs = sorted(Path(source).glob("*.png"))
        outputs = [out / f"translated_{direction}" / p.name for p in inputs]
        masks = [masks_dir / p.name for p in inputs] if masks_dir else None
        info[f"grid_{direction}"] = before_after_grid(inputs, outputs, out / f"grid_{direction}.png", masks=masks).name
        info["facts"][f"held-out images {direction}"] = len(result["written"])
    samples = sorted((run_dir / "samples").glob("*.png"))
    if samples:
        from PIL import Image

        with Image.open(samples[-1]) as grid:  # upscaled x2 like the before/after grids
            grid.resize((grid.width * 2, grid.height * 2), resample=Image.NEAREST).save(out / "samples.png")
        info["samples"] = "samples.png"
    curves = loss_curve_png(read_stats(run_dir), out / "loss_curves.png")
    info["curves"] = curves.name if curves else None
    total = time.perf_counter() - started
    info["facts"].update({
        "recipe": " ".join([str(preset), *(overrides or [])]), "training steps": steps, "re-plans (step, new total)": summary["replans"] or "none",
        "batch size": config.train.batch_size, "image size": f"{DEMO_SIZE} px",
        "training images/s per domain (last log window)": f"{last.get('images_per_s', float('nan')):.2f}",
        "training time": f"{train_time:.0f} s", "demo wall time": f"{total:.0f} s",
        "device": str(trainer.device), "run directory": str(run_dir),
    })
    (out / "demo.json").write_text(json.dumps(info["facts"], indent=2))
    page = write_page(out, info)
    print(f"done in {total / 60:.1f} min; training {last.get('images_per_s', float('nan')):.2f} images/s per domain")
    print(f"open {page.resolve()}")
    return page
