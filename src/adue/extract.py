"""Feature extraction from a finished run folder.

For every row of a split, one forward pass of the fine-tuned model (adapter merged, eval mode,
float32, no gradients) gives ``z`` -- the input of the classification head, see
:mod:`adue.architectures` -- and the logits; they are written with the gold labels to
``RUN/features/<split>.safetensors`` (:func:`adue.features.save_features`). The forward pass is
:func:`adue.inference.extract_features` -- the one also behind training's evaluation, prediction
and serving: rows batched by length (longest first), dynamic padding, dataset order kept.
Training already writes the validation split: its best epoch's validation pass, by the LoRA model
before merging (logits equal the merged model's up to float rounding; ``tests/test_extract.py``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adue.features import SPLITS, Features, features_path, load_features
from adue.heads import ClassifierHead
from adue.inference import extract_features
from adue.training import runfolder as rf
from adue.training.inputs import class_names, load_run_splits, resolve_max_length, split_texts

__all__ = ["extract", "load_head", "load_trained_model", "read_split_features"]

logger = logging.getLogger(__name__)


def load_head(run_dir: str | os.PathLike) -> ClassifierHead:
    """The trained classification head of a run, ``z (n, d) -> logits (n, C)``, in eval mode."""
    from safetensors import safe_open

    run_dir = Path(run_dir)
    path = run_dir / rf.HEAD
    if not path.is_file():
        raise FileNotFoundError(
            f"No trained head at {path}; is {run_dir} a finished run folder (adue finetune)?"
        )
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open API
    if "config" not in meta:
        raise ValueError(f"The head file {path} lacks its 'config' metadata.")
    head = ClassifierHead(**json.loads(meta["config"]))
    head.load_state_dict(state)
    return head.eval()


def load_trained_model(
    run_dir: str | os.PathLike, *, device: torch.device | str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the run's backbone with its adapter merged, eval mode, float32,
    as :func:`adue.models.load_classifier` (the one run loader) loads it.

    ``device``: a device setting (see :func:`adue.device.resolve_device`); ``None`` uses the
    run's ``device`` setting.
    """
    from adue.models import load_classifier

    run_dir = Path(run_dir)
    rf.check_finished(run_dir)
    cfg = rf.read_run_config(run_dir)
    loaded = load_classifier(run_dir, device=cfg.device if device is None else device,
                             trust_remote_code=bool(cfg.trust_remote_code))
    return loaded.model, loaded.tokenizer


def _check_args(splits: Any, batch_size: Any) -> tuple[str, ...]:
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(
            f"The 'splits' parameter of extract must hold names from {list(SPLITS)}. "
            f"Got {list(splits)} instead."
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(
            f"The 'batch_size' parameter of extract must be an int >= 1. Got {batch_size!r} instead."
        )
    return splits


def read_split_features(run_dir: str | os.PathLike, split: str) -> Features:
    """The written features of ``split``; a damaged file (truncated, NaN, wrong tensors) is a
    one-line ``ValueError`` naming the file and the command that rewrites it."""
    run_dir = Path(run_dir)
    path = features_path(run_dir, split)
    try:
        return load_features(run_dir, split)
    except (ValueError, OSError) as exc:
        reason = " ".join(str(exc).replace(str(path), "it").split())
        raise ValueError(
            f"The features file {path} is damaged ({reason}); "
            f"`adue extract --overwrite {run_dir}` rewrites it."
        ) from exc


def _check_data(run_dir: Path, ds: Any) -> None:
    """The loaded dataset is the one the run was trained on: same classes, and the same rows
    where the run recorded their fingerprint."""
    from adue.data import dataset_fingerprint

    info = rf.read_json(run_dir / rf.DATASET)
    names = class_names(ds)
    if names != list(info["class_names"]):
        raise ValueError(
            f"The dataset's classes {names} differ from those the run was trained on "
            f"{info['class_names']}."
        )
    recorded = info.get("fingerprint")
    if recorded is not None and dataset_fingerprint(ds) != recorded:
        raise ValueError(
            f"The dataset {info.get('dataset')!r} changed since the run in {run_dir} was trained "
            "on it (its rows' fingerprint differs; see dataset.json); fine-tune again "
            "(adue finetune --overwrite) or restore the data."
        )


def _extract_splits(
    run_dir: Path, todo: list[str], *, batch_size: int | None, data_dir: Any, progress: bool,
    device: Any,
) -> dict[str, Features]:
    """Load the data and the trained model once, then extract and write each split."""
    cfg = rf.read_run_config(run_dir)
    ds = load_run_splits(cfg, data_dir)
    _check_data(run_dir, ds)
    model, tokenizer = load_trained_model(run_dir, device=device)
    max_len = resolve_max_length(cfg, tokenizer)
    out: dict[str, Features] = {}
    for split in todo:
        t0 = time.perf_counter()
        z, logits = extract_features(
            model, tokenizer, split_texts(ds, split, cfg), max_length=max_len,
            batch_size=batch_size or cfg.eval_batch_size, progress=progress,
        )
        feats = Features(z=z, logits=logits, labels=np.asarray(ds[split]["label"], dtype=np.int64))
        rf.save_split_features(run_dir, cfg, split, feats)
        logger.info(
            "%s: %d rows, d=%d, accuracy %.4f (%.1f s)",
            split, feats.n, feats.dim, feats.accuracy(), time.perf_counter() - t0,
        )
        out[split] = feats
    return out


def extract(
    run_dir: str | os.PathLike,
    *,
    splits: Iterable[str] = SPLITS,
    batch_size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    overwrite: bool = False,
) -> dict[str, Features]:
    """Write (or read back) the features of ``splits`` of a finished run.

    Splits whose ``RUN/features/<split>.safetensors`` exists are read, not recomputed
    (``overwrite``: recomputed and rewritten); the model is loaded only if some split is
    missing. ``batch_size`` defaults to the run's ``eval_batch_size``, ``device`` to the run's
    ``device`` setting. Returns ``{split: Features}``.
    """
    run_dir = Path(run_dir)
    splits = _check_args(splits, batch_size)
    rf.check_finished(run_dir)
    todo = [s for s in splits if overwrite or not features_path(run_dir, s).is_file()]
    out = {s: read_split_features(run_dir, s) for s in splits if s not in todo}
    if todo:
        out.update(
            _extract_splits(
                run_dir, todo, batch_size=batch_size, data_dir=data_dir, progress=progress,
                device=device,
            )
        )
    return {s: out[s] for s in splits}
