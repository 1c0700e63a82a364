"""The slurm executor: the unfinished cells as one Slurm job array, through submitit.

Each array task runs :func:`adue.executors._cells.run_task` on the node it lands on, with the
resources of ``[executor.slurm]``; submitit keeps its pickles and each task's logs in
``<results_dir>/.slurm/<array>_<index>/`` (a hidden folder beside the cell JSONs, which
``adue report`` ignores).
"""

from __future__ import annotations

import getpass
import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adue.executors._cells import CellTask, record_lost, run_task
from adue.executors._config import ExecutorConfig, MissingExtraError, slurm_minutes
from adue.grid import GridConfig

__all__ = [
    "SlurmSubmission", "submit_slurm", "wait_slurm", "slurm_log_dir", "make_executor",
    "require_submitit",
]

logger = logging.getLogger(__name__)


def require_submitit(cluster: str = "slurm") -> Any:
    try:
        import submitit
    except ImportError as exc:
        raise MissingExtraError(
            "The slurm executor needs submitit, which is not installed. Install it with: "
            "pip install 'adue[slurm]'"
        ) from exc
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ValueError(
            "The slurm executor submits with sbatch, which is not on PATH: run adue grid on a "
            "Slurm login node, or choose --executor local or --executor ray."
        )
    return submitit


@dataclass
class SlurmSubmission:
    """Jobs submitted without waiting: the array's id, one job per cell, where the logs are."""

    array_id: str
    jobs: list[Any]
    tasks: list[CellTask]
    log_dir: Path
    skipped: list[str] = field(default_factory=list)
    total: int = 0
    stamps: dict[str, Any] = field(default_factory=dict)  # cell JSONs as they were before
    queued: dict[str, str] = field(default_factory=dict)  # cell -> job of an earlier array

    def cells_file(self) -> Path:
        return self.log_dir / f"{self.array_id}_cells.json"


def slurm_log_dir(grid: GridConfig, executor: ExecutorConfig) -> Path:
    """submitit's folder: ``[executor.slurm] log_dir``, else ``<results_dir>/.slurm``."""
    o = executor.slurm
    return Path(o.log_dir).resolve() if o.log_dir else Path(grid.results_dir) / ".slurm"


def make_executor(grid: GridConfig, executor: ExecutorConfig, n_cells: int,
                  cluster: str = "slurm") -> Any:
    """A submitit ``AutoExecutor`` for ``cluster`` ("slurm"; "local" runs the jobs as
    subprocesses of this machine, with the same pickles and worker) with the cells' resources."""
    submitit = require_submitit(cluster)
    o = executor.slurm
    ex = submitit.AutoExecutor(folder=slurm_log_dir(grid, executor) / "%j", cluster=cluster)
    params: dict[str, Any] = {
        "name": o.job_name,
        "timeout_min": slurm_minutes(o.time),
        "cpus_per_task": o.cpus_per_task,
        "gpus_per_node": o.gpus_per_node,
        "mem_gb": o.mem_gb,
        "slurm_partition": o.partition,
        "slurm_array_parallelism": min(executor.max_parallel or n_cells, max(n_cells, 1)),
        "slurm_additional_parameters": dict(o.extra) or None,
        "slurm_setup": list(o.setup) or None,
    }
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def queued_cells(log_dir: Path) -> dict[str, str]:
    """Cells of earlier arrays (``<log_dir>/*_cells.json``) still pending or running, by
    ``squeue``: {cell label: job id}. Empty if there is no squeue or it fails (with a warning)."""
    index = {}
    for f in sorted(log_dir.glob("*_cells.json")):
        try:
            index.update({e["job_id"]: e["cell"] for e in json.loads(f.read_text("utf-8"))})
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("cannot read %s; its jobs are not checked", f)
    if not index or shutil.which("squeue") is None:
        return {}
    cmd = ["squeue", "-h", "-r", "-o", "%i", "-u", getpass.getuser()]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("squeue failed (%s): cells of earlier arrays may be submitted twice", exc)
        return {}
    live = set(out.stdout.split())
    return {cell: job for job, cell in index.items() if job in live}


