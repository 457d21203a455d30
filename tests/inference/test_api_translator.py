"""Python API: `facecycle.Translator` on a really trained (2-step) tiny model.

The model is `tiny.tiny_run_dir`, shared with the export/serve/browser tests: trained once per
session through the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny import photo, run_dir, translator  # noqa: F401  (run_dir, translator: fixtures)


def test_checkpoint_gives_both_directions(translator, run_dir: Path) -> None:
    assert translator.directions == ("a2b", "b2a")
    assert translator.direction == "a2b"
    assert translator.step == 2 and translator.channels == 3 and translator.crop_size == 32
    assert translator.source.parent == run_dir / "checkpoints"
    info = translator.info()
    assert info["directions"] == ["a2b", "b2a"] and info["model"]["gen_width"] == 8


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_pil_inputs_of_odd_size_keep_their_size(translator, mode: str) -> None:
    image = photo((50, 70), mode)
    out = translator.translate(image)
    assert out.size == (50, 70) and out.mode == "RGB"
    assert np.asarray(out).std() > 0  # a real picture, not a blank


def test_numpy_and_path_inputs(translator, tmp_path: Path) -> None:
    rgb = np.asarray(photo((45, 31)))
    from_uint8 = translator.translate(rgb)
    from_float = translator.translate(rgb.astype(np.float64) / 255.0)
    assert from_uint8.size == (45, 31)
    assert np.array_equal(np.asarray(from_uint8), np.asarray(from_float))  # same pixels after quantisation
    assert translator.translate(rgb[:, :, 0]).size == (45, 31)  # (H, W) grayscale
    assert translator.translate(rgb[:, :, :1]).size == (45, 31)  # (H, W, 1)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(np.asarray(translator.translate(rgba)), np.asarray(from_uint8))  # opaque alpha changes nothing
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(np.asarray(translator.translate(path)), np.asarray(from_uint8))
    assert np.array_equal(np.asarray(translator(str(path))), np.asarray(from_uint8))


def test_directions_differ_and_batch_matches_single(translator) -> None:
    images = [photo((50, 70), seed=1), photo((33, 20), seed=2), photo((50, 70), seed=3)]
    a2b = translator.translate(images[0])
    b2a = translator.translate(images[0], direction="b2a")
    assert not np.array_equal(np.asarray(a2b), np.asarray(b2a))
    batch = translator.translate_batch(images, direction="b2a", batch_size=2)
    assert [o.size for o in batch] == [(50, 70), (33, 20), (50, 70)]
    for image, out in zip(images, batch):
        single = np.asarray(translator.translate(image, direction="b2a"), dtype=np.int16)
        assert np.abs(single - np.asarray(out, dtype=np.int16)).max() <= 1  # float summation order only


def test_max_size_keeps_output_size(translator) -> None:
    out = translator.translate(photo((90, 60)), max_size=40)
    assert out.size == (90, 60)


def test_input_errors_say_what_to_do(translator, tmp_path: Path) -> None:
    from facecycle.errors import ConfigError, DataError

    with pytest.raises(DataError, match=r"\[0, 1\]"):
        translator.translate(np.full((20, 20, 3), 2.0))
    with pytest.raises(DataError, match="channels-first"):
        translator.translate(np.zeros((3, 20, 30), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        translator.translate(np.zeros((20, 30), np.int32))
    with pytest.raises(DataError, match="at least 8 px"):
        translator.translate(photo((5, 40)))
    with pytest.raises(DataError, match="cannot read image"):
        translator.translate(tmp_path / "missing.png")
    (tmp_path / "not_image.png").write_text("hello")
    with pytest.raises(DataError, match="cannot read image"):
        translator.translate(tmp_path / "not_image.png")
    with pytest.raises(DataError, match="list"):
        translator.translate_batch(photo())
    with pytest.raises(ConfigError, match="choose one of: a2b, b2a"):
        translator.translate(photo(), direction="x2y")
    with pytest.raises(DataError, match="numpy array"):
        translator.translate(object())


def test_load_errors(tmp_path: Path, run_dir: Path) -> None:
    from facecycle import Translator
    from facecycle.errors import CheckpointError, FacecycleError

    with pytest.raises(CheckpointError, match="not found"):
        Translator.load(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="run directory"):
        Translator.load(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        Translator.load(tmp_path / "junk.pt")
    with pytest.raises(FacecycleError, match="unknown direction"):
        Translator.load(run_dir, direction="sideways")
