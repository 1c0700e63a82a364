"""The one data-folder resolver, dataset names, the rows' fingerprint, the shared data options
and ``adue datasets`` (called through its add_parser on a fresh parser)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

import adue.data.loading as loading_mod
from adue.cli import datasets_cmd
from adue.cli._options import add_data_options
from adue.data import (
    DATASETS,
    dataset_fingerprint,
    dataset_name,
    find_shared_data,
    load_dataset,
    resolve_data_dir,
)


def _real_data_dir() -> Path:
    env = os.environ.get("ADUE_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (root / "cola" / "train.tsv").is_file():
        pytest.fail(f"The benchmark data folder {root} lacks cola/train.tsv; put the shared "
                    "data at ../shared/data beside the repository or set ADUE_DATA_DIR.")
    return root


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No ADUE_DATA_DIR, an empty user cache, the hub unreachable, cwd = tmp_path."""
    monkeypatch.delenv("ADUE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)

    def no_hub(name):
        raise AssertionError(f"the hub must not be used (asked for {name})")

    monkeypatch.setattr(loading_mod, "load_from_hub", no_hub)
    return tmp_path


@pytest.fixture
def project(clean):
    """tmp/shared/data holding cola (linked to the real files) and tmp/repo/sub as cwd."""
    shared = clean / "shared" / "data"
    shared.mkdir(parents=True)
    (shared / "cola").symlink_to(_real_data_dir() / "cola", target_is_directory=True)
    sub = clean / "repo" / "sub"
    sub.mkdir(parents=True)
    os.chdir(sub)
    return shared


# ----------------------------------------------------------------------------- resolver
def test_shared_data_found_walking_up(project):
    assert find_shared_data() == project
    assert resolve_data_dir() == project
    assert resolve_data_dir(name="cola") == project
    # shared/data without a dataset's files: that dataset goes to the cache, then the hub
    assert resolve_data_dir(name="sst2") is None
    assert find_shared_data(project.parent.parent.parent) is None


def test_resolver_order(project, monkeypatch, tmp_path):
    monkeypatch.setenv("ADUE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(name="cola") == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg", name="cola") == tmp_path / "arg"
    monkeypatch.delenv("ADUE_DATA_DIR")
    cache = tmp_path / "xdg" / "adue" / "data"
    cache.mkdir(parents=True)
    (cache / "cola").symlink_to(project / "cola", target_is_directory=True)
    assert resolve_data_dir(name="cola") == project  # shared/data comes before the cache
    os.chdir(tmp_path.parent)
    assert resolve_data_dir(name="cola") == cache


def test_load_dataset_walks_up_like_run(project):
    # regression: finetune/extract (load_dataset with no data_dir) went to the hub while
    # run/grid/demo found ../shared/data by walking up
    ds = load_dataset("cola", max_train=50, max_val=10, max_test=10)
    assert [ds[s].num_rows for s in ("train", "validation", "test")] == [50, 10, 10]
    explicit = load_dataset("cola", project, max_train=50, max_val=10, max_test=10)
    assert dataset_fingerprint(ds) == dataset_fingerprint(explicit)


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("sst2", "sst2"),
        ("20newsgroups", "20newsgroups"),
        ("/abs/path/mydata", "mydata"),
        ("/abs/path/mydata/", "mydata"),
        ("mine=/abs/path", "mine"),
        (" mine = /abs/path ", "mine"),
        ("/data/a=b", "a=b"),
        ("./rel/folder", "folder"),
    ],
)
def test_dataset_name(spec, name):
    # regression: NAME=PATH put 'name=/abs/path' into the cell's name
    assert dataset_name(spec) == name


def test_dataset_name_of_a_path_object_and_bad_specs(tmp_path):
    assert dataset_name(tmp_path / "x") == "x"
    with pytest.raises(ValueError, match="Unknown dataset 'imdb'"):
        dataset_name("imdb")
    with pytest.raises(ValueError, match="Expected NAME=PATH"):
        dataset_name("name=")
    with pytest.raises(ValueError, match=r"The 'spec' parameter of dataset_name must be"):
        dataset_name("")


