"""A resumable grid of cells: datasets x backbones x seeds for one profile.

The grid is described by a TOML file (read with :mod:`tomllib`)::

    profile = "cpu"
    datasets = ["cola", "20newsgroups", "sst2", "sst5", "toxigen"]
    backbones = ["minilm"]
    seeds = [1, 2, 3, 4, 5]
    results_dir = "results"        # relative paths: relative to the current directory
    runs_dir = "runs"              # optional; default "runs" beside results_dir
    data_dir = "../shared/data"    # optional; default adue.data.resolve_data_dir ($ADUE_DATA_DIR, shared/data upwards, ...)
    methods = ["sr", "adue"]       # optional subset of variants; default all

    [overrides]                    # optional RunConfig fields for every cell
    max_train = 2000

    [executor]                     # optional: where cells run (see adue.executors)
    name = "local"                 # local | slurm | ray

Each cell is one :func:`adue.runner.run_cell`; its JSON is written atomically at the end, so a
grid killed at any moment (even SIGKILL) loses at most the cell in flight. Running the grid
again skips finished cells (complete JSON with the same resolved config and all variants) and
retries failed ones; fine-tuned run folders are reused by the runner. A cell whose resolved
config changed (e.g. an edited profile) or whose data changed (another dataset fingerprint) is
redone: its old run folder is moved aside to ``<run folder>.replaced-<time>`` and its JSON
replaced. Every cell's options and the results folder are checked before the first cell runs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from adue.outputs import check_output_dir
from adue.runner import cell_is_finished, cell_path_for, check_run_options, run_cell
from adue.variants import list_variants, resolve_variants

__all__ = [
    "GridConfig", "GridCell", "load_grid_config", "grid_cells", "run_grid", "GridSummary",
    "PlannedCell", "plan_cells", "run_one_cell", "cell_status", "cell_fingerprint",
]

logger = logging.getLogger(__name__)

_KEYS = {
    "profile", "datasets", "backbones", "seeds", "results_dir", "runs_dir", "data_dir",
    "methods", "overrides", "adue_search", "executor",
}


@dataclass(frozen=True)
class GridConfig:
    """A parsed grid file (see the module docstring)."""

    profile: str
    datasets: tuple[str, ...]
    backbones: tuple[str, ...]
    seeds: tuple[int, ...]
    results_dir: Path
    runs_dir: Path
    data_dir: str | None = None
    methods: tuple[str, ...] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    adue_search: Any = None
    source: str = "<dict>"
    executor: Any = None  # adue.executors.ExecutorConfig (the [executor] table)

    @property
    def n_cells(self) -> int:
        return len(self.datasets) * len(self.backbones) * len(self.seeds)


@dataclass(frozen=True)
class GridCell:
    """One cell of a grid."""

    backbone: str
    dataset: str
    seed: int

    def label(self) -> str:
        return f"{self.backbone}/{self.dataset}/seed{self.seed}"


@dataclass
class GridSummary:
    """Outcome of :func:`run_grid`: cell labels by what happened to them."""

    total: int
    skipped: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cell_seconds: float = 0.0  # sum of the cells' own times (read from their JSONs)


def _valid_names() -> dict[str, list[str]]:
    from adue.backbones import PRESETS
    from adue.config import list_profiles
    from adue.data import list_datasets

    return {
        "dataset": list(list_datasets()),
        "backbone": list(PRESETS),
        "profile": list(list_profiles()),
    }


def _check_names(kind: str, names: Sequence[Any], valid: Sequence[str], source: str) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(
            f"Grid config {source}: unknown {kind}(s) {unknown}. Valid {kind}s: {', '.join(valid)}."
        )


def _str_list(raw: dict, key: str, source: str) -> tuple[str, ...]:
    val = raw.get(key)
    if isinstance(val, str):
        val = [val]
    if not isinstance(val, list) or not val or not all(isinstance(v, str) for v in val):
        raise ValueError(
            f"Grid config {source}: '{key}' must be a non-empty list of names. Got {val!r} instead."
        )
    return tuple(dict.fromkeys(val))


def parse_grid_config(raw: dict, source: str = "<dict>", *, validate_names: bool = True) -> GridConfig:
    """Validate a grid description (the TOML's table) and build a :class:`GridConfig`."""
    if not isinstance(raw, dict):
        raise ValueError(f"Grid config {source} must be a TOML table. Got {type(raw).__name__}.")
    unknown_keys = sorted(set(raw) - _KEYS)
    if unknown_keys:
        raise ValueError(
            f"Grid config {source}: unknown key(s) {unknown_keys}. Valid keys: {sorted(_KEYS)}."
        )
    for key in ("profile", "datasets", "backbones", "seeds"):
        if key not in raw:
            raise ValueError(f"Grid config {source} lacks the required key '{key}'.")
    profile = raw["profile"]
    if not isinstance(profile, str):
        raise ValueError(f"Grid config {source}: 'profile' must be a string. Got {profile!r} instead.")
    datasets = _str_list(raw, "datasets", source)
    backbones = _str_list(raw, "backbones", source)
    seeds = raw["seeds"]
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list) or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ValueError(
            f"Grid config {source}: 'seeds' must be a non-empty list of non-negative integers. "
            f"Got {seeds!r} instead."
        )
    methods = raw.get("methods")
    if methods is not None:
        methods = tuple(v.name for v in resolve_variants(_str_list(raw, "methods", source)))
    overrides = raw.get("overrides", {})
    if not isinstance(overrides, dict):
        raise ValueError(
            f"Grid config {source}: 'overrides' must be a table. Got {overrides!r} instead."
        )
    if validate_names:
        valid = _valid_names()
        _check_names("profile", [profile], valid["profile"], source)
        _check_names("dataset", datasets, valid["dataset"], source)
        _check_names("backbone", backbones, valid["backbone"], source)
    results_dir = Path(raw.get("results_dir", "results"))
    runs_dir = Path(raw["runs_dir"]) if raw.get("runs_dir") else results_dir.resolve().parent / "runs"
    return GridConfig(
        profile=profile,
        datasets=datasets,
        backbones=backbones,
        seeds=tuple(dict.fromkeys(int(s) for s in seeds)),
        results_dir=results_dir,
        runs_dir=runs_dir,
        data_dir=raw.get("data_dir"),
        methods=methods,
        overrides=dict(overrides),
        adue_search=raw.get("adue_search"),
        source=source,
        executor=_parse_executor(raw.get("executor"), source),
    )


