"""Conditional (AU / expression) models wherever a model goes: the Python API, the three export
formats (parity with the checkpoint), the onnxruntime backend, `facecycle serve` (API and a
real browser) and `facecycle evaluate`. One tiny conditional model is trained once per session
through the real CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import facecycle_cmd
from tiny import photo, tiny_flags, tiny_run_dir

FORMATS = {"onnx": ".onnx", "torchscript": ".ts", "safetensors": ".safetensors"}


def tiny_conditional_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, avatar dataset) of a 2-step tiny conditional model on 13 presence AUs,
    trained once per session with `facecycle train`."""
    from facecycle.data.avatars import build_conditional_dataset

    root = tmp_path_factory.getbasetemp() / "facecycle_tiny_conditional"
    run, data = root / "run", root / "avatars"
    if not (run / "checkpoints").is_dir():
        build_conditional_dataset(data, n=10, size=32, seed=5, n_test=4)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(facecycle_cmd("train", "--config", "conditional_avatars", "--data", str(data / "images"),
                                            "--labels", str(data / "labels.csv"), "--run-dir", str(run), "--steps", "2",
                                            *tiny_flags(blocks=1, extra=["--batch-size", "2"])),
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return run, data


@pytest.fixture(scope="module")
def cond(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_conditional_run(tmp_path_factory)


@pytest.fixture(scope="module")
def cond_translator(cond):
    from facecycle import Translator

    return Translator.load(cond[0], device="cpu")


@pytest.fixture(scope="module")
def exports(cond, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The conditional model exported with `facecycle export` in every format."""
    out = tmp_path_factory.mktemp("cond_exports")
    paths = {}
    for fmt, suffix in FORMATS.items():
        path = out / f"cond{suffix}"
        proc = subprocess.run(facecycle_cmd("export", "--checkpoint", str(cond[0]), "--output", str(path)),
                              env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "exported conditional generator" in proc.stdout and "condition (N, 13) float32 in [0, 1]" in proc.stdout
        paths[fmt] = path
    return paths


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.int16)


# ---- Python API ---------------------------------------------------------------------------------


def test_translator_takes_targets_and_describes_the_conditions(cond, cond_translator) -> None:
    from facecycle.inference.loading import load_generator
    from facecycle.inference.translate import translate_image
    from facecycle.runtime.checkpoints import list_checkpoints, load_file

    t = cond_translator
    columns = load_file(list_checkpoints(cond[0])[-1])["condition"]["columns"]
    info = t.info()
    assert info["mode"] == "conditional" and info["directions"] == ["conditional"]
    assert info["condition"]["columns"] == columns and info["condition"]["kind"] == "presence"
    assert info["condition"]["value_max"] == 1.0
    joy = info["condition"]["expressions"]["joy"]
    assert [c for c, v in zip(columns, joy) if v] == ["AU06", "AU12"]
    assert t.expressions == list(info["condition"]["expressions"]) and "contempt" not in t.expressions
    assert "conditional on 13 presence" in repr(t)

    image = photo((45, 37))
    happy = t.translate(image, expression="joy")
    assert happy.size == (45, 37) and happy.mode == "RGB"
    # The same target spelled as units, and the CLI's path: the same computation, the same pixels.
    assert np.array_equal(as_array(happy), as_array(t.translate(image, target="AU06=1,AU12=1")))
    cli_path = translate_image(load_generator(cond[0], device="cpu", expression="joy"), image)
    assert np.array_equal(as_array(happy), as_array(cli_path))
    vector = torch.zeros(len(columns))
    vector[[columns.index("AU06"), columns.index("AU12")]] = 1
    assert np.array_equal(as_array(happy), as_array(t.translate(image, target=vector)))
    other = t.translate(image, target="AU01=1,AU15=1")
    assert np.abs(as_array(other) - as_array(happy)).max() > 0  # another target, another image
    batch = t.translate_batch([image, photo((32, 32), seed=3)], expression="sadness")
    assert [b.size for b in batch] == [(45, 37), (32, 32)]
    assert np.array_equal(as_array(batch[0]), as_array(t.translate(image, expression="sadness")))


def test_conditional_and_cyclegan_errors_say_what_to_do(cond, cond_translator, tmp_path_factory) -> None:
    from facecycle import Translator
    from facecycle.errors import ConfigError

    t, image = cond_translator, photo((40, 40))
    with pytest.raises(ConfigError, match=r"conditional model: pass target= .*AU01.*or expression= \(joy"):
        t.translate(image)
    with pytest.raises(ConfigError, match="no 'a2b' direction"):
        t.translate(image, direction="a2b", expression="joy")
    with pytest.raises(ConfigError, match="'AU99' is not a condition"):
        t.translate(image, target="AU99=1")
    with pytest.raises(ConfigError, match="needs AU12, AU14"):
        t.translate(image, expression="contempt")
    with pytest.raises(ConfigError, match="13 values in"):
        t.translate(image, target=torch.ones(3))
    with pytest.raises(ConfigError, match="leave direction out"):
        Translator.load(cond[0], device="cpu", direction="b2a")
    plain = Translator.load(tiny_run_dir(tmp_path_factory), device="cpu")
    assert plain.info()["mode"] == "cyclegan" and plain.info()["condition"] is None and plain.expressions == []
    for kwargs in ({"expression": "joy"}, {"target": "AU12=1"}):
        with pytest.raises(ConfigError, match="conditional models only"):
            plain.translate(image, **kwargs)


# ---- export -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_exports_take_the_condition_as_second_input_and_match_the_checkpoint(fmt: str, cond, exports) -> None:
    from facecycle import Translator
    from facecycle.inference.exported import read_metadata
    from facecycle.inference.loading import load_generator, load_model
    from facecycle.inference.translate import translate_tensor

    path = exports[fmt]
    meta = read_metadata(path)
    reference = load_model(cond[0], device="cpu")
    assert meta["mode"] == "conditional" and meta["direction"] == "conditional"
    assert json.loads(meta["condition_columns"]) == list(reference.condition_columns)
    assert meta["condition_kind"] == "presence" and meta["condition_name"] == "condition"

    # The unbound network: one condition row per image, different targets in one batch.
    loaded = load_model(path, device="cpu")
    assert loaded.needs_target and loaded.condition_columns == reference.condition_columns
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    c = (torch.rand(2, len(reference.condition_columns)) > 0.5).float()
    with torch.no_grad():
        expected = reference.net(x, c)
        got = loaded.net(x, c)
    assert torch.allclose(got, expected, atol=1e-4), float((got - expected).abs().max())
    assert not torch.allclose(expected[0], reference.net(x[:1], c[1:]).detach()[0], atol=1e-3)  # c matters

    # Bound to a target through load_generator (the CLI's path), at an odd size (padding).
    odd = torch.rand(2, 3, 29, 38) * 2 - 1
    want = translate_tensor(load_generator(cond[0], device="cpu", expression="surprise"), odd)
    have = translate_tensor(load_generator(path, "a2b", "cpu", expression="surprise"), odd)
    assert have.shape == (2, 3, 29, 38) and torch.allclose(have, want, atol=1e-4)

    # And through the Python API.
    t = Translator.load(path, device="cpu")
    assert t.conditional and t.info()["condition"]["columns"] == list(reference.condition_columns)
    image = photo((45, 37), seed=2)
    ours = as_array(Translator.load(cond[0], device="cpu").translate(image, target="AU12=1,AU25=1"))
    theirs = as_array(t.translate(image, target="AU12=1,AU25=1"))
    assert np.abs(ours - theirs).max() <= 1  # float rounding may move a pixel by one level


def test_untrusted_conditional_torchscript_is_refused(exports, tmp_path: Path, monkeypatch) -> None:
    from facecycle import Translator
    from facecycle.errors import CheckpointError

    monkeypatch.setenv("FACECYCLE_HOME", str(tmp_path / "elsewhere"))  # a machine that did not export it
    with pytest.raises(CheckpointError, match="TorchScript, which is code"):
        Translator.load(exports["torchscript"], device="cpu")
    trusted = Translator.load(exports["torchscript"], device="cpu", trust_torchscript=True)
    assert trusted.translate(photo((33, 33)), expression="joy").size == (33, 33)
    # safetensors and ONNX are data: they load on any machine.
    assert Translator.load(exports["safetensors"], device="cpu").conditional
    assert Translator.load(exports["onnx"], device="cpu").conditional


def test_onnxruntime_backend_runs_a_conditional_checkpoint(cond, cond_translator) -> None:
    pytest.importorskip("onnxruntime")
    from facecycle import Translator
    from facecycle.inference.exported import OnnxGenerator
    from facecycle.inference.loading import load_generator
    from facecycle.inference.backends import with_backend
    from facecycle.inference.translate import translate_tensor

    t = Translator.load(cond[0], device="cpu", backend="onnxruntime")
    assert isinstance(t.generators["conditional"].net, OnnxGenerator)
    image = photo((41, 36), seed=5)
    diff = np.abs(as_array(t.translate(image, expression="fear")) - as_array(cond_translator.translate(image, expression="fear")))
    assert diff.max() <= 1
    bound = load_generator(cond[0], device="cpu", expression="joy")
    fast = with_backend(bound, "onnxruntime")
    assert fast.target is not None and torch.equal(fast.target, bound.target)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(translate_tensor(fast, x), translate_tensor(bound, x), atol=1e-4)


# ---- serve --------------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_serve_api_takes_expressions_and_targets(cond_translator) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from facecycle.serve.app import ServeOptions, TranslatorPipeline, create_app

    t = cond_translator
    with TestClient(create_app(TranslatorPipeline(t, None), ServeOptions(max_size=None))) as client:
        info = client.get("/api/info").json()
        assert info["mode"] == "conditional" and info["directions"] == ["conditional"]
        assert info["features"] == {"faces": False, "expressions": t.expressions, "target": True}
        assert info["condition"]["expressions"]["joy"] == t.info()["condition"]["expressions"]["joy"]
        image = photo((47, 39), seed=1)
        data = png_bytes(image)

        def post(**fields: str):
            return client.post("/api/translate", files={"file": ("face.png", data, "image/png")}, data=fields)

        for fields, expected in (({"expression": "joy"}, t.translate(image, expression="joy")),
                                 ({"target": "AU01=1,AU02=1"}, t.translate(image, target="AU01=1,AU02=1")),
                                 ({"expression": "joy", "target": "AU12=0"}, t.translate(image, expression="joy",
                                                                                          target="AU12=0"))):
            response = post(**fields)
            assert response.status_code == 200, response.text
            out = Image.open(io.BytesIO(response.content))
            assert out.size == (47, 39) and np.array_equal(as_array(out), as_array(expected))
        for fields, message in (({}, "conditional model: pass target="), ({"target": "AU99=1"}, "not a condition"),
                                ({"expression": "bored"}, "unknown expression"),
                                ({"direction": "a2b", "expression": "joy"}, "choose one of: conditional"),
                                ({"faces": "true", "expression": "joy"}, "face mode is not available")):
            response = post(**fields)
            assert response.status_code == 400 and message in response.json()["error"], response.text


def test_browser_expression_menu_and_sliders(cond, tmp_path: Path) -> None:
    from serve_helpers import CHROMIUM_ARGS, chromium_path, serving

    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    executable = chromium_path()
    upload = tmp_path / "portrait.png"
    photo((53, 41), seed=7).save(upload)
    with serving(cond[0], "1") as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(url + "/")
            page.wait_for_function("document.querySelectorAll('#expression option').length > 1")
            assert page.is_hidden("#direction-opt") and page.is_visible("#expression-opt")
            assert page.is_visible("#conditions")
            assert page.eval_on_selector_all("#conditions input[type=range]", "s => s.length") == 13
            options = page.eval_on_selector_all("#expression option", "o => o.map(x => x.value)")
            assert options[:2] == ["joy", "sadness"]

            def slider(column: str) -> str:
                return page.eval_on_selector(f"#conditions input[data-column='{column}']", "s => s.value")

            assert slider("AU12") == "1" and slider("AU01") == "0"  # the first expression's target
            page.set_input_files("#file", str(upload))
            page.wait_for_function("document.getElementById('after').classList.contains('ready')", timeout=30_000)
            first = page.get_attribute("#after", "src")
            assert page.get_attribute("#download", "download") == "portrait_joy.png"

            page.select_option("#expression", "sadness")
            page.wait_for_function("(old) => { const a = document.getElementById('after');"
                                   " return a.classList.contains('ready') && a.src !== old; }", arg=first, timeout=30_000)
            assert slider("AU01") == "1" and slider("AU15") == "1" and slider("AU12") == "0"
            assert page.get_attribute("#download", "download") == "portrait_sadness.png"
            assert page.is_hidden("#error")
            size = page.eval_on_selector("#after", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == [53, 41]

            # A slider moved by hand: the page sends the sliders as the target.
            second = page.get_attribute("#after", "src")
            page.eval_on_selector("#conditions input[data-column='AU26']",
                                  "s => { s.value = 1; s.dispatchEvent(new Event('change')); }")
            page.wait_for_function("(old) => { const a = document.getElementById('after');"
                                   " return a.classList.contains('ready') && a.src !== old; }", arg=second, timeout=30_000)
            assert page.eval_on_selector("#expression", "s => s.value") == ""
            assert page.inner_text("#conditions label:has(input[data-column='AU26']) output") == "1"
            assert page.get_attribute("#download", "download") == "portrait_custom.png"
            assert page.is_hidden("#error")
            from conftest import REPO

            (REPO / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(REPO / "test-artifacts" / "serve_conditional.png"), full_page=True)
            page.close()
        finally:
            browser.close()


# ---- evaluate -----------------------------------------------------------------------------------


def test_evaluate_a_conditional_checkpoint_per_expression(cond, tmp_path: Path, cli_env) -> None:
    run, data = cond
    out = tmp_path / "eval"
    proc = subprocess.run(facecycle_cmd("evaluate", "--checkpoint", str(run), "--data", str(data / "test"),
                                        "--out", str(out), "--expressions", "joy,sadness",
                                        "--metrics", "expression,identity,kid,lpips", "--labels", str(data / "labels.csv")),
                          env=cli_env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert list(summary) == ["joy", "sadness"]
    for name in summary:
        detail = json.loads((out / name / "metrics.json").read_text())
        assert detail["counts"]["inputs"] == 4 and detail["counts"]["outputs"] == 4
        metrics = detail["metrics"]
        assert 0 <= metrics["expression_target_rate"] <= 1 and 0 <= metrics["expression_target_rate_inputs"] <= 1
        assert metrics["lpips_input_output"] > 0
        assert "identity_distance" in metrics and "identity_same_rate" in metrics  # None: cartoons have no dlib face
        assert "kid_x100" in metrics or "show" in detail["unavailable"]["kid"]
        assert (out / name / "report.html").is_file()
    joy = json.loads((out / "joy" / "metrics.json").read_text())
    assert joy["target"] == {"expression": "joy", "classifier_class": "happy", "condition": "AU06=1,AU12=1"}
    assert "kid_x100" in joy["metrics"]  # the labels show joy on at least 2 avatars
    assert "to joy (AU06=1,AU12=1)" in proc.stdout and "sadness/report.html" in (out / "report.html").read_text()

    bad = subprocess.run(facecycle_cmd("evaluate", "--checkpoint", str(run), "--data", str(data / "test"),
                                       "--out", str(out), "--expressions", "contempt"),
                         env=cli_env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "AU14" in bad.stderr
    bad = subprocess.run(facecycle_cmd("evaluate", "--checkpoint", str(run), "--data-a", str(data / "test"),
                                       "--data-b", str(data / "test"), "--out", str(out)),
                         env=cli_env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "pass --data DIR" in bad.stderr


def test_conditional_evaluation_helpers() -> None:
    from facecycle.data.labels import LabelTable
    from facecycle.data.expressions import classifier_expression
    from facecycle.inference.evaluate import labelled_with

    assert classifier_expression("joy") == "happy" and classifier_expression("happiness") == "happy"
    assert classifier_expression("sad") == "sad" and classifier_expression("anger") == "angry"
    assert classifier_expression("contempt") is None and classifier_expression("bored") is None
    table = LabelTable(Path("labels.csv"), "presence", ["AU01", "AU06", "AU12"],
                       paths=[Path("a"), Path("b"), Path("c"), Path("d")],
                       values=np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]], np.float32))
    assert labelled_with(table, torch.tensor([1.0, 1.0, 0.0])) == [Path("a"), Path("d")]
    assert labelled_with(table, torch.zeros(3)) == [Path("c")]


def test_auto_backend_keeps_pytorch_for_conditional_models(cond) -> None:
    """No ONNX Runtime for them under auto (no speed-up measured); PyTorch, with Winograd
    convolutions where a layer is wide enough (this tiny model has none)."""
    from facecycle.inference.backends import with_backend
    from facecycle.inference.loading import load_generator, load_model

    for generator in (load_model(cond[0], device="cpu"), load_generator(cond[0], device="cpu", expression="joy")):
        assert with_backend(generator, "auto") is generator


def test_serve_face_mode_with_a_target(cond_translator) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    skimage_data = pytest.importorskip("skimage.data")
    from fastapi.testclient import TestClient

    from facecycle.serve.app import FacePipeline, ServeOptions, create_app

    portrait = Image.fromarray(skimage_data.astronaut()).resize((256, 256))
    upload = png_bytes(portrait)
    with TestClient(create_app(FacePipeline(cond_translator, None), ServeOptions(max_size=None))) as client:
        info = client.get("/api/info").json()
        assert info["features"]["faces"] is True and info["features"]["expressions"] == cond_translator.expressions
        results = {}
        for expression in ("joy", "sadness"):
            response = client.post("/api/translate", files={"file": ("a.png", upload, "image/png")},
                                   data={"faces": "true", "expression": expression})
            assert response.status_code == 200, response.text
            results[expression] = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
        original = np.asarray(portrait).astype(int)
        changed = np.abs(results["joy"] - original).sum(axis=2) > 30
        assert changed.any() and not changed[:20, :20].any()  # the face changed, the corner did not
        assert np.abs(results["joy"] - results["sadness"]).max() > 0  # the target reaches the face crops
        response = client.post("/api/translate", files={"file": ("a.png", upload, "image/png")}, data={"faces": "true"})
        assert response.status_code == 400 and "pass target=" in response.json()["error"]


def test_cli_translate_with_an_exported_conditional_model(cond, exports, cond_translator, tmp_path: Path,
                                                          cli_env) -> None:
    from facecycle.errors import ConfigError
    from facecycle.inference.evaluate import evaluate_checkpoint

    run, data = cond
    source = data / "test" / "000000.png"
    proc = subprocess.run(facecycle_cmd("translate", "--checkpoint", str(exports["onnx"]), "--input", str(source),
                                        "--output", str(tmp_path / "out"), "--expression", "joy"),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "to AU06=1,AU12=1" in proc.stdout
    written = as_array(Image.open(tmp_path / "out" / "000000.png").convert("RGB"))
    assert np.abs(written - as_array(cond_translator.translate(source, expression="joy"))).max() <= 1
    with pytest.raises(ConfigError, match="evaluate_conditional"):
        evaluate_checkpoint(run, data / "test", data / "test", tmp_path / "eval", ["a2b"], ["lpips"])


def test_categorical_model_through_api_export_and_evaluate(cond, tmp_path: Path, cli_env) -> None:
    """A one-hot expression-class model: classes are its expressions, aliases reach them, the ONNX
    export matches, and evaluate defaults to every class with KID against that class's photos."""
    from facecycle import Translator
    from facecycle.inference.translate import translate_tensor

    data = cond[1]
    run = tmp_path / "categorical"
    proc = subprocess.run(facecycle_cmd("train", "--config", "conditional_avatars", "--data", str(data / "images"),
                                        "--labels", str(data / "labels.csv"), "--run-dir", str(run), "--steps", "1",
                                        *tiny_flags("data.label_kind=categorical", "data.label_columns=expression", blocks=1,
                                                   extra=["--batch-size", "2"])),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    t = Translator.load(run, device="cpu")
    classes = ["angry", "happy", "neutral", "sad", "surprised"]
    assert t.info()["condition"]["kind"] == "categorical" and t.expressions == classes
    assert t.info()["condition"]["expressions"]["sad"] == [0, 0, 0, 1, 0]
    image = photo((36, 36), seed=9)
    assert np.array_equal(as_array(t.translate(image, expression="joy")), as_array(t.translate(image, expression="happy")))

    onnx_path = tmp_path / "categorical.onnx"
    proc = subprocess.run(facecycle_cmd("export", "--checkpoint", str(run), "--output", str(onnx_path)),
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    exported = Translator.load(onnx_path, device="cpu")
    x = torch.rand(3, 3, 30, 34) * 2 - 1
    for name in ("angry", "surprised"):
        ours = translate_tensor(t.generator_for(expression=name), x)
        assert torch.allclose(translate_tensor(exported.generator_for(expression=name), x), ours, atol=1e-4)

    out = tmp_path / "eval"
    proc = subprocess.run(facecycle_cmd("evaluate", "--checkpoint", str(run), "--data", str(data / "test"),
                                        "--out", str(out), "--metrics", "lpips,kid"),
                          env=cli_env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert list(summary) == classes  # default: every class; labels default to the run's data.labels
    for name in classes:
        assert summary[name]["lpips_input_output"] > 0 and "kid_x100" in summary[name]
    counts = {name: json.loads((out / name / "metrics.json").read_text())["counts"]["targets"] for name in classes}
    assert counts == {"angry": 2, "happy": 3, "neutral": 3, "sad": 3, "surprised": 3}  # the labels CSV's photos per class
