"""Seeded splits: the protocol's 80/20 train/validation division and stratified caps.

Train/validation rule (the paper's "seeded 80/20"): scikit-learn
``train_test_split(arange(n), test_size=0.2, random_state=split_seed, stratify=labels)``,
i.e. ``n_val = ceil(0.2 n)`` and ``n_train = n - n_val`` (SST-2: 67,349 -> 53,879 / 13,470;
CoLA: 8,551 -> 6,840 / 1,711; 20 Newsgroups: 11,314 -> 9,051 / 2,263; ToxiGen: 5,914 ->
4,731 / 1,183). It is stratified so that each class keeps its share in both parts; an
unstratified split has the same sizes. Each part keeps the rows in release order.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import train_test_split

__all__ = ["VAL_FRACTION", "split_train_validation", "stratified_subsample"]

logger = logging.getLogger(__name__)

#: Share of the train rows carved out as validation.
VAL_FRACTION = 0.2


def split_train_validation(
    labels: np.ndarray, seed: int, *, allow_unstratified: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (sorted) of the train and validation parts of an 80/20 stratified split.

    ``labels`` (n,) int. ``allow_unstratified``: when a class is too small to stratify,
    split without stratification (with a warning) instead of raising.
    """
    labels = np.asarray(labels)
    idx = np.arange(labels.shape[0])
    try:
        train_idx, val_idx = train_test_split(
            idx, test_size=VAL_FRACTION, random_state=seed, stratify=labels
        )
    except ValueError as err:
        if not allow_unstratified:
            raise
        logger.warning(
            "Cannot stratify the 80/20 train/validation split (%s); splitting without "
            "stratification.",
            err,
        )
        train_idx, val_idx = train_test_split(idx, test_size=VAL_FRACTION, random_state=seed)
    return np.sort(train_idx), np.sort(val_idx)


def stratified_subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices (sorted) of ``size`` rows drawn per class in proportion to the class counts.

    Class c gets ``floor(size * n_c / n)`` rows, the leftover rows going to the classes
    with the largest remainders (ties: smaller class id first); rows within a class are a
    uniform draw from ``numpy.random.default_rng(seed)``. ``size >= n`` returns all rows.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if size >= n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = size * counts / n
    take = np.floor(exact).astype(np.int64)
    leftover = size - int(take.sum())
    # largest remainder first; stable sort keeps smaller class ids first on ties
    order = np.argsort(-(exact - take), kind="stable")
    take[order[:leftover]] += 1
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen))
