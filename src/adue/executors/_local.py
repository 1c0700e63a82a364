"""The local executor: the grid's own loop, one cell after another in this process."""

from __future__ import annotations

from collections.abc import Callable

from adue.executors._cells import thread_limit
from adue.executors._config import ExecutorConfig
from adue.grid import GridConfig, GridSummary, run_grid

__all__ = ["run_local"]


def run_local(grid: GridConfig, executor: ExecutorConfig, *, progress: bool = False,
              callback: Callable[[dict], None] | None = None) -> GridSummary:
    """:func:`adue.grid.run_grid` with the executor's thread count (if it sets one)."""
    with thread_limit(executor.cell_threads()):
        return run_grid(grid, progress=progress, callback=callback)
