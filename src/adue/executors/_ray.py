"""The ray executor: each unfinished cell one Ray task with its CPU/GPU request.

On a machine with several GPUs, a local Ray cluster (started for the grid) runs one cell per
GPU: Ray gives each task its own ``CUDA_VISIBLE_DEVICES``, and the cell's device setting
("auto") picks that GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from adue.executors._cells import CellTask, record_lost, run_task
from adue.executors._config import ExecutorConfig, MissingExtraError

__all__ = ["run_ray", "require_ray"]

logger = logging.getLogger(__name__)


def require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError(
            "The ray executor needs ray, which is not installed. Install it with: "
            "pip install 'adue[ray]'"
        ) from exc
    return ray


def _connect(ray: Any, executor: ExecutorConfig) -> tuple[bool, bool]:
    """Connect to the configured cluster or start a local one: (this call started Ray, the
    cluster is a local one started for the grid)."""
    if ray.is_initialized():
        return False, False
    o = executor.ray
    address = o.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        logger.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address)
        return True, False
    logger.info("starting a local Ray cluster for the grid")
    ray.init(num_cpus=o.local_num_cpus, num_gpus=o.local_num_gpus, include_dashboard=False)
    return True, True


def _check_fits(ray: Any, executor: ExecutorConfig, num_gpus: float, local: bool) -> None:
    """A cell asking for more than the cluster has would wait forever: an error on the local
    cluster, a warning on a cluster of its own (its autoscaler may add nodes)."""
    have = ray.cluster_resources()
    for key, want in (("num_cpus", executor.ray.num_cpus), ("num_gpus", num_gpus)):
        total = have.get("CPU" if key == "num_cpus" else "GPU", 0)
        if want <= total:
            continue
        if local:
            raise ValueError(
                f"The '{key}' parameter of [executor.ray] must be at most {total:g} on this "
                f"machine's Ray cluster. Got {want:g} instead."
            )
        logger.warning("each cell asks for %s=%g but the Ray cluster has %g: cells wait until "
                       "the cluster provides it", key, want, total)


def _num_gpus(ray: Any, executor: ExecutorConfig) -> float:
    if executor.ray.num_gpus != "auto":
        return float(executor.ray.num_gpus)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def run_ray(executor: ExecutorConfig, tasks: list[CellTask], *,
            callback: Callable[[dict], None] | None = None) -> None:
    """Run ``tasks`` as Ray tasks, at most ``max_parallel`` at once; returns when all ended.

    A task whose worker died (or raised) gets a failed cell JSON; the next run redoes it.
    """
    ray = require_ray()
    started, local = _connect(ray, executor)
    try:
        num_gpus = _num_gpus(ray, executor)
        _check_fits(ray, executor, num_gpus, local)
        remote = ray.remote(run_task).options(
            num_cpus=executor.ray.num_cpus, num_gpus=num_gpus,
            max_retries=executor.ray.max_retries, name="adue-cell",
        )
        logger.info("Ray: %d cell(s), each %s CPU(s) and %s GPU(s); cluster %s", len(tasks),
                    executor.ray.num_cpus, num_gpus, ray.cluster_resources())
        queue, in_flight, done = list(tasks), {}, 0
        limit = executor.max_parallel or max(len(tasks), 1)
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                task = queue.pop(0)
                in_flight[remote.remote(task)] = task
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                task = in_flight.pop(ref)
                try:
                    status = str(ray.get(ref)["status"])
                except ray.exceptions.RayError as exc:
                    first = (str(exc).strip().splitlines() or [""])[0]
                    record_lost(task, f"Ray task ended without a result: "
                                      f"{type(exc).__name__}: {first[:300]}")
                    status = "failed"
                done += 1
                logger.info("[%d/%d] %s: %s", done, len(tasks), task.label(), status)
                if callback is not None:
                    callback({"event": "cell_end", "cell": task.label(), "status": status,
                              "done": done, "total": len(tasks)})
    finally:
        if started:
            ray.shutdown()
