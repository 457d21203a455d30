"""`facecycle prepare split`: labelled images -> trainA/trainB/testA/testB folders.

Labels come from either
  * a CSV file with a header: the image path (relative to --input) is the first column or
    `path_column`; `column` holds the label; `a` / `b` are the label values of each domain
    (comma-separated for several, e.g. "anger,disgust"), or
  * CelebA's `list_attr_celeba.txt` (`attr` given): line 1 the image count, line 2 the 40
    attribute names, then `000001.jpg  -1  1 ...`; domain A is -1, domain B is 1.

A label path that does not exist is also looked up with another image extension and the
same stem, so labels written for the raw photos work on `prepare faces` output (PNG crops).

Output::

    OUTPUT/trainA/<rel>  OUTPUT/testA/<rel>  OUTPUT/trainB/<rel>  OUTPUT/testB/<rel>
    OUTPUT/masks/trainA/<rel stem>.png ...   (with `masks`: the matching mask of each image)
    OUTPUT/split.json                         counts, malformed rows, missing files
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from facecycle.data.images import IMAGE_EXTENSIONS
from facecycle.errors import DataError

Mode = Literal["copy", "link"]
FOLDERS = ("trainA", "testA", "trainB", "testB")


@dataclass
class SplitReport:
    input: str
    labels: str
    output: str
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    other_label: int = 0  # rows whose label is neither A nor B (not an error)
    malformed: list[dict[str, object]] = field(default_factory=list)  # {"line": n, "reason": ...}
    missing: list[str] = field(default_factory=list)  # labelled paths with no file
    missing_masks: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"A: {c.get('trainA', 0)} train + {c.get('testA', 0)} test; "
            f"B: {c.get('trainB', 0)} train + {c.get('testB', 0)} test -> {self.output}",
            f"{self.rows} label rows: {self.other_label} with other labels, {len(self.malformed)} malformed, "
            f"{len(self.missing)} missing files, {len(self.duplicates)} duplicates",
        ]
        for m in self.malformed[:5]:
            lines.append(f"  malformed line {m['line']}: {m['reason']}")
        for p in self.missing[:5]:
            lines.append(f"  missing {p}")
        if self.missing_masks:
            lines.append(f"  {len(self.missing_masks)} image(s) without a mask, e.g. {self.missing_masks[0]}")
        return "\n".join(lines)


def _read_csv(labels: Path, column: str, path_column: str | None, report: SplitReport) -> list[tuple[str, str]]:
    with labels.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise DataError(f"labels file {labels} is empty")
        header = [h.strip() for h in header]
        if column not in header:
            raise DataError(f"column {column!r} not in {labels}; its columns are: {', '.join(header)}")
        if path_column is not None and path_column not in header:
            raise DataError(f"path column {path_column!r} not in {labels}; its columns are: {', '.join(header)}")
        ci, pi = header.index(column), header.index(path_column) if path_column else 0
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            report.rows += 1
            if len(row) != len(header):
                report.malformed.append({"line": line, "reason": f"{len(row)} fields, header has {len(header)}"})
                continue
            path, label = row[pi].strip(), row[ci].strip()
            if not path or not label:
                report.malformed.append({"line": line, "reason": "empty path or label"})
                continue
            rows.append((path, label))
        return rows


def _read_celeba(labels: Path, attr: str, report: SplitReport) -> list[tuple[str, str]]:
    lines = labels.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{labels} is not in list_attr_celeba.txt format (line 1: image count, line 2: attribute names)")
    names = lines[1].split()
    if attr not in names:
        raise DataError(f"attribute {attr!r} not in {labels}; it has: {', '.join(names)}")
    ai = names.index(attr)
    rows = []
    for line, text in enumerate(lines[2:], start=3):
        parts = text.split()
        if not parts:
            continue
        report.rows += 1
        if len(parts) != len(names) + 1 or parts[ai + 1] not in ("-1", "1"):
            report.malformed.append({"line": line, "reason": f"expected file name + {len(names)} values of -1/1"})
            continue
        rows.append((parts[0], parts[ai + 1]))
    return rows


def _resolve(root: Path, rel: str, stems: dict[str, Path]) -> Path | None:
    path = root / rel
    if path.is_file():
        return path
    return stems.get(str(Path(rel).with_suffix("")).replace(os.sep, "/"))


def split_dataset(input_dir: str | Path, labels: str | Path, output: str | Path, *, a: str = "", b: str = "",
                  column: str | None = None, path_column: str | None = None, attr: str | None = None,
                  test_fraction: float = 0.1, seed: int = 0, mode: Mode = "copy",
                  masks: str | Path | None = None, overwrite: bool = False) -> SplitReport:
    """Build the four CycleGAN folders; see the module docstring for formats and layout.

    Each domain is shuffled with `seed` and `round(test_fraction * n)` images go to test.
    mode "link" makes symbolic links instead of copies. Raises DataError for a missing
    input/labels file, an unknown column/attribute, an existing non-empty output (unless
    `overwrite`) or a domain left empty; row-level problems go to the report.
    """
    root, labels, out = Path(input_dir), Path(labels), Path(output)
    if not root.is_dir():
        raise DataError(f"input folder does not exist: {root}")
    if not labels.is_file():
        raise DataError(f"labels file does not exist: {labels}")
    if not 0 <= test_fraction < 1:
        raise DataError(f"--test-fraction must be within [0, 1), got {test_fraction}")
    if attr is None and (not column or not a or not b):
        raise DataError("give --column with --a and --b label values (CSV), or --attr NAME (CelebA list_attr_celeba.txt)")
    mask_root = Path(masks) if masks else None
    if mask_root is not None and not mask_root.is_dir():
        raise DataError(f"mask folder does not exist: {mask_root}")
    existing = [f for f in FOLDERS if (out / f).is_dir() and any((out / f).iterdir())]
    if existing and not overwrite:
        raise DataError(f"{out} already has {', '.join(existing)}; choose another --output or pass --overwrite")
    report = SplitReport(input=str(root), labels=str(labels), output=str(out))
    if attr is not None:
        rows, values_a, values_b = _read_celeba(labels, attr, report), {"-1"}, {"1"}
    else:
        rows = _read_csv(labels, column, path_column, report)
        values_a = {v.strip() for v in a.split(",") if v.strip()}
        values_b = {v.strip() for v in b.split(",") if v.strip()}
        if values_a & values_b:
            raise DataError(f"labels {sorted(values_a & values_b)} are in both --a and --b")
    stems = {str(p.relative_to(root).with_suffix("")).replace(os.sep, "/"): p
             for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS}
    domains: dict[str, list[Path]] = {"A": [], "B": []}
    seen: set[Path] = set()
    for rel, label in rows:
        domain = "A" if label in values_a else "B" if label in values_b else None
        if domain is None:
            report.other_label += 1
            continue
        path = _resolve(root, rel, stems)
        if path is None:
            report.missing.append(rel)
        elif path in seen:
            report.duplicates.append(rel)
        else:
            seen.add(path)
            domains[domain].append(path)
    for domain, files in domains.items():
        if not files:
            wanted = "-1" if attr and domain == "A" else "1" if attr else (a if domain == "A" else b)
            raise DataError(f"domain {domain} is empty: no existing image in {root} is labelled {wanted!r} "
                            f"({len(report.missing)} labelled files missing, {len(report.malformed)} malformed rows)")
    if overwrite:
        for f in FOLDERS:
            shutil.rmtree(out / f, ignore_errors=True)
            shutil.rmtree(out / "masks" / f, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for domain, files in domains.items():
        files = sorted(files)
        order = rng.permutation(len(files))
        n_test = int(round(test_fraction * len(files)))
        for rank, i in enumerate(order):
            folder = f"{'test' if rank < n_test else 'train'}{domain}"
            _place(files[i], out / folder / files[i].relative_to(root), mode)
            report.counts[folder] = report.counts.get(folder, 0) + 1
            if mask_root is not None:
                rel_mask = files[i].relative_to(root).with_suffix(".png")
                if (mask_root / rel_mask).is_file():
                    _place(mask_root / rel_mask, out / "masks" / folder / rel_mask, mode)
                else:
                    report.missing_masks.append(str(mask_root / rel_mask))
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _place(src: Path, dst: Path, mode: Mode) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        os.symlink(src.resolve(), dst)
    else:
        shutil.copy2(src, dst)
