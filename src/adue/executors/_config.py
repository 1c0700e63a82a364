"""The ``[executor]`` table of a grid file, validated (no executor package is imported here)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXECUTOR_NAMES", "ExecutorConfig", "SlurmOptions", "RayOptions",
           "parse_executor_config", "slurm_minutes", "MissingExtraError"]

EXECUTOR_NAMES = ("local", "slurm", "ray")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d\d):(\d\d)$")


class MissingExtraError(ImportError, ValueError):
    """An executor's optional package is not installed (the message names the pip command)."""


def _error(param: str, owner: str, source: str, must: str, got: Any) -> ValueError:
    return ValueError(
        f"The '{param}' parameter of {owner} in {source} must be {must}. Got {got!r} instead."
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def slurm_minutes(value: int | str) -> int:
    """A Slurm time limit in whole minutes: an int (minutes) or ``[D-]HH:MM:SS``, rounded up."""
    if _is_int(value):
        return int(value)
    m = _TIME.match(str(value))
    if m is None:
        raise ValueError(f"not a time limit: {value!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


@dataclass(frozen=True)
class SlurmOptions:
    """``[executor.slurm]``: one job per cell, submitted as one job array through submitit.

    ``time``: minutes or ``[D-]HH:MM:SS`` per cell; ``gpus_per_node`` / ``cpus_per_task`` /
    ``mem_gb``: each cell's request; ``extra``: any other ``#SBATCH --key=value`` (e.g.
    ``{account = "abc", qos = "high"}``); ``setup``: shell lines run before the cell (``module
    load ...``); ``log_dir``: submitit's folder (default ``<results_dir>/.slurm``).
    """

    partition: str | None = None
    time: int | str = "12:00:00"
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: float | None = None
    job_name: str = "adue-grid"
    extra: dict[str, Any] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    log_dir: str | None = None


@dataclass(frozen=True)
class RayOptions:
    """``[executor.ray]``: one Ray task per cell.

    ``address``: an existing cluster (default ``$RAY_ADDRESS``; none: a local cluster is
    started for the grid, of ``local_num_cpus`` / ``local_num_gpus``, default the machine's);
    ``num_cpus`` / ``num_gpus``: each cell's request (``num_gpus = "auto"``: 1 if the cluster
    has a GPU, else 0); ``max_retries``: Ray's retries of a cell whose worker died (default 0:
    such a cell is recorded as failed and redone by the next run).
    """

    address: str | None = None
    num_cpus: float = 1
    num_gpus: float | str = "auto"
    local_num_cpus: int | None = None
    local_num_gpus: int | None = None
    max_retries: int = 0


@dataclass(frozen=True)
class ExecutorConfig:
    """``[executor]``: ``name`` (local | slurm | ray), ``max_parallel`` (cells at once; default
    all the cluster allows; local runs one cell at a time), ``threads`` (torch / BLAS threads
    per cell; default the cell's CPUs on slurm and ray, unchanged on local)."""

    name: str = "local"
    max_parallel: int | None = None
    threads: int | None = None
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    ray: RayOptions = field(default_factory=RayOptions)
    source: str = "<dict>"

    def replace(self, **changes: Any) -> ExecutorConfig:
        """A copy with the non-None ``changes`` (``ray_address`` sets ``ray.address``), validated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        address = changes.pop("ray_address", None)
        new = dataclasses.replace(self, **changes)
        if address is not None:
            new = dataclasses.replace(new, ray=dataclasses.replace(new.ray, address=address))
        _check_top(new, "the grid's executor", new.source)
        return new

    def cell_threads(self) -> int | None:
        """Threads each cell uses (see the class docstring)."""
        if self.threads is not None:
            return self.threads
        if self.name == "slurm":
            return self.slurm.cpus_per_task
        if self.name == "ray":
            return max(1, int(self.ray.num_cpus))
        return None


def _table(raw: Any, owner: str, source: str, cls: type) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{owner} in {source} must be a table. Got {raw!r} instead.")
    valid = [f.name for f in dataclasses.fields(cls) if f.name not in ("source", "slurm", "ray")]
    allowed = set(valid) | ({"slurm", "ray"} if cls is ExecutorConfig else set())
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(
            f"{owner} in {source}: unknown key(s) {unknown}. Valid keys: {', '.join(sorted(allowed))}."
        )
    return dict(raw)


def _check_top(cfg: ExecutorConfig, owner: str, source: str) -> None:
    if cfg.name not in EXECUTOR_NAMES:
        raise _error("name", owner, source, f"one of {', '.join(EXECUTOR_NAMES)}", cfg.name)
    for key in ("max_parallel", "threads"):
        val = getattr(cfg, key)
        if val is not None and (not _is_int(val) or val < 1):
            raise _error(key, owner, source, "a positive integer", val)
    if cfg.name == "local" and cfg.max_parallel not in (None, 1):
        raise _error(
            "max_parallel", owner, source,
            "1 with the local executor (it runs one cell at a time in this process; "
            "--executor ray runs several cells at once on one machine)", cfg.max_parallel,
        )


def _check_slurm(o: SlurmOptions, source: str) -> None:
    owner = "[executor.slurm]"
    for key in ("partition", "log_dir"):
        if getattr(o, key) is not None and not isinstance(getattr(o, key), str):
            raise _error(key, owner, source, "a string", getattr(o, key))
    if not isinstance(o.job_name, str) or not o.job_name:
        raise _error("job_name", owner, source, "a non-empty string", o.job_name)
    try:
        ok = slurm_minutes(o.time) >= 1
    except ValueError:
        ok = False
    if not ok:
        raise _error("time", owner, source, "minutes (a positive integer) or '[D-]HH:MM:SS'", o.time)
    if not _is_int(o.gpus_per_node) or o.gpus_per_node < 0:
        raise _error("gpus_per_node", owner, source, "a non-negative integer", o.gpus_per_node)
    if not _is_int(o.cpus_per_task) or o.cpus_per_task < 1:
        raise _error("cpus_per_task", owner, source, "a positive integer", o.cpus_per_task)
    if o.mem_gb is not None and (not _is_number(o.mem_gb) or o.mem_gb <= 0):
        raise _error("mem_gb", owner, source, "a positive number of GB", o.mem_gb)
    if not isinstance(o.extra, dict) or not all(
        isinstance(v, (str, int, bool)) for v in o.extra.values()
    ):
        raise _error("extra", owner, source, "a table of sbatch options (string, int or bool "
                     "values)", o.extra)
    if not all(isinstance(line, str) for line in o.setup):
        raise _error("setup", owner, source, "a list of shell lines", list(o.setup))


def _check_ray(o: RayOptions, source: str) -> None:
    owner = "[executor.ray]"
    if o.address is not None and (not isinstance(o.address, str) or not o.address):
        raise _error("address", owner, source, "a Ray address ('auto', 'HOST:PORT', 'ray://...')",
                     o.address)
    if not _is_number(o.num_cpus) or o.num_cpus <= 0:
        raise _error("num_cpus", owner, source, "a positive number", o.num_cpus)
    if o.num_gpus != "auto" and (not _is_number(o.num_gpus) or o.num_gpus < 0):
        raise _error("num_gpus", owner, source, "'auto' or a non-negative number", o.num_gpus)
    for key in ("local_num_cpus", "local_num_gpus"):
        val = getattr(o, key)
        if val is not None and (not _is_int(val) or val < (1 if key == "local_num_cpus" else 0)):
            raise _error(key, owner, source, "a positive integer" if key == "local_num_cpus"
                         else "a non-negative integer", val)
    if not _is_int(o.max_retries) or o.max_retries < 0:
        raise _error("max_retries", owner, source, "a non-negative integer", o.max_retries)


def parse_executor_config(raw: Any, source: str = "<dict>") -> ExecutorConfig:
    """Validate the ``[executor]`` table (None: the local executor) into an ExecutorConfig.

    A bad value raises ``ValueError`` naming the parameter and, for names, the valid ones.
    """
    top = _table(raw, "[executor]", source, ExecutorConfig)
    slurm_raw = _table(top.pop("slurm", None), "[executor.slurm]", source, SlurmOptions)
    ray_raw = _table(top.pop("ray", None), "[executor.ray]", source, RayOptions)
    if "setup" in slurm_raw:
        setup = slurm_raw["setup"]
        slurm_raw["setup"] = tuple(setup) if isinstance(setup, list) else (setup,)
    slurm = SlurmOptions(**slurm_raw)
    ray = RayOptions(**ray_raw)
    _check_slurm(slurm, source)
    _check_ray(ray, source)
    cfg = ExecutorConfig(**top, slurm=slurm, ray=ray, source=source)
    _check_top(cfg, "[executor]", source)
    return cfg
