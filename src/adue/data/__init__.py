"""The dataset layer: the five benchmark datasets and user folders as ``DatasetDict`` objects.

>>> from adue.data import load_dataset
>>> ds = load_dataset("sst2", max_train=2000)            # doctest: +SKIP
>>> ds["train"].features["label"].names                   # doctest: +SKIP
['negative', 'positive']

Data directory (one resolver, :func:`resolve_data_dir`, for every command and the API): the
``data_dir`` argument (CLI ``--data-dir``), else ``$ADUE_DATA_DIR``, else a ``shared/data``
folder in the current folder or a parent, else the user cache (``$XDG_CACHE_HOME/adue/data``
or ``~/.cache/adue/data``) when it holds the files, else the hub. The local layout is that
of ``../shared/data``. User folders (CSV / JSONL) are given as a path or ``NAME=PATH``.
"""

from adue.data.errors import DataFormatError, DataNotFoundError
from adue.data.fingerprint import dataset_fingerprint
from adue.data.loading import SPLITS, dataset_name, load_dataset
from adue.data.paths import ENV_VAR, find_shared_data, resolve_data_dir, user_cache_data_dir
from adue.data.records import iter_texts
from adue.data.registry import DATASETS, DatasetSpec, list_datasets

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "SPLITS",
    "DataFormatError",
    "DataNotFoundError",
    "DatasetSpec",
    "dataset_fingerprint",
    "dataset_name",
    "find_shared_data",
    "iter_texts",
    "list_datasets",
    "load_dataset",
    "resolve_data_dir",
    "user_cache_data_dir",
]
