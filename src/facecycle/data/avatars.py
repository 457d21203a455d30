"""Offline cartoon faces for the demo and for the conditional (Action Unit) mode.

Faces are drawn with `py_avataaars` (an SVG template library) and rasterised with `resvg_py`
(a self-contained Rust SVG renderer), so nothing is downloaded and no system library is
needed. `py_avataaars` imports `cairosvg` at module level; cairo may be absent on CI, so the
import goes through `_backend()`, which lends it a stand-in `cairosvg` for that one import.
This module never imports cairosvg itself.

What an avatar is
-----------------
`AvatarSpec` holds enum *names* (strings) of `py_avataaars`, split into

* identity: skin, top (hair style or headwear), hair colour, hat colour, facial hair and its
  colour, accessories (glasses), clothes, clothes colour and graphic, background colour;
* expression: mouth, eyebrows, eyes.

Strings rather than enum members keep specs picklable, printable, JSON-able and usable
(labels, tables) without importing the optional drawing packages.

Framing
-------
`render_avatar(..., crop="face")` (the default) renders the SVG view box
`FACE_VIEWBOX = (52, 30, 160, 160)`: the head fills the square from the top of the hair to
just below the chin, so at 64-128 px the mouth, eyes and brows span many pixels (at 64 px the
mouth is about 14 px wide). `crop="full"` renders the whole 280x280 avatar (head, shoulders,
clothes) for illustrations. The background is one flat colour (`AvatarSpec.background`).

Expressions
-----------
`EXPRESSIONS` maps a name to the pools its mouth, eyebrows and eyes are sampled from, so two
"happy" faces need not be identical. The pools were chosen by looking at every enum value:

=========  =====================================  ==============================================  =====================
name       mouth                                  eyebrows                                        eyes
=========  =====================================  ==============================================  =====================
neutral    SERIOUS (closed straight line)         DEFAULT, DEFAULT_NATURAL, FLAT_NATURAL,         DEFAULT
                                                  UNI_BROW_NATURAL
happy      SMILE, TWINKLE, DEFAULT                DEFAULT, DEFAULT_NATURAL, RAISED_EXCITED,       DEFAULT, HAPPY
           (open smile, closed smile, small            RAISED_EXCITED_NATURAL
           open smile)
sad        SAD, CONCERNED (closed / open frown)   SAD_CONCERNED, SAD_CONCERNED_NATURAL,           DEFAULT, CRY
                                                  FROWN_NATURAL (all: inner ends raised)
open_smile SMILE (open smile, teeth)              as happy                                        as happy
open_frown CONCERNED (open frown, teeth)          as sad                                          as sad
surprised  SCREAM_OPEN, DISBELIEF                 RAISED_EXCITED, RAISED_EXCITED_NATURAL          SURPRISED
angry      SERIOUS, GRIMACE                       ANGRY, ANGRY_NATURAL                            SQUINT, DEFAULT
=========  =====================================  ==============================================  =====================

`open_smile` and `open_frown` are the demo's pair (`facecycle demo`): the same expressions as
happy and sad, but always the open mouth, a large shape that differs in one property (the
curve), so the edit is unmistakable at 64 px and learnable in minutes on a CPU.

Left out of every pool: mouths EATING (puffed cheeks), TONGUE, VOMIT; eyes DIZZY, EYE_ROLL,
HEARTS, SIDE, WINK, WINK_WACKY, CLOSE (cartoon gags or gaze, not a basic emotion). They still
render and still have a row in the unit tables below.

Action Units
------------
Each mouth, eyebrow and eye type maps to the FACS-like units that are *visible in the drawing*
(presence 0/1), so every avatar carries exact ground truth. `UNITS` lists them in column
order; `labels.csv` names them `AU01_c` ... like OpenFace presence columns.

=====  =============================  ===============================================================
unit   FACS name                      set by
=====  =============================  ===============================================================
AU01   inner brow raiser              brows RAISED_EXCITED(_NATURAL), SAD_CONCERNED(_NATURAL),
                                      FROWN_NATURAL
AU02   outer brow raiser              brows RAISED_EXCITED(_NATURAL), UP_DOWN(_NATURAL) (one brow)
AU04   brow lowerer                   brows ANGRY, ANGRY_NATURAL
AU05   upper lid raiser               eyes SURPRISED, WINK_WACKY (the open eye)
AU06   cheek raiser                   eyes HAPPY (smiling, crescent eyes)
AU07   lid tightener                  eyes SQUINT
AU12   lip corner puller              mouths DEFAULT, SMILE, TWINKLE, TONGUE
AU15   lip corner depressor           mouths SAD, CONCERNED, DISBELIEF
AU20   lip stretcher                  mouth GRIMACE
AU25   lips part                      mouths DEFAULT, CONCERNED, DISBELIEF, GRIMACE, SCREAM_OPEN,
                                      SMILE, TONGUE, VOMIT
AU26   jaw drop                       mouths SCREAM_OPEN, TONGUE, VOMIT
AU43   eyes closed                    eyes CLOSE
AU46   wink                           eyes WINK, WINK_WACKY
=====  =============================  ===============================================================

Everything else maps to no unit: mouths EATING, SERIOUS; brows DEFAULT, DEFAULT_NATURAL,
FLAT_NATURAL, UNI_BROW_NATURAL; eyes DEFAULT, CRY (a tear is not an AU), DIZZY, EYE_ROLL,
HEARTS, SIDE. The sad brows are labelled AU01 only although the EMFACS sadness prototype is
AU1+4: the drawings show the inner ends raised but not drawn together, and keeping AU04 for
lowered brows keeps it unambiguous. Laterality is not modelled (UP_DOWN raises one brow).

Datasets
--------
`build_unpaired_dataset` writes `trainA/ trainB/ testA/ testB/` (two expressions, CycleGAN
layout); `build_conditional_dataset` writes `images/`, `test/` and `labels.csv`. Every image
in a dataset has its own identity: no identity appears twice, so in particular never in both
domains (the translation really is unpaired) nor in both train and test. Each build also
writes `manifest.json` (parameters and the spec of every image) after the last image, and a
repeated call with the same parameters reuses the complete folder instead of rendering again.

Rendering is sequential: about 120 images/s at 64 px and 55 images/s at 128 px on one core,
written PNGs included. resvg's rasterisation (mostly the SVG masks that clip hair and skin) is
~90% of that; the SVG template is compiled once (see `_Backend`). A few hundred demo images
take seconds, so worker processes would not pay for their start-up and would take the other
core from whoever shares the machine.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import re
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from facecycle.errors import DataError, FacecycleError, require

# --------------------------------------------------------------------------------------
# Tables (plain strings: usable without the optional drawing packages)
# --------------------------------------------------------------------------------------

UNITS: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU12", "AU15", "AU20", "AU25", "AU26", "AU43", "AU46",
)
"""Action Units in label-column order."""

UNIT_NAMES: dict[str, str] = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU05": "upper lid raiser",
    "AU06": "cheek raiser",
    "AU07": "lid tightener",
    "AU12": "lip corner puller",
    "AU15": "lip corner depressor",
    "AU20": "lip stretcher",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU43": "eyes closed",
    "AU46": "wink",
}

MOUTH_UNITS: dict[str, tuple[str, ...]] = {
    "DEFAULT": ("AU12", "AU25"),  # small open smile
    "CONCERNED": ("AU15", "AU25"),  # open, corners down
    "DISBELIEF": ("AU15", "AU25"),  # small open, corners down
    "EATING": (),  # closed, puffed cheeks (AU34 not modelled)
    "GRIMACE": ("AU20", "AU25"),  # clenched teeth, lips stretched
    "SAD": ("AU15",),  # closed frown
    "SCREAM_OPEN": ("AU25", "AU26"),  # wide open
    "SERIOUS": (),  # closed straight line
    "SMILE": ("AU12", "AU25"),  # open smile, teeth
    "TONGUE": ("AU12", "AU25", "AU26"),  # open smile, tongue out
    "TWINKLE": ("AU12",),  # closed smile
    "VOMIT": ("AU25", "AU26"),  # wide open
}
"""Units shown by each `py_avataaars.MouthType`."""

EYEBROW_UNITS: dict[str, tuple[str, ...]] = {
    "DEFAULT": (),
    "DEFAULT_NATURAL": (),
    "ANGRY": ("AU04",),
    "ANGRY_NATURAL": ("AU04",),
    "FLAT_NATURAL": (),
    "RAISED_EXCITED": ("AU01", "AU02"),
    "RAISED_EXCITED_NATURAL": ("AU01", "AU02"),
    "SAD_CONCERNED": ("AU01",),
    "SAD_CONCERNED_NATURAL": ("AU01",),
    "UNI_BROW_NATURAL": (),
    "UP_DOWN": ("AU02",),  # one brow raised
    "UP_DOWN_NATURAL": ("AU02",),
    "FROWN_NATURAL": ("AU01",),  # drawn with the inner ends raised, like SAD_CONCERNED
}
"""Units shown by each `py_avataaars.EyebrowType`."""

EYE_UNITS: dict[str, tuple[str, ...]] = {
    "DEFAULT": (),
    "CLOSE": ("AU43",),
    "CRY": (),  # default eyes plus a tear
    "DIZZY": (),  # crosses
    "EYE_ROLL": (),  # gaze only
    "HAPPY": ("AU06",),  # crescent "smiling" eyes
    "HEARTS": (),
    "SIDE": (),  # gaze only
    "SQUINT": ("AU07",),
    "SURPRISED": ("AU05",),
    "WINK": ("AU46",),
    "WINK_WACKY": ("AU05", "AU46"),
}
"""Units shown by each `py_avataaars.EyesType`."""


@dataclass(frozen=True)
class ExpressionPools:
    """The mouth, eyebrow and eye types an expression is sampled from (uniformly)."""

    mouth: tuple[str, ...]
    eyebrows: tuple[str, ...]
    eyes: tuple[str, ...]


EXPRESSIONS: dict[str, ExpressionPools] = {
    "neutral": ExpressionPools(
        mouth=("SERIOUS",),
        eyebrows=("DEFAULT", "DEFAULT_NATURAL", "FLAT_NATURAL", "UNI_BROW_NATURAL"),
        eyes=("DEFAULT",),
    ),
    "happy": ExpressionPools(
        mouth=("SMILE", "TWINKLE", "DEFAULT"),
        eyebrows=("DEFAULT", "DEFAULT_NATURAL", "RAISED_EXCITED", "RAISED_EXCITED_NATURAL"),
        eyes=("DEFAULT", "HAPPY"),
    ),
    "sad": ExpressionPools(
        mouth=("SAD", "CONCERNED"),
        eyebrows=("SAD_CONCERNED", "SAD_CONCERNED_NATURAL", "FROWN_NATURAL"),
        eyes=("DEFAULT", "CRY"),
    ),
    "open_smile": ExpressionPools(
        mouth=("SMILE",),
        eyebrows=("DEFAULT", "DEFAULT_NATURAL", "RAISED_EXCITED", "RAISED_EXCITED_NATURAL"),
        eyes=("DEFAULT", "HAPPY"),
    ),
    "open_frown": ExpressionPools(
        mouth=("CONCERNED",),
        eyebrows=("SAD_CONCERNED", "SAD_CONCERNED_NATURAL", "FROWN_NATURAL"),
        eyes=("DEFAULT", "CRY"),
    ),
    "surprised": ExpressionPools(
        mouth=("SCREAM_OPEN", "DISBELIEF"),
        eyebrows=("RAISED_EXCITED", "RAISED_EXCITED_NATURAL"),
        eyes=("SURPRISED",),
    ),
    "angry": ExpressionPools(
        mouth=("SERIOUS", "GRIMACE"),
        eyebrows=("ANGRY", "ANGRY_NATURAL"),
        eyes=("SQUINT", "DEFAULT"),
    ),
}
"""Named expressions; see the module docstring for why each pool holds what it holds."""

BASIC_EXPRESSIONS = ("neutral", "happy", "sad", "surprised", "angry")
"""The five basic expressions: the conditional dataset's default spread (the open_* pair is the
demo's, a variant of happy and sad)."""