# ----------------------------------------------------------------------------- fingerprint
def _folder(root: Path, train: list[tuple[str, str]], test: list[tuple[str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("validation", train[:2]), ("test", test)):
        with open(root / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(("text", "label"))
            w.writerows(rows)
    return root


def _reference_sha(splits: dict[str, list[tuple[str, int]]], names: list[str]) -> str:
    def line(obj) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    h = hashlib.sha256(line({"adue_dataset_fingerprint": 1, "class_names": names,
                             "splits": list(splits)}))
    for split, rows in splits.items():
        h.update(line([split, len(rows)]))
        for text, label in rows:
            h.update(line([text, label]))
    return h.hexdigest()


def test_fingerprint_is_the_documented_sha256(tmp_path):
    train = [("good café", "pos"), ("bad", "neg"), ("fine", "pos")]
    ds = load_dataset(str(_folder(tmp_path / "d", train, [("awful", "neg")])))
    expected = _reference_sha(
        {
            "train": [("good café", 1), ("bad", 0), ("fine", 1)],
            "validation": [("good café", 1), ("bad", 0)],
            "test": [("awful", 0)],
        },
        ["neg", "pos"],
    )
    assert dataset_fingerprint(ds) == expected
    assert len(expected) == 64


def test_fingerprint_changes_with_the_rows(tmp_path):
    # the data side of "a changed dataset reuses the old run": an edit of test.csv shows
    train = [("good", "pos"), ("bad", "neg"), ("fine", "pos")]
    folder = _folder(tmp_path / "d", train, [("awful", "neg")])
    before = dataset_fingerprint(load_dataset(str(folder)))
    assert dataset_fingerprint(load_dataset(str(folder))) == before  # deterministic
    _folder(folder, train, [("awful", "neg"), ("great", "pos")])
    added = dataset_fingerprint(load_dataset(str(folder)))
    _folder(folder, train, [("awful", "pos")])
    relabelled = dataset_fingerprint(load_dataset(str(folder)))
    renamed = [(t, {"pos": "yes", "neg": "no"}[y]) for t, y in train]
    _folder(folder, renamed, [("awful", "no")])  # same ids, other class names
    names = dataset_fingerprint(load_dataset(str(folder)))
    assert len({before, added, relabelled, names}) == 4
    # the same rows as JSONL in another folder: the same fingerprint
    other = tmp_path / "j"
    other.mkdir()
    for split, rows in (("train", train), ("validation", train[:2]), ("test", [("awful", "neg")])):
        (other / f"{split}.jsonl").write_text(
            "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8"
        )
    _folder(folder, train, [("awful", "neg")])
    assert dataset_fingerprint(load_dataset(str(other))) == before
    with pytest.raises(ValueError, match=r"The 'ds' parameter of dataset_fingerprint must be"):
        dataset_fingerprint({})


# ----------------------------------------------------------------------------- CLI options
def test_add_data_options():
    parser = add_data_options(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert (args.data_dir, args.text_column, args.label_column) == (None, "text", "label")
    args = parser.parse_args(["--data-dir", "D", "--text-column", "body", "--label-column", "y"])
    assert (args.data_dir, args.text_column, args.label_column) == ("D", "body", "y")


# ----------------------------------------------------------------------------- adue datasets
def _datasets(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="adue")
    datasets_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["datasets", *argv])
    return args.func(args)


def _fake_cola(root: Path, n_train: int, n_dev: int) -> None:
    (root / "cola").mkdir(parents=True)
    for fname, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        lines = [f"src\t{i % 2}\t\tsentence {i}" for i in range(n)]
        (root / "cola" / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_datasets_json_registry_sizes_and_locations(project, capsys):
    assert _datasets(["--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == list(DATASETS)
    cola = rows["cola"]
    assert cola["location"] == str(project)
    assert cola["location_source"] == "shared/data found in the current folder or above"
    assert cola["sizes"] == {"train": 6_840, "validation": 1_711, "test": 1_043}
    assert cola["sizes_from"] == "registry (the protocol on the local release files)"
    assert cola["classes"] == ["unacceptable", "acceptable"]
    tox = rows["toxigen"]  # not in the local folder: the hub, with the hub release's sizes
    assert tox["location"] is None and tox["hub"] == "skg/toxigen-data (config annotated)"
    assert tox["sizes"] == {"train": 7_168, "validation": 1_792, "test": 940}
    assert tox["sizes_from"] == "registry (the protocol on the hub release)"
    assert len(rows["20newsgroups"]["classes"]) == 20


def test_datasets_count_reads_the_local_files(clean, capsys):
    data = clean / "data"
    _fake_cola(data, 10, 3)
    assert _datasets(["cola", "--data-dir", str(data), "--count", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # 10 train rows: ceil(0.2 * 10) = 2 to validation; 3 dev rows are the test split
    assert row["sizes"] == {"train": 8, "validation": 2, "test": 3}
    assert row["sizes_from"] == "counted from the local files"
    assert row["location_source"] == "the data_dir argument (--data-dir)"
    assert _datasets(["cola", "--data-dir", str(data)]) == 0  # table, registry sizes
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["cola", "6,840", "1,711", "1,043", "registry", "(the", "protocol",
                              "on", "the", "local", "release", "files)"]
    assert out[3].split() == ["classes", "2:", "unacceptable,", "acceptable"]
    assert out[4].strip() == f"read from {data} (from the data_dir argument (--data-dir))"


def test_datasets_missing_files_and_user_folder(clean, monkeypatch, capsys):
    monkeypatch.setenv("ADUE_DATA_DIR", str(clean / "empty"))
    assert _datasets(["sst5"]) == 1
    out = capsys.readouterr().out
    assert f"MISSING: {clean / 'empty' / 'sst5' / 'stsa.fine.train'}" in out
    folder = _folder(clean / "mine", [("a", "x"), ("b", "y"), ("c", "y")], [("d", "x")])
    assert _datasets([f"own={folder}", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "own" and row["classes"] == ["x", "y"]
    assert row["sizes"] == {"train": 3, "validation": 2, "test": 1}
    assert row["sizes_from"] == "counted from the local files" and row["hub"] is None
