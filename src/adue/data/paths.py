"""Where the dataset files are looked for: argument, ``ADUE_DATA_DIR``, ``shared/data``
found upwards, user cache, else the hub."""

from __future__ import annotations

import os
from pathlib import Path

from adue.data.registry import DATASETS

__all__ = [
    "ENV_VAR",
    "HOW_TO_SET",
    "SHARED_DATA",
    "find_shared_data",
    "local_paths",
    "locate_data_dir",
    "hub_failed_message",
    "missing_files_message",
    "resolve_data_dir",
    "user_cache_data_dir",
]

#: Environment variable naming the local data directory.
ENV_VAR = "ADUE_DATA_DIR"

#: Folder looked for in the current folder and its parents (``../shared/data`` from the repo).
SHARED_DATA = Path("shared") / "data"

HOW_TO_SET = (
    "Point adue at a folder laid out like ../shared/data (sst2/train.tsv, sst2/dev.tsv, "
    "cola/train.tsv, cola/dev.tsv, sst5/stsa.fine.{train,dev,test}, "
    "20news/20news-bydate.tar.gz, toxigen/toxiGen.json) with --data-dir DIR or the "
    f"environment variable {ENV_VAR}=DIR."
)


def user_cache_data_dir() -> Path:
    """The user cache data folder: ``$XDG_CACHE_HOME/adue/data`` or ``~/.cache/adue/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "adue" / "data"


def _has_files(root: Path, name: str | None) -> bool:
    if name is None:
        return root.is_dir()
    return all((root / rel).is_file() for rel in DATASETS[name].local_files)


def find_shared_data(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The first ``shared/data`` folder in ``start`` (default: the current folder) or a parent.

    Seen from the repository root this is ``../shared/data``; None when there is none.
    """
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        candidate = folder / SHARED_DATA
        if candidate.is_dir():
            return candidate
    return None


def locate_data_dir(
    explicit: str | os.PathLike[str] | None = None,
    name: str | None = None,
    *,
    start: str | os.PathLike[str] | None = None,
) -> tuple[Path | None, str]:
    """Like :func:`resolve_data_dir`, also returning where the folder came from (in words)."""
    if explicit is not None and os.fspath(explicit) != "":
        return Path(explicit).expanduser(), "the data_dir argument (--data-dir)"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"the environment variable {ENV_VAR}"
    if name is not None and name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Valid names: {', '.join(DATASETS)}.")
    shared = find_shared_data(start)
    if shared is not None and _has_files(shared, name):
        return shared, "shared/data found in the current folder or above"
    cache = user_cache_data_dir()
    if _has_files(cache, name):
        return cache, "the user cache"
    return None, "the hub"


def resolve_data_dir(
    explicit: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    start: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Return the local data directory to read, or None to load from the hub.

    The one resolver used by every command and by :func:`adue.data.load_dataset`. Order:

    1. ``explicit`` (CLI ``--data-dir``) if given;
    2. ``$ADUE_DATA_DIR`` if set (1 and 2 are returned even if the files are missing there,
       so that the reader can name them);
    3. the first ``shared/data`` folder in ``start`` (default: the current folder) or one of
       its parents (``../shared/data`` seen from the repository root);
    4. the user cache (:func:`user_cache_data_dir`);
    5. None: the hub.

    Folders 3 and 4 are used only when they hold the files of dataset ``name`` (any such
    folder when ``name`` is None).
    """
    return locate_data_dir(explicit, name, start=start)[0]


def local_paths(root: Path, name: str) -> list[Path]:
    """The files of dataset ``name`` under the data directory ``root``."""
    return [root / rel for rel in DATASETS[name].local_files]


def missing_files_message(name: str, root: Path, source: str) -> str:
    """Error text listing the local paths tried and how to set the data directory."""
    lines = "\n".join(
        f"  - {p}{'' if p.is_file() else ' (missing)'}" for p in local_paths(root, name)
    )
    return (
        f"Dataset {name!r}: files not found in the data directory {root} (from {source}). "
        f"Paths tried:\n{lines}\n{HOW_TO_SET}"
    )


def hub_failed_message(name: str, err: BaseException) -> str:
    """Error text when neither local files nor the hub gave dataset ``name``."""
    cache = user_cache_data_dir()
    lines = "\n".join(
        [
            "  - --data-dir / data_dir argument: not given",
            f"  - {ENV_VAR}: not set",
            f"  - {SHARED_DATA} in the current folder or a parent: not found with these files",
        ]
        + [f"  - {p} (missing)" for p in local_paths(cache, name) if not p.is_file()]
    )
    spec = DATASETS[name]
    hub = spec.hub_id + (f" (config {spec.hub_config})" if spec.hub_config else "")
    return (
        f"Dataset {name!r}: no local files and loading from {hub} failed "
        f"({type(err).__name__}: {err}). Paths tried:\n{lines}\n{HOW_TO_SET}"
    )