# Identity pools. Left out on purpose: top EYE_PATCH and accessories KURT, SUNGLASSES,
# WAYFARERS, which hide the eyes (an eye AU label would then be invisible in the image).
SKINS = ("BLACK", "TANNED", "YELLOW", "PALE", "LIGHT", "BROWN", "DARK_BROWN")
TOPS = (
    "NO_HAIR", "HAT", "HIJAB", "TURBAN", "WINTER_HAT1", "WINTER_HAT2", "WINTER_HAT3", "WINTER_HAT4",
    "LONG_HAIR_BIG_HAIR", "LONG_HAIR_BOB", "LONG_HAIR_BUN", "LONG_HAIR_CURLY", "LONG_HAIR_CURVY",
    "LONG_HAIR_DREADS", "LONG_HAIR_FRIDA", "LONG_HAIR_FRO", "LONG_HAIR_FRO_BAND", "LONG_HAIR_NOT_TOO_LONG",
    "LONG_HAIR_MIA_WALLACE", "LONG_HAIR_SHAVED_SIDES", "LONG_HAIR_STRAIGHT", "LONG_HAIR_STRAIGHT2",
    "LONG_HAIR_STRAIGHT_STRAND", "SHORT_HAIR_DREADS_01", "SHORT_HAIR_DREADS_02", "SHORT_HAIR_FRIZZLE",
    "SHORT_HAIR_SHAGGY_MULLET", "SHORT_HAIR_SHORT_CURLY", "SHORT_HAIR_SHORT_FLAT", "SHORT_HAIR_SHORT_ROUND",
    "SHORT_HAIR_SHORT_WAVED", "SHORT_HAIR_SIDES", "SHORT_HAIR_THE_CAESAR", "SHORT_HAIR_THE_CAESAR_SIDE_PART",
)
HAIR_COLORS = (
    "BLACK", "AUBURN", "BLONDE", "BLONDE_GOLDEN", "BROWN", "BROWN_DARK", "PASTEL_PINK", "PLATINUM", "RED",
    "SILVER_GRAY",
)
COLORS = (
    "BLACK", "BLUE_01", "BLUE_02", "BLUE_03", "GRAY_01", "GRAY_02", "HEATHER", "PASTEL_BLUE", "PASTEL_GREEN",
    "PASTEL_ORANGE", "PASTEL_RED", "PASTEL_YELLOW", "PINK", "RED", "WHITE",
)
# "DEFAULT" means none for facial hair and accessories; most faces get none, as in life.
FACIAL_HAIR = ("BEARD_MEDIUM", "BEARD_LIGHT", "BEARD_MAJESTIC", "MOUSTACHE_FANCY", "MOUSTACHE_MAGNUM")
ACCESSORIES = ("PRESCRIPTION_01", "PRESCRIPTION_02", "ROUND")
P_FACIAL_HAIR = 0.3
P_ACCESSORIES = 0.3
CLOTHES = (
    "BLAZER_SHIRT", "BLAZER_SWEATER", "COLLAR_SWEATER", "GRAPHIC_SHIRT", "HOODIE", "OVERALL", "SHIRT_CREW_NECK",
    "SHIRT_SCOOP_NECK", "SHIRT_V_NECK",
)
CLOTHES_GRAPHICS = (
    "BAT", "CUMBIA", "DEER", "DIAMOND", "HOLA", "PIZZA", "RESIST", "SELENA", "BEAR", "SKULL_OUTLINE", "SKULL",
)
BACKGROUND = "#E6E6E6"
"""Default flat background: a light grey that no skin, hair or clothes colour equals."""

