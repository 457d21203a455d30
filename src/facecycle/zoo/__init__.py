"""Built-in models shipped with the package: usable by name, no training needed.

    facecycle translate --model smile --input photo.jpg --output out/ --faces
    Translator.load("smile")          # both directions: a2b = neutral -> happy, b2a = back

Each model is one safetensors export per direction (data only, loaded without pickle or code)
and a model card (`MODEL_CARD.md`: data, recipe, steps, measured quality) in its folder.
A name is only looked up here when no file or folder of that name exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    files: dict[str, str]  # direction -> file name inside the model's folder

    def path(self, direction: str) -> Path:
        return ROOT / self.name / self.files[direction]

    @property
    def card(self) -> Path:
        return ROOT / self.name / "MODEL_CARD.md"

    def available(self) -> bool:
        return all(self.path(d).is_file() for d in self.files)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smile": BuiltinModel("smile", "neutral <-> happy on real face photos (face recipe, attention-guided)",
                          {"a2b": "neutral2happy.safetensors", "b2a": "happy2neutral.safetensors"}),
}
DEFAULT_MODEL = "smile"


def builtin(name: str | Path) -> BuiltinModel | None:
    """The built-in model called `name`, unless a file or folder of that name exists."""
    key = str(name)
    if key not in BUILTIN_MODELS or Path(key).exists():
        return None
    return BUILTIN_MODELS[key]
