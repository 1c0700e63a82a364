"""The order in which training rows are seen: batches as a function of ``(seed, epoch)``.

Deriving each epoch's order from the epoch number (not from a running generator) lets a
resumed run see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["shuffled_batches", "length_grouped_batches"]


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"The 'batch_size' parameter of the training sampler must be an int >= 1. "
            f"Got {batch_size!r} instead."
        )


def shuffled_batches(n: int, batch_size: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    """A random permutation of ``range(n)`` cut into batches; a function of ``(seed, epoch)``."""
    _check_batch_size(batch_size)
    perm = torch.randperm(n, generator=_generator(seed, epoch)).numpy()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, mega: int | None = None
) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length; a function of ``(lengths, seed, epoch)``.

    As ``group_by_length`` in ``transformers`` (``get_length_grouped_indices``): a random
    permutation is cut into mega-batches of ``mega * batch_size`` rows, each mega-batch is
    sorted by length (longest first, stable) and cut into batches, so a batch is padded to
    little more than its rows' own lengths while its members stay random. ``mega`` ``None``:
    as ``transformers``, ``min(n // (4 * batch_size), 50)`` (at least 1). Unlike
    ``transformers``, the order of the batches is then shuffled too (same generator), so that
    batch length does not follow the position in the learning-rate schedule.
    """
    _check_batch_size(batch_size)
    if mega is None:
        mega = max(1, min(len(lengths) // (4 * batch_size), 50))
    if isinstance(mega, bool) or not isinstance(mega, int) or mega < 1:
        raise ValueError(f"The 'mega' parameter of length_grouped_batches must be an int >= 1. Got {mega!r} instead.")
    lengths = np.asarray(lengths, dtype=np.int64)
    gen = _generator(seed, epoch)
    perm = torch.randperm(len(lengths), generator=gen).numpy()
    size = mega * batch_size
    batches: list[np.ndarray] = []
    for m0 in range(0, len(perm), size):
        block = perm[m0 : m0 + size]
        block = block[np.argsort(-lengths[block], kind="stable")]
        batches.extend(block[i : i + batch_size] for i in range(0, len(block), batch_size))
    order = torch.randperm(len(batches), generator=gen).numpy()
    return [batches[i] for i in order]