FACE_VIEWBOX = (52, 30, 160, 160)
"""(x, y, width, height) in the avatar's SVG coordinates: top of the hair to below the chin."""
FULL_VIEWBOX = (-8, 0, 280, 280)
"""The whole avatar (head and shoulders), square and centred on the head."""

_SIZE_RANGE = (8, 4096)


# --------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AvatarSpec:
    """One avatar: identity attributes plus expression attributes (py_avataaars enum names).

    Identity: `skin` (SkinColor), `top` (TopType), `hair_color` (HairColor), `hat_color`
    (Color; only shown by hats), `facial_hair` (FacialHairType, "DEFAULT" = none),
    `facial_hair_color` (HairColor), `accessories` (AccessoriesType, "DEFAULT" = none),
    `clothes` (ClotheType), `clothes_color` (Color), `clothes_graphic` (ClotheGraphicType;
    only shown by GRAPHIC_SHIRT), `background` ("#RRGGBB").
    Expression: `mouth` (MouthType), `eyebrows` (EyebrowType), `eyes` (EyesType).
    """

    skin: str = "LIGHT"
    top: str = "SHORT_HAIR_SHORT_FLAT"
    hair_color: str = "BROWN"
    hat_color: str = "BLUE_01"
    facial_hair: str = "DEFAULT"
    facial_hair_color: str = "BROWN"
    accessories: str = "DEFAULT"
    clothes: str = "SHIRT_CREW_NECK"
    clothes_color: str = "HEATHER"
    clothes_graphic: str = "BAT"
    background: str = BACKGROUND
    mouth: str = "SERIOUS"
    eyebrows: str = "DEFAULT"
    eyes: str = "DEFAULT"

    def identity(self) -> tuple[str, ...]:
        """The identity attributes only: two specs with equal identity are the same person."""
        return tuple(getattr(self, f) for f in IDENTITY_FIELDS)

    def with_expression(self, mouth: str, eyebrows: str, eyes: str) -> AvatarSpec:
        """The same person with another mouth, eyebrows and eyes."""
        return dataclasses.replace(self, mouth=mouth, eyebrows=eyebrows, eyes=eyes)

    def units(self) -> dict[str, int]:
        """Action Unit presence (0/1) for every unit in `UNITS`, from the tables above."""
        return action_units(self.mouth, self.eyebrows, self.eyes)

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


