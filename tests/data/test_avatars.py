"""Offline cartoon-face data: rendering, unpaired folders, Action Unit labels."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("py_avataaars", exc_type=ImportError)
pytest.importorskip("resvg_py")

from facecycle.data import avatars as A  # noqa: E402
from facecycle.errors import DataError, FacecycleError, MissingExtraError  # noqa: E402


def _pixels(spec: A.AvatarSpec, size: int = 96) -> np.ndarray:
    return np.asarray(A.render_avatar(spec, size), dtype=np.int32)


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


# ---------------------------------------------------------------- tables


def test_unit_tables_cover_exactly_the_library_enums() -> None:
    pa = A._backend().pa
    assert set(A.MOUTH_UNITS) == {m.name for m in pa.MouthType}
    assert set(A.EYEBROW_UNITS) == {m.name for m in pa.EyebrowType}
    assert set(A.EYE_UNITS) == {m.name for m in pa.EyesType}
    used = {u for table in (A.MOUTH_UNITS, A.EYEBROW_UNITS, A.EYE_UNITS) for units in table.values() for u in units}
    assert used == set(A.UNITS) == set(A.UNIT_NAMES)


@pytest.mark.parametrize(
    ("mouth", "brows", "eyes", "present"),
    [
        ("SMILE", "RAISED_EXCITED", "HAPPY", {"AU01", "AU02", "AU06", "AU12", "AU25"}),
        ("SAD", "SAD_CONCERNED", "DEFAULT", {"AU01", "AU15"}),
        ("GRIMACE", "ANGRY_NATURAL", "SQUINT", {"AU04", "AU07", "AU20", "AU25"}),
        ("SCREAM_OPEN", "RAISED_EXCITED_NATURAL", "SURPRISED", {"AU01", "AU02", "AU05", "AU25", "AU26"}),
        ("SERIOUS", "DEFAULT", "CLOSE", {"AU43"}),
        ("TWINKLE", "UP_DOWN", "WINK", {"AU02", "AU12", "AU46"}),
        ("SERIOUS", "FLAT_NATURAL", "DEFAULT", set()),
    ],
)
def test_action_units_for_specific_types(mouth: str, brows: str, eyes: str, present: set[str]) -> None:
    units = A.AvatarSpec().with_expression(mouth, brows, eyes).units()
    assert list(units) == list(A.UNITS)
    assert {u for u, v in units.items() if v == 1} == present
    assert set(units.values()) <= {0, 1}


def test_expressions_fix_their_defining_units() -> None:
    fixed = {
        "neutral": {u: 0 for u in A.UNITS},
        "happy": {"AU12": 1, "AU15": 0, "AU04": 0},
        "sad": {"AU15": 1, "AU01": 1, "AU12": 0, "AU04": 0},
        "open_smile": {"AU12": 1, "AU25": 1, "AU15": 0, "AU04": 0},
        "open_frown": {"AU15": 1, "AU25": 1, "AU01": 1, "AU12": 0, "AU04": 0},
        "surprised": {"AU01": 1, "AU02": 1, "AU05": 1, "AU25": 1, "AU12": 0},
        "angry": {"AU04": 1, "AU12": 0, "AU01": 0},
    }
    assert set(fixed) == set(A.EXPRESSIONS)
    for name, units in fixed.items():
        values = A.expression_units(name)
        for unit, value in units.items():
            assert values[unit] == {value}, (name, unit, values[unit])
    # happy and sad differ in at least one unit for every pair of variants
    assert A.expression_units("happy")["AU12"].isdisjoint(A.expression_units("sad")["AU12"])


def test_unknown_names_fail_with_choices() -> None:
    with pytest.raises(FacecycleError, match="choose from neutral, happy, sad"):
        A.sample_expression("joyful", 0)
    with pytest.raises(FacecycleError, match="unknown mouth type 'GRIN'"):
        A.action_units("GRIN", "DEFAULT", "DEFAULT")
    with pytest.raises(FacecycleError, match="MouthType; choose from DEFAULT"):
        A.render_avatar(A.AvatarSpec(mouth="GRIN"), 32)
    with pytest.raises(FacecycleError, match="size"):
        A.render_avatar(A.AvatarSpec(), 4)
    with pytest.raises(FacecycleError, match="RRGGBB"):
        A.render_avatar(A.AvatarSpec(background="grey"), 32)


def test_random_identity_is_seeded_and_avoids_eye_occluders() -> None:
    rng = np.random.default_rng(3)
    people = [A.random_identity(rng) for _ in range(300)]
    assert A.random_identity(np.random.default_rng(3)) == people[0] == A.random_identity(3)
    assert len({p.identity() for p in people}) > 290
    assert not {p.top for p in people} & {"EYE_PATCH"}
    assert not {p.accessories for p in people} & {"SUNGLASSES", "WAYFARERS", "KURT"}
    assert {(p.mouth, p.eyebrows, p.eyes) for p in people} == {("SERIOUS", "DEFAULT", "DEFAULT")}


# ---------------------------------------------------------------- rendering


def test_render_avatar_is_rgb_of_requested_size_on_flat_background() -> None:
    spec = A.random_avatar(0, "happy", background="#203040")
    for size, crop in ((64, "face"), (37, "full")):
        image = A.render_avatar(spec, size, crop=crop)
        assert image.mode == "RGB" and image.size == (size, size)
    corner = np.asarray(A.render_avatar(spec, 64))[:3, :3]
    assert (corner == (0x20, 0x30, 0x40)).all()


def test_fast_svg_path_draws_the_same_pixels_as_the_library() -> None:
    backend = A._backend()
    for expression in ("happy", "surprised"):
        spec = A.random_avatar(np.random.default_rng(11), expression)
        images = []
        for fast in (True, False):
            svg = backend.svg(spec, fast=fast)
            png = backend.resvg.svg_to_bytes(svg_string=svg, background=spec.background, width=64, height=64)
            images.append(np.asarray(Image.open(io.BytesIO(bytes(png))).convert("RGB")))
        np.testing.assert_array_equal(images[0], images[1])


def test_happy_and_sad_differ_in_the_mouth_region() -> None:
    size = 96
    mouth_box = (slice(int(0.65 * size), int(0.92 * size)), slice(int(0.30 * size), int(0.70 * size)))
    rng = np.random.default_rng(5)
    for _ in range(4):
        person = A.random_identity(rng)
        # Only the mouth changes: all of the difference must sit in the lower middle.
        smile = _pixels(person.with_expression("SMILE", "DEFAULT", "DEFAULT"), size)
        frown = _pixels(person.with_expression("SAD", "DEFAULT", "DEFAULT"), size)
        diff = np.abs(smile - frown).sum(-1)
        assert diff.sum() > 0
        assert diff[mouth_box].sum() / diff.sum() > 0.95
        # Full expressions (brows and eyes vary too): the mouth region still changes a lot.
        happy = _pixels(person.with_expression(*A.sample_expression("happy", rng)), size)
        sad = _pixels(person.with_expression(*A.sample_expression("sad", rng)), size)
        full = np.abs(happy - sad).sum(-1)
        assert (full[mouth_box] > 100).mean() > 0.04  # mouths are ~10% of the box
        sides = np.concatenate([full[mouth_box[0], : size // 4], full[mouth_box[0], -size // 4 :]], axis=1)
        assert sides.max() == 0  # ...and the change does not spread sideways
        assert full[: size // 8].mean() < 1  # hair top/background untouched by the expression


def test_brows_and_eyes_are_drawn_above_the_mouth() -> None:
    person = A.random_identity(8)
    size = 96
    base = _pixels(person, size)
    for change in (dict(eyebrows="RAISED_EXCITED"), dict(eyes="SURPRISED")):
        fields = {"mouth": person.mouth, "eyebrows": person.eyebrows, "eyes": person.eyes, **change}
        diff = np.abs(_pixels(person.with_expression(**fields), size) - base).sum(-1)
        rows = np.nonzero(diff.sum(1))[0]
        assert rows.size and rows.max() < 0.65 * size, change


def test_rendering_never_imports_cairosvg(tmp_path: Path) -> None:
    code = (
        "import sys; from facecycle.data import avatars as A; "
        "A.render_avatar(A.AvatarSpec(), 16); assert 'py_avataaars' in sys.modules; "
        "print('cairosvg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "False"


def test_missing_extra_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "resvg_py", None)  # makes `import resvg_py` fail
    A._backend.cache_clear()
    try:
        with pytest.raises(MissingExtraError, match=r"facecycle\[demo\]"):
            A.render_avatar(A.AvatarSpec(), 32)
    finally:
        monkeypatch.undo()
        A._backend.cache_clear()


# ---------------------------------------------------------------- unpaired dataset


def test_unpaired_dataset_layout_and_disjoint_identities(tmp_path: Path) -> None:
    info = A.build_unpaired_dataset(tmp_path / "d", n_a=5, n_b=4, size=40, seed=1, n_test=2)
    assert info["counts"] == {"trainA": 5, "trainB": 4, "testA": 2, "testB": 2} and not info["reused"]
    for folder, count in info["counts"].items():
        files = _pngs(info[folder])
        assert len(files) == count
        for path in files:
            with Image.open(path) as img:
                assert img.format == "PNG" and img.mode == "RGB" and img.size == (40, 40)
    specs = A.load_manifest(tmp_path / "d")
    assert len(specs) == 13
    domain_a = {s.identity() for rel, s in specs.items() if rel.split("/")[0] in ("trainA", "testA")}
    domain_b = {s.identity() for rel, s in specs.items() if rel.split("/")[0] in ("trainB", "testB")}
    assert not domain_a & domain_b
    assert len({s.identity() for s in specs.values()}) == 13  # also train vs test
    for rel, spec in specs.items():
        pools = A.EXPRESSIONS["sad" if rel.split("/")[0].endswith("A") else "happy"]
        assert spec.mouth in pools.mouth and spec.eyebrows in pools.eyebrows and spec.eyes in pools.eyes


def test_unpaired_dataset_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    kw = dict(n_a=3, n_b=3, size=32, n_test=1)
    A.build_unpaired_dataset(tmp_path / "x", seed=7, **kw)
    A.build_unpaired_dataset(tmp_path / "y", seed=7, **kw)
    A.build_unpaired_dataset(tmp_path / "z", seed=8, **kw)
    x, y, z = (sorted(p.relative_to(tmp_path / d) for p in (tmp_path / d).rglob("*.png")) for d in "xyz")
    assert x == y == z
    assert all((tmp_path / "x" / p).read_bytes() == (tmp_path / "y" / p).read_bytes() for p in x)
    assert any((tmp_path / "x" / p).read_bytes() != (tmp_path / "z" / p).read_bytes() for p in x)


def test_unpaired_dataset_reuses_or_refuses_existing_data(tmp_path: Path) -> None:
    out = tmp_path / "d"
    A.build_unpaired_dataset(out, n_a=4, n_b=4, size=24, seed=0, n_test=1)
    again = A.build_unpaired_dataset(out, n_a=4, n_b=4, size=24, seed=0, n_test=1)
    assert again["reused"]
    with pytest.raises(DataError, match="overwrite=True"):
        A.build_unpaired_dataset(out, n_a=2, n_b=2, size=24, seed=0, n_test=1)
    smaller = A.build_unpaired_dataset(out, n_a=2, n_b=2, size=24, seed=0, n_test=1, overwrite=True)
    assert not smaller["reused"]
    assert len(_pngs(out / "trainA")) == 2  # no stale images from the bigger build


def test_unpaired_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FacecycleError, match="different"):
        A.build_unpaired_dataset(tmp_path, 2, 2, 32, 0, domain_a="happy", domain_b="happy")
    with pytest.raises(FacecycleError, match="n_a"):
        A.build_unpaired_dataset(tmp_path, 0, 2, 32, 0)
    with pytest.raises(FacecycleError, match="unknown expression"):
        A.build_unpaired_dataset(tmp_path, 2, 2, 32, 0, domain_b="smug")
    assert not any(tmp_path.iterdir())  # nothing written before validation passes


# ---------------------------------------------------------------- conditional dataset


def test_conditional_dataset_labels_match_the_tables(tmp_path: Path) -> None:
    info = A.build_conditional_dataset(tmp_path / "c", n=10, size=32, seed=2, n_test=5)
    with (tmp_path / "c" / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header == ["image", *(f"{u}_c" for u in A.UNITS), "expression"] == ["image", *info["units"], "expression"]
    assert len(rows) == 15
    assert [r["image"].split("/")[0] for r in rows] == ["images"] * 10 + ["test"] * 5
    specs = A.load_manifest(tmp_path / "c")
    for row in rows:
        path = tmp_path / "c" / row["image"]
        with Image.open(path) as img:
            assert img.size == (32, 32) and img.mode == "RGB"
        spec = specs[row["image"]]
        assert {f"{u}_c": str(v) for u, v in spec.units().items()} == {k: row[k] for k in info["units"]}
        pools = A.EXPRESSIONS[row["expression"]]
        assert spec.mouth in pools.mouth and spec.eyebrows in pools.eyebrows and spec.eyes in pools.eyes
        # the label vector agrees with what the expression name fixes
        for unit, values in A.expression_units(row["expression"]).items():
            assert int(row[f"{unit}_c"]) in values
    assert Counter(r["expression"] for r in rows[:10]) == {name: 2 for name in A.BASIC_EXPRESSIONS}
    assert len({s.identity() for s in specs.values()}) == 15


def test_conditional_dataset_subset_of_expressions(tmp_path: Path) -> None:
    A.build_conditional_dataset(tmp_path, n=4, size=16, seed=0, n_test=0, expressions=("happy", "sad"))
    with (tmp_path / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["expression"] for r in rows) == ["happy", "happy", "sad", "sad"]
    assert {r["AU12_c"] for r in rows if r["expression"] == "happy"} == {"1"}
    assert {r["AU15_c"] for r in rows if r["expression"] == "sad"} == {"1"}
    assert not any((tmp_path / "test").glob("*.png"))
