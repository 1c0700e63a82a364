"""A user's own dataset: a folder with ``train``, ``validation`` (optional) and ``test`` files.

Each file is ``<split>.csv`` (header row naming at least the text and label columns) or
``<split>.jsonl`` (one JSON object a line with the text and label keys); the columns are
``text`` and ``label`` unless ``text_column`` / ``label_column`` say otherwise. The
validation file may also be called ``val`` or ``dev``. Labels are either all integers (kept;
they must be exactly 0..C-1 in train) or strings (surrounding whitespace stripped, in CSV and
JSONL alike; mapped to ids in the order of the sorted unique train labels; the names kept as
class names). A CSV integer label is written as digits; a JSONL one as a JSON number.

Checks beyond the format: a label equal to the label column's name (a repeated header row)
is an error naming the file and line; a class with fewer than :data:`FEW_ROWS` rows in a
split, or two string labels that differ only in case, is a logged warning with the counts.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adue.data.errors import DataFormatError, DataNotFoundError, format_error
from adue.data.readers import RawSplit
from adue.data.records import Column, check_text, iter_records

__all__ = [
    "EXTENSIONS",
    "FEW_ROWS",
    "SPLIT_FILE_NAMES",
    "SPLIT_NAMES",
    "find_split_files",
    "load_user_folder",
    "parse_user_spec",
]

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")
#: File base names accepted for each split, in the order they are looked for.
SPLIT_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "val", "dev"),
    "test": ("test",),
}
EXTENSIONS = (".csv", ".jsonl")
#: A class with fewer rows than this in a split read from a file is warned about.
FEW_ROWS = 10
_INT_RE = re.compile(r"[+-]?\d+")
_SEPARATORS = {"/", "\\", os.sep, os.altsep or os.sep}


@dataclass
class _Rows:
    path: Path
    lines: list[int]
    texts: list[str]
    labels: list[int | str]


@dataclass(frozen=True)
class Columns:
    """The names of the text and label columns (CSV header names / JSONL keys)."""

    text: str = "text"
    label: str = "label"


def parse_user_spec(spec: str) -> tuple[str, Path] | None:
    """``'NAME=PATH'`` or a folder path -> ``(name, path)``; anything else -> None.

    ``NAME`` is the part before the first ``=`` when it holds no path separator (else the
    whole spec is a path, e.g. ``/data/a=b``). A path's name is its folder's base name.
    """
    name, eq, path = spec.partition("=")
    if eq and not (_SEPARATORS & set(name)) and not name.startswith("~"):
        if not name.strip() or not path.strip():
            raise ValueError(f"Expected NAME=PATH for a user dataset, got {spec!r}.")
        if name.strip() in (".", ".."):
            raise ValueError(f"The NAME of NAME=PATH must be a plain name, got {name!r}.")
        return name.strip(), Path(path.strip()).expanduser()
    if (_SEPARATORS & set(spec)) or spec.startswith(("~", ".")) or Path(spec).is_dir():
        path = Path(spec).expanduser()
        return (path.resolve().name or spec), path
    return None


def find_split_files(folder: Path) -> dict[str, Path]:
    """The file of each split present in ``folder``; ``train`` and ``test`` are required."""
    if not folder.is_dir():
        raise DataNotFoundError(
            f"User dataset folder {folder} does not exist or is not a folder. It must hold "
            "train.csv|train.jsonl, test.csv|test.jsonl and optionally validation.csv|"
            "validation.jsonl (or val.* / dev.*)."
        )
    found: dict[str, Path] = {}
    for split in SPLIT_NAMES:
        candidates = [
            folder / f"{base}{ext}" for base in SPLIT_FILE_NAMES[split] for ext in EXTENSIONS
        ]
        present = [p for p in candidates if p.is_file()]
        if len(present) > 1:
            raise DataFormatError(
                f"User dataset {folder}: both {present[0].name} and {present[1].name} exist; "
                f"keep one file for the {split} split."
            )
        if present:
            found[split] = present[0]
        elif split != "validation":
            tried = "\n".join(f"  - {p}" for p in candidates)
            raise DataNotFoundError(
                f"User dataset {folder}: no {split} file. Paths tried:\n{tried}"
            )
    return found


def _clean_label(path: Path, line: int, label: object, columns: Columns) -> int | str:
    """One label as read (CSV field or JSON value) -> int or stripped str; bad ones raise."""
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise format_error(
            path,
            line,
            f"the label {columns.label!r} must be an integer or a non-empty string, got {label!r}",
        )
    if isinstance(label, int):
        return label
    label = label.strip()
    if not label:
        raise format_error(path, line, "empty label")
    if label == columns.label:
        raise format_error(
            path,
            line,
            f"the label {label!r} is the label column's name: a repeated header row? "
            "Remove the line",
        )
    return label


_TEXT_OPTION = "--text-column (text_column=)"
_LABEL_OPTION = "--label-column (label_column=)"


def _read_file(path: Path, columns: Columns) -> _Rows:
    """The rows of one split file (CSV or JSONL by its suffix)."""
    fmt = "csv" if path.suffix == ".csv" else "jsonl"
    required = (
        Column(columns.text, "text", _TEXT_OPTION),
        Column(columns.label, "label", _LABEL_OPTION),
    )
    rows = _Rows(path, [], [], [])
    for line, record in iter_records(path, fmt=fmt, columns=required):
        text = check_text(path, line, record[columns.text], columns.text)
        label = _clean_label(path, line, record[columns.label], columns)
        if fmt == "csv" and isinstance(label, str) and _INT_RE.fullmatch(label):
            label = int(label)  # CSV fields are strings: digits are integer labels
        rows.lines.append(line)
        rows.texts.append(text)
        rows.labels.append(label)
    if not rows.texts:
        raise format_error(path, None, "the split is empty (no data rows)")
    return rows


def _class_names(parts: dict[str, _Rows]) -> tuple[list[str], dict[int | str, int]]:
    """Class names and the label -> id map, from the train labels."""
    kinds: dict[type, tuple[Path, int, int | str]] = {}
    for rows in parts.values():
        for line, label in zip(rows.lines, rows.labels, strict=True):
            kinds.setdefault(type(label), (rows.path, line, label))
    if len(kinds) > 1:
        p_int, l_int, v_int = kinds[int]
        p_str, l_str, v_str = kinds[str]
        raise DataFormatError(
            f"Labels mix integers ({v_int!r} at {p_int}, line {l_int}) and strings "
            f"({v_str!r} at {p_str}, line {l_str}); use one kind throughout."
        )
    train = parts["train"]
    unique = sorted(set(train.labels))  # one kind only, so sortable
    if len(unique) < 2:
        raise format_error(train.path, None, f"train holds a single class {unique}; need >= 2")
    if isinstance(unique[0], int):
        if unique != list(range(len(unique))):
            raise format_error(
                train.path,
                None,
                f"integer labels must be exactly 0..C-1 with every class present in train; "
                f"found {unique[:20]}. Use string labels to have them mapped to ids",
            )
    names = [str(v) for v in unique]
    return names, {v: i for i, v in enumerate(unique)}


def _warn_label_counts(parts: dict[str, _Rows]) -> None:
    """Log a warning for classes with < FEW_ROWS rows and for labels equal up to case."""
    train_classes = sorted(set(parts["train"].labels), key=str)
    for rows in parts.values():
        counts = Counter(rows.labels)
        few = {c: counts.get(c, 0) for c in train_classes if counts.get(c, 0) < FEW_ROWS}
        if few:
            shown = ", ".join(f"{c!r}: {n}" for c, n in few.items())
            logger.warning(
                "%s: classes with fewer than %d rows (%s); estimates for them will be noisy.",
                rows.path,
                FEW_ROWS,
                shown,
            )
    totals = Counter(label for rows in parts.values() for label in rows.labels)
    by_case: dict[str, list[str]] = {}
    for label in sorted(v for v in totals if isinstance(v, str)):
        by_case.setdefault(label.casefold(), []).append(label)
    for group in by_case.values():
        if len(group) > 1:
            shown = ", ".join(f"{v!r}: {totals[v]} rows" for v in group)
            logger.warning(
                "Labels that differ only in case are separate classes (%s); if they mean the "
                "same class, write them the same way.",
                shown,
            )


def load_user_folder(
    folder: Path, *, text_column: str = "text", label_column: str = "label"
) -> tuple[dict[str, RawSplit], list[str]]:
    """Read a user folder -> (raw splits, class names). ``validation`` may be absent."""
    columns = Columns(text_column, label_column)
    files = find_split_files(folder)
    parts = {split: _read_file(path, columns) for split, path in files.items()}
    names, mapping = _class_names(parts)
    _warn_label_counts(parts)
    out: dict[str, RawSplit] = {}
    for split, rows in parts.items():
        ids = []
        for line, label in zip(rows.lines, rows.labels, strict=True):
            if label not in mapping:
                known = ", ".join(repr(v) for v in list(mapping)[:20])
                raise format_error(
                    rows.path,
                    line,
                    f"label {label!r} does not occur in train (train labels: {known})",
                )
            ids.append(mapping[label])
        out[split] = RawSplit(rows.texts, np.asarray(ids, dtype=np.int64))
    return out, names
