"""The five benchmark datasets read from ../shared/data: sizes, labels, splits, caps, errors.

The data folder is ``../shared/data`` beside the repository (``$ADUE_DATA_DIR`` overrides
it). Without it these tests fail: CI has ``../shared`` beside the clone.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import adue.data.loading as loading_mod
from adue.data import (
    DATASETS,
    DataFormatError,
    DataNotFoundError,
    list_datasets,
    load_dataset,
    resolve_data_dir,
)
from adue.data.hub import hub_20newsgroups, hub_sst2, hub_toxigen
from adue.data.readers import LOCAL_READERS
from adue.data.registry import NEWSGROUPS
from adue.data.splits import stratified_subsample

NAMES = ["sst2", "sst5", "cola", "20newsgroups", "toxigen"]

# (train, validation, test) sizes of the protocol on the files in ../shared/data.
EXPECTED_SIZES = {
    "sst2": (53_879, 13_470, 872),
    "cola": (6_840, 1_711, 1_043),
    "sst5": (8_544, 1_101, 2_210),
    "20newsgroups": (9_051, 2_263, 7_532),
    "toxigen": (4_731, 1_183, 600),
}
EXPECTED_CLASSES = {
    "sst2": ["negative", "positive"],
    "cola": ["unacceptable", "acceptable"],
    "sst5": ["very negative", "negative", "neutral", "positive", "very positive"],
    "20newsgroups": sorted(NEWSGROUPS),
    "toxigen": ["neutral", "hate"],
}


def _shared_data_dir() -> Path:
    env = os.environ.get("ADUE_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    missing = [
        root / rel
        for spec in DATASETS.values()
        for rel in spec.local_files
        if not (root / rel).is_file()
    ]
    if missing:
        pytest.fail(
            f"The benchmark data folder {root} lacks {[str(p) for p in missing]}. Put the "
            "shared data at ../shared/data beside the repository or set ADUE_DATA_DIR."
        )
    return root


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return _shared_data_dir()


@pytest.fixture(scope="module")
def loaded(data_dir):
    return {name: load_dataset(name, data_dir) for name in NAMES}


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No ADUE_DATA_DIR, no shared/data above the current folder and an empty user cache."""
    monkeypatch.delenv("ADUE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "adue" / "data"


# ----------------------------------------------------------------------------- references
def _raw_tsv(path: Path, text_col: int, label_col: int, header: bool) -> list[tuple[str, int]]:
    """Independent parse of a GLUE TSV with the csv module."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if header:
        rows = rows[1:]
    return [(r[text_col], int(r[label_col])) for r in rows]


def _raw_stsa(path: Path) -> list[tuple[str, int]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split(" ", 1)
            out.append((text, int(label)))
    return out


def _raw_toxigen(path: Path, train: bool) -> list[tuple[str, int]]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [(r["text"], int(r["label"] == "hate")) for r in rows if (r["id"] < 8960) == train]


def _raw_reference(name: str, root: Path) -> dict[str, list[tuple[str, int]]]:
    """(text, label) rows of the released splits, parsed independently of adue."""
    if name == "sst2":
        return {
            "train": _raw_tsv(root / "sst2/train.tsv", 0, 1, True),
            "test": _raw_tsv(root / "sst2/dev.tsv", 0, 1, True),
        }
    if name == "cola":
        return {
            "train": _raw_tsv(root / "cola/train.tsv", 3, 1, False),
            "test": _raw_tsv(root / "cola/dev.tsv", 3, 1, False),
        }
    if name == "sst5":
        return {
            s: _raw_stsa(root / f"sst5/stsa.fine.{f}")
            for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))
        }
    if name == "toxigen":
        path = root / "toxigen/toxiGen.json"
        return {"train": _raw_toxigen(path, True), "test": _raw_toxigen(path, False)}
    raise KeyError(name)


def _rows(ds) -> list[tuple[str, int]]:
    return list(zip(ds["text"], ds["label"], strict=True))


# ----------------------------------------------------------------------------- registry
def test_registry():
    assert list_datasets() == NAMES
    assert set(DATASETS) == set(NAMES) == set(LOCAL_READERS)
    for name in NAMES:
        spec = DATASETS[name]
        assert list(spec.class_names) == EXPECTED_CLASSES[name]
        assert spec.num_classes == len(EXPECTED_CLASSES[name])
        assert spec.max_length == (256 if name == "20newsgroups" else 128)
        assert spec.sizes == EXPECTED_SIZES[name]
        assert spec.hub_id and spec.description


# ----------------------------------------------------------------------------- sizes, labels
@pytest.mark.parametrize("name", NAMES)
def test_split_sizes_and_labels(loaded, name):
    ds = loaded[name]
    assert list(ds) == ["train", "validation", "test"]
    sizes = tuple(ds[s].num_rows for s in ("train", "validation", "test"))
    assert sizes == EXPECTED_SIZES[name]
    for split in ds:
        part = ds[split]
        assert part.column_names == ["text", "label"]
        assert part.features["label"].names == EXPECTED_CLASSES[name]
        labels = np.asarray(part["label"])
        assert labels.dtype.kind == "i"
        # every class present in every split (the smallest is ToxiGen test: 257 hate)
        assert set(labels.tolist()) == set(range(len(EXPECTED_CLASSES[name])))
        texts = part["text"]
        assert all(isinstance(t, str) and t.strip() for t in texts)


@pytest.mark.parametrize("name", ["sst2", "cola", "sst5", "toxigen"])
def test_splits_partition_the_release(loaded, data_dir, name):
    """train+validation = the released train rows (multiset); test = the release, in order."""
    ds = loaded[name]
    ref = _raw_reference(name, data_dir)
    assert _rows(ds["test"]) == ref["test"]
    if "validation" in ref:  # SST-5: as released
        assert _rows(ds["train"]) == ref["train"]
        assert _rows(ds["validation"]) == ref["validation"]
    else:
        assert Counter(_rows(ds["train"])) + Counter(_rows(ds["validation"])) == Counter(
            ref["train"]
        )


def test_known_class_counts(loaded):
    """Counts stated in ../shared/data/README.md and GLUE's documentation."""
    tox = loaded["toxigen"]
    assert sum(tox["train"]["label"]) + sum(tox["validation"]["label"]) == 2510
    assert sum(tox["test"]["label"]) == 257
    sst2 = loaded["sst2"]
    assert sum(sst2["test"]["label"]) == 444  # GLUE SST-2 dev: 428 negative, 444 positive
    # GLUE's trailing space after every SST-2 sentence is kept as released
    assert all(t.endswith(" ") for t in sst2["test"]["text"])
    news = loaded["20newsgroups"]
    assert news["train"].num_rows + news["validation"].num_rows == 11_314
    # headers kept as scikit-learn's default
    assert all(t.startswith("From:") or "\nSubject:" in t for t in news["test"]["text"][:50])


@pytest.mark.parametrize("name", ["sst2", "cola", "20newsgroups", "toxigen"])
def test_protocol_split_is_stratified(loaded, name):
    ds = loaded[name]
    tr = np.bincount(ds["train"]["label"], minlength=DATASETS[name].num_classes)
    va = np.bincount(ds["validation"]["label"], minlength=DATASETS[name].num_classes)
    total = tr + va
    # sklearn's stratified split puts round(0.2 * n_c) (+-1) rows of class c in validation
    assert np.all(np.abs(va - 0.2 * total) <= 1.0)
    assert va.sum() == int(np.ceil(0.2 * total.sum()))


def test_splits_deterministic(loaded, data_dir):
    again = load_dataset("cola", data_dir)
    for split in again:
        assert _rows(again[split]) == _rows(loaded["cola"][split])
    other = load_dataset("cola", data_dir, split_seed=7)
    assert other["validation"].num_rows == 1711
    assert _rows(other["validation"]) != _rows(again["validation"])
    assert _rows(other["test"]) == _rows(again["test"])


# ----------------------------------------------------------------------------- caps
@pytest.mark.parametrize("name,caps", [("sst5", (500, 200, 300)), ("toxigen", (333, 101, 97))])
def test_caps_are_stratified_subsets(loaded, data_dir, name, caps):
    full = loaded[name]
    capped = load_dataset(name, data_dir, max_train=caps[0], max_val=caps[1], max_test=caps[2])
    c = DATASETS[name].num_classes
    for split, cap in zip(("train", "validation", "test"), caps, strict=True):
        sub, ref = capped[split], full[split]
        assert sub.num_rows == cap
        # proportional allocation: each class count within 1 of cap * n_c / n
        n_c = np.bincount(ref["label"], minlength=c)
        k_c = np.bincount(sub["label"], minlength=c)
        assert np.all(np.abs(k_c - cap * n_c / ref.num_rows) < 1.0)
        # a subsequence of the full split (rows drawn from it, kept in its order)
        remaining = iter(_rows(ref))
        assert all(row in remaining for row in _rows(sub))
        assert sub.features["label"].names == EXPECTED_CLASSES[name]


def test_caps_depend_only_on_subsample_seed(data_dir):
    a = load_dataset("cola", data_dir, max_train=300, max_val=100, subsample_seed=0)
    b = load_dataset("cola", data_dir, max_train=300, max_val=250, max_test=50, subsample_seed=0)
    c = load_dataset("cola", data_dir, max_train=300, subsample_seed=1)
    assert _rows(a["train"]) == _rows(b["train"])  # other caps do not matter
    assert _rows(a["test"]) == _rows(c["test"])  # uncapped split untouched
    assert a["test"].num_rows == 1043 and b["test"].num_rows == 50
    assert _rows(a["train"]) != _rows(c["train"])  # the subsample seed does


def test_stratified_subsample_reference():
    """Hand-computed allocation: 10 rows of classes (6, 3, 1) capped at 5 -> (3, 2, 0)."""
    labels = np.array([0] * 6 + [1] * 3 + [2])
    idx = stratified_subsample(labels, 5, seed=0)
    # exact shares 3.0, 1.5, 0.5 -> floors 3, 1, 0; one leftover to the tie 1 vs 2 -> class 1
    assert np.bincount(labels[idx], minlength=3).tolist() == [3, 2, 0]
    assert np.array_equal(idx, np.sort(idx))
    assert np.array_equal(idx, stratified_subsample(labels, 5, seed=0))
    assert np.array_equal(stratified_subsample(labels, 10, seed=3), np.arange(10))


def test_cap_larger_than_split_uses_all(loaded, data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="adue.data"):
        ds = load_dataset("cola", data_dir, max_test=5000, max_val=1711)
    assert ds["test"].num_rows == 1043
    assert _rows(ds["test"]) == _rows(loaded["cola"]["test"])
    assert ds["validation"].num_rows == 1711
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # a cap equal to the split is not worth a warning
    assert "max_test=5000" in warnings[0] and "using all 1043 rows" in warnings[0]


@pytest.mark.parametrize("param", ["max_train", "max_val", "max_test"])
@pytest.mark.parametrize("value", [0, -5, 2.5, "100", True])
def test_invalid_caps(data_dir, param, value):
    with pytest.raises(ValueError, match=f"The '{param}' parameter of load_dataset must be an int"):
        load_dataset("cola", data_dir, **{param: value})


@pytest.mark.parametrize("param", ["split_seed", "subsample_seed"])
def test_invalid_seeds(data_dir, param):
    with pytest.raises(ValueError, match=f"The '{param}' parameter of load_dataset"):
        load_dataset("cola", data_dir, **{param: -1})


# ----------------------------------------------------------------------------- errors
def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown dataset 'imdb'") as info:
        load_dataset("imdb")
    for name in NAMES:
        assert name in str(info.value)


def test_missing_data_dir_lists_paths(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("sst5", missing)
    msg = str(info.value)
    for f in ("train", "dev", "test"):
        assert str(missing / "sst5" / f"stsa.fine.{f}") in msg
    assert "--data-dir" in msg and "ADUE_DATA_DIR" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_env_dir_used_and_reported(monkeypatch, tmp_path, data_dir):
    monkeypatch.setenv("ADUE_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="environment variable ADUE_DATA_DIR") as info:
        load_dataset("toxigen")
    assert str(tmp_path / "toxigen" / "toxiGen.json") in str(info.value)
    monkeypatch.setenv("ADUE_DATA_DIR", str(data_dir))
    assert load_dataset("toxigen")["test"].num_rows == 600


def test_hub_failure_lists_paths(no_env, monkeypatch):
    calls = []

    def offline(name):
        calls.append(name)
        raise ConnectionError("Couldn't reach the hub")

    monkeypatch.setattr(loading_mod, "load_from_hub", offline)
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cola")
    msg = str(info.value)
    assert calls == ["cola"]
    assert "ConnectionError: Couldn't reach the hub" in msg
    assert str(no_env / "cola" / "train.tsv") in msg and str(no_env / "cola" / "dev.tsv") in msg
    assert "ADUE_DATA_DIR: not set" in msg and "--data-dir" in msg


def test_user_cache_used_when_it_holds_files(no_env, monkeypatch, data_dir):
    no_env.mkdir(parents=True)
    (no_env / "cola").symlink_to(data_dir / "cola", target_is_directory=True)
    monkeypatch.setattr(
        loading_mod, "load_from_hub", lambda name: pytest.fail("hub must not be used")
    )
    assert resolve_data_dir(name="cola") == no_env
    assert resolve_data_dir(name="sst2") is None  # not in the cache: hub
    assert load_dataset("cola")["test"].num_rows == 1043


def test_resolve_data_dir_order(no_env, monkeypatch, tmp_path):
    assert resolve_data_dir() is None
    monkeypatch.setenv("ADUE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_malformed_local_file_names_file_and_line(tmp_path, data_dir):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").symlink_to(data_dir / "sst2" / "dev.tsv")
    bad = tmp_path / "sst2" / "train.tsv"
    bad.write_text("sentence\tlabel\ngood one \t1\nno label here\nx\t0\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{bad}, line 3: expected 2 tab-separated"):
        load_dataset("sst2", tmp_path)
    bad.write_text("sentence\tlabel\ngood one \t1\nbad label \t7\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 3: label 7 is outside 0..1"):
        load_dataset("sst2", tmp_path)
    bad.write_text("sentence\tlabel\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="no rows"):
        load_dataset("sst2", tmp_path)


# ----------------------------------------------------------------------------- hub code paths
def test_hub_labels_outside_declared_classes_refused(no_env, monkeypatch):
    from adue.data.readers import RawSplit

    def fake(name):  # e.g. GLUE's hidden test labels (-1) leaking in
        return {"train": RawSplit(["a", "b"], [0, 1]), "test": RawSplit(["c"], [-1])}

    monkeypatch.setattr(loading_mod, "load_from_hub", fake)
    with pytest.raises(DataFormatError, match=r"'sst2', test split: label -1 is outside"):
        load_dataset("sst2")


def test_hub_loaders_convert_offline_fakes(monkeypatch):
    """The hub code paths, fed fake hub datasets (the hub itself is unreachable here)."""
    import datasets
    import sklearn.datasets

    def fake_load(path, config=None, **kw):
        if path == "nyu-mll/glue":
            assert config == "sst2"
            return datasets.DatasetDict(
                {
                    "train": datasets.Dataset.from_dict(
                        {"sentence": ["a ", "b "], "label": [0, 1]}
                    ),
                    "validation": datasets.Dataset.from_dict({"sentence": ["c "], "label": [1]}),
                }
            )
        assert (path, config) == ("skg/toxigen-data", "annotated")
        part = {
            "text": ["x", "y", "z"],
            "toxicity_ai": [2.5, 3.0, 5.0],
            "toxicity_human": [3.0, 2.6, 1.0],
        }
        return datasets.DatasetDict(
            {"train": datasets.Dataset.from_dict(part), "test": datasets.Dataset.from_dict(part)}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    sst2 = hub_sst2()
    assert sst2["train"].texts == ["a ", "b "] and sst2["test"].texts == ["c "]
    assert sst2["test"].labels.tolist() == [1]
    tox = hub_toxigen()
    # 2.5 + 3.0 = 5.5 is not > 5.5; 3.0 + 2.6 = 5.6 and 6.0 are
    assert tox["train"].labels.tolist() == [0, 1, 1]

    class Bunch:
        def __init__(self, subset):
            self.data = [f"{subset} post"]
            self.target = np.array([3])
            self.target_names = list(NEWSGROUPS)

    seen = []

    def fake_fetch(subset, remove):
        seen.append((subset, remove))
        return Bunch(subset)

    monkeypatch.setattr(sklearn.datasets, "fetch_20newsgroups", fake_fetch)
    news = hub_20newsgroups()
    assert seen == [("train", ()), ("test", ())]  # headers kept
    assert news["test"].texts == ["test post"] and news["test"].labels.tolist() == [3]


@pytest.mark.slow
def test_20newsgroups_equals_sklearn_fetch(tmp_path, data_dir):
    """Rows and order equal scikit-learn's fetch_20newsgroups on the same (unpacked) files."""
    import codecs
    import pickle
    import tarfile

    from sklearn.datasets import _twenty_newsgroups as tng
    from sklearn.datasets import fetch_20newsgroups, load_files
    from sklearn.datasets._base import _pkl_filepath

    with tarfile.open(data_dir / "20news" / "20news-bydate.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    cache = {
        s: load_files(tmp_path / "x" / f"20news-bydate-{s}", encoding="latin1")
        for s in ("train", "test")
    }
    home = tmp_path / "home"
    home.mkdir()
    Path(_pkl_filepath(home, tng.CACHE_NAME)).write_bytes(
        codecs.encode(pickle.dumps(cache), "zlib_codec")
    )
    mine = LOCAL_READERS["20newsgroups"](data_dir)
    for subset in ("train", "test"):
        ref = fetch_20newsgroups(subset=subset, data_home=home, download_if_missing=False)
        assert list(ref.target_names) == list(NEWSGROUPS)
        assert mine[subset].texts == ref.data
        assert np.array_equal(mine[subset].labels, ref.target)