def submit_slurm(grid: GridConfig, executor: ExecutorConfig, tasks: list[CellTask], *,
                 cluster: str = "slurm") -> SlurmSubmission:
    """Submit the ``tasks`` not pending or running in an earlier array as one job array
    (those are watched, not submitted again); writes ``<log_dir>/<array>_cells.json`` (job id,
    cell, JSON path) so that each array task's log can be matched to its cell."""
    submitit = require_submitit(cluster)
    log_dir = slurm_log_dir(grid, executor)
    queued = queued_cells(log_dir) if cluster == "slurm" else {}
    old = [t for t in tasks if t.label() in queued]
    tasks = [t for t in tasks if t.label() not in queued]
    for t in old:
        logger.warning("%s: still queued or running as job %s; not submitted again", t.label(),
                       queued[t.label()])
    if not tasks:
        sub = SlurmSubmission("", [], [], log_dir)
    else:
        sub = _submit_array(grid, executor, tasks, cluster)
    sub.queued = {t.label(): queued[t.label()] for t in old}
    for t in old:  # watched like the new ones by --wait
        sub.jobs.append(submitit.SlurmJob(folder=log_dir / "%j", job_id=queued[t.label()]))
        sub.tasks.append(t)
        sub.stamps[t.label()] = _stamp(t.path)
    return sub


def _submit_array(grid: GridConfig, executor: ExecutorConfig, tasks: list[CellTask],
                  cluster: str) -> SlurmSubmission:
    ex = make_executor(grid, executor, len(tasks), cluster)
    stamps = {task.label(): _stamp(task.path) for task in tasks}
    with ex.batch():
        jobs = [ex.submit(run_task, task) for task in tasks]
    array_id = str(jobs[0].job_id).split("_")[0]
    sub = SlurmSubmission(array_id, jobs, tasks, slurm_log_dir(grid, executor), stamps=stamps)
    index = [{"job_id": str(j.job_id), "cell": t.label(), "json": str(t.path)}
             for j, t in zip(jobs, tasks, strict=True)]
    sub.cells_file().parent.mkdir(parents=True, exist_ok=True)
    sub.cells_file().write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    logger.info("submitted %d cell(s) as job array %s; logs in %s", len(tasks), array_id,
                sub.log_dir)
    return sub


# Slurm (sacct) and submitit-local states of a job that ended without finishing its work.
_DEAD = ("INTERRUPTED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
         "PREEMPTED", "BOOT_FAIL", "DEADLINE")


def _stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a cell JSON: an atomic write always changes it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _outcome(job: Any, task: CellTask, before: tuple[int, int] | None) -> str:
    """The status of a job's cell: from its JSON if the job wrote one, else the job died and a
    failed JSON is written for it."""
    from adue.runner import read_cell

    if _stamp(task.path) != before:
        try:
            return str(read_cell(task.path).get("status"))
        except ValueError:
            pass
    state = str(job.state).upper()
    if job.paths.result_pickle.exists() or not state.startswith(_DEAD):
        try:  # waits a little for a result on a slow shared file system
            return str(job.result()["status"])
        except Exception as exc:  # the job raised, or died without a result
            first = (str(exc).strip().splitlines() or [""])[0]
            record_lost(task, f"job {job.job_id} ended without a result: {type(exc).__name__}: "
                              f"{first[:300]}")
            return "failed"
    record_lost(task, f"job {job.job_id} ended ({state}) before writing its cell")
    return "failed"


def wait_slurm(sub: SlurmSubmission, *, poll_s: float = 15.0,
               callback: Callable[[dict], None] | None = None) -> None:
    """Wait for every job; a job that died without writing its cell JSON gets a failed one."""
    submitit = require_submitit("local")
    by_id = {str(job.job_id): task for job, task in zip(sub.jobs, sub.tasks, strict=True)}
    done = 0
    for job in submitit.helpers.as_completed(sub.jobs, poll_frequency=poll_s):
        task = by_id[str(job.job_id)]
        status = _outcome(job, task, sub.stamps.get(task.label()))
        done += 1
        logger.info("[%d/%d] %s: %s (job %s)", done, len(sub.jobs), task.label(), status,
                    job.job_id)
        if callback is not None:
            callback({"event": "cell_end", "cell": task.label(), "status": status,
                      "done": done, "total": len(sub.jobs), "job_id": str(job.job_id)})