EXPRESSION_FIELDS = ("mouth", "eyebrows", "eyes")
IDENTITY_FIELDS = tuple(f.name for f in dataclasses.fields(AvatarSpec) if f.name not in EXPRESSION_FIELDS)


def action_units(mouth: str, eyebrows: str, eyes: str) -> dict[str, int]:
    """Unit presence `{"AU01": 0|1, ...}` (keys in `UNITS` order) for the given types.

    Raises FacecycleError naming the valid choices for an unknown type name.
    """
    present: set[str] = set()
    lookups = (("mouth", MOUTH_UNITS, mouth), ("eyebrows", EYEBROW_UNITS, eyebrows), ("eyes", EYE_UNITS, eyes))
    for kind, table, value in lookups:
        if value not in table:
            raise FacecycleError(f"unknown {kind} type {value!r}; choose from {', '.join(table)}")
        present.update(table[value])
    return {unit: int(unit in present) for unit in UNITS}


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pick(rng: np.random.Generator, pool: Sequence[str]) -> str:
    # Index draw rather than rng.choice(pool): returns a plain str, not a numpy scalar.
    return pool[int(rng.integers(len(pool)))]


def random_identity(rng: np.random.Generator | int, background: str = BACKGROUND) -> AvatarSpec:
    """A random person with a neutral expression (SERIOUS mouth, DEFAULT brows and eyes).

    `rng` is a numpy Generator (advanced in place) or a seed. Facial hair takes the hair
    colour, and facial hair / glasses appear on 30% of faces each.
    """
    rng = _as_rng(rng)
    hair_color = _pick(rng, HAIR_COLORS)
    return AvatarSpec(
        skin=_pick(rng, SKINS),
        top=_pick(rng, TOPS),
        hair_color=hair_color,
        hat_color=_pick(rng, COLORS),
        facial_hair=_pick(rng, FACIAL_HAIR) if rng.random() < P_FACIAL_HAIR else "DEFAULT",
        facial_hair_color=hair_color,
        accessories=_pick(rng, ACCESSORIES) if rng.random() < P_ACCESSORIES else "DEFAULT",
        clothes=_pick(rng, CLOTHES),
        clothes_color=_pick(rng, COLORS),
        clothes_graphic=_pick(rng, CLOTHES_GRAPHICS),
        background=background,
    )


