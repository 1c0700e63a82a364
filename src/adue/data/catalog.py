"""``describe_dataset``: classes, split sizes and where a dataset would be read from.

Fast by default: named datasets take their sizes from the registry and nothing is read or
downloaded; ``count=True`` reads the local files (never the hub) and counts the rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from adue.data.loading import read_splits, unknown_dataset_error
from adue.data.paths import local_paths, locate_data_dir
from adue.data.registry import DATASETS
from adue.data.user import parse_user_spec

__all__ = ["SIZES_COUNTED", "SIZES_REGISTRY", "SIZES_REGISTRY_HUB", "describe_dataset"]

SIZES_REGISTRY = "registry (the protocol on the local release files)"
SIZES_REGISTRY_HUB = "registry (the protocol on the hub release)"
SIZES_COUNTED = "counted from the local files"


def _sizes(raw: dict[str, Any]) -> dict[str, int]:
    return {split: len(raw[split]) for split in ("train", "validation", "test")}


def _hub_text(name: str) -> str:
    spec = DATASETS[name]
    return spec.hub_id + (f" (config {spec.hub_config})" if spec.hub_config else "")


def _describe_named(name: str, data_dir: str | os.PathLike[str] | None, count: bool) -> dict:
    spec = DATASETS[name]
    root, source = locate_data_dir(data_dir, name)
    missing = [] if root is None else [str(p) for p in local_paths(root, name) if not p.is_file()]
    sizes = spec.sizes if root is not None else (spec.hub_sizes or spec.sizes)
    out = {
        "name": name,
        "classes": list(spec.class_names),
        "sizes": dict(zip(("train", "validation", "test"), sizes, strict=True)),
        "sizes_from": SIZES_REGISTRY if root is not None else SIZES_REGISTRY_HUB,
        "location": None if root is None else str(root),
        "location_source": source,
        "missing_files": missing,
        "hub": _hub_text(name),
    }
    if count and root is not None and not missing:
        loaded = read_splits(name, root)
        out["sizes"], out["sizes_from"] = _sizes(loaded.raw), SIZES_COUNTED
    return out


def describe_dataset(
    spec: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    count: bool = False,
    text_column: str = "text",
    label_column: str = "label",
) -> dict[str, Any]:
    """A JSON-able description of a named dataset or a user folder (never touches the hub).

    Keys: ``name``, ``classes`` (list of names, id order), ``sizes`` ({train, validation,
    test} rows after the protocol's 80/20 carve where the release has no validation),
    ``sizes_from`` (:data:`SIZES_REGISTRY`, :data:`SIZES_REGISTRY_HUB` or
    :data:`SIZES_COUNTED`), ``location`` (the local folder read, or None for the hub),
    ``location_source`` (in words), ``missing_files`` (local paths absent) and ``hub`` (the
    hub id, None for a user folder). A user folder is always read and counted.
    """
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if spec in DATASETS:
        return _describe_named(spec, data_dir, count)
    user = parse_user_spec(spec)
    if user is None:
        raise unknown_dataset_error(spec)
    name, folder = user
    loaded = read_splits(spec, None, text_column=text_column, label_column=label_column)
    return {
        "name": name,
        "classes": loaded.names,
        "sizes": _sizes(loaded.raw),
        "sizes_from": SIZES_COUNTED,
        "location": str(Path(folder)),
        "location_source": "a user dataset folder",
        "missing_files": [],
        "hub": None,
    }
