"""``adue grid`` options choosing where cells run, and the lines printed after a submission."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from adue.executors._config import EXECUTOR_NAMES, ExecutorConfig

__all__ = ["add_executor_options", "executor_from_args", "print_submission"]


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """Add --executor, --max-parallel, --wait and --ray-address to ``adue grid``."""
    g = p.add_argument_group("where the cells run (default: the file's [executor] table, else local)")
    g.add_argument("--executor", choices=EXECUTOR_NAMES,
                   help="local: one cell after another here; slurm: a Slurm job array (submitit); "
                        "ray: one Ray task per cell")
    g.add_argument("--max-parallel", type=int, metavar="N",
                   help="at most N cells at once (slurm: array parallelism; ray: tasks in flight)")
    g.add_argument("--wait", action="store_true",
                   help="slurm: wait for the jobs and print the summary (default: return after "
                        "submitting)")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="an existing Ray cluster (default: $RAY_ADDRESS, else a local one)")


def executor_from_args(grid: Any, args: argparse.Namespace) -> ExecutorConfig:
    """The grid's executor with the command-line options applied (validated)."""
    base = grid.executor if grid.executor is not None else ExecutorConfig(source=grid.source)
    return base.replace(name=args.executor, max_parallel=args.max_parallel,
                        ray_address=args.ray_address)


def print_submission(sub: Any, config: str) -> None:
    """How to follow a job array submitted without --wait (CLI output, on stderr)."""
    lines = []
    if sub.array_id:
        n_new = len(sub.jobs) - len(sub.queued)
        kind = "job array" if n_new > 1 else "job"
        lines.append(
            f"submitted {n_new} cell(s) to Slurm as {kind} {sub.array_id} "
            f"({len(sub.skipped)} of {sub.total} finished before, not submitted)"
        )
    if sub.queued:
        arrays = sorted({job.split("_")[0] for job in sub.queued.values()})
        lines.append(f"{len(sub.queued)} cell(s) still queued or running in job array(s) "
                     f"{', '.join(arrays)}: not submitted again")
    ids = ",".join(sorted({str(j.job_id).split("_")[0] for j in sub.jobs}))
    if ids:
        lines += [
            f"  follow:   squeue -j {ids}    sacct -j {ids} --format=JobID,State,Elapsed",
            f"  logs:     {sub.log_dir}/<job id>/<job id>_0_log.out  (cells by job id in "
            f"{sub.log_dir}/<array>_cells.json)",
        ]
    lines += [
        f"  progress: adue grid {config} --dry-run",
        f"  then:     adue grid {config} --executor slurm   (retries failed cells; submits "
        "nothing finished, queued or running)",
    ]
    print("\n".join(lines), file=sys.stderr)
