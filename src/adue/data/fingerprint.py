"""``dataset_fingerprint``: one sha256 over the rows a run was trained and evaluated on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from adue._validation import param_error

__all__ = ["FINGERPRINT_VERSION", "dataset_fingerprint"]

#: Bumped whenever the bytes hashed by :func:`dataset_fingerprint` change.
FINGERPRINT_VERSION = 1


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def dataset_fingerprint(ds: Mapping[str, Any]) -> str:
    """sha256 (64 hex digits) of every split's rows, in split order, plus the class names.

    ``ds``: a ``datasets.DatasetDict`` (or a mapping of split name -> ``Dataset``) with
    ``text`` and ``label`` columns, as :func:`adue.data.load_dataset` returns. The bytes
    hashed are JSON lines (UTF-8, compact): first
    ``{"adue_dataset_fingerprint": 1, "class_names": [...], "splits": [...]}``, then for
    each split ``[split, n_rows]`` followed by ``[text, label]`` per row. Any change to a
    text, a label, the row order, a split's membership or the class names changes it; the
    file format and where the files lie do not.
    """
    if not isinstance(ds, Mapping) or not ds:
        raise param_error("ds", "dataset_fingerprint", "a non-empty DatasetDict", type(ds).__name__)
    splits = list(ds)
    first = ds[splits[0]]
    feature = getattr(first, "features", {}).get("label")
    names = list(getattr(feature, "names", None) or [])
    digest = hashlib.sha256()
    digest.update(_line({"adue_dataset_fingerprint": FINGERPRINT_VERSION,
                         "class_names": names, "splits": splits}))
    for split in splits:
        part = ds[split]
        texts, labels = part["text"], part["label"]
        digest.update(_line([split, len(texts)]))
        for text, label in zip(texts, labels, strict=True):
            digest.update(_line([text, int(label)]))
    return digest.hexdigest()
