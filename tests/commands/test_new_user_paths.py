"""Paths a new user takes: the reference dataset layout (--dataroot), the one-page evaluation
report, and a categorical labels file given to an Action-Unit preset."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import facecycle_cmd, write_blobs
from facecycle.cli import main
from tiny import TINY_TRAIN, run, tiny_flags


@pytest.fixture()
def dataroot(tmp_path: Path) -> Path:
    """datasets/NAME with trainA, trainB, testA, testB, as the reference code lays them out."""
    root = tmp_path / "datasets" / "blobs"
    for split, count in (("train", 4), ("test", 3)):
        write_blobs(root / f"{split}A", count, (36, 36), seed=len(split), bright=False)
        write_blobs(root / f"{split}B", count, (40, 32), seed=len(split) + 5, bright=True)
    return root


@pytest.mark.slow
def test_dataroot_for_train_evaluate_translate(dataroot, tmp_path, cli_env) -> None:
    run_dir = tmp_path / "run"
    proc = run(["train", "--dataroot", str(dataroot), "--run-dir", str(run_dir), "--steps", "1", *TINY_TRAIN], cli_env)
    assert "4 images in A, 4 in B" in proc.stdout
    stored = (run_dir / "config.yaml").read_text()
    assert str(dataroot / "trainA") in stored and str(dataroot / "testB") in stored  # testA/B: held-out folders

    out = tmp_path / "eval"
    run(["evaluate", "--checkpoint", str(run_dir), "--dataroot", str(dataroot), "--out", str(out),
         "--metrics", "ssim,psnr"], cli_env)
    assert json.loads((out / "a2b" / "metrics.json").read_text())["counts"]["inputs"] == 3  # testA (3 images), not trainA (4)

    # One top-level page holds both directions: their metrics side by side, samples, links.
    page = (out / "report.html").read_text()
    assert "<th>a2b</th><th>b2a</th>" in page and "<td>ssim_cycle</td>" in page
    assert "href='a2b/report.html'" in page and "href='b2a/report.html'" in page
    assert "src='b2a/samples.png'" in page and (out / "b2a" / "samples.png").is_file()
    help_text = subprocess.run(facecycle_cmd("evaluate", "--help"), env=cli_env, capture_output=True, text=True).stdout
    assert "report.html (one page for all evaluated directions" in " ".join(help_text.split())

    run(["translate", "--checkpoint", str(run_dir), "--dataroot", str(dataroot), "--direction", "b2a",
         "--output", str(tmp_path / "fake_a")], cli_env)
    assert sorted(p.name for p in (tmp_path / "fake_a").iterdir()) == ["img_000.png", "img_001.png", "img_002.png"]


def test_dataroot_errors_read_like_the_folder_flags(dataroot, tmp_path, capsys) -> None:
    from reference_layout import RefResnet, randomise

    from facecycle.inference.reference import write_imported_model

    torch = pytest.importorskip("torch")
    torch.save(randomise(RefResnet(3, 4, 1, "instance"), 0).state_dict(), tmp_path / "g.pth")
    model = str(tmp_path / "model")
    write_imported_model(model, {"a2b": tmp_path / "g.pth", "b2a": tmp_path / "g.pth"})
    (dataroot / "trainB").rename(dataroot / "train_b")
    (dataroot / "testA").rename(dataroot / "test_a")

    def error(*args: str) -> str:
        assert main(list(args)) == 2
        return capsys.readouterr().err

    train_flags = error("train", "--data-a", str(dataroot / "trainA"), "--data-b", str(dataroot / "trainB"),
                        "--run-dir", str(tmp_path / "r1"), *TINY_TRAIN)
    assert "domain B folder does not exist" in train_flags
    assert error("train", "--dataroot", str(dataroot), "--run-dir", str(tmp_path / "r1"), *TINY_TRAIN) == train_flags
    eval_flags = error("evaluate", "--checkpoint", model, "--data-a", str(dataroot / "testA"), "--data-b",
                       str(dataroot / "testB"), "--out", str(tmp_path / "e"))
    assert "domain A folder does not exist" in eval_flags
    assert error("evaluate", "--checkpoint", model, "--dataroot", str(dataroot), "--out", str(tmp_path / "e")) == eval_flags
    translate_flags = error("translate", "--checkpoint", model, "--input", str(dataroot / "testA"),
                            "--output", str(tmp_path / "t"))
    assert "does not exist" in translate_flags
    assert error("translate", "--checkpoint", model, "--dataroot", str(dataroot), "--output", str(tmp_path / "t")) \
        == translate_flags
    assert "--dataroot" in error("train", "--dataroot", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r2"))
    assert "drop --data-a/--data-b or --dataroot" in error(
        "train", "--dataroot", str(dataroot), "--data-a", str(dataroot), "--run-dir", str(tmp_path / "r3"))
    assert "pass --data-a DIR and --data-b DIR, or --dataroot DIR" in error(
        "evaluate", "--checkpoint", model, "--data-a", str(dataroot), "--out", str(tmp_path / "e"))


def test_categorical_labels_given_to_an_au_preset_say_which_label_kind(tmp_path, cli_env) -> None:
    images = tmp_path / "faces"
    write_blobs(images / "happy", 2, (32, 32), seed=1, bright=True)
    write_blobs(images / "sad", 2, (32, 32), seed=2, bright=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,emotion\n" + "".join(f"{c}/img_00{i}.png,{c}\n" for c in ("happy", "sad") for i in range(2)))
    args = ["train", "--config", "conditional_au", "--data", str(images), "--labels", str(labels), "--steps", "1",
            *tiny_flags("model.disc_layers=2", "train.batch_size=2", blocks=1)]
    proc = run([*args, "--run-dir", str(tmp_path / "r1")], cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "has no presence columns" in proc.stderr and "use --set data.label_kind=categorical" in proc.stderr
    assert "column 'emotion'" in proc.stderr
    proc = run([*args, "--run-dir", str(tmp_path / "r2"), "--set", "data.label_kind=categorical"], cli_env)
    assert "2 categorical condition(s) (happy, sad)" in proc.stdout
