"""Readers for the original file formats of the five datasets (layout of ``../shared/data``).

Each reader returns a dict of :class:`RawSplit` keyed by ``train``, ``test`` and, when the
release has one, ``validation``. Rows keep the order of the release (20 Newsgroups: the
order of scikit-learn's ``fetch_20newsgroups``), so that the seeded splits made from them
equal the splits made from the hub copies.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adue.data.errors import format_error
from adue.data.records import decoded_lines
from adue.data.registry import NEWSGROUPS

__all__ = ["LOCAL_READERS", "RawSplit", "decode_file", "read_local"]


@dataclass
class RawSplit:
    """One split before conversion: ``texts`` (n,) str and ``labels`` (n,) int64 in 0..C-1."""

    texts: list[str]
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.texts),):
            raise ValueError(
                f"RawSplit needs one label per text; got {len(self.texts)} texts and labels "
                f"of shape {self.labels.shape}."
            )

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx: np.ndarray) -> RawSplit:
        """Rows ``idx`` (in that order)."""
        return RawSplit([self.texts[i] for i in idx], self.labels[idx])


def decode_file(path: Path) -> str:
    """Read ``path`` as UTF-8 text; a decoding error names the file and line."""
    with open(path, "rb") as stream:
        return "".join(decoded_lines(stream, str(path)))


def _lines(path: Path) -> list[str]:
    """Lines of a text file without their ``\\n`` / ``\\r\\n``; a final empty line dropped."""
    lines = decode_file(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _label(path: Path, line: int, field: str, num_classes: int) -> int:
    try:
        value = int(field)
    except ValueError:
        raise format_error(path, line, f"label {field!r} is not an integer") from None
    if not 0 <= value < num_classes:
        raise format_error(path, line, f"label {value} is outside 0..{num_classes - 1}")
    return value


def _text(path: Path, line: int, text: str) -> str:
    if not text.strip():
        raise format_error(path, line, "empty text")
    return text


def _read_tsv(
    path: Path,
    *,
    header: tuple[str, ...] | None,
    ncols: int,
    text_col: int,
    label_col: int,
    num_classes: int,
) -> RawSplit:
    texts: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(_lines(path), start=1):
        fields = line.split("\t")
        if header is not None and lineno == 1:
            if tuple(fields) != header:
                raise format_error(path, 1, f"expected the header {'<TAB>'.join(header)!r}")
            continue
        if len(fields) != ncols:
            raise format_error(
                path, lineno, f"expected {ncols} tab-separated fields, found {len(fields)}"
            )
        texts.append(_text(path, lineno, fields[text_col]))
        labels.append(_label(path, lineno, fields[label_col], num_classes))
    _check_rows(path, texts)
    return RawSplit(texts, np.asarray(labels, dtype=np.int64))


def _check_rows(path: Path, texts: list[str]) -> None:
    if not texts:
        raise format_error(path, None, "the file holds no rows")


def read_sst2(root: Path) -> dict[str, RawSplit]:
    """GLUE SST-2: ``train.tsv`` and ``dev.tsv`` with header ``sentence<TAB>label``."""
    kw = dict(header=("sentence", "label"), ncols=2, text_col=0, label_col=1, num_classes=2)
    return {
        "train": _read_tsv(root / "sst2" / "train.tsv", **kw),
        "test": _read_tsv(root / "sst2" / "dev.tsv", **kw),
    }


def read_cola(root: Path) -> dict[str, RawSplit]:
    """GLUE CoLA: ``train.tsv`` / ``dev.tsv``, no header, columns source, label, mark, sentence."""
    kw = dict(header=None, ncols=4, text_col=3, label_col=1, num_classes=2)
    return {
        "train": _read_tsv(root / "cola" / "train.tsv", **kw),
        "test": _read_tsv(root / "cola" / "dev.tsv", **kw),
    }


def _read_stsa(path: Path) -> RawSplit:
    texts: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(_lines(path), start=1):
        label, sep, text = line.partition(" ")
        if not sep:
            raise format_error(path, lineno, "expected '<label> <sentence>'")
        labels.append(_label(path, lineno, label, 5))
        texts.append(_text(path, lineno, text))
    _check_rows(path, texts)
    return RawSplit(texts, np.asarray(labels, dtype=np.int64))


def read_sst5(root: Path) -> dict[str, RawSplit]:
    """SST-5: ``stsa.fine.{train,dev,test}``, one ``<label> <sentence>`` a line."""
    d = root / "sst5"
    return {
        "train": _read_stsa(d / "stsa.fine.train"),
        "validation": _read_stsa(d / "stsa.fine.dev"),
        "test": _read_stsa(d / "stsa.fine.test"),
    }


def _sklearn_order(n: int) -> np.ndarray:
    """Row order of ``fetch_20newsgroups(subset=..)`` given files sorted as ``load_files``.

    ``load_files`` (shuffle=True, random_state=0) permutes the sorted files, then
    ``fetch_20newsgroups`` (shuffle=True, random_state=42) permutes the result again.
    """
    first = np.arange(n)
    np.random.RandomState(0).shuffle(first)
    second = np.arange(n)
    np.random.RandomState(42).shuffle(second)
    return first[second]


def read_20newsgroups(root: Path) -> dict[str, RawSplit]:
    """20 Newsgroups bydate, read in place from ``20news-bydate.tar.gz`` (latin-1, headers kept).

    Labels index the sorted group names; row order equals scikit-learn's
    ``fetch_20newsgroups(subset=...)`` with its default shuffling.
    """
    path = root / "20news" / "20news-bydate.tar.gz"
    prefixes = {"20news-bydate-train": "train", "20news-bydate-test": "test"}
    files: dict[str, dict[str, dict[str, str]]] = {"train": {}, "test": {}}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.split("/")
                if len(parts) != 3 or parts[0] not in prefixes:
                    raise format_error(path, None, f"unexpected archive member {member.name!r}")
                fobj = tar.extractfile(member)
                if fobj is None:  # pragma: no cover - isfile() members always have data
                    raise format_error(path, None, f"cannot read member {member.name!r}")
                text = fobj.read().decode("latin-1")
                files[prefixes[parts[0]]].setdefault(parts[1], {})[parts[2]] = text
    except (tarfile.TarError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise format_error(path, None, f"cannot read the archive ({err})") from err
    out: dict[str, RawSplit] = {}
    for split, groups in files.items():
        if tuple(sorted(groups)) != NEWSGROUPS:
            raise format_error(
                path,
                None,
                f"the {split} folder holds groups {sorted(groups)}, expected the 20 newsgroups",
            )
        texts: list[str] = []
        labels: list[int] = []
        for label, group in enumerate(NEWSGROUPS):
            for fname in sorted(groups[group]):
                texts.append(groups[group][fname])
                labels.append(label)
        order = _sklearn_order(len(texts))
        out[split] = RawSplit([texts[i] for i in order], np.asarray(labels, np.int64)[order])
    return out


def read_toxigen(root: Path) -> dict[str, RawSplit]:
    """ToxiGen human-annotated subset: ``toxiGen.json``; id < 8960 train, else test; hate = 1."""
    path = root / "toxigen" / "toxiGen.json"
    try:
        rows = json.loads(decode_file(path))
    except json.JSONDecodeError as err:
        raise format_error(path, err.lineno, f"invalid JSON ({err.msg})") from err
    if not isinstance(rows, list):
        raise format_error(path, None, "expected a JSON list of objects")
    names = {"neutral": 0, "hate": 1}
    parts: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for k, row in enumerate(rows):
        where = f"item {k}"
        if not isinstance(row, dict) or not {"id", "text", "label"} <= row.keys():
            raise format_error(path, None, f"{where}: expected an object with id, text, label")
        rid, text, label = row["id"], row["text"], row["label"]
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
            raise format_error(path, None, f"{where}: id {rid!r} is not a non-negative integer")
        if not isinstance(text, str) or not text.strip():
            raise format_error(path, None, f"{where}: empty or non-string text")
        if label not in names:
            raise format_error(path, None, f"{where}: label {label!r} is not 'hate' or 'neutral'")
        texts, labels = parts["train" if rid < 8960 else "test"]
        texts.append(text)
        labels.append(names[label])
    for split, (texts, _) in parts.items():
        if not texts:
            raise format_error(path, None, f"no rows for the {split} split")
    return {s: RawSplit(t, np.asarray(y, dtype=np.int64)) for s, (t, y) in parts.items()}


LOCAL_READERS: dict[str, Callable[[Path], dict[str, RawSplit]]] = {
    "sst2": read_sst2,
    "sst5": read_sst5,
    "cola": read_cola,
    "20newsgroups": read_20newsgroups,
    "toxigen": read_toxigen,
}


def read_local(name: str, root: Path) -> dict[str, RawSplit]:
    """Read dataset ``name`` from the data directory ``root``."""
    return LOCAL_READERS[name](root)
