"""Where the cells of a grid run: here, on a Slurm cluster (submitit) or on Ray.

Cells are independent and each writes one atomic JSON, so the executors only hand cells to
existing engines; the resume rules stay those of :mod:`adue.grid`: finished cells are not
submitted, failed ones are retried by the next run, a killed run loses at most the cells in
flight, and a cell whose worker died (killed, timed out, out of memory) gets a failed JSON
saying so. The summary is read from the cell JSONs.

- ``local``: one cell after another in this process (:func:`adue.grid.run_grid`).
- ``slurm``: one Slurm job array through ``submitit`` (``pip install 'adue[slurm]'``);
  ``wait=False`` returns after submitting.
- ``ray``: one Ray task per cell (``pip install 'adue[ray]'``) on ``[executor.ray] address``,
  ``$RAY_ADDRESS``, or a local cluster started for the grid.

A cell's fine-tuning, extraction and AdUE search use the device of the machine it lands on
(the run config's ``device = "auto"``: its GPU when it has one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from adue.executors._config import (
    EXECUTOR_NAMES,
    ExecutorConfig,
    MissingExtraError,
    RayOptions,
    SlurmOptions,
    parse_executor_config,
)

__all__ = [
    "EXECUTOR_NAMES", "ExecutorConfig", "SlurmOptions", "RayOptions", "MissingExtraError",
    "parse_executor_config", "execute_grid",
]


def execute_grid(
    grid: Any,
    executor: ExecutorConfig | None = None,
    *,
    wait: bool = True,
    setup: Callable[[], Any] | None = None,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
    poll_s: float = 15.0,
    slurm_cluster: str = "slurm",
) -> Any:
    """Run the unfinished cells of ``grid`` (an :class:`adue.grid.GridConfig`) on ``executor``
    (default: the grid's ``[executor]`` table).

    Returns a :class:`adue.grid.GridSummary` (done, failed, skipped, wall and summed cell
    seconds, read from the cell JSONs), or, for ``slurm`` with ``wait=False``, the
    :class:`~adue.executors._slurm.SlurmSubmission` just made. ``setup`` is called in each
    worker process before its cell (e.g. to register a user's own method or dataset there);
    it must be picklable. ``slurm_cluster="local"`` runs the job array as subprocesses of this
    machine (submitit's local executor), for trying a configuration without a cluster.
    """
    from adue.executors._cells import prepare, summarise

    executor = executor if executor is not None else (grid.executor or ExecutorConfig())
    if executor.name == "local":
        from adue.executors._local import run_local

        if setup is not None:
            setup()
        return run_local(grid, executor, progress=progress, callback=callback)
    if executor.name == "ray":
        from adue.executors._ray import require_ray

        require_ray()
    else:
        from adue.executors._slurm import require_submitit

        require_submitit(slurm_cluster)
    t0 = time.perf_counter()
    total = grid.n_cells
    grid, tasks, skipped = prepare(grid, executor.cell_threads(), setup)
    if executor.name == "ray":
        from adue.executors._ray import run_ray

        if tasks:
            run_ray(executor, tasks, callback=callback)
        return summarise(total, tasks, skipped, t0)
    from adue.executors._slurm import submit_slurm, wait_slurm

    if not tasks:
        return summarise(total, tasks, skipped, t0)
    sub = submit_slurm(grid, executor, tasks, cluster=slurm_cluster)  # skips queued cells
    sub.skipped, sub.total = skipped, total
    if not wait:
        return sub
    wait_slurm(sub, poll_s=poll_s, callback=callback)
    return summarise(total, tasks, skipped, t0)
