"""Package a trained run as a built-in model (src/facecycle/zoo/NAME): one safetensors export per
direction and a model card with the data, recipe, steps and the benchmark's numbers for it.

    python benchmarks/make_builtin_model.py --checkpoint runs/quality/faces/snapshots/min30.pt \
        --metrics runs/quality/faces/eval/min30/metrics.json --name smile

The exports hold weights and the resolved config only (data; loaded without pickle). Git keeps
every version of these files: replace a built-in model rarely.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facecycle.inference.export import export_generator
from facecycle.inference.loading import load_generator
from facecycle.zoo import BUILTIN_MODELS, ROOT

SHOWN = [("expression_target_rate", "target-expression rate"), ("expression_target_rate_inputs", "inputs' rate"),
         ("identity_distance", "identity distance (dlib)"), ("identity_same_rate", "same person"),
         ("kid_x100", "KID x100"), ("kid_inputs_x100", "KID x100 of the inputs"), ("fid", "FID"),
         ("fid_inputs", "FID of the inputs"), ("lpips_input_output", "LPIPS input->output")]


def card(name: str, config: dict, step: int | None, metrics: dict, source: str, notes: str) -> str:
    model, data, loss, train = config["model"], config["data"], config["loss"], config["train"]
    lines = [f"# Built-in model `{name}`", "", BUILTIN_MODELS[name].description, "",
             "- **Use**: `facecycle translate --model smile --input photo.jpg --output out/ --faces` "
             "(a2b: neutral -> happy; `--direction b2a`: happy -> neutral), `Translator.load(\"smile\")`, "
             "`facecycle serve` (default model).",
             "- **Data**: the `facial_expressions` sample (Apache-2.0, a sample of muxspace/facial_expressions): "
             "`neutral` (A) and `happiness` (B), 300 + 300 training photos (every 4th photo held out), "
             "grayscale face crops. Colour photos keep their colours: the model edits their luminance.",
             f"- **Recipe**: `faces` preset (configs/faces.yaml): {model['generator']} generator, width "
             f"{model['gen_width']}, {model['gen_blocks']} blocks, attention mask (prior `{model.get('mask_prior', 'none')}`, "
             f"min area {loss['mask_min_area']}, L1 {loss['mask_l1']}, TV {loss['mask_tv']}), discriminator "
             f"`{model['discriminator']}`, {data['crop_size']} px, batch {train['batch_size']}, "
             f"cycle {loss['cycle_a']}, identity {loss['identity']}, Adam {config['optim']['lr_g']}.",
             f"- **Training**: {step} steps (`{source}`). {notes}",
             "- **Inference**: the network runs at "
             f"{data['crop_size']} px and composes at the input's resolution, so pixels outside the mask are the "
             "input's own.", "",
             "## Measured (held-out 100 + 100 photos, `facecycle evaluate`, benchmarks/quality.py protocol)", "",
             "| score | neutral -> happy | happy -> neutral |", "|---|---|---|"]
    for key, label in SHOWN:
        cells = []
        for direction in ("a2b", "b2a"):
            value = metrics.get(direction, {}).get(key)
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lines += ["", "Target rate: fraction of outputs that the independent 7-class expression classifier (fer) calls "
              "happy (a2b) or neutral (b2a). None of the metric networks was used in training.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--metrics", required=True, help="metrics.json of `facecycle evaluate` for this checkpoint")
    parser.add_argument("--name", default="smile", choices=list(BUILTIN_MODELS))
    parser.add_argument("--notes", default="")
    args = parser.parse_args()
    model = BUILTIN_MODELS[args.name]
    folder = ROOT / args.name
    folder.mkdir(parents=True, exist_ok=True)
    step = None
    config: dict = {}
    for direction in model.files:
        generator = load_generator(args.checkpoint, direction, "cpu")
        export_generator(generator, model.path(direction), "safetensors")
        step, config = generator.step, generator.config
    metrics = json.loads(Path(args.metrics).read_text())
    model.card.write_text(card(args.name, config, step, metrics, Path(args.checkpoint).name, args.notes))
    sizes = {d: model.path(d).stat().st_size / 1e6 for d in model.files}
    print(f"wrote {folder}: " + ", ".join(f"{d} {mb:.1f} MB" for d, mb in sizes.items()))


if __name__ == "__main__":
    main()