def _expression_pools(name: str) -> ExpressionPools:
    try:
        return EXPRESSIONS[name]
    except KeyError:
        raise FacecycleError(f"unknown expression {name!r}; choose from {', '.join(EXPRESSIONS)}") from None


def sample_expression(name: str, rng: np.random.Generator | int) -> tuple[str, str, str]:
    """`(mouth, eyebrows, eyes)` drawn uniformly from the pools of expression `name`."""
    pools = _expression_pools(name)
    rng = _as_rng(rng)
    return _pick(rng, pools.mouth), _pick(rng, pools.eyebrows), _pick(rng, pools.eyes)


def random_avatar(rng: np.random.Generator | int, expression: str, background: str = BACKGROUND) -> AvatarSpec:
    """A random person showing a random variant of `expression`."""
    rng = _as_rng(rng)
    return random_identity(rng, background).with_expression(*sample_expression(expression, rng))


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

# AvatarSpec field -> (py_avataaars constructor argument, enum class name)
_ENUM_ARGS: dict[str, tuple[str, str]] = {
    "skin": ("skin_color", "SkinColor"),
    "top": ("top_type", "TopType"),
    "hair_color": ("hair_color", "HairColor"),
    "hat_color": ("hat_color", "Color"),
    "facial_hair": ("facial_hair_type", "FacialHairType"),
    "facial_hair_color": ("facial_hair_color", "HairColor"),
    "accessories": ("accessories_type", "AccessoriesType"),
    "clothes": ("clothe_type", "ClotheType"),
    "clothes_color": ("clothe_color", "Color"),
    "clothes_graphic": ("clothe_graphic_type", "ClotheGraphicType"),
    "mouth": ("mouth_type", "MouthType"),
    "eyebrows": ("eyebrow_type", "EyebrowType"),
    "eyes": ("eye_type", "EyesType"),
}
_HEX_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
_ROOT_VIEWBOX = re.compile(r'(<svg\b[^>]*?)\bviewBox="[^"]*"')
_FEATURE = "avatar rendering (facecycle.data.avatars)"


class _Backend:
    """py_avataaars + resvg_py, with the SVG template compiled once.

    `PyAvataaar.render_svg()` builds a new jinja Environment and recompiles every template on
    each call (~20 ms, 20x the rasterisation at 128 px). `svg()` renders the same `main.svg`
    template with the same context from one cached Environment (~0.3 ms). It leans on the
    library's private helpers, so when they are missing (another version) it falls back to
    the public `render_svg()`; `tests/data/test_avatars.py` checks both give identical pixels.
    """

    def __init__(self) -> None:
        self.pa = _import_py_avataaars()
        self.resvg = require("resvg_py", "demo", _FEATURE)
        self._check_tables()
        cls = self.pa.PyAvataaar
        helpers = [getattr(cls, f"_PyAvataaar__{n}", None) for n in ("unique_id", "template_path", "template_name")]
        self._template = None
        if all(callable(h) for h in helpers) and hasattr(self.pa, "MinifyExtension"):
            from jinja2 import Environment, PackageLoader  # a py_avataaars dependency

            env = Environment(
                loader=PackageLoader("py_avataaars", "templates"),
                trim_blocks=True,
                lstrip_blocks=True,
                autoescape=True,
                keep_trailing_newline=False,
                extensions=[self.pa.MinifyExtension],
            )
            self._template = env.get_template("main.svg")
            self._helpers = dict(zip(("unique_id", "template_path", "template_name"), helpers))

    def _check_tables(self) -> None:
        """Fail early if this py_avataaars version's enums differ from the unit tables."""
        for table, enum_name in ((MOUTH_UNITS, "MouthType"), (EYEBROW_UNITS, "EyebrowType"), (EYE_UNITS, "EyesType")):
            names = {m.name for m in getattr(self.pa, enum_name)}
            if names != set(table):
                raise FacecycleError(
                    f"py_avataaars {enum_name} has {sorted(names ^ set(table))} that facecycle's Action Unit "
                    "table does not match; install py-avataaars 1.1.x or update facecycle.data.avatars"
                )

    def enum(self, field: str, name: str) -> Any:
        enum_cls = getattr(self.pa, _ENUM_ARGS[field][1])
        try:
            return enum_cls[name]
        except KeyError:
            choices = ", ".join(m.name for m in enum_cls)
            raise FacecycleError(
                f"AvatarSpec.{field}={name!r} is not a {enum_cls.__name__}; choose from {choices}"
            ) from None

    def kwargs(self, spec: AvatarSpec) -> dict[str, Any]:
        kw = {arg: self.enum(field, getattr(spec, field)) for field, (arg, _) in _ENUM_ARGS.items()}
        kw.update(
            style=self.pa.AvatarStyle.TRANSPARENT,  # the flat background is painted by resvg
            background_color=self.pa.Color.WHITE,  # unused with TRANSPARENT
            nose_type=self.pa.NoseType.DEFAULT,
        )
        return kw

    def svg(self, spec: AvatarSpec, fast: bool = True) -> str:
        kw = self.kwargs(spec)
        if fast and self._template is not None:
            return self._template.render(**self._helpers, **kw)
        return self.pa.PyAvataaar(**kw).render_svg()


