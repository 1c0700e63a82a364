"""The run folder: layout, atomic writes, checkpoints and the completion marker.

::

    RUN/
      config.json         resolved RunConfig
      dataset.json        class names, split sizes and max length actually used, and the
                          rows' fingerprint (adue.data.dataset_fingerprint)
      train_log.json      per-epoch loss, validation accuracy and wall times; best epoch
      versions.json       package versions, platform and git commit (adue.provenance)
      adapter/            peft adapter (safetensors): LoRA weights + trained head
      head.safetensors    the trained head as an adue.heads.ClassifierHead (z -> logits)
      checkpoint/last.pt  during training only: state after the last finished epoch
      COMPLETE            completion marker (JSON), written last
      features/           <split>.safetensors: validation from the best epoch's own validation
                          pass (written by training), the others by ``adue extract``
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import torch

from adue._atomic import atomic_path
from adue.config import RunConfig, config_differences

__all__ = [
    "CONFIG",
    "DATASET",
    "TRAIN_LOG",
    "VERSIONS",
    "ADAPTER",
    "HEAD",
    "CHECKPOINT",
    "COMPLETE",
    "is_complete",
    "check_finished",
    "read_run_config",
    "read_json",
    "save_checkpoint",
    "load_checkpoint",
    "prepare_run_dir",
    "provenance",
    "replace_dir",
    "save_split_features",
]

CONFIG = "config.json"
DATASET = "dataset.json"
TRAIN_LOG = "train_log.json"
VERSIONS = "versions.json"
ADAPTER = "adapter"
HEAD = "head.safetensors"
CHECKPOINT = "checkpoint/last.pt"
COMPLETE = "COMPLETE"


def is_complete(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a finished fine-tuning run (completion marker present)."""
    return (Path(run_dir) / COMPLETE).is_file()


def check_finished(run_dir: str | os.PathLike) -> None:
    """Raise unless ``run_dir`` is a finished run: ``FileNotFoundError`` for a missing folder,
    ``ValueError`` (saying how to finish it) for a run without its completion marker."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"The run folder {run_dir} does not exist.")
    if not is_complete(run_dir):
        raise ValueError(
            f"The run in {run_dir} is not finished (no {COMPLETE} marker); run or resume "
            "'adue finetune' with the same --output first."
        )


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The resolved :class:`RunConfig` stored in a run folder."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {path} does not exist.")
    return RunConfig.from_json(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"Cannot parse {path}: {exc}") from exc


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """``torch.save`` ``state`` to ``RUN/checkpoint/last.pt`` via a temp file + rename.

    ``state`` must hold only tensors, numbers, strings, lists and dicts so that it loads with
    ``torch.load(weights_only=True)``.
    """
    path = run_dir / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The last epoch checkpoint, or ``None`` when there is none (weights-only load)."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"Cannot read the checkpoint {path} ({exc}); delete it to restart the run from "
            "scratch, or pass overwrite=True (--overwrite)."
        ) from exc


def save_split_features(run_dir: Path, cfg: RunConfig, split: str, features: Any) -> Path:
    """Write one split's :class:`adue.features.Features` to ``RUN/features/<split>.safetensors``
    (the one writer, used by extraction and by training for the validation split)."""
    from adue.features import features_path, save_features

    meta = {"split": split, "dataset": cfg.dataset, "backbone": cfg.backbone}
    return save_features(features, features_path(run_dir, split), metadata=meta)


def replace_dir(src: Path, dst: Path) -> None:
    """Move a freshly written folder ``src`` to ``dst``, replacing an older ``dst``."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


def _looks_like_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file()


def prepare_run_dir(run_dir: Path, cfg: RunConfig, *, overwrite: bool) -> bool:
    """Create or check ``run_dir`` for training ``cfg``; returns True when it resumes.

    - missing or empty folder: created;
    - ``overwrite``: an existing run folder (or empty folder) is emptied first; a non-empty
      folder that is not a run folder is refused (nothing of the user's is deleted);
    - a finished run: ``FileExistsError``;
    - an unfinished run with the same config: resumed;
    - an unfinished run with another config: ``ValueError`` naming the differences.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"The run folder {run_dir} exists and is a file, not a folder.")
    if not run_dir.exists() or not any(run_dir.iterdir()):
        run_dir.mkdir(parents=True, exist_ok=True)
        return False
    if not _looks_like_run_dir(run_dir):
        raise FileExistsError(
            f"The folder {run_dir} exists, is not empty and is not a run folder (no {CONFIG}); "
            "refusing to write into it" + (" or delete it." if overwrite else ". Choose another --output.")
        )
    if overwrite:
        for child in run_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        return False
    if is_complete(run_dir):
        raise FileExistsError(
            f"The run folder {run_dir} already holds a finished run; pass overwrite=True "
            "(--overwrite) to train again, or choose another folder."
        )
    try:
        old = read_run_config(run_dir)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"The unfinished run in {run_dir} has an unreadable {CONFIG} ({exc}); pass "
            "overwrite=True (--overwrite) to start afresh."
        ) from exc
    diff = config_differences(old, cfg)
    if diff:
        lines = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
        raise ValueError(
            f"The unfinished run in {run_dir} was started with another configuration ({lines}); "
            "pass overwrite=True (--overwrite) to replace it, or choose another folder."
        )
    return True


def provenance() -> dict[str, Any]:
    """What ``versions.json`` records: :func:`adue.provenance.package_versions`, the platform
    and :func:`adue.provenance.git_commit`."""
    from adue.provenance import git_commit, package_versions

    return {**package_versions(), "platform": platform.platform(), "git_commit": git_commit()}
