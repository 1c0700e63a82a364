"""A user's own dataset: a folder with ``train``, ``validation`` (optional) and ``test`` files.

Each file is ``<split>.csv`` (header row naming at least ``text`` and ``label``) or
``<split>.jsonl`` (one JSON object a line with ``text`` and ``label``). Labels are either
all integers (kept; they must be exactly 0..C-1 in train) or strings (mapped to ids in the
order of the sorted unique train labels; the names kept as class names).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adue.data.errors import DataFormatError, DataNotFoundError, format_error
from adue.data.readers import RawSplit, decode_file

__all__ = ["SPLIT_NAMES", "EXTENSIONS", "find_split_files", "load_user_folder", "parse_user_spec"]

SPLIT_NAMES = ("train", "validation", "test")
EXTENSIONS = (".csv", ".jsonl")
_INT_RE = re.compile(r"[+-]?\d+")


@dataclass
class _Rows:
    path: Path
    lines: list[int]
    texts: list[str]
    labels: list[int | str]


def parse_user_spec(spec: str) -> tuple[str, Path] | None:
    """``'name=path'`` or a folder path -> ``(name, path)``; anything else -> None."""
    if "=" in spec:
        name, _, path = spec.partition("=")
        if not name.strip() or not path.strip():
            raise ValueError(f"Expected NAME=PATH for a user dataset, got {spec!r}.")
        return name.strip(), Path(path.strip()).expanduser()
    seps = {os.sep, os.altsep or os.sep, "/"}
    if any(s in spec for s in seps) or spec.startswith(("~", ".")) or Path(spec).is_dir():
        path = Path(spec).expanduser()
        return (path.resolve().name or spec), path
    return None


def find_split_files(folder: Path) -> dict[str, Path]:
    """The file of each split present in ``folder``; ``train`` and ``test`` are required."""
    if not folder.is_dir():
        raise DataNotFoundError(
            f"User dataset folder {folder} does not exist or is not a folder. It must hold "
            "train.csv|train.jsonl, test.csv|test.jsonl and optionally validation.csv|"
            "validation.jsonl."
        )
    found: dict[str, Path] = {}
    for split in SPLIT_NAMES:
        candidates = [folder / f"{split}{ext}" for ext in EXTENSIONS]
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


def _read_csv(path: Path) -> _Rows:
    reader = csv.reader(io.StringIO(decode_file(path, "utf-8-sig"), newline=""), strict=True)
    rows = _Rows(path, [], [], [])
    try:
        header = next(reader, None)
        if header is None:
            raise format_error(path, None, "the file is empty (expected a header row)")
        names = [h.strip() for h in header]
        missing = [c for c in ("text", "label") if c not in names]
        if missing:
            raise format_error(path, 1, f"the header {names} lacks the column(s) {missing}")
        for col in ("text", "label"):
            if names.count(col) > 1:
                raise format_error(path, 1, f"the header names the column {col!r} twice")
        ti, li = names.index("text"), names.index("label")
        line = reader.line_num
        for record in reader:
            start, line = line + 1, reader.line_num
            if not record:  # blank line
                continue
            if len(record) != len(names):
                raise format_error(
                    path,
                    start,
                    f"expected {len(names)} fields as in the header, found {len(record)}",
                )
            text, label = record[ti], record[li].strip()
            if not text.strip():
                raise format_error(path, start, "empty text")
            if not label:
                raise format_error(path, start, "empty label")
            rows.lines.append(start)
            rows.texts.append(text)
            rows.labels.append(int(label) if _INT_RE.fullmatch(label) else label)
    except csv.Error as err:
        raise format_error(path, reader.line_num, f"malformed CSV ({err})") from err
    return rows


def _read_jsonl(path: Path) -> _Rows:
    rows = _Rows(path, [], [], [])
    for lineno, line in enumerate(decode_file(path, "utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise format_error(path, lineno, f"invalid JSON ({err.msg})") from err
        if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
            raise format_error(path, lineno, "expected a JSON object with 'text' and 'label'")
        text, label = obj["text"], obj["label"]
        if not isinstance(text, str) or not text.strip():
            raise format_error(path, lineno, f"'text' must be a non-empty string, got {text!r}")
        if isinstance(label, bool) or not isinstance(label, (int, str)) or label == "":
            raise format_error(
                path, lineno, f"'label' must be an integer or a non-empty string, got {label!r}"
            )
        rows.lines.append(lineno)
        rows.texts.append(text)
        rows.labels.append(label)
    return rows


def _read_file(path: Path) -> _Rows:
    rows = _read_csv(path) if path.suffix == ".csv" else _read_jsonl(path)
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


def load_user_folder(folder: Path) -> tuple[dict[str, RawSplit], list[str]]:
    """Read a user folder -> (raw splits, class names). ``validation`` may be absent."""
    files = find_split_files(folder)
    parts = {split: _read_file(path) for split, path in files.items()}
    names, mapping = _class_names(parts)
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