def _import_py_avataaars() -> types.ModuleType:
    """Import py_avataaars without importing cairosvg (whose cairo library may be missing).

    py_avataaars does `from cairosvg import svg2png` at import time but only calls it in
    `render_png*`, which facecycle never uses. A stand-in module answers that one import; it
    is removed from `sys.modules` straight after, so a later `import cairosvg` elsewhere gets
    the real package, and the stand-in's `svg2png` imports the real one only if called.
    """
    if "py_avataaars" in sys.modules or "cairosvg" in sys.modules:
        return require("py_avataaars", "demo", _FEATURE)

    def svg2png(*args: Any, **kwargs: Any) -> Any:
        import cairosvg  # only reached through py_avataaars.render_png*, never by facecycle

        return cairosvg.svg2png(*args, **kwargs)

    stand_in = types.ModuleType("cairosvg")
    stand_in.svg2png = svg2png  # type: ignore[attr-defined]
    sys.modules["cairosvg"] = stand_in
    try:
        return require("py_avataaars", "demo", _FEATURE)
    finally:
        if sys.modules.get("cairosvg") is stand_in:
            del sys.modules["cairosvg"]


@functools.lru_cache(maxsize=1)
def _backend() -> _Backend:
    return _Backend()


def avatar_svg(spec: AvatarSpec, crop: str = "face") -> str:
    """The SVG text of `spec`, framed by `crop` ("face" or "full"; see `render_avatar`)."""
    viewboxes = {"face": FACE_VIEWBOX, "full": FULL_VIEWBOX}
    if crop not in viewboxes:
        raise FacecycleError(f"unknown crop {crop!r}; choose from {', '.join(viewboxes)}")
    svg = _backend().svg(spec)
    box = " ".join(str(v) for v in viewboxes[crop])
    svg, count = _ROOT_VIEWBOX.subn(rf'\1viewBox="{box}"', svg, count=1)
    if count != 1:  # a template change would silently move the face out of frame
        raise FacecycleError("py_avataaars produced an SVG without a root viewBox; install py-avataaars 1.1.x")
    return svg


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or not _SIZE_RANGE[0] <= size <= _SIZE_RANGE[1]:
        raise FacecycleError(f"avatar size must be an integer in [{_SIZE_RANGE[0]}, {_SIZE_RANGE[1]}], got {size!r}")


def _check_background(color: str) -> None:
    if not isinstance(color, str) or not _HEX_COLOR.fullmatch(color):
        raise FacecycleError(f"avatar background must be a colour '#RRGGBB', got {color!r}")


def render_avatar(spec: AvatarSpec, size: int, crop: str = "face") -> Image.Image:
    """Rasterise `spec` to a `size` x `size` RGB PIL image on its flat background colour.

    crop="face" (default) frames the head from the top of the hair to just below the chin
    (`FACE_VIEWBOX`), so the face fills the frame even at 64 px; crop="full" shows the whole
    avatar with shoulders (`FULL_VIEWBOX`). Drawing is resolution independent: the SVG is
    rasterised directly at `size` (anti-aliased), never resampled.
    """
    _check_size(size)
    _check_background(spec.background)
    svg = avatar_svg(spec, crop)
    png = _backend().resvg.svg_to_bytes(svg_string=svg, background=spec.background, width=int(size), height=int(size))
    with Image.open(io.BytesIO(bytes(png))) as img:
        # The background is opaque, so dropping alpha loses nothing.
        return img.convert("RGB")


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------

_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


