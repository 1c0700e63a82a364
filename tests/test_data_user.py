"""A user's own dataset folder (CSV / JSONL) loaded through adue.data.load_dataset."""

from __future__ import annotations

import csv
import json
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
