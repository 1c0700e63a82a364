"""Reading a results folder: every cell JSON below it, corrupt files skipped with a warning."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ResultSet", "CorruptResultWarning", "load_results", "metric_values"]

logger = logging.getLogger(__name__)


class CorruptResultWarning(UserWarning):
    """A file in the results folder is not a readable cell JSON; it was skipped."""


@dataclass
class ResultSet:
    """The cells of a results folder.

    ``cells`` holds complete cells, ``failed`` cells whose run failed (their JSON records the
    error), ``skipped`` the ``(path, reason)`` of files that could not be read.
    """

    root: Path
    cells: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def profiles(self) -> list[str]:
        return _ordered({c["cell"]["profile"] for c in self.cells})

    def backbones(self, profile: str) -> list[str]:
        from adue.report.labels import order_backbones

        return order_backbones({c["cell"]["backbone"] for c in self.of(profile)})

    def datasets(self, profile: str) -> list[str]:
        from adue.report.labels import order_datasets

        return order_datasets({c["cell"]["dataset"] for c in self.of(profile)})

    def of(self, profile: str, backbone: str | None = None, dataset: str | None = None) -> Iterator[dict]:
        for c in self.cells:
            cell = c["cell"]
            if cell["profile"] != profile:
                continue
            if backbone is not None and cell["backbone"] != backbone:
                continue
            if dataset is not None and cell["dataset"] != dataset:
                continue
            yield c


def _ordered(items: set[str]) -> list[str]:
    return sorted(items)


def load_results(results_dir: str | os.PathLike) -> ResultSet:
    """Every ``*.json`` below ``results_dir`` (hidden files excluded) read as a cell.

    Unreadable or foreign JSON files are skipped with a :class:`CorruptResultWarning` naming
    them. Raises ``FileNotFoundError`` if the folder does not exist and ``ValueError`` if it
    holds no cell file at all.
    """
    from adue.runner import check_cell  # the one validator of cell files

    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Results folder {root} does not exist.")
    out = ResultSet(root=root)
    seen: dict[tuple, str] = {}
    paths = sorted(
        p for p in root.rglob("*.json")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = f"not valid JSON ({exc})"
            data = None
        else:
            data, reason = check_cell(data)
        if reason is not None:
            out.skipped.append((str(path), reason))
            warnings.warn(f"Skipping {path}: {reason}.", CorruptResultWarning, stacklevel=2)
            continue
        cell = data["cell"]
        key = (cell["profile"], cell["backbone"], cell["dataset"], cell["seed"])
        if key in seen:
            out.skipped.append((str(path), f"duplicate of {seen[key]}"))
            warnings.warn(
                f"Skipping {path}: the same cell as {seen[key]}.", CorruptResultWarning, stacklevel=2
            )
            continue
        seen[key] = str(path)
        data["_path"] = str(path)
        if data.get("status") == "complete":
            out.cells.append(data)
        else:
            out.failed.append(data)
    if not out.cells and not out.failed:
        extra = f" ({len(out.skipped)} unreadable file(s) skipped)" if out.skipped else ""
        raise ValueError(
            f"No cell results found in {root}{extra}. Run 'adue run' or 'adue grid' with "
            f"--results {root} first."
        )
    return out


def metric_values(cells: Iterator[dict] | list[dict], variant: str, metric: str) -> list[float]:
    """Finite values of ``metric`` for ``variant`` over ``cells`` (failed variants skipped)."""
    vals = []
    for c in cells:
        entry = c.get("methods", {}).get(variant)
        if not entry or entry.get("status") != "ok":
            continue
        v = (entry.get("metrics") or {}).get(metric)
        if v is not None and math.isfinite(float(v)):
            vals.append(float(v))
    return vals
