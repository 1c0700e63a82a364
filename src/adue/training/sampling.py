"""The order in which training rows are seen: batches as a function of ``(seed, epoch)``.

Deriving each epoch's order from the epoch number (not from a running generator) lets a
resumed run see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["shuffled_batches"]


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
