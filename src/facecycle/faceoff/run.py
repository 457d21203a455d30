"""Run the face-off stages in order, reusing every stage whose inputs and settings are unchanged.

Layout of the output folder DIR::

    DIR/faces_A/, DIR/faces_B/    aligned crops + metadata (`prepare faces` layout)
    DIR/data/                     trainA/ testA/ trainB/ testB/ (held-out = last frames)
    DIR/run/                      the training run (checkpoints/, config.yaml, stats.jsonl);
                                  DIR/run.previous/ after the data or config changed
    DIR/swapped/a2b/a2b.mp4       video A with its face translated to domain B (audio kept)
    DIR/swapped/b2a/b2a.mp4       video B with its face translated to domain A
    DIR/eval/                     held-out crops scored by `facecycle evaluate` (report.html, metrics.json)
    DIR/report/index.html         strips, tracking counts, flicker, training state
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facecycle.faceoff.stages import Stage
from facecycle.faces.paste_masks import PasteSettings

Log = Callable[[str], None]


@dataclass
class FaceoffOptions:
    """Everything `facecycle faceoff` takes (see its --help)."""

    video_a: Path
    video_b: Path
    out: Path
    config: str = "faces"
    steps: int | None = None
    minutes: float | None = None
    size: int | None = None
    overrides: list[str] = field(default_factory=list)
    face_size: int = 256
    every: int = 1
    holdout: float = 0.1
    reference_a: Path | None = None
    reference_b: Path | None = None
    paste: PasteSettings = field(default_factory=PasteSettings)
    device: str = "auto"
    quiet: bool = False
    metrics: list[str] = field(default_factory=lambda: ["ssim", "identity"])


def _config_text(config: str) -> str:
    from facecycle.config import preset_path

    return preset_path(config).read_text()


def run_faceoff(opts: FaceoffOptions, log: Log = print) -> dict:
    """Run (or resume) the whole face-off; returns {"report", "directions", "training", "reused"}."""
    from facecycle.errors import FacecycleError, require
    from facecycle.faceoff import data as fdata

    # Fail before minutes of extraction and training, not at the translation stage.
    require("av", "video", "facecycle faceoff")
    require("mediapipe", "faces", "facecycle faceoff")
    sources = {"A": fdata.check_input(opts.video_a, "--video-a"), "B": fdata.check_input(opts.video_b, "--video-b")}
    references = {"A": opts.reference_a, "B": opts.reference_b}
    embeddings: dict[str, np.ndarray | None] = {"A": None, "B": None}
    for d, ref in references.items():
        if ref is not None:
            from facecycle.inference.face_selection import reference_embedding

            embeddings[d] = reference_embedding(ref)
    reused: list[str] = []
    out = Path(opts.out)

    def stage(name: str, st: Stage, work: Callable[[], dict]) -> dict:
        cached = st.cached()
        if cached is not None:
            reused.append(name)
            log(f"{name}: unchanged, reusing {st.folder}")
            return cached
        log(f"{name}: running -> {st.folder}")
        st.begin()
        return st.finish(work())

    # 1. extract + align
    extracted, keys = {}, {}
    for d, src in sources.items():
        ref = references[d]
        st = Stage(out / f"faces_{d}", [src] + ([ref] if ref else []),
                   {"size": opts.face_size, "margin": opts.paste.margin, "every": opts.every, "all_faces": ref is not None})
        extracted[d] = stage(f"extract {d}", st, lambda st=st, src=src, ref=ref: fdata.extract(
            src, st.folder, size=opts.face_size, margin=opts.paste.margin, every=opts.every, all_faces=ref is not None))
        keys[d] = st.key

    # 2. train / held-out split
    def do_split() -> dict:
        files = {}
        for d in ("A", "B"):
            prepared = out / f"faces_{d}"
            emb = embeddings[d]
            files[d] = fdata.keep_reference_person(prepared, emb) if emb is not None else fdata.crops(prepared)
            if emb is not None and len(files[d]) < 2:
                from facecycle.errors import DataError

                raise DataError(f"the person in {references[d]} was found in only {len(files[d])} frame(s) of "
                                f"{sources[d]}; use a clearer, frontal reference photo of someone in the video")
        return fdata.split(files, out / "data", opts.holdout)

    split_stage = Stage(out / "data", [], {"faces": keys, "holdout": opts.holdout})
    counts = stage("split", split_stage, do_split)

    # 3. train (resumable)
    training = _train(opts, out, split_stage.key, log, reused)

    # 4. score the held-out crops (skipped with --holdout 0 or --metrics none)
    held_out = {}
    if opts.metrics and counts.get("testA") and counts.get("testB"):
        st = Stage(out / "eval", [training["checkpoint"]], {"data": split_stage.key, "metrics": opts.metrics,
                                                           "device": opts.device})
        try:
            held_out = stage("evaluate held-out", st, lambda st=st: _evaluate(opts, training["checkpoint"], out, st.folder))
        except FacecycleError as exc:  # a missing metric extra must not cost the swapped videos
            log(f"evaluate held-out: skipped ({exc})")

    # 5. translate both inputs
    directions = {}
    for direction, d in (("a2b", "A"), ("b2a", "B")):
        ref = references[d]
        st = Stage(out / "swapped" / direction, [sources[d], training["checkpoint"]] + ([ref] if ref else []),
                   {"paste": opts.paste.to_dict(), "direction": direction, "device": opts.device})
        directions[direction] = stage(f"translate {direction}", st, lambda st=st, d=d, direction=direction: _translate(
            opts, training["checkpoint"], direction, sources[d], st.folder, embeddings[d]))

    # 6. report (always rewritten: cheap, and it must show this run's training state)
    from facecycle.faceoff.report import write_report

    settings = {"config": opts.config, "face_size": opts.face_size, "every": opts.every, "holdout": opts.holdout,
                **{f"paste.{k}": v for k, v in opts.paste.to_dict().items()}}
    data = {**{f"faces {d}": v for d, v in extracted.items()}, "split": counts}
    page = write_report(out / "report", directions, training, data, settings, held_out)
    log(f"report: {page.resolve()}")
    return {"report": str(page), "directions": directions, "training": training, "reused": reused}


def _train(opts: FaceoffOptions, out: Path, data_key: str, log: Log, reused: list[str]) -> dict:
    from facecycle.faceoff.train import train_run

    config_hash = hashlib.sha256(_config_text(opts.config).encode()).hexdigest()[:16]
    st = Stage(out / "run", [], {"data": data_key, "config": config_hash, "size": opts.size,
                                 "overrides": opts.overrides, "device": opts.device})
    cached = st.cached()
    if cached is not None and cached["complete"] and opts.steps in (None, cached["steps"]):
        reused.append("train")
        log(f"train: complete at step {cached['step']}, reusing {cached['checkpoint']}")
        return cached
    stored = st.stored()
    same = bool(stored and stored.get("key") == st.key)
    if stored and not same:
        # Hours of training are not deleted on a changed input: the old run is kept aside.
        previous = out / "run.previous"
        if previous.exists():
            shutil.rmtree(previous)
        (out / "run").rename(previous)
        log(f"train: the data or the config changed, starting a new run (the old one is now {previous})")
    st.begin(keep=same)
    result = train_run(out / "data", out / "run", config=opts.config, steps=opts.steps, minutes=opts.minutes,
                       size=opts.size, overrides=opts.overrides, device=opts.device, quiet=opts.quiet)
    log(f"train: step {result['step']} of {result['steps']}"
        + ("" if result["complete"] else " (time budget spent; run the same command again to continue)")
        + (f", resumed from {result['resumed_from']}" if result["resumed_from"] else ""))
    return st.finish(result)


def _evaluate(opts: FaceoffOptions, checkpoint: str, out: Path, folder: Path) -> dict:
    from facecycle.inference.evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(checkpoint, out / "data" / "testA", out / "data" / "testB", folder,
                                  ["a2b", "b2a"], opts.metrics, device=opts.device)
    return {direction: r["metrics"] for direction, r in results.items()}


def _translate(opts: FaceoffOptions, checkpoint: str, direction: str, source: Path, folder: Path,
               reference: np.ndarray | None) -> dict:
    from facecycle.faceoff.videos import translate_input
    from facecycle.inference.faces import crop_translator
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import default_work_size
    from facecycle.runtime.device import resolve_device

    generator = load_generator(checkpoint, direction, resolve_device(opts.device))
    # As `translate --faces`: attention models compose at up to 256 px, so unmasked pixels stay sharp.
    size = max(generator.crop_size, 256) if default_work_size(generator) else generator.crop_size
    return translate_input(source, folder, direction, crop_translator(generator), size, opts.paste, reference)
