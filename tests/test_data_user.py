"""A user's own dataset folder (CSV / JSONL) loaded through adue.data.load_dataset."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from adue.data import DataFormatError, DataNotFoundError, load_dataset


def write_csv(path: Path, rows: list[tuple], header=("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows_of(ds) -> list[tuple[str, int]]:
    return list(zip(ds["text"], ds["label"], strict=True))


def test_csv_string_labels_mapped(tmp_path):
    write_csv(
        tmp_path / "train.csv",
        [
            ("great, really", "pos"),
            ('he said "bad"', "neg"),
            ("meh\nso-so", "neutral"),
            ("fine", "pos"),
        ],
    )
    write_csv(tmp_path / "validation.csv", [("ok", "neutral"), ("awful", "neg")])
    write_csv(tmp_path / "test.csv", [("lovely", "pos")])
    ds = load_dataset(str(tmp_path))
    # ids follow the sorted unique train labels
    assert ds["train"].features["label"].names == ["neg", "neutral", "pos"]
    assert rows_of(ds["train"]) == [
        ("great, really", 2),
        ('he said "bad"', 0),
        ("meh\nso-so", 1),
        ("fine", 2),
    ]
    assert rows_of(ds["validation"]) == [("ok", 1), ("awful", 0)]
    assert rows_of(ds["test"]) == [("lovely", 2)]
    assert ds["test"].features["label"].names == ["neg", "neutral", "pos"]


def test_jsonl_integer_labels_kept_and_name_eq_path(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_jsonl(
        folder / "train.jsonl",
        [
            {"text": "a", "label": 1},
            {"text": "b", "label": 0},
            {"text": "c", "label": 2, "extra": "ignored"},
        ],
    )
    (folder / "validation.jsonl").write_text('{"text": "d", "label": 2}\n\n', encoding="utf-8")
    write_csv(folder / "test.csv", [("e", "0"), ("f", "1")])  # CSV integers are integers
    ds = load_dataset(f"myname={folder}")
    assert ds["train"].features["label"].names == ["0", "1", "2"]
    assert rows_of(ds["train"]) == [("a", 1), ("b", 0), ("c", 2)]
    assert rows_of(ds["validation"]) == [("d", 2)]
    assert rows_of(ds["test"]) == [("e", 0), ("f", 1)]
    assert "myname" in ds["train"].info.description
    again = load_dataset(folder)  # a Path works too
    assert rows_of(again["test"]) == rows_of(ds["test"])


def _train_50(folder: Path) -> list[tuple[str, str]]:
    rows = [(f"text {i}", "yes" if i % 5 < 3 else "no") for i in range(50)]  # 30 yes, 20 no
    write_csv(folder / "train.csv", rows)
    write_jsonl(folder / "test.jsonl", [{"text": "t", "label": "no"}])
    return rows


def test_missing_validation_is_carved_80_20_stratified(tmp_path):
    rows = _train_50(tmp_path)
    ds = load_dataset(str(tmp_path))
    assert (ds["train"].num_rows, ds["validation"].num_rows) == (40, 10)
    names = ds["train"].features["label"].names
    assert names == ["no", "yes"]
    val_counts = Counter(names[y] for y in ds["validation"]["label"])
    assert val_counts == {"yes": 6, "no": 4}  # 20 % of 30 and of 20
    both = [(t, names[y]) for t, y in rows_of(ds["train"]) + rows_of(ds["validation"])]
    assert Counter(both) == Counter(rows)
    # rows keep the file order inside each part
    order = [int(t.split()[1]) for t in ds["train"]["text"]]
    assert order == sorted(order)
    # deterministic under split_seed, different for another seed
    assert rows_of(load_dataset(str(tmp_path))["validation"]) == rows_of(ds["validation"])
    other = load_dataset(str(tmp_path), split_seed=1)
    assert rows_of(other["validation"]) != rows_of(ds["validation"])


def test_caps_on_user_data(tmp_path):
    _train_50(tmp_path)
    ds = load_dataset(str(tmp_path), max_train=20, max_test=1)
    assert ds["train"].num_rows == 20
    # 40 train rows: 24 yes / 16 no -> 12 / 8 in a proportional draw of 20
    assert Counter(ds["train"]["label"]) == {1: 12, 0: 8}


def test_malformed_csv_row_names_file_and_line(tmp_path):
    train = tmp_path / "train.csv"
    # line 3 holds a quoted field spanning two lines; the bad row starts on line 5
    train.write_text('text,label\na,x\n"b\nc",y\nd,x,extra\n', encoding="utf-8")
    write_csv(tmp_path / "test.csv", [("t", "x")])
    with pytest.raises(DataFormatError, match=rf"{train}, line 5: expected 2 fields"):
        load_dataset(str(tmp_path))
    train.write_text("text,label\na,x\n,y\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{train}, line 3: empty text"):
        load_dataset(str(tmp_path))
    train.write_text("sentence,label\na,x\n", encoding="utf-8")
    with pytest.raises(
        DataFormatError,
        match=r"line 1: no text column 'text'; the header has the columns \['sentence', 'label'\]",
    ):
        load_dataset(str(tmp_path))
    train.write_bytes(b"text,label\na,x\nb\xff,y\n")
    with pytest.raises(DataFormatError, match=rf"{train}, line 3: not valid utf-8"):
        load_dataset(str(tmp_path))


def test_malformed_jsonl_row_names_file_and_line(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y")])
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{test}, line 3: invalid JSON"):
        load_dataset(str(tmp_path))
    test.write_text('{"text": "a", "label": 1.5}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 1: the label 'label' must be an integer or"):
        load_dataset(str(tmp_path))
    test.write_text('["a", "x"]\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 1: expected a JSON object"):
        load_dataset(str(tmp_path))


def test_unseen_label_in_validation_or_test(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y")])
    write_csv(tmp_path / "validation.csv", [("c", "x")])
    test = write_csv(tmp_path / "test.csv", [("d", "y"), ("e", "z")])
    with pytest.raises(DataFormatError, match=rf"{test}, line 3: label 'z' does not occur in"):
        load_dataset(str(tmp_path))


def test_integer_labels_must_be_contiguous_from_zero(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 2}])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "c", "label": 1}])
    with pytest.raises(DataFormatError, match=r"exactly 0..C-1 .* found \[1, 2\]"):
        load_dataset(str(tmp_path))


def test_mixed_label_kinds_refused(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": "1"}])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "c", "label": 0}])
    with pytest.raises(DataFormatError, match="mix integers"):
        load_dataset(str(tmp_path))


def test_single_class_train_refused(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "x")])
    write_csv(tmp_path / "test.csv", [("c", "x")])
    with pytest.raises(DataFormatError, match="single class"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_empty_split_refused(tmp_path, split):
    for s in ("train", "validation", "test"):
        write_csv(tmp_path / f"{s}.csv", [] if s == split else [("a", "x"), ("b", "y")])
    with pytest.raises(
        DataFormatError, match=rf"{tmp_path / (split + '.csv')}: the split is empty"
    ):
        load_dataset(str(tmp_path))
    (tmp_path / f"{split}.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match="the file is empty"):
        load_dataset(str(tmp_path))


def test_missing_or_ambiguous_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "absent"))
    write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y")])
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(str(tmp_path))
    assert str(tmp_path / "test.csv") in str(info.value)
    assert str(tmp_path / "test.jsonl") in str(info.value)
    write_csv(tmp_path / "test.csv", [("a", "x")])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": "x"}])
    with pytest.raises(DataFormatError, match="both test.csv and test.jsonl"):
        load_dataset(str(tmp_path))


def test_bad_name_spec():
    with pytest.raises(ValueError, match="Expected NAME=PATH"):
        load_dataset("=somewhere")
    with pytest.raises(ValueError, match="Unknown dataset 'not-a-folder'"):
        load_dataset("not-a-folder")


def test_label_dtype_is_int64_classlabel(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y")])
    write_csv(tmp_path / "test.csv", [("c", "y")])
    ds = load_dataset(str(tmp_path))
    arr = ds["train"].with_format("numpy")["label"]
    assert np.asarray(arr).dtype.kind == "i"
    assert ds["train"].features["label"].num_classes == 2


# ----------------------------------------------------------------------------- labels (issue 8)
def test_label_whitespace_stripped_alike_in_csv_and_jsonl(tmp_path):
    # regression: CSV stripped label whitespace and JSONL did not (" pos" and "pos": 2 classes)
    rows = [("a", " pos"), ("b", "neg "), ("c", "pos"), ("d", "\tneg")]
    csv_dir, jsonl_dir = tmp_path / "csv", tmp_path / "jsonl"
    for folder in (csv_dir, jsonl_dir):
        folder.mkdir()
    write_csv(csv_dir / "train.csv", rows)
    write_csv(csv_dir / "test.csv", [("e", " neg ")])
    write_jsonl(jsonl_dir / "train.jsonl", [{"text": t, "label": y} for t, y in rows])
    write_jsonl(jsonl_dir / "test.jsonl", [{"text": "e", "label": " neg "}])
    for folder in (csv_dir, jsonl_dir):
        ds = load_dataset(str(folder))
        assert ds["train"].features["label"].names == ["neg", "pos"]
        assert sorted(list(ds["train"]["label"]) + list(ds["validation"]["label"])) == [0, 0, 1, 1]
        assert list(ds["test"]["label"]) == [0]


def test_repeated_header_row_is_an_error_naming_the_line(tmp_path):
    # regression: a repeated header row trained a 3-class model with a class named 'label'
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,pos\nb,neg\ntext,label\nc,pos\n", encoding="utf-8")
    write_csv(tmp_path / "test.csv", [("t", "pos")])
    with pytest.raises(DataFormatError, match=rf"{train}, line 4: the label 'label' is the label"):
        load_dataset(str(tmp_path))
    # the same with a renamed label column
    train.write_text("category,text\npos,a\nneg,b\ncategory,text\n", encoding="utf-8")
    write_csv(tmp_path / "test.csv", [("pos", "t")], header=("category", "text"))
    with pytest.raises(DataFormatError, match=rf"{train}, line 4: the label 'category' is"):
        load_dataset(str(tmp_path), label_column="category")
    jsonl = tmp_path / "j"
    jsonl.mkdir()
    write_jsonl(jsonl / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "t", "label": "label"}])
    write_jsonl(jsonl / "test.jsonl", [{"text": "b", "label": "x"}])
    with pytest.raises(DataFormatError, match=rf"{jsonl / 'train.jsonl'}, line 2: the label 'label'"):
        load_dataset(str(jsonl))


def test_case_variants_and_few_rows_warn_with_counts(tmp_path, caplog):
    rows = [(f"t{i}", "pos") for i in range(12)] + [(f"u{i}", "Pos") for i in range(3)]
    rows += [(f"v{i}", "neg") for i in range(12)]
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", [("x", "pos"), ("y", "neg")] * 10 + [("z", "Pos")])
    with caplog.at_level(logging.WARNING, logger="adue.data.user"):
        ds = load_dataset(str(tmp_path))
    assert ds["train"].features["label"].names == ["Pos", "neg", "pos"]  # still 3 classes
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    case = [m for m in messages if "differ only in case" in m]
    assert case == [
        "Labels that differ only in case are separate classes ('Pos': 4 rows, 'pos': 22 rows); "
        "if they mean the same class, write them the same way."
    ]
    few = [m for m in messages if "fewer than 10 rows" in m]
    assert few == [
        f"{tmp_path / 'train.csv'}: classes with fewer than 10 rows ('Pos': 3); estimates for "
        "them will be noisy.",
        f"{tmp_path / 'test.csv'}: classes with fewer than 10 rows ('Pos': 1); estimates for "
        "them will be noisy.",
    ]


def test_no_warning_for_clean_labels(tmp_path, caplog):
    rows = [(f"t{i}", "pos" if i % 2 else "neg") for i in range(40)]
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", rows[:20])
    with caplog.at_level(logging.WARNING, logger="adue.data"):
        load_dataset(str(tmp_path))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_missing_columns_name_the_columns_found(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("a", "x")], header=("sentence", "category"))
    write_csv(tmp_path / "test.csv", [("b", "x")], header=("sentence", "category"))
    with pytest.raises(DataFormatError) as info:
        load_dataset(str(tmp_path))
    assert str(info.value) == (
        f"{train}, line 1: no text column 'text'; the header has the columns ['sentence', "
        "'category']. Name the text column with --text-column (text_column=)"
    )
    with pytest.raises(DataFormatError, match=r"no label column 'label'; the header has the co"):
        load_dataset(str(tmp_path), text_column="sentence")
    jdir = tmp_path / "j"
    jdir.mkdir()
    write_jsonl(jdir / "train.jsonl", [{"body": "a", "y": 0}, {"body": "b", "y": 1}])
    write_jsonl(jdir / "test.jsonl", [{"body": "c", "y": 0}])
    with pytest.raises(DataFormatError) as info:
        load_dataset(str(jdir), text_column="body")
    assert str(info.value) == (
        f"{jdir / 'train.jsonl'}, line 1: no label key 'label'; the object has the keys "
        "['body', 'y']. Name the label key with --label-column (label_column=)"
    )


def test_text_and_label_columns_for_csv_and_jsonl(tmp_path):
    # regression: a CSV with text,category could only be used after renaming its header
    cdir, jdir = tmp_path / "c", tmp_path / "j"
    cdir.mkdir()
    jdir.mkdir()
    rows = [("good", "pos"), ("bad", "neg"), ("fine", "pos")]
    write_csv(cdir / "train.csv", rows, header=("text", "category"))
    write_csv(cdir / "test.csv", [("awful", "neg")], header=("text", "category"))
    write_jsonl(jdir / "train.jsonl", [{"body": t, "y": y} for t, y in rows])
    write_jsonl(jdir / "test.jsonl", [{"body": "awful", "y": "neg"}])
    c = load_dataset(str(cdir), label_column="category")
    j = load_dataset(str(jdir), text_column="body", label_column="y")
    for ds in (c, j):
        assert ds.column_names == {s: ["text", "label"] for s in ("train", "validation", "test")}
        assert ds["train"].features["label"].names == ["neg", "pos"]
        assert rows_of(ds["test"]) == [("awful", 0)]
    assert sorted(rows_of(c["train"]) + rows_of(c["validation"])) == [
        ("bad", 0), ("fine", 1), ("good", 1)
    ]


def test_column_options_checked(tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset("sst2", text_column="sentence")
    assert str(info.value) == (
        "The 'text_column' parameter of load_dataset must be 'text' for the named dataset "
        "'sst2' (its file format is fixed; the column options are for user folders). Got "
        "'sentence' instead."
    )
    with pytest.raises(ValueError, match=r"The 'label_column' parameter of load_dataset must be "
                       r"different from text_column. Got 'x' instead."):
        load_dataset(str(tmp_path), text_column="x", label_column="x")
    with pytest.raises(ValueError, match=r"The 'text_column' parameter of load_dataset must be a "
                       r"non-empty str \(a column name\). Got '' instead."):
        load_dataset(str(tmp_path), text_column="")


@pytest.mark.parametrize("base", ["val", "dev"])
def test_val_and_dev_name_the_validation_file(tmp_path, base):
    write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y")])
    write_jsonl(tmp_path / f"{base}.jsonl", [{"text": "c", "label": "y"}])
    write_csv(tmp_path / "test.csv", [("d", "x")])
    ds = load_dataset(str(tmp_path))
    assert rows_of(ds["validation"]) == [("c", 1)]  # the file's rows, not an 80/20 carve
    assert rows_of(ds["train"]) == [("a", 0), ("b", 1)]
    write_csv(tmp_path / "validation.csv", [("e", "x")])
    with pytest.raises(DataFormatError, match=rf"both validation.csv and {base}.jsonl exist"):
        load_dataset(str(tmp_path))


def test_invalid_utf8_in_jsonl_names_file_and_line(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y")])
    test = tmp_path / "test.jsonl"
    test.write_bytes(b'{"text": "ok", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n')
    with pytest.raises(DataFormatError, match=rf"{test}, line 2: not valid utf-8"):
        load_dataset(str(tmp_path))
