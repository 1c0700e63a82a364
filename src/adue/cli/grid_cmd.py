"""``adue grid CONFIG.toml``: run datasets x backbones x seeds, resumable."""

from __future__ import annotations

import argparse
import sys

from adue.executors.cli import add_executor_options


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "grid",
        help="run a grid of cells from a TOML file (resumable: finished cells are skipped)",
        description=(
            "Run every cell (backbone x dataset x seed) of a grid file; see configs/*.toml and "
            "adue.grid for the keys. Finished cells are skipped, failed ones retried; a grid "
            "killed at any moment loses at most the cell in flight."
        ),
    )
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--results", metavar="DIR", help="replace the file's results_dir")
    p.add_argument("--runs-dir", metavar="DIR", help="replace the file's runs_dir")
    p.add_argument("--data-dir", metavar="DIR", help="replace the file's data_dir")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    p.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    add_executor_options(p)
    p.set_defaults(func=_run)
    return p


def _dry_run(grid) -> int:
    from adue.grid import plan_cells

    planned = plan_cells(grid)
    for i, p in enumerate(planned, 1):
        state = "finished" if p.finished else ("to redo" if p.path.exists() else "to run")
        print(f"{i:3d}/{len(planned)} {p.cell.label():32s} {state:9s} {p.path}")
    return 0


def _print_progress(event: dict) -> None:
    """One stderr line per finished or skipped cell (INFO logging, -v, says more)."""
    if event["event"] == "skip":
        print(f"[{event['done']}/{event['total']}] {event['cell']}: finished before, skipped",
              file=sys.stderr)
    elif event["event"] == "cell_end":
        print(f"[{event['done']}/{event['total']}] {event['cell']}: {event['status']}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from adue.executors import execute_grid
    from adue.executors.cli import executor_from_args, print_submission
    from adue.grid import GridSummary, load_grid_config

    grid = load_grid_config(
        args.config, results_dir=args.results, runs_dir=args.runs_dir, data_dir=args.data_dir
    )
    executor = executor_from_args(grid, args)
    if args.dry_run:
        return _dry_run(grid)
    print(f"grid {grid.source}: {grid.n_cells} cells (profile {grid.profile}), results in "
          f"{grid.results_dir}, runs in {grid.runs_dir}, executor {executor.name}",
          file=sys.stderr)
    summary = execute_grid(grid, executor, wait=args.wait, progress=args.progress, callback=_print_progress)
    if not isinstance(summary, GridSummary):  # slurm without --wait: submitted, not finished
        print_submission(summary, args.config)
        return 0
    print(
        f"grid done in {summary.seconds:.0f} s: {len(summary.completed)} completed, "
        f"{len(summary.skipped)} already finished, {len(summary.failed)} failed"
        + (f" ({', '.join(summary.failed)})" if summary.failed else "")
        + (f"; the cells took {summary.cell_seconds:.0f} s together" if summary.cell_seconds else ""),
        file=sys.stderr,
    )
    return 1 if summary.failed else 0