def _unique_identities(rng: np.random.Generator, count: int, background: str) -> list[AvatarSpec]:
    """`count` random identities, all different (rejection; the space has ~10^8 people)."""
    seen: set[tuple[str, ...]] = set()
    out: list[AvatarSpec] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 20 * count + 100:  # unreachable with the pools above; guards edits to them
            raise FacecycleError(f"could not draw {count} distinct avatar identities")
        spec = random_identity(rng, background)
        if spec.identity() not in seen:
            seen.add(spec.identity())
            out.append(spec)
    return out


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise FacecycleError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _prepare_out_dir(
    out_dir: Path, params: dict[str, Any], folders: Sequence[str], files: Sequence[str], overwrite: bool
) -> bool:
    """True when `out_dir` already holds a complete build with these `params` (reuse it).

    Otherwise makes sure no stale image from another build can mix in: existing images in
    our folders are an error unless `overwrite`, which deletes just those images and files.
    """
    manifest_path = out_dir / _MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
        if manifest.get("params") == params and all((out_dir / rel).is_file() for rel in manifest.get("images", {})):
            return True
    stale = [p for folder in folders if (out_dir / folder).is_dir() for p in (out_dir / folder).glob("*.png")]
    stale += [out_dir / f for f in (*files, _MANIFEST) if (out_dir / f).is_file()]
    if stale and not overwrite:
        raise DataError(
            f"{out_dir} already holds avatar data from another build ({len(stale)} files, e.g. {stale[0]}); "
            "pass overwrite=True to replace it or choose an empty folder"
        )
    for path in stale:
        path.unlink()
    for folder in folders:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    return False


def _render_all(
    out_dir: Path, items: Sequence[tuple[str, AvatarSpec]], size: int, progress: Callable[[int, int], None] | None
) -> float:
    """Render and save every `(relative path, spec)`; returns the seconds taken."""
    start = time.perf_counter()
    for i, (rel, spec) in enumerate(items):
        # compress_level=1: ~3x faster to write than the default, files ~20% larger.
        render_avatar(spec, size).save(out_dir / rel, format="PNG", compress_level=1)
        if progress is not None:
            progress(i + 1, len(items))
    return time.perf_counter() - start


def _write_manifest(out_dir: Path, kind: str, params: dict[str, Any], items: Sequence[tuple[str, AvatarSpec]]) -> None:
    # Written last (temp file + rename) so a half-finished build is never taken as complete.
    images = {rel: spec.to_dict() for rel, spec in items}
    manifest = {"kind": kind, "version": _MANIFEST_VERSION, "params": params, "images": images}
    tmp = out_dir / (_MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out_dir / _MANIFEST)


def load_manifest(out_dir: str | Path) -> dict[str, AvatarSpec]:
    """`{relative image path: AvatarSpec}` of a folder built by this module."""
    path = Path(out_dir) / _MANIFEST
    if not path.is_file():
        raise DataError(f"{path} not found: build the folder with build_unpaired_dataset/build_conditional_dataset")
    return {rel: AvatarSpec(**fields) for rel, fields in json.loads(path.read_text())["images"].items()}


