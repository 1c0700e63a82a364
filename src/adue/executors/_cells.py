"""What every executor shares: the cells to submit, the worker function, the summary.

The worker (:func:`run_task`) runs in another process (a Slurm job, a Ray worker, a
submitit subprocess); everything it needs travels in a picklable :class:`CellTask`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adue.grid import GridCell, GridConfig, GridSummary, PlannedCell, plan_cells, run_one_cell

__all__ = ["CellTask", "prepare", "run_task", "record_lost", "summarise", "thread_limit"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellTask:
    """One cell to run elsewhere: the grid (absolute paths), the cell and its resolved config."""

    grid: GridConfig
    cell: GridCell
    config: Any
    path: Path
    data_dir: str | None
    threads: int | None = None
    setup: Callable[[], Any] | None = None

    def label(self) -> str:
        return self.cell.label()


def absolute_grid(grid: GridConfig) -> GridConfig:
    """``grid`` with absolute results/runs/data folders: workers run in other directories."""
    from adue.data import resolve_data_dir

    data_dir = resolve_data_dir(grid.data_dir)
    return dataclasses.replace(
        grid,
        results_dir=Path(grid.results_dir).resolve(),
        runs_dir=Path(grid.runs_dir).resolve(),
        data_dir=None if data_dir is None else str(Path(data_dir).resolve()),
    )


def prepare(grid: GridConfig, threads: int | None,
            setup: Callable[[], Any] | None) -> tuple[GridConfig, list[CellTask], list[str]]:
    """(absolute grid, tasks for the unfinished cells, labels of the finished ones)."""
    from adue.grid import remove_stale_temp_files

    grid = absolute_grid(grid)
    planned: list[PlannedCell] = plan_cells(grid)
    remove_stale_temp_files(Path(grid.results_dir))
    skipped = [p.cell.label() for p in planned if p.finished]
    for label in skipped:
        logger.info("%s: finished before, skipped", label)
    tasks = [
        CellTask(grid, p.cell, p.config, p.path, grid.data_dir, threads, setup)
        for p in planned if not p.finished
    ]
    return grid, tasks, skipped


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch and BLAS/OpenMP threads (None: leave them as they are)."""
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def _worker_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:  # a fresh worker process: log adue's progress to its output
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def run_task(task: CellTask) -> dict:
    """Run one cell in a worker; returns ``{"cell", "status", "seconds"}`` (the JSON is written
    by the runner; a failure is recorded there, not raised)."""
    _worker_logging()
    if task.setup is not None:
        task.setup()
    logger.info("%s: start (%s threads)", task.label(), task.threads or "default")
    with thread_limit(task.threads):
        record = run_one_cell(task.grid, task.config, task.data_dir)
    return {"cell": task.label(), "status": record["status"],
            "seconds": record.get("timings_s", {}).get("total")}


def record_lost(task: CellTask, reason: str) -> None:
    """Write a failed cell JSON for a cell whose worker died (killed, out of memory, timed out)
    before the runner could write one; the next run of the grid redoes it."""
    from adue._atomic import atomic_write_text
    from adue.grid import cell_status
    from adue.runner import SCHEMA_VERSION, default_run_dir

    if cell_status(task.grid, task.config, {})[1]:  # it finished before the worker died
        return
    config = task.config.to_dict() if hasattr(task.config, "to_dict") else dict(task.config)
    c = task.cell
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = {
        "schema_version": SCHEMA_VERSION, "status": "failed",
        "cell": {"profile": task.grid.profile, "backbone": c.backbone, "dataset": c.dataset,
                 "seed": c.seed},
        "config": config,
        "run_dir": str(default_run_dir(task.grid.runs_dir, task.grid.profile, c.backbone,
                                       c.dataset, c.seed)),
        "started_at": None, "finished_at": now, "timings_s": {}, "methods": {}, "curves": None,
        "warnings": [],
        "error": {"stage": "worker", "type": "WorkerLost", "message": reason, "traceback": ""},
    }
    atomic_write_text(task.path, json.dumps(record, indent=1, default=str) + "\n")
    logger.warning("%s: its worker died (%s); recorded as failed", task.label(), reason)


def _status(path: Path) -> tuple[str, float]:
    from adue.runner import read_cell

    try:
        data = read_cell(path)
    except ValueError:
        return "missing", 0.0
    seconds = (data.get("timings_s") or {}).get("total") or 0.0
    return str(data.get("status")), float(seconds)


def summarise(total: int, tasks: list[CellTask], skipped: list[str], t0: float) -> GridSummary:
    """The grid's outcome read from the cell JSONs of ``tasks`` (a cell without a complete JSON
    counts as failed); ``cell_seconds`` sums the cells' own times."""
    summary = GridSummary(total=total, skipped=list(skipped))
    cell_seconds = 0.0
    for task in tasks:
        status, seconds = _status(task.path)
        cell_seconds += seconds
        (summary.completed if status == "complete" else summary.failed).append(task.label())
    summary.seconds = time.perf_counter() - t0
    summary.cell_seconds = cell_seconds
    return summary