def _parse_executor(raw: Any, source: str) -> Any:
    from adue.executors import parse_executor_config

    return parse_executor_config(raw, source)


def load_grid_config(path: str | os.PathLike, **updates: Any) -> GridConfig:
    """Read and validate a grid TOML file; ``updates`` replace top-level keys (CLI options).

    Unknown datasets, backbones, profiles, variants or keys raise ``ValueError`` naming them
    and listing the valid ones.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Grid config {path} does not exist.")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"Grid config {path} is not valid TOML: {exc}") from exc
    raw.update({k: v for k, v in updates.items() if v is not None})
    return parse_grid_config(raw, str(path))


def grid_cells(grid: GridConfig) -> list[GridCell]:
    """Cells in run order: backbone, then seed, then dataset.

    Seeds are the outer loop so that a grid stopped part-way has covered every dataset with
    its first seeds rather than a few datasets with all of them.
    """
    return [
        GridCell(b, d, s) for b in grid.backbones for s in grid.seeds for d in grid.datasets
    ]


def _resolve(grid: GridConfig, cell: GridCell) -> Any:
    from adue.config import resolve_config

    return resolve_config(
        dataset=cell.dataset, backbone=cell.backbone, seed=cell.seed, profile=grid.profile,
        **grid.overrides,
    )


def remove_stale_temp_files(results_dir: Path, older_than_s: float = 600.0) -> list[Path]:
    """Delete temp files (``.seed*.json.*.tmp``) a killed run left behind in ``results_dir``.

    Only files older than ``older_than_s`` are removed (writes take milliseconds), so a grid
    running at the same time on the same folder is not disturbed.
    """
    removed = []
    if not results_dir.is_dir():
        return removed
    now = time.time()
    for p in results_dir.rglob(".seed*.json.*.tmp"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    if removed:
        logger.info("removed %d stale temp file(s) left by a killed run", len(removed))
    return removed


@dataclass(frozen=True)
class PlannedCell:
    """A cell of a grid with its resolved config, its JSON path and whether it is finished."""

    cell: GridCell
    config: Any
    path: Path
    finished: bool


def plan_cells(grid: GridConfig, *, check: bool = False) -> list[PlannedCell]:
    """Every cell of ``grid`` in run order, resolved (a bad override raises before any work),
    with its JSON path and whether it is finished, by :func:`cell_status`. ``check``: also
    check every cell's options and that the results folder is writable, before reading data."""
    cells = grid_cells(grid)
    configs = [_resolve(grid, cell) for cell in cells]
    if check:
        for cfg in configs:
            check_run_options(cfg, grid.methods, grid.adue_search)
        check_output_dir(grid.results_dir, "results")
    fingerprints: dict = {}
    return [PlannedCell(cell, cfg, *cell_status(grid, cfg, fingerprints))
            for cell, cfg in zip(cells, configs, strict=True)]


