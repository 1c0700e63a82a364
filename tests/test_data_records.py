"""Streaming CSV / JSONL / plain-text readers (user folders and prediction inputs)."""

from __future__ import annotations

import io

import pytest

from adue.data import DataFormatError
from adue.data.records import Column, guess_format, iter_records, iter_texts


def test_csv_texts_ids_and_lines(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(
        b'\xef\xbb\xbfid,text\r\n7,"two\r\nlines"\r\n\r\n8,caf\xc3\xa9\r\n9,"a, b"\r\n'
    )
    assert list(iter_texts(path)) == [(2, "two\r\nlines", "7"), (5, "café", "8"), (6, "a, b", "9")]
    assert list(iter_texts(path, id_column=None))[0] == (2, "two\r\nlines", None)


def test_jsonl_and_plain_text(tmp_path):
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"body": "x", "id": 3}\n\n{"body": "y"}\n', encoding="utf-8")
    assert list(iter_texts(jsonl, text_column="body")) == [(1, "x", 3), (3, "y", None)]
    txt = tmp_path / "in.txt"
    txt.write_text("first line\n\n  \nsecond, with comma\r\nlast", encoding="utf-8")
    assert list(iter_texts(txt)) == [
        (1, "first line", None), (4, "second, with comma", None), (5, "last", None)
    ]
    stream = io.BytesIO(b"a\nb\n")
    assert list(iter_texts(stream, name="<stdin>")) == [(1, "a", None), (2, "b", None)]
    assert [guess_format(p) for p in ("a.CSV", "b.jsonl", "c.ndjson", "d.txt", "e")] == [
        "csv", "jsonl", "jsonl", "text", "text"
    ]


@pytest.mark.parametrize(
    ("suffix", "content", "line"),
    [
        (".csv", b"text\nok\nbad \xff byte\n", 3),
        (".jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', 2),
        (".txt", b"ok\n\nok\n\xc3(\n", 4),
    ],
)
def test_invalid_utf8_names_file_and_line_and_rows_stream(tmp_path, suffix, content, line):
    path = tmp_path / f"in{suffix}"
    path.write_bytes(content)
    rows = iter_texts(path)
    assert next(rows)[1] == "ok"  # the good rows come before the bad line is read
    with pytest.raises(DataFormatError, match=rf"^{path}, line {line}: not valid utf-8 text"):
        list(rows)
    with pytest.raises(DataFormatError, match=r"^<stdin>, line 1: not valid utf-8"):
        list(iter_texts(io.BytesIO(b"\xff\n"), name="<stdin>"))


def test_missing_text_column_and_empty_input(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,sentence\n1,a\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        list(iter_texts(path))
    assert str(info.value) == (
        f"{path}, line 1: no text column 'text'; the header has the columns ['id', "
        "'sentence']. Name the text column with --text-column"
    )
    assert list(iter_texts(path, text_column="sentence")) == [(2, "a", "1")]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "a"}\n{"txt": "b"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 2: no text key 'text'; the object has "
                       r"the keys \['txt'\]"):
        list(iter_texts(jsonl))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"^{empty}: the input holds no rows"):
        list(iter_texts(empty))
    header_only = tmp_path / "h.csv"
    header_only.write_text("text\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="the input holds no rows"):
        list(iter_texts(header_only))
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": "  "}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"^{blank}, line 1: empty text"):
        list(iter_texts(blank))


def test_records_checks(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("text,text\na,b\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="names the column 'text' twice"):
        list(iter_records(path, columns=(Column("text", "text", "--text-column"),)))
    with pytest.raises(ValueError, match=r"^The 'fmt' parameter of iter_records must be one of "
                       r"\{'csv', 'jsonl', 'text'\}. Got 'xml' instead.$"):
        list(iter_records(path, fmt="xml"))
    path.write_text('text\n"unterminated\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"malformed CSV"):
        list(iter_records(path))