def build_unpaired_dataset(
    out_dir: str | Path,
    n_a: int,
    n_b: int,
    size: int,
    seed: int,
    domain_a: str = "sad",
    domain_b: str = "happy",
    n_test: int = 10,
    background: str = BACKGROUND,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write an unpaired two-expression dataset: `trainA/ trainB/ testA/ testB/` of PNGs.

    `trainA` holds `n_a` faces showing `domain_a`, `trainB` `n_b` faces showing `domain_b`,
    `testA`/`testB` `n_test` each. Every image is a different person (identities are drawn
    without repetition), so no identity is in both domains or in both train and test. Images
    are `size` x `size` RGB PNG (`render_avatar`, face crop), named `000000.png`...
    Deterministic for a `seed`. A complete folder from an identical call is reused; other
    existing avatar images are an error unless `overwrite=True`. `progress(done, total)` is
    called after each image.

    Returns `{"out_dir", "trainA", "trainB", "testA", "testB"` (Paths), `"counts"`
    ({folder: images}), `"domain_a"`, `"domain_b"`, `"size"`, `"seed"`, `"reused"` (bool),
    `"seconds"` and `"images_per_s"` (rendering time; 0 when reused)`}`.
    """
    _check_count("n_a", n_a, 1)
    _check_count("n_b", n_b, 1)
    _check_count("n_test", n_test, 0)
    _expression_pools(domain_a)
    _expression_pools(domain_b)
    if domain_a == domain_b:
        raise FacecycleError(f"domain_a and domain_b must be different expressions, both are {domain_a!r}")
    out = Path(out_dir)
    counts = {"trainA": int(n_a), "trainB": int(n_b), "testA": int(n_test), "testB": int(n_test)}
    params = {"n_a": int(n_a), "n_b": int(n_b), "n_test": int(n_test), "size": int(size), "seed": int(seed),
              "domain_a": domain_a, "domain_b": domain_b, "background": background}
    result: dict[str, Any] = {"out_dir": out, **{f: out / f for f in counts}, "counts": counts, "domain_a": domain_a,
                              "domain_b": domain_b, "size": int(size), "seed": int(seed)}
    _check_size(size)
    _check_background(background)
    _backend()  # a missing extra fails here, before any folder is created
    if _prepare_out_dir(out, params, tuple(counts), (), overwrite):
        return {**result, "reused": True, "seconds": 0.0, "images_per_s": 0.0}

    rng = np.random.default_rng(seed)
    people = iter(_unique_identities(rng, sum(counts.values()), background))
    items: list[tuple[str, AvatarSpec]] = []
    for folder, count in counts.items():
        expression = domain_a if folder.endswith("A") else domain_b
        for i in range(count):
            items.append((f"{folder}/{i:06d}.png", next(people).with_expression(*sample_expression(expression, rng))))
    identities_a = {s.identity() for rel, s in items if rel.split("/")[0].endswith("A")}
    identities_b = {s.identity() for rel, s in items if rel.split("/")[0].endswith("B")}
    assert not identities_a & identities_b, "an identity was drawn for both domains"

    seconds = _render_all(out, items, size, progress)
    _write_manifest(out, "unpaired", params, items)
    return {**result, "reused": False, "seconds": seconds, "images_per_s": len(items) / max(seconds, 1e-9)}


def build_conditional_dataset(
    out_dir: str | Path,
    n: int,
    size: int,
    seed: int,
    n_test: int = 20,
    expressions: Sequence[str] = BASIC_EXPRESSIONS,
    background: str = BACKGROUND,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a labelled dataset for conditional translation: `images/`, `test/`, `labels.csv`.

    `n` training and `n_test` test faces, each a different person, with expressions spread
    evenly over `expressions` (counts differ by at most one, order shuffled). `labels.csv`
    has one row per image, train rows first, with columns `image` (path relative to
    `out_dir`, e.g. `images/000000.png`), one presence column per unit in `UNITS`
    (`AU01_c`, ... values 0/1, from `MOUTH_UNITS`/`EYEBROW_UNITS`/`EYE_UNITS`) and
    `expression` (the name). Same size, format, determinism, reuse and `overwrite`
    behaviour as `build_unpaired_dataset`.

    Returns `{"out_dir", "images", "test", "labels"` (Paths), `"counts"` ({"images": n,
    "test": n_test}), `"units"` (column names), `"expressions"`, `"size"`, `"seed"`,
    `"reused"`, `"seconds"`, `"images_per_s"}`.
    """
    _check_count("n", n, 1)
    _check_count("n_test", n_test, 0)
    expressions = tuple(expressions)
    if not expressions:
        raise FacecycleError("expressions must name at least one expression")
    for name in expressions:
        _expression_pools(name)
    out = Path(out_dir)
    counts = {"images": int(n), "test": int(n_test)}
    columns = [f"{u}_c" for u in UNITS]
    params = {"n": int(n), "n_test": int(n_test), "size": int(size), "seed": int(seed),
              "expressions": list(expressions), "background": background}
    result: dict[str, Any] = {"out_dir": out, "images": out / "images", "test": out / "test",
                              "labels": out / "labels.csv",
                              "counts": counts, "units": columns, "expressions": expressions, "size": int(size),
                              "seed": int(seed)}
    _check_size(size)
    _check_background(background)
    _backend()  # a missing extra fails here, before any folder is created
    if _prepare_out_dir(out, params, tuple(counts), ("labels.csv",), overwrite):
        return {**result, "reused": True, "seconds": 0.0, "images_per_s": 0.0}

    rng = np.random.default_rng(seed)
    people = iter(_unique_identities(rng, n + n_test, background))
    items: list[tuple[str, AvatarSpec]] = []
    names: list[str] = []
    for folder, count in counts.items():
        # Balanced rather than i.i.d. so a small set still has every expression.
        order = rng.permutation(np.arange(count) % len(expressions))
        for i, k in enumerate(order):
            names.append(expressions[int(k)])
            items.append((f"{folder}/{i:06d}.png", next(people).with_expression(*sample_expression(names[-1], rng))))

    seconds = _render_all(out, items, size, progress)
    tmp = out / "labels.csv.tmp"
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", *columns, "expression"])
        for (rel, spec), name in zip(items, names):
            writer.writerow([rel, *spec.units().values(), name])
    tmp.replace(out / "labels.csv")
    _write_manifest(out, "conditional", params, items)
    return {**result, "reused": False, "seconds": seconds, "images_per_s": len(items) / max(seconds, 1e-9)}


def expression_units(name: str) -> Mapping[str, frozenset[int]]:
    """For each unit, the values it takes over all variants of expression `name`.

    `{"AU12": frozenset({1}), "AU01": frozenset({0, 1}), ...}`: a singleton means the unit is
    fixed by the expression (e.g. every happy face has AU12=1, every sad face AU15=1).
    """
    pools = _expression_pools(name)
    seen: dict[str, set[int]] = {u: set() for u in UNITS}
    for mouth in pools.mouth:
        for brows in pools.eyebrows:
            for eyes in pools.eyes:
                for unit, value in action_units(mouth, brows, eyes).items():
                    seen[unit].add(value)
    return {u: frozenset(v) for u, v in seen.items()}
