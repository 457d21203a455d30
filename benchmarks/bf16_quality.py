"""bf16 vs fp32 training quality: same seed, same data, same number of steps.

    python benchmarks/bf16_quality.py --steps 100 --size 64 [--threads 1]

Domains: neutral -> happy faces of ../shared/data/facial_expressions (real photos, grayscale),
trained as 1-channel images with the paper model (ResNet-9 + 70x70 PatchGAN, identity 0.5).
Reports the training losses averaged over the last half of the run, and the cycle and identity
L1 of both trained models evaluated in fp32 on 16 held-out images of each domain.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from facecycle.config import Config
from facecycle.data.images import load_image, pil_to_tensor
from facecycle.training.logging import read_stats
from facecycle.training.trainer import CycleGANTrainer

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facial_expressions"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--faces", default=str(FACES))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    faces = Path(args.faces)
    tmp = Path(tempfile.mkdtemp())
    held: dict[str, list[Path]] = {}
    for key, label in (("A", "neutral"), ("B", "happiness")):
        files = sorted((faces / label).glob("*.jpg"))
        (tmp / key).mkdir()
        for f in files[16:]:
            shutil.copy(f, tmp / key / f.name)
        held[key] = files[:16]
    results = {}
    for precision in ("fp32", "bf16"):
        config = Config.from_dict({
            "data": {"data_a": str(tmp / "A"), "data_b": str(tmp / "B"), "channels": 1,
                     "crop_size": args.size, "load_size": round(args.size * 286 / 256)},
            "train": {"steps": args.steps, "precision": precision, "device": "cpu", "log_every": 1,
                      "sample_every": 10**6, "checkpoint_every": 10**6, "seed": 0},
        }).validate()
        trainer = CycleGANTrainer(config, tmp / f"run_{precision}", progress=False)
        start = time.perf_counter()
        trainer.fit()
        elapsed = time.perf_counter() - start
        records = [r for r in read_stats(tmp / f"run_{precision}") if "images_per_s" in r]
        tail = records[len(records) // 2:]
        keys = ("loss_G", "loss_cycle_a", "loss_cycle_b", "loss_idt_a", "loss_idt_b", "loss_D_a", "loss_D_b")
        train_means = {k: sum(r[k] for r in tail) / len(tail) for k in keys}
        with torch.no_grad():
            def batch(paths: list[Path]) -> torch.Tensor:
                imgs = [load_image(q, 1).resize((args.size, args.size)) for q in paths]
                return torch.stack([pil_to_tensor(i) for i in imgs])
            real_a, real_b = batch(held["A"]), batch(held["B"])
            for net in trainer.nets.values():
                net.eval()
            held_out = {
                "cycle_a": (trainer.G_ba(trainer.G_ab(real_a)) - real_a).abs().mean().item(),
                "cycle_b": (trainer.G_ab(trainer.G_ba(real_b)) - real_b).abs().mean().item(),
                "idt_a": (trainer.G_ba(real_a) - real_a).abs().mean().item(),
                "idt_b": (trainer.G_ab(real_b) - real_b).abs().mean().item(),
            }
        results[precision] = {"train_last_half": train_means, "held_out_fp32_eval": held_out,
                              "seconds": elapsed, "s_per_step": elapsed / args.steps}
        print(precision, json.dumps(results[precision]), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print("relative difference bf16 vs fp32 (held out):",
          {k: round((results["bf16"]["held_out_fp32_eval"][k] - v) / v, 3)
           for k, v in results["fp32"]["held_out_fp32_eval"].items()})


if __name__ == "__main__":
    main()
