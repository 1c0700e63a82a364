"""``load_dataset``: a benchmark dataset or a user folder as a ``datasets.DatasetDict``."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adue._validation import check_number, param_error
from adue.data.errors import DataFormatError, DataNotFoundError
from adue.data.hub import load_from_hub
from adue.data.paths import hub_failed_message, local_paths, locate_data_dir, missing_files_message
from adue.data.readers import RawSplit, read_local
from adue.data.registry import DATASETS
from adue.data.splits import split_train_validation, stratified_subsample
from adue.data.user import load_user_folder, parse_user_spec

if TYPE_CHECKING:
    import datasets

__all__ = ["SPLITS", "dataset_name", "load_dataset", "read_splits", "unknown_dataset_error"]

logger = logging.getLogger(__name__)

#: Split names of every returned DatasetDict, in order.
SPLITS = ("train", "validation", "test")
_OWNER = "load_dataset"


def _check_cap(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, np.integer):
        value = int(value)
    check_number(name, _OWNER, value, low=1, integer=True)
    return value


def _check_seed(name: str, value: Any) -> int:
    if isinstance(value, np.integer):
        value = int(value)
    check_number(name, _OWNER, value, low=0, high=2**32 - 1, integer=True)
    return value


def unknown_dataset_error(name: str) -> ValueError:
    """The error for a spec that is neither a named dataset nor a user folder."""
    return ValueError(
        f"Unknown dataset {name!r}. Valid names: {', '.join(DATASETS)}; or a user folder "
        "given as a path or NAME=PATH, holding train, test and optionally validation (or val, "
        "dev) files (.csv or .jsonl with 'text' and 'label' columns, or the columns named by "
        "--text-column / --label-column)."
    )


def dataset_name(spec: str | os.PathLike[str]) -> str:
    """The name a dataset is known by in results and run folders.

    A named dataset -> itself; ``NAME=PATH`` -> ``NAME``; a folder path -> the folder's base
    name (``/abs/path/mydata/`` -> ``mydata``). Anything else raises ``ValueError``.
    """
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(spec, str) or not spec:
        raise param_error("spec", "dataset_name", "a dataset name, a folder path or NAME=PATH", spec)
    if spec in DATASETS:
        return spec
    user = parse_user_spec(spec)
    if user is None:
        raise unknown_dataset_error(spec)
    return user[0]


def _load_builtin(name: str, data_dir: str | os.PathLike[str] | None) -> dict[str, RawSplit]:
    root, source = locate_data_dir(data_dir, name)
    if root is not None:
        if not all(p.is_file() for p in local_paths(root, name)):
            raise DataNotFoundError(missing_files_message(name, root, source))
        logger.info("Reading %s from %s (%s).", name, root, source)
        raw = read_local(name, root)
    else:
        logger.info("No local files for %s; loading it from the hub.", name)
        try:
            raw = load_from_hub(name)
        except Exception as err:  # any hub / network / auth failure
            raise DataNotFoundError(hub_failed_message(name, err)) from err
    num_classes = DATASETS[name].num_classes
    for split, part in raw.items():
        bad = (part.labels < 0) | (part.labels >= num_classes)
        if bad.any():
            raise DataFormatError(
                f"Dataset {name!r}, {split} split: label {int(part.labels[bad][0])} is outside "
                f"the declared classes 0..{num_classes - 1}."
            )
        if len(part) == 0:
            raise DataFormatError(f"Dataset {name!r}: the {split} split is empty.")
    return raw


def _check_fixed_columns(name: str, text_column: str, label_column: str) -> None:
    for param, value, default in (
        ("text_column", text_column, "text"),
        ("label_column", label_column, "label"),
    ):
        if value != default:
            raise param_error(
                param,
                _OWNER,
                f"{default!r} for the named dataset {name!r} (its file format is fixed; the "
                "column options are for user folders)",
                value,
            )


def _cap(raw: RawSplit, cap: int | None, split: str, param: str, name: str, seed: int) -> RawSplit:
    if cap is None:
        return raw
    n = len(raw)
    if cap > n:
        logger.warning(
            "%s=%d is larger than the %s split of %s (%d rows); using all %d rows.",
            param,
            cap,
            split,
            name,
            n,
            n,
        )
    if cap >= n:
        return raw
    return raw.take(stratified_subsample(raw.labels, cap, seed))


def _to_dataset(raw: RawSplit, split: str, names: list[str], description: str):
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    return datasets.Dataset.from_dict(
        {"text": raw.texts, "label": raw.labels},
        features=features,
        info=datasets.DatasetInfo(description=description, features=features),
        split=datasets.NamedSplit(split),
    )


@dataclass
class _Loaded:
    raw: dict[str, RawSplit]
    names: list[str]
    description: str
    shown: str


def _check_columns(text_column: Any, label_column: Any) -> None:
    for param, value in (("text_column", text_column), ("label_column", label_column)):
        if not isinstance(value, str) or not value.strip():
            raise param_error(param, _OWNER, "a non-empty str (a column name)", value)
    if text_column == label_column:
        raise param_error("label_column", _OWNER, "different from text_column", label_column)


def read_splits(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    split_seed: int = 42,
) -> _Loaded:
    """Read a named dataset or a user folder (raw rows, class names), before any cap.

    Validation is carved 80/20 from train (``split_seed``) when the release has none.
    """
    if name in DATASETS:
        _check_fixed_columns(name, text_column, label_column)
        spec = DATASETS[name]
        loaded = _Loaded(_load_builtin(name, data_dir), list(spec.class_names),
                         spec.description, name)
    else:
        user = parse_user_spec(name)
        if user is None:
            raise unknown_dataset_error(name)
        shown, folder = user
        raw, names = load_user_folder(
            Path(folder), text_column=text_column, label_column=label_column
        )
        loaded = _Loaded(raw, names, f"User dataset {shown!r} from {folder}.", shown)
    raw = loaded.raw
    if "validation" not in raw:
        tr, va = split_train_validation(
            raw["train"].labels, split_seed, allow_unstratified=name not in DATASETS
        )
        loaded.raw = {
            "train": raw["train"].take(tr),
            "validation": raw["train"].take(va),
            "test": raw["test"],
        }
    return loaded


def load_dataset(
    name: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    split_seed: int = 42,
    subsample_seed: int = 0,
    text_column: str = "text",
    label_column: str = "label",
) -> datasets.DatasetDict:
    """Load a dataset with the protocol's splits as a ``DatasetDict`` (train/validation/test).

    ``name``: one of :data:`adue.data.DATASETS` or a user folder (path or ``NAME=PATH``).
    Local files of a named dataset come from the folder :func:`adue.data.resolve_data_dir`
    gives for ``data_dir`` (the argument, ``$ADUE_DATA_DIR``, ``shared/data`` found upwards,
    the user cache); with none of them the hub is used. Validation is carved 80/20
    (stratified, ``split_seed``) from train when the release has none. ``max_*`` cap a split
    by a stratified draw seeded by ``subsample_seed`` only (``data_dir`` plays no part for
    user folders). ``text_column`` / ``label_column``: the CSV header names / JSONL keys of a
    user folder (the named datasets have fixed formats; other values for them are an
    error). Returned columns: ``text`` (str), ``label`` (ClassLabel, 0..C-1).
    """
    caps = {
        "train": ("max_train", _check_cap("max_train", max_train)),
        "validation": ("max_val", _check_cap("max_val", max_val)),
        "test": ("max_test", _check_cap("max_test", max_test)),
    }
    split_seed = _check_seed("split_seed", split_seed)
    subsample_seed = _check_seed("subsample_seed", subsample_seed)
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise param_error("name", _OWNER, "a dataset name, a folder path or NAME=PATH", name)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise param_error("data_dir", _OWNER, "a path or None", data_dir)
    _check_columns(text_column, label_column)

    start = time.perf_counter()
    loaded = read_splits(
        name, data_dir, text_column=text_column, label_column=label_column, split_seed=split_seed
    )
    import datasets

    out = datasets.DatasetDict()
    for split in SPLITS:
        param, cap = caps[split]
        part = _cap(loaded.raw[split], cap, split, param, loaded.shown, subsample_seed)
        out[split] = _to_dataset(part, split, loaded.names, loaded.description)
    logger.info(
        "Loaded %s: train %d, validation %d, test %d rows, %d classes (%.2f s).",
        loaded.shown,
        *(out[s].num_rows for s in SPLITS),
        len(loaded.names),
        time.perf_counter() - start,
    )
    return out
