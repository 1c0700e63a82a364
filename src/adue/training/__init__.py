"""LoRA fine-tuning of a sequence classifier into a run folder.

>>> from adue.config import resolve_config
>>> from adue.training import finetune, is_complete
>>> cfg = resolve_config(dataset="sst2", backbone="minilm", seed=1, profile="quick")
>>> run_dir = finetune(cfg, "runs/sst2-minilm-1")          # doctest: +SKIP

Training runs through Hugging Face ``accelerate``: a plain call uses the one device it finds
(a GPU when there is one, else the CPU); on a machine with several GPUs the same code trains one
run on all of them, data-parallel, when started with::

    accelerate launch -m adue finetune --dataset sst2 --backbone roberta-base \\
        --seed 1 --profile paper --output runs/sst2-roberta-1

(or ``accelerate launch $(which adue) finetune ...``). ``batch_size`` is the global batch: each
process takes an equal slice, so the recipe is the same on 1 or N devices.

A run killed mid-training resumes from its last finished epoch when started again with the same
configuration and folder; a finished run is never overwritten without ``overwrite=True``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adue.config import RunConfig
from adue.training.loop import EpochCallback
from adue.training.runfolder import is_complete, prepare_run_dir, read_run_config

__all__ = ["finetune", "FinetuneResult", "is_complete", "read_run_config"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` returns: the run folder and the training log it wrote.

    Path-like (``Path(result)``, ``result / "head.safetensors"``) so it stands for the folder.
    ``log`` holds ``best_epoch``, ``best_val_accuracy``, ``total_train_seconds``, the per-epoch
    records (``epochs``) and the run's settings (device, bf16, steps...).
    """

    run_dir: Path
    log: dict[str, Any] = field(repr=False)

    def __fspath__(self) -> str:
        return os.fspath(self.run_dir)

    def __truediv__(self, other: str | os.PathLike) -> Path:
        return self.run_dir / other

    def __str__(self) -> str:
        return str(self.run_dir)


def finetune(
    cfg: RunConfig,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    callbacks: Sequence[EpochCallback] = (),
) -> FinetuneResult:
    """LoRA-fine-tune ``cfg.backbone`` on ``cfg.dataset`` and write the run folder.

    Parameters
    ----------
    cfg : RunConfig
        Resolved configuration (see :func:`adue.config.resolve_config`).
    output_dir : path
        Run folder. Must not exist, be empty, or hold an unfinished run with the same config
        (which is then resumed after its last finished epoch).
    overwrite : bool
        Replace an existing run folder.
    data_dir : path, optional
        Dataset folder (else ``ADUE_DATA_DIR`` / the user cache / the hub).
    progress : bool
        Show tqdm bars.
    callbacks : sequence of callables
        Called after every epoch (its checkpoint written) with the epoch's log record.

    Returns
    -------
    FinetuneResult
        The run folder (path-like; see :mod:`adue.training.runfolder` for its layout) and
        the training log.
    """
    from adue.training.loop import train_run

    if not isinstance(cfg, RunConfig):
        raise TypeError(f"The 'cfg' parameter of finetune must be a RunConfig. Got {type(cfg).__name__} instead.")
    from adue.backbones import resolve_backbone

    run_dir = Path(output_dir)
    resolve_backbone(cfg.backbone)  # a bad backbone is reported before the run folder is made
    resume = _prepare_on_main(run_dir, cfg, overwrite=overwrite)
    log = train_run(
        cfg,
        run_dir,
        resume=resume,
        data_dir=None if data_dir is None else str(data_dir),
        progress=progress,
        callbacks=callbacks,
    )
    logger.info("Run folder written: %s", run_dir)
    return FinetuneResult(run_dir=run_dir, log=log)


def _prepare_on_main(run_dir: Path, cfg: RunConfig, *, overwrite: bool) -> bool:
    """Check/create the run folder on the main process only; other processes (under
    ``accelerate launch``) wait, then get the same answer or the same error."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # The same device choice the Accelerator makes later (ACCELERATE_USE_CPU: multi-CPU runs).
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    if state.num_processes == 1:
        resume = prepare_run_dir(run_dir, cfg, overwrite=overwrite)
        if not resume:
            cfg.to_json(run_dir / "config.json")
        return resume
    from accelerate.utils import broadcast_object_list

    outcome: list = [None]
    if state.is_main_process:
        try:
            resume = prepare_run_dir(run_dir, cfg, overwrite=overwrite)
            if not resume:
                cfg.to_json(run_dir / "config.json")
            outcome = [("ok", resume)]
        except (FileExistsError, ValueError, OSError) as exc:
            outcome = [("error", type(exc).__name__, str(exc))]
    broadcast_object_list(outcome, from_process=0)
    result = outcome[0]
    if result[0] == "error":
        kind = {"FileExistsError": FileExistsError, "ValueError": ValueError}.get(result[1], OSError)
        raise kind(result[2])
    return bool(result[1])
