"""Automatic Action Unit labels for conditional training (`facecycle prepare annotate`).

Each image gets MediaPipe FaceLandmarker blendshape scores (0..1), grouped into AU-like units
by `facecycle.evaluation.expression.AU_BLENDSHAPES` (e.g. mouthSmile -> AU12, browDown -> AU04,
jawOpen -> AU26, cheekSquint -> AU06; the table is documented there). The CSV is written in
OpenFace's layout so `facecycle train --labels` reads it like FeatureExtraction output:

    image,success,AU01_r,...,AU45_r,AU01_c,...,AU45_c

`AUxx_r` = 5 x score (OpenFace's 0-5 intensity scale), `AUxx_c` = 1 when score >= `threshold`.
Images without a detected face get a row with success = 0 and zeros (skipped and reported by
the label reader, as OpenFace rows are); unreadable files are reported and get no row.
These are proxies: blendshapes are trained for avatar animation, not FACS coding, so they
are less precise than OpenFace's AU detectors (and they do not see cartoon faces reliably).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from facecycle.data.images import list_images, load_image, pil_to_tensor
from facecycle.errors import DataError
from facecycle.evaluation.expression import AU_NAMES, blendshape_aus

DEFAULT_THRESHOLD = 0.5


@dataclass
class AnnotateReport:
    output: Path
    images: int = 0
    faces: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    present: dict[str, int] = field(default_factory=dict)  # unit -> images with AUxx_c = 1

    def summary(self) -> str:
        units = ", ".join(f"{u} {n}" for u, n in self.present.items() if n)
        lines = [f"{self.faces} of {self.images} image(s) annotated -> {self.output}; "
                 f"{len(self.no_face)} without a face, {len(self.unreadable)} unreadable",
                 f"units present: {units or 'none'}"]
        lines += [f"  no face: {p}" for p in self.no_face[:5]]
        lines += [f"  unreadable: {p}: {why}" for p, why in self.unreadable[:5]]
        return "\n".join(lines)


def annotate_folder(input_dir: str | Path, output: str | Path, threshold: float = DEFAULT_THRESHOLD,
                    progress: Optional[Callable[[int, int], None]] = None) -> AnnotateReport:
    """Write the labels CSV for every image below `input_dir` (paths relative to it)."""
    if not 0.0 < threshold < 1.0:
        raise DataError(f"threshold must be in (0, 1), got {threshold}")
    root = Path(input_dir)
    files = list_images(root, "input folder")
    if not files:
        raise DataError(f"no image found in {root}")
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = AnnotateReport(out, present={u: 0 for u in AU_NAMES})
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "success", *(f"{u}_r" for u in AU_NAMES), *(f"{u}_c" for u in AU_NAMES)])
        for n, path in enumerate(files):
            rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
            report.images += 1
            try:
                image = load_image(path, 3)
            except DataError as exc:
                report.unreadable.append((rel, str(exc)))
                continue
            scores = blendshape_aus(pil_to_tensor(image).unsqueeze(0))[0]
            if np.isnan(scores).any():
                report.no_face.append(rel)
                writer.writerow([rel, 0, *([0] * (2 * len(AU_NAMES)))])
            else:
                report.faces += 1
                present = [int(s >= threshold) for s in scores]
                for unit, p in zip(AU_NAMES, present):
                    report.present[unit] += p
                writer.writerow([rel, 1, *(f"{5 * s:.3f}" for s in scores), *present])
            if progress:
                progress(n + 1, len(files))
    tmp.replace(out)
    return report
