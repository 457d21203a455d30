"""What the inference modules share about sizes and exported files: the smallest image side, the
export formats with their suffixes and metadata keys, and the TorchScript warning filter.

A leaf of `facecycle.inference`: the writer (`export`), the readers (`exported`, `loading`) and the
translators (`translate`, `translator`) import it, and it imports none of them.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch

MIN_SIDE = 8  # smaller images fail inside the generators' own reflection pads

EXPORT_FORMAT = "facecycle-generator/1"
METADATA_FILE = "facecycle.json"  # TorchScript extra file holding the metadata
INPUT_NAME, OUTPUT_NAME = "image", "translated"
CONDITION_NAME = "condition"  # second input of conditional exports: (N, K) float32 in [0, 1]

# format -> accepted suffixes (first one is the default)
FORMATS: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",),
    "torchscript": (".ts", ".torchscript"),
    "safetensors": (".safetensors",),
}
SUFFIX_TO_FORMAT = {suffix: fmt for fmt, suffixes in FORMATS.items() for suffix in suffixes}


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence torch's "torch.jit is deprecated" notices and tracer notes: TorchScript is still the
    format C++ and mobile runtimes load, and the notices are nothing a facecycle user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        # The generators' reflection pads check sizes in Python; the checks hold for any input
        # PadToMultiple produces, so the tracer's "might be incorrect" warnings are noise here.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield
