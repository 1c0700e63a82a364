"""What a run reads: its dataset splits, their texts as the model sees them, the class names
and the token limit -- shared by fine-tuning and extraction."""

from __future__ import annotations

import logging
import os
from typing import Any

from adue.config import RunConfig

__all__ = ["load_run_splits", "split_texts", "class_names", "resolve_max_length"]

logger = logging.getLogger(__name__)

#: ``max_length`` when the config leaves it to a dataset the registry does not know.
DEFAULT_MAX_LENGTH = 512


def load_run_splits(cfg: RunConfig, data_dir: str | os.PathLike | None = None) -> Any:
    """The ``DatasetDict`` (train / validation / test) ``cfg`` trains and is evaluated on.

    ``data_dir`` ``None``: the folder :func:`adue.data.resolve_data_dir` finds (the one
    resolver: ``$ADUE_DATA_DIR``, ``shared/data`` upwards from the current folder, the user
    cache, else the hub).
    """
    from adue.data import load_dataset

    return load_dataset(
        cfg.dataset,
        None if data_dir is None else str(data_dir),
        max_train=cfg.max_train,
        max_val=cfg.max_val,
        max_test=cfg.max_test,
        split_seed=cfg.split_seed,
        subsample_seed=cfg.subsample_seed,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
    )


def split_texts(ds: Any, split: str, cfg: RunConfig) -> list[str]:
    """The texts of a split as the model sees them (whitespace-stripped if ``cfg.strip_text``)."""
    texts = list(ds[split]["text"])
    return [t.strip() for t in texts] if cfg.strip_text else texts


def class_names(ds: Any) -> list[str]:
    """Class names of a loaded ``DatasetDict``."""
    feat = ds["train"].features["label"]
    names = getattr(feat, "names", None)
    if not names:
        raise ValueError("The dataset's 'label' column has no class names.")
    return list(names)


def resolve_max_length(cfg: RunConfig, tokenizer: Any) -> int:
    """``cfg.max_length`` (or the dataset's suggested length), capped at the model's limit."""
    from adue.data import DATASETS

    max_len = cfg.max_length
    if max_len is None:
        spec = DATASETS.get(cfg.dataset)
        max_len = int(spec.max_length) if spec is not None else DEFAULT_MAX_LENGTH
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000 and limit < max_len:
        logger.info("max_length %d exceeds the model's limit; using %d", max_len, limit)
        max_len = limit
    return int(max_len)
