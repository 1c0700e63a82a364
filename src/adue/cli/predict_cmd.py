"""``adue predict``: a bundle's predictions, uncertainty and abstention for a file of texts.

Input: CSV (header; ``--text-column``), JSONL (one object a line) or plain text (one text a
line), or ``-`` for stdin, read by :func:`adue.data.iter_texts` (blank lines skipped). Output: JSONL, or CSV when the name ends in ``.csv``; one record per
input row in order, with the input's ``id`` column passed through. The input is read and
scored in chunks (memory does not grow with it) and the output written to a temporary file
renamed at the end, so an interrupted run leaves no half file.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

ID_COLUMN = "id"
FORMATS = ("auto", "text", "csv", "jsonl")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="predict with uncertainty and abstention from a bundle",
        description="Label every text of --input with the bundle's classifier, its uncertainty "
        "(higher = more likely wrong) and whether to abstain (uncertainty above the bundle's threshold).",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="a bundle folder written by 'adue fit'")
    p.add_argument("--input", "-i", required=True, metavar="FILE", help="CSV, JSONL or text file; '-' = stdin")
    p.add_argument("--output", "-o", metavar="FILE", help="JSONL (default) or .csv; default: stdout")
    p.add_argument("--format", default="auto", choices=FORMATS,
                   help="input format (default: from the suffix: .csv, .jsonl/.ndjson, else text; "
                        "text for stdin)")
    p.add_argument("--text-column", default="text", metavar="NAME", help="CSV column / JSONL key of the text")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per forward pass (default 32)")
    p.add_argument("--chunk-size", type=int, default=2048, metavar="N",
                   help="texts read and scored at a time, batched by length within (default 2048)")
    p.add_argument("--top-k", type=int, metavar="K", help="keep only the K most probable classes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------- reading
def iter_inputs(source: Any, name: str, fmt: str, text_column: str = "text") -> Iterator[tuple[Any, str]]:
    """``(id or None, text)`` per input row of a path or binary stream, in order.

    Reading is :func:`adue.data.iter_texts` (CSV / JSONL / plain text, UTF-8 decoded line by
    line; errors name the file and line; blank lines skipped; no rows is an error).
    """
    from adue.data import iter_texts

    for _line, text, row_id in iter_texts(source, fmt=None if fmt == "auto" else fmt,
                                          text_column=text_column, id_column=ID_COLUMN, name=name):
        yield row_id, text


def _chunks(rows: Iterator[tuple[Any, str]], size: int) -> Iterator[list[tuple[Any, str]]]:
    chunk: list[tuple[Any, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---------------------------------------------------------------- writing
class _Writer:
    """Records as JSONL, or CSV (probabilities as a JSON column) when ``csv_out``."""

    COLUMNS = ("label", "label_id", "score", "uncertainty", "abstain", "probabilities")

    def __init__(self, fh: TextIO, csv_out: bool, with_id: bool) -> None:
        self.fh, self.csv_out = fh, csv_out
        self.columns = ((ID_COLUMN,) if with_id else ()) + self.COLUMNS
        self.csv = csv.DictWriter(fh, fieldnames=self.columns, lineterminator="\n") if csv_out else None
        if self.csv is not None:
            self.csv.writeheader()

    def write(self, rec: dict[str, Any]) -> None:
        if self.csv is not None:
            self.csv.writerow({**rec, "probabilities": json.dumps(rec["probabilities"], ensure_ascii=False)})
        else:
            self.fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def predict_stream(clf: Any, rows: Iterator[tuple[Any, str]], out: TextIO, *, csv_out: bool = False,
                   chunk_size: int = 2048, top_k: int | None = None, progress: bool = False) -> int:
    """Score ``rows`` chunk by chunk with ``clf`` (an UncertainClassifier), writing one record
    per row to ``out`` in order; returns the number of rows. Empty input is an error."""
    from tqdm.auto import tqdm

    n = 0
    writer = None
    with tqdm(desc="predict", unit="text", disable=not progress) as bar:
        for chunk in _chunks(rows, chunk_size):
            ids = [r[0] for r in chunk]
            if writer is None:
                writer = _Writer(out, csv_out, with_id=ids[0] is not None)
            for i, rec in zip(ids, clf.predict([r[1] for r in chunk], top_k=top_k), strict=True):
                writer.write({ID_COLUMN: i, **rec} if ID_COLUMN in writer.columns else rec)
            n += len(chunk)
            bar.update(len(chunk))
    if n == 0:  # iter_texts already refuses an input with no rows
        raise ValueError("The input holds no texts: nothing to predict.")
    return n


def _open_input(name: str) -> Any:
    if name == "-":
        return sys.stdin.buffer
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"No input file at {path}.")
    return path


def run(args: argparse.Namespace) -> int:
    from adue._atomic import atomic_path
    from adue.classifier import UncertainClassifier
    from adue.device import resolve_device

    for opt in ("batch_size", "chunk_size", "top_k"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise ValueError(f"--{opt.replace('_', '-')} must be a positive integer. Got {v} instead.")
    clf = UncertainClassifier.load(args.bundle, device=resolve_device(args.device), batch_size=args.batch_size)
    src = _open_input(args.input)
    rows = iter_inputs(src, args.input if args.input != "-" else "<stdin>", args.format, args.text_column)
    kw = dict(chunk_size=args.chunk_size, top_k=args.top_k, progress=not args.no_progress)
    if args.output is None:
        n = predict_stream(clf, rows, sys.stdout, **kw)
    else:
        with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            n = predict_stream(clf, rows, fh, csv_out=args.output.lower().endswith(".csv"), **kw)
    print(f"{n} predictions" + (f" -> {args.output}" if args.output else ""), file=sys.stderr)
    return 0


__all__ = ["add_parser", "iter_inputs", "predict_stream", "run"]