def cell_fingerprint(cfg: Any, data_dir: str | None, cache: dict) -> str:
    """The data fingerprint of ``cfg``'s cell (cached: the seeds of a dataset share its rows)."""
    from adue.runner import data_fingerprint

    key = (cfg.dataset, cfg.max_train, cfg.max_val, cfg.max_test, cfg.split_seed,
           cfg.subsample_seed, getattr(cfg, "text_column", None), getattr(cfg, "label_column", None))
    if key not in cache:
        cache[key] = data_fingerprint(cfg, data_dir)
    return cache[key]


def cell_status(grid: GridConfig, cfg: Any, fingerprints: dict) -> tuple[Path, bool]:
    """``(cell JSON path, finished)`` of the cell ``cfg``: finished = a complete JSON for the same
    config, covering the grid's variants, made from the same data (``fingerprints``: a cache
    shared over the grid's cells). Data that cannot be read counts as not finished (the run
    records why)."""
    path = cell_path_for(grid.results_dir, cfg)
    if not path.is_file():  # nothing to compare: no need to read the data
        return path, False
    variant_names = list(grid.methods) if grid.methods else list_variants()
    try:
        fingerprint = cell_fingerprint(cfg, grid.data_dir, fingerprints)
    except Exception as exc:  # noqa: BLE001 - unreadable data: the runner records the failure
        logger.debug("fingerprint of %s failed: %s", path, exc)
        return path, False
    return path, cell_is_finished(path, cfg, variant_names, fingerprint)


def run_grid(
    grid: GridConfig,
    *,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> GridSummary:
    """Run every unfinished cell of ``grid``; return what was skipped, completed, failed.

    ``callback`` receives events ``{"event": "cell_start" | "stage" | "cell_end" | "skip",
    "cell", "index", "total", "done", "failed", "stage"?, "status"?}`` (``done`` counts
    finished cells, skipped ones included). Progress is also logged at INFO level. A cell
    whose run fails is recorded in its JSON (``"status": "failed"``) and the grid goes on.
    """
    t0 = time.perf_counter()
    planned = plan_cells(grid, check=True)  # a bad option fails before any work is done
    total = len(planned)
    summary = GridSummary(total=total)
    data_dir = grid.data_dir
    done = 0
    remove_stale_temp_files(Path(grid.results_dir))

    def emit(event: str, cell: GridCell, index: int, **extra: Any) -> None:
        info = {"event": event, "cell": cell.label(), "index": index, "total": total,
                "done": done, "failed": len(summary.failed), **extra}
        if callback is not None:
            callback(info)

    for index, (cell, cfg, path, finished) in enumerate(
            ((p.cell, p.config, p.path, p.finished) for p in planned), start=1):
        if finished:
            done += 1
            summary.skipped.append(cell.label())
            logger.info("[%d/%d] %s: finished before, skipped", done, total, cell.label())
            emit("skip", cell, index)
            continue
        if path.exists():
            logger.info("[%d/%d] %s: redoing (failed, changed config or data, or missing "
                        "variants)", done, total, cell.label())
        logger.info("[%d/%d done] cell %d/%d %s: start", done, total, index, total, cell.label())
        emit("cell_start", cell, index)

        def on_stage(name: str, _cell: GridCell = cell, _index: int = index,
                     _done: int = done) -> None:
            logger.info("[%d/%d done] cell %d/%d %s: %s", _done, total, _index, total,
                        _cell.label(), name)
            emit("stage", _cell, _index, stage=name)

        record = run_one_cell(grid, cfg, data_dir, progress=progress, on_stage=on_stage)
        done += 1
        if record["status"] == "complete":
            summary.completed.append(cell.label())
        else:
            summary.failed.append(cell.label())
        logger.info("[%d/%d done] %s: %s", done, total, cell.label(), record["status"])
        emit("cell_end", cell, index, status=record["status"])
    summary.seconds = time.perf_counter() - t0
    return summary


def run_one_cell(
    grid: GridConfig, cfg: Any, data_dir: str | None, *, progress: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> dict:
    """Run one resolved cell of ``grid`` as the grid does: a failure is recorded in its JSON
    (not raised) and a run folder holding another config is moved aside. Returns the record."""
    return run_cell(
        cfg, grid.results_dir, runs_dir=grid.runs_dir, data_dir=data_dir,
        methods=grid.methods, adue_search=grid.adue_search, progress=progress,
        on_stage=on_stage, raise_on_error=False, replace_stale_run=True,
    )
