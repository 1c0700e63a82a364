"""Streaming readers of CSV, JSONL and plain-text files: one ``(line, record)`` pair a row.

Files are decoded line by line (UTF-8; a leading byte-order mark is dropped), so memory does
not grow with the file and invalid UTF-8 is an error naming the file and line. Blank lines
are skipped in every format. Used for a user's dataset folder (:mod:`adue.data.user`) and for
the inputs of prediction (:func:`iter_texts`).

- CSV: a header row, then one record a row (quoted fields may span lines; the line given is
  the row's first); record keys are the header names, stripped.
- JSONL: one JSON object a line; the record is that object.
- plain text: one text a line, without its line ending; the record is ``{text column: line}``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from adue._validation import check_in
from adue.data.errors import format_error

__all__ = [
    "FORMATS",
    "Column",
    "check_text",
    "decoded_lines",
    "guess_format",
    "iter_records",
    "iter_texts",
]

#: Input formats: ``csv``, ``jsonl`` and ``text`` (one text a line).
FORMATS = ("csv", "jsonl", "text")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class Column:
    """A column a reader requires: its ``name``, its ``kind`` in words (``text``, ``label``)
    and the ``option`` that renames it (shown in the error when it is missing)."""

    name: str
    kind: str
    option: str


def guess_format(path: str | os.PathLike[str]) -> str:
    """``csv`` for ``*.csv``, ``jsonl`` for ``*.jsonl`` / ``*.ndjson``, else ``text``."""
    return _SUFFIXES.get(Path(path).suffix.lower(), "text")


def decoded_lines(stream: IO[bytes], where: str) -> Iterator[str]:
    """Lines of a binary stream as str (line endings kept, a leading BOM dropped).

    The one UTF-8 decoder of the data layer: invalid bytes are a
    :class:`adue.data.DataFormatError` naming ``where`` and the line.
    """
    for lineno, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise format_error(where, lineno, f"not valid utf-8 text ({err.reason})") from err
        yield line[1:] if lineno == 1 and line.startswith("\ufeff") else line


def _missing(where: str, line: int, col: Column, found: Iterable[str], what: str) -> Exception:
    unit = "column" if what == "header" else "key"
    have = "the header has the columns" if what == "header" else "the object has the keys"
    return format_error(
        where,
        line,
        f"no {col.kind} {unit} {col.name!r}; {have} {list(found)}. Name the {col.kind} {unit} "
        f"with {col.option}",
    )


def _csv_records(lines: Iterator[str], where: str, columns: Sequence[Column]):
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise format_error(where, None, "the file is empty (expected a header row)")
        names = [h.strip() for h in header]
        for col in columns:
            if col.name not in names:
                raise _missing(where, 1, col, names, "header")
            if names.count(col.name) > 1:
                raise format_error(where, 1, f"the header names the column {col.name!r} twice")
        line = reader.line_num
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not fields:  # blank line
                continue
            if len(fields) != len(names):
                raise format_error(
                    where, start, f"expected {len(names)} fields as in the header, found {len(fields)}"
                )
            yield start, dict(zip(names, fields, strict=True))
    except csv.Error as err:
        raise format_error(where, reader.line_num, f"malformed CSV ({err})") from err


def _jsonl_records(lines: Iterator[str], where: str, columns: Sequence[Column]):
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise format_error(where, lineno, f"invalid JSON ({err.msg})") from err
        if not isinstance(obj, dict):
            raise format_error(where, lineno, f"expected a JSON object, got {type(obj).__name__}")
        for col in columns:
            if col.name not in obj:
                raise _missing(where, lineno, col, sorted(obj), "object")
        yield lineno, obj


def _text_records(lines: Iterator[str], columns: Sequence[Column]):
    key = next((c.name for c in columns if c.kind == "text"), "text")
    for lineno, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield lineno, {key: text}


def iter_records(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    fmt: str | None = None,
    columns: Sequence[Column] = (),
    name: str | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line, record)`` for each row of a CSV / JSONL / plain-text file or stream.

    ``source``: a path, or a binary stream (e.g. ``sys.stdin.buffer``; ``name`` then names
    it in errors, default ``<stream>``). ``fmt``: one of :data:`FORMATS` (default: from the
    path's suffix, ``text`` for a stream). ``columns``: required columns; a missing one is
    an error naming the columns (CSV) or keys (JSONL) found. Errors are
    :class:`adue.data.DataFormatError` naming the file and line.
    """
    if fmt is None:
        fmt = guess_format(source) if isinstance(source, (str, os.PathLike)) else "text"
    check_in("fmt", "iter_records", fmt, FORMATS)
    if isinstance(source, (str, os.PathLike)):
        where = name or os.fspath(source)
        with open(source, "rb") as stream:
            yield from _dispatch(decoded_lines(stream, where), where, fmt, columns)
    else:
        where = name or "<stream>"
        yield from _dispatch(decoded_lines(source, where), where, fmt, columns)


def _dispatch(lines: Iterator[str], where: str, fmt: str, columns: Sequence[Column]):
    if fmt == "csv":
        return _csv_records(lines, where, columns)
    if fmt == "jsonl":
        return _jsonl_records(lines, where, columns)
    return _text_records(lines, columns)


def check_text(where: str | os.PathLike[str], line: int, value: Any, column: str) -> str:
    """``value`` if it is a non-blank str; else an error naming the file, line and column."""
    if not isinstance(value, str):
        raise format_error(where, line, f"the text {column!r} must be a string, got {value!r}")
    if not value.strip():
        raise format_error(where, line, "empty text")
    return value


def iter_texts(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    fmt: str | None = None,
    text_column: str = "text",
    id_column: str | None = "id",
    name: str | None = None,
) -> Iterator[tuple[int, str, Any]]:
    """Yield ``(line, text, id)`` per input row, in order (for prediction).

    The text column is required (see :func:`iter_records`); ``id`` is the row's value of
    ``id_column`` when the row has one, else None (plain text: always None). An input with
    no rows at all is an error.
    """
    col = Column(text_column, "text", "--text-column")
    where = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<stream>")
    empty = True
    for line, record in iter_records(source, fmt=fmt, columns=(col,), name=name):
        empty = False
        text = check_text(where, line, record[text_column], text_column)
        yield line, text, (record.get(id_column) if id_column is not None else None)
    if empty:
        raise format_error(where, None, "the input holds no rows (no texts to predict)")
