"""Condition labels for conditional translation: one vector per image, read from a CSV file.

Three kinds (`data.label_kind`):

* ``presence``: OpenFace `AUxx_c` columns (0/1: is the Action Unit there). The report this
  mode comes from (seed 004, e4/e9) found presence more reliable than intensity.
* ``intensity``: OpenFace `AUxx_r` columns (0-5). The network sees them divided by 5, so every
  condition vector lies in [0, 1]; `--target AU12=3` at translation time means 3 on the 0-5 scale.
* ``categorical``: one column of class names (e.g. `emotion` with anger, happiness...), turned
  into a one-hot vector over the sorted class names.

Files
-----
A header row is required. OpenFace writes its column names with a leading space
(`" AU06_c"`); names are stripped. The image path is the column named `image`, `path`,
`file`, `filename` or `name` (case-insensitive), else the first column. Paths are relative to
the image folder (`--data`) or, when not found there, to the labels file's folder; absolute
paths are used as they are. With an image folder given, rows whose image lies outside it are
left out (counted in `outside`): `--data out/images --labels out/labels.csv` trains on the
training rows of a file that lists test images too. OpenFace rows with `success` = 0 (no face
tracked) are skipped and reported.

Problems never crash the reader: malformed rows (wrong field count, empty path, a value that
is not a number or is out of range, an unknown class) are collected with their line numbers
and missing image files are listed; only a file with no usable row at all is an error.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from facecycle.errors import DataError

LABEL_KINDS = ("presence", "intensity", "categorical")
#: Largest raw value per kind; vectors given to the networks are raw / max, in [0, 1].
VALUE_MAX = {"presence": 1.0, "intensity": 5.0, "categorical": 1.0}
PATH_COLUMNS = ("image", "path", "file", "filename", "name")
CATEGORY_COLUMNS = ("expression", "emotion", "label", "class")
_SUFFIX = {"presence": "_c", "intensity": "_r"}
_AU = re.compile(r"^AU\d+$")


@dataclass
class LabelTable:
    """Images and their condition vectors.

    `values`: `(N, K)` float32 in [0, 1] (raw label / `value_max`), row i for `paths[i]`.
    `columns`: the K unit names without suffix (`AU01`, ...) or the class names.
    """

    labels_file: Path
    kind: str
    columns: list[str]
    paths: list[Path] = field(default_factory=list)
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    rows: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    missing: list[tuple[int, str]] = field(default_factory=list)  # (line number, path as written)
    skipped_no_face: list[int] = field(default_factory=list)  # OpenFace success == 0
    outside: int = 0  # rows whose image is outside the image folder
    duplicates: int = 0

    @property
    def value_max(self) -> float:
        return VALUE_MAX[self.kind]

    def __len__(self) -> int:
        return len(self.paths)

    def summary(self, limit: int = 5) -> str:
        lines = [f"{self.labels_file}: {len(self.paths)} labelled images with {len(self.columns)} {self.kind} "
                 f"condition(s) ({', '.join(self.columns)}) from {self.rows} rows; {len(self.malformed)} malformed, "
                 f"{len(self.missing)} missing files, {len(self.skipped_no_face)} without a tracked face, "
                 f"{self.outside} outside the image folder, {self.duplicates} duplicates"]
        lines += [f"  line {n}: {reason}" for n, reason in self.malformed[:limit]]
        if len(self.malformed) > limit:
            lines.append(f"  ... and {len(self.malformed) - limit} more malformed rows")
        lines += [f"  line {n}: image not found: {p}" for n, p in self.missing[:limit]]
        if len(self.missing) > limit:
            lines.append(f"  ... and {len(self.missing) - limit} more missing images")
        return "\n".join(lines)

    @property
    def has_problems(self) -> bool:
        return bool(self.malformed or self.missing or self.skipped_no_face)


def parse_columns(spec: str | Sequence[str] | None) -> list[str]:
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [s.strip() for s in items if s.strip()]


def _unit_name(column: str, kind: str) -> Optional[str]:
    suffix = _SUFFIX[kind]
    if column.endswith(suffix) and _AU.match(column[: -len(suffix)]):
        return column[: -len(suffix)]
    return None


def read_labels(labels_file: str | Path, kind: str = "presence", columns: str | Sequence[str] | None = None,
                image_root: str | Path | None = None) -> LabelTable:
    """Read a labels CSV (see the module docstring).

    `columns`: the units (`AU06` or `AU06_c`) or classes to use, in this order; empty = every
    `AUxx_c`/`AUxx_r` column of the file in file order (presence/intensity), or every class
    found in the category column, sorted (categorical). For categorical files a single
    `columns` entry that names a column of the file selects that column instead (e.g. `emotion`).
    Raises DataError only when the file is unusable as a whole.
    """
    path = Path(labels_file)
    if kind not in LABEL_KINDS:
        raise DataError(f"unknown label kind {kind!r}; choose one of: {', '.join(LABEL_KINDS)}")
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    root = Path(image_root) if image_root else None
    if root is not None and not root.is_dir():
        raise DataError(f"image folder does not exist: {root}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            body = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read labels file {path} as CSV: {exc}") from None
    if not header:
        raise DataError(f"labels file {path} is empty (a header row is needed)")
    header = [h.strip() for h in header]
    lower = [h.lower() for h in header]
    path_index = next((lower.index(c) for c in PATH_COLUMNS if c in lower), 0)
    success_index = lower.index("success") if "success" in lower else None
    wanted = parse_columns(columns)

    if kind == "categorical":
        if len(wanted) == 1 and wanted[0].lower() in lower and wanted[0].lower() != header[path_index].lower():
            category_index, wanted = lower.index(wanted[0].lower()), []
        else:
            candidates = [lower.index(c) for c in CATEGORY_COLUMNS if c in lower]
            if not candidates:
                others = [i for i in range(len(header)) if i != path_index]
                if len(others) != 1:
                    raise DataError(f"{path}: which column holds the class? name it with --set data.label_columns=COLUMN "
                                    f"(columns: {', '.join(header)})")
                candidates = others
            category_index = candidates[0]
        value_indices: list[int] = []
        unit_names: list[str] = []
    else:
        found = {name: i for i, h in enumerate(header) if (name := _unit_name(h, kind))}
        if not found:
            other = "intensity" if kind == "presence" else "presence"
            classes = [h for i, h in enumerate(header) if i != path_index and h.lower() in CATEGORY_COLUMNS]
            if any(_unit_name(h, other) for h in header):
                hint = f"; it has {other} columns: use --set data.label_kind={other}"
            elif classes or len(header) == 2:  # image,emotion-style: one class per image
                column = (classes or [h for i, h in enumerate(header) if i != path_index])[0]
                hint = (f"; it looks like a categorical file (one class per image in column '{column}'): "
                        "use --set data.label_kind=categorical")
            else:
                hint = ""
            raise DataError(f"{path} has no {kind} columns (AUxx{_SUFFIX[kind]}){hint}; columns: {', '.join(header)}")
        if wanted:
            names = [w.upper().removesuffix(_SUFFIX[kind].upper()) for w in wanted]
            unknown = [n for n in names if n not in found]
            if unknown:
                raise DataError(f"unit(s) {', '.join(unknown)} not in {path}; it has: {', '.join(found)}")
        else:
            names = list(found)
        unit_names = names
        value_indices = [found[n] for n in names]

    table = LabelTable(path, kind, unit_names)
    raw_rows: list[tuple[int, str, object]] = []
    for line, row in body:
        if not row or all(not cell.strip() for cell in row):
            continue
        table.rows += 1
        if len(row) != len(header):
            table.malformed.append((line, f"{len(row)} fields, the header has {len(header)}"))
            continue
        rel = row[path_index].strip()
        if not rel:
            table.malformed.append((line, "empty image path"))
            continue
        if success_index is not None and row[success_index].strip() in ("0", "0.0"):
            table.skipped_no_face.append(line)
            continue
        if kind == "categorical":
            label = row[category_index].strip()
            if not label:
                table.malformed.append((line, f"empty {header[category_index]!r}"))
                continue
            raw_rows.append((line, rel, label))
            continue
        try:
            vector = [float(row[i]) for i in value_indices]
        except ValueError:
            bad = next(header[i] for i in value_indices if not _is_float(row[i]))
            table.malformed.append((line, f"{bad} is not a number: {row[header.index(bad)].strip()!r}"))
            continue
        limit = VALUE_MAX[kind]
        out = [(n, v) for n, v in zip(unit_names, vector) if not (0.0 <= v <= limit)]
        if out:
            table.malformed.append((line, f"{out[0][0]}{_SUFFIX[kind]} = {out[0][1]:g} is outside [0, {limit:g}]"))
            continue
        if kind == "presence" and any(v not in (0.0, 1.0) for v in vector):
            bad_unit, bad_value = next((n, v) for n, v in zip(unit_names, vector) if v not in (0.0, 1.0))
            table.malformed.append((line, f"{bad_unit}_c = {bad_value:g}: presence must be 0 or 1"))
            continue
        raw_rows.append((line, rel, vector))

    if kind == "categorical":
        classes = sorted({label for _, _, label in raw_rows})  # type: ignore[misc]
        if wanted:
            unknown_classes = [w for w in wanted if w not in classes]
            if unknown_classes:
                raise DataError(f"class(es) {', '.join(unknown_classes)} not in column {header[category_index]!r} "
                                f"of {path}; it has: {', '.join(classes)}")
            classes = wanted
        table.columns = classes
        index = {c: i for i, c in enumerate(classes)}
        kept = []
        for line, rel, label in raw_rows:
            if label not in index:
                table.malformed.append((line, f"class {label!r} is not one of the selected classes"))
                continue
            onehot = [0.0] * len(classes)
            onehot[index[label]] = 1.0  # type: ignore[index]
            kept.append((line, rel, onehot))
        raw_rows = kept  # type: ignore[assignment]
        table.malformed.sort()

    resolved_root = root.resolve() if root is not None else None
    seen: set[Path] = set()
    vectors: list[list[float]] = []
    for line, rel, vector in raw_rows:
        image = _find_image(rel, root, path.parent)
        if image is None:
            table.missing.append((line, rel))
            continue
        if resolved_root is not None and not _inside(image.resolve(), resolved_root):
            table.outside += 1
            continue
        key = image.resolve()
        if key in seen:
            table.duplicates += 1
            continue
        seen.add(key)
        table.paths.append(image)
        vectors.append([v / VALUE_MAX[kind] for v in vector])  # type: ignore[union-attr]
    table.values = np.asarray(vectors, np.float32).reshape(len(vectors), len(table.columns))
    if not table.paths:
        raise DataError("no usable labelled image:\n" + table.summary())
    return table


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _find_image(rel: str, root: Optional[Path], labels_dir: Path) -> Optional[Path]:
    p = Path(rel)
    if p.is_absolute():
        return p if p.is_file() else None
    for base in (root, labels_dir):
        if base is not None and (base / p).is_file():
            return base / p
    return None
