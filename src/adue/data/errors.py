"""Errors raised by the dataset layer."""

from __future__ import annotations

from os import PathLike

__all__ = ["DataFormatError", "DataNotFoundError", "format_error"]


class DataNotFoundError(FileNotFoundError):
    """A dataset could be found neither in a local directory nor on the hub."""


class DataFormatError(ValueError):
    """A data file holds a malformed row, an unknown label or no rows at all."""


def format_error(path: str | PathLike[str], line: int | None, problem: str) -> DataFormatError:
    """Build ``DataFormatError('<path>, line <n>: <problem>')`` (no line part when None)."""
    where = f"{path}, line {line}" if line is not None else f"{path}"
    return DataFormatError(f"{where}: {problem}")
