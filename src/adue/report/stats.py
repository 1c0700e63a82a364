"""Summary statistics of the report: mean ± std over seeds, best per column, mean rank.

- ``mean`` and ``std`` over the seeds of a cell; ``std`` is the sample standard deviation
  (``ddof=1``), undefined (NaN) for a single seed. Non-finite values (undefined metrics) are
  dropped and do not count in ``n``.
- Ranks: in each column the rows with a value are ranked on their (unrounded) means, 1 = best,
  ties sharing the average rank; a row's rank is the mean over the columns where it has a
  value. This reproduces the paper's "Rank" columns from its own numbers (tested).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = ["Stat", "summarize", "mean_ranks", "best_rows"]


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (``ddof=1``) and number of values behind them."""

    mean: float
    std: float
    n: int

    @property
    def ok(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)


def summarize(values: Iterable[float | None]) -> Stat:
    """``Stat`` of the finite values among ``values`` (``None`` / NaN dropped)."""
    vals = np.array(
        [float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=np.float64
    )
    if vals.size == 0:
        return Stat(math.nan, math.nan, 0)
    std = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
    return Stat(float(vals.mean()), std, int(vals.size))


def mean_ranks(
    means: Mapping[tuple[Hashable, Hashable], float],
    rows: Sequence[Hashable],
    columns: Sequence[Hashable],
    *,
    higher_is_better: bool = True,
) -> dict[Hashable, float]:
    """Mean rank of each row over ``columns`` (1 = best; ties averaged; NaN if never ranked).

    ``means[(row, column)]`` is the value to rank; missing or non-finite entries leave the row
    out of that column.
    """
    total = {r: 0.0 for r in rows}
    count = {r: 0 for r in rows}
    for col in columns:
        present = [
            r for r in rows
            if (r, col) in means and means[(r, col)] is not None and math.isfinite(means[(r, col)])
        ]
        if not present:
            continue
        vals = np.array([means[(r, col)] for r in present], dtype=np.float64)
        ranks = rankdata(-vals if higher_is_better else vals, method="average")
        for r, rank in zip(present, ranks, strict=True):
            total[r] += float(rank)
            count[r] += 1
    return {r: (total[r] / count[r] if count[r] else math.nan) for r in rows}


def best_rows(
    means: Mapping[tuple[Hashable, Hashable], float],
    rows: Sequence[Hashable],
    column: Hashable,
    *,
    higher_is_better: bool = True,
    decimals: int | None = None,
    scale: float = 1.0,
) -> set[Hashable]:
    """Rows holding the best value of ``column``.

    With ``decimals``, values are compared as displayed (``round(value * scale, decimals)``), so
    that every row showing the best number is marked.
    """
    vals = {}
    for r in rows:
        v = means.get((r, column))
        if v is None or not math.isfinite(v):
            continue
        vals[r] = round(v * scale, decimals) if decimals is not None else v
    if not vals:
        return set()
    best = max(vals.values()) if higher_is_better else min(vals.values())
    return {r for r, v in vals.items() if v == best}
