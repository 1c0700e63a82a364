"""Output paths checked before any work: a folder that can be created and written, a file whose
folder can. A run that would fail at its final write fails at once instead, in one line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_output_dir", "check_output_file"]


def _probe(folder: Path, what: str) -> None:
    """Create and delete a file in ``folder``; raise ``OSError`` naming ``what`` if we cannot."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".adue-write-check.", suffix=".tmp")
    except OSError as exc:
        raise type(exc)(f"Cannot write to the {what} folder {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Make sure ``path`` is (or can be made) a writable folder; create it and return it.

    Raises ``NotADirectoryError`` if it (or a parent) is a file, ``OSError`` (one line naming
    the folder) if it cannot be created or written (read-only, permission, disk full).
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(
                f"The {what} path {path} is not a folder" + ("" if p == path else f" ({p} is a file)")
                + "; choose a folder."
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise type(exc)(f"Cannot create the {what} folder {path}: {exc.strerror or exc}") from None
    _probe(path, what)
    return path


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Make sure the file ``path`` can be written: not a folder, its folder writable (created)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"The {what} file {path} is a folder; give a file name.")
    check_output_dir(path.parent if str(path.parent) else Path("."), f"{what} file's")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"The {what} file {path} is not writable.")
    return path
