"""Metrics for misclassification detection and calibration.

Conventions: ``uncertainty`` (n,) is higher for rows more likely wrong; ``errors`` (n,) is 1
where the model's prediction is wrong (the positive class of every ranking metric) and 0
where it is right; ``confidence`` (n,) in ``[0, 1]`` is the probability the model gives its
own prediction (e.g. the maximum softmax probability), compared with ``correct = 1 - errors``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from adue._validation import check_number
from adue.exceptions import NoErrorsWarning

__all__ = [
    "ReliabilityCurve",
    "aurc",
    "average_precision",
    "brier_score",
    "ece_from_sums",
    "evaluate",
    "expected_calibration_error",
    "reliability_counts",
    "reliability_curve",
    "risk_at_coverage",
    "risk_coverage_curve",
    "roc_auc",
]


# ---------------------------------------------------------------- validation
def _vector(x: Any, name: str, *, n: int | None = None) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"The '{name}' argument must be 1-D (n,). Got shape {arr.shape} instead.")
    if arr.size == 0:
        raise ValueError(f"The '{name}' argument must hold at least one value. Got an empty array instead.")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"The '{name}' argument must be numeric. Got dtype {arr.dtype} instead.")
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"The '{name}' argument must have the same length as 'uncertainty' ({n}). "
            f"Got {arr.shape[0]} instead."
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))
        raise ValueError(
            f"The '{name}' argument must be finite. Got NaN or inf at {bad.size} position(s), "
            f"first at {int(bad[0])}, instead."
        )
    return arr


def _binary(x: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = _vector(x, name, n=n)
    bad = (arr != 0.0) & (arr != 1.0)
    if bad.any():
        vals = sorted(set(arr[bad].tolist()))[:5]
        raise ValueError(f"The '{name}' argument must hold only 0 and 1. Got values {vals} instead.")
    return arr.astype(np.int64)


def _probability(x: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = _vector(x, name, n=n)
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"The '{name}' argument must lie in [0, 1]. Got values in "
            f"[{arr.min():.6g}, {arr.max():.6g}] instead."
        )
    return arr


def _check_n_bins(n_bins: Any, owner: str) -> None:
    check_number("n_bins", owner, n_bins, low=1, integer=True)


# ------------------------------------------------------------ ranking metrics
def roc_auc(uncertainty: Any, errors: Any) -> float:
    """ROC-AUC of ``uncertainty`` for detecting ``errors == 1`` (ties count one half).

    Mann-Whitney form: ``(sum of the ranks of the errors - P (P + 1) / 2) / (P N)`` with
    average ranks for ties, ``P`` errors and ``N`` correct rows. NaN (with
    :class:`~adue.exceptions.NoErrorsWarning`) when ``P == 0`` or ``N == 0``.
    """
    from scipy.stats import rankdata

    u = _vector(uncertainty, "uncertainty")
    e = _binary(errors, "errors", u.size)
    pos = int(e.sum())
    neg = e.size - pos
    if pos == 0 or neg == 0:
        _warn_degenerate(pos, neg, "roc_auc is")
        return math.nan
    ranks = rankdata(u)  # average ranks for ties
    return float((ranks[e == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def average_precision(uncertainty: Any, errors: Any) -> float:
    """PR-AUC as average precision with errors positive: ``sum_k (R_k - R_{k-1}) P_k``.

    Thresholds are the distinct ``uncertainty`` values from high to low; ``P_k`` and ``R_k``
    are the precision and recall of flagging every row at or above the k-th threshold
    (scikit-learn's ``average_precision_score``). NaN (with a warning) when all rows are
    right or all are wrong (the ranking cannot be assessed).
    """
    u = _vector(uncertainty, "uncertainty")
    e = _binary(errors, "errors", u.size)
    pos = int(e.sum())
    if pos == 0 or pos == e.size:
        _warn_degenerate(pos, e.size - pos, "pr_auc is")
        return math.nan
    order = np.argsort(-u, kind="stable")
    u_sorted = u[order]
    e_sorted = e[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(u_sorted) != 0.0), u_sorted.size - 1]
    tps = np.cumsum(e_sorted)[last_of_tie].astype(np.float64)
    precision = tps / (last_of_tie + 1.0)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def risk_coverage_curve(uncertainty: Any, errors: Any) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk at every coverage ``k/n``: keep the ``k`` least uncertain rows.

    Returns ``coverage`` (n,) = ``k / n`` and ``risk`` (n,) = errors among the kept rows / k,
    for ``k = 1..n``. Rows tied in ``uncertainty`` are kept in random order; ``risk`` is the
    expectation over that order, i.e. a tied group's errors are counted as spread evenly over
    its positions. The curve therefore does not depend on the row order of the input.
    """
    u = _vector(uncertainty, "uncertainty")
    e = _binary(errors, "errors", u.size)
    n = u.size
    order = np.argsort(u, kind="stable")
    u_sorted = u[order]
    e_sorted = e[order].astype(np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(u_sorted) != 0.0) + 1]
    sizes = np.diff(np.r_[starts, n])
    group_errors = np.add.reduceat(e_sorted, starts)
    before = np.r_[0.0, np.cumsum(group_errors)[:-1]]
    gid = np.repeat(np.arange(starts.size), sizes)
    pos_in_group = np.arange(n) - starts[gid] + 1
    cum_errors = before[gid] + pos_in_group * group_errors[gid] / sizes[gid]
    k = np.arange(1, n + 1, dtype=np.float64)
    return k / n, cum_errors / k


def risk_at_coverage(uncertainty: Any, errors: Any, coverage: Any) -> np.ndarray:
    """Selective risk of :func:`risk_coverage_curve` at arbitrary ``coverage`` fractions.

    ``risk(c) = E[errors among the k = max(c n, 1) least uncertain rows] / k``: the expected
    error count is :func:`risk_coverage_curve`'s at whole ``k`` and linear in between (inside a
    tie group it grows linearly anyway). Returns shape ``(len(coverage),)``.
    """
    cov = np.asarray(coverage, dtype=np.float64)
    if cov.ndim != 1 or cov.size == 0 or cov.min() < 0.0 or cov.max() > 1.0:
        raise ValueError(
            "The 'coverage' argument must be a non-empty 1-D array of fractions in [0, 1]. "
            f"Got {coverage!r} instead."
        )
    frac, risk = risk_coverage_curve(uncertainty, errors)
    n = frac.size
    k_whole = np.arange(0, n + 1, dtype=np.float64)
    cum_errors = np.r_[0.0, risk * k_whole[1:]]
    k = np.maximum(cov * n, 1.0)
    return np.interp(k, k_whole, cum_errors) / k


def aurc(uncertainty: Any, errors: Any) -> float:
    """Area under the risk-coverage curve, in ``[0, 1]``, lower is better.

    ``AURC = (1/n) sum_{k=1..n} risk(k/n)`` with ``risk`` from :func:`risk_coverage_curve`
    (the error rate among the ``k`` least uncertain rows; ties averaged). Defined even when all
    rows are right (0) or all wrong (1): it then equals the error rate whatever the ranking.
    """
    return float(risk_coverage_curve(uncertainty, errors)[1].mean())


# --------------------------------------------------------------- calibration
class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of :func:`reliability_curve` (empty bins hold NaN and count 0)."""

    edges: np.ndarray  # (n_bins + 1,) bin edges 0 = b_0 < ... < b_B = 1
    confidence: np.ndarray  # (n_bins,) mean confidence per bin
    accuracy: np.ndarray  # (n_bins,) fraction correct per bin
    count: np.ndarray  # (n_bins,) rows per bin


def reliability_curve(confidence: Any, correct: Any, n_bins: int = 15) -> ReliabilityCurve:
    """Equal-width binning of ``confidence`` in ``[0, 1]``.

    Bin ``b`` is ``(b/B, (b+1)/B]`` (the first bin also holds 0), as in Guo et al. (2017).
    ``correct`` is 1 where the prediction is right.
    """
    _check_n_bins(n_bins, "reliability_curve")
    edges, count, sum_conf, sum_corr = _reliability_sums(confidence, correct, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, sum_conf / count, np.nan)
        acc = np.where(count > 0, sum_corr / count, np.nan)
    return ReliabilityCurve(edges, mean_conf, acc, count)


def _reliability_sums(confidence: Any, correct: Any, n_bins: int):
    """``(edges, count, confidence sum, correct sum)`` per bin of :func:`reliability_curve`."""
    conf = _probability(confidence, "confidence")
    corr = _binary(correct, "correct", conf.size)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_corr = np.bincount(idx, weights=corr.astype(np.float64), minlength=n_bins)
    return edges, count, sum_conf, sum_corr


def reliability_counts(confidence: Any, correct: Any, n_bins: int = 15) -> dict[str, Any]:
    """The bins of :func:`reliability_curve` as sums, JSON-ready (several seeds pool exactly).

    Returns ``{"n_bins", "count", "confidence_sum", "correct_sum"}`` with lists of length
    ``n_bins``: rows per bin, the sum of their confidences and the number of them correct.
    """
    _check_n_bins(n_bins, "reliability_counts")
    _, count, sum_conf, sum_corr = _reliability_sums(confidence, correct, n_bins)
    return {
        "n_bins": int(n_bins),
        "count": count.astype(int).tolist(),
        "confidence_sum": sum_conf.tolist(),
        "correct_sum": sum_corr.tolist(),
    }


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    """``ECE = sum_b (n_b / n) |accuracy_b - confidence_b|`` over the bins of
    :func:`reliability_curve` (empty bins contribute 0)."""
    _check_n_bins(n_bins, "expected_calibration_error")
    _, count, sum_conf, sum_corr = _reliability_sums(confidence, correct, n_bins)
    return ece_from_sums(count, sum_conf, sum_corr)


def ece_from_sums(count: Any, confidence_sum: Any, correct_sum: Any) -> float:
    """ECE of binned sums (e.g. :func:`reliability_counts`, or several of them added up):
    ``sum_b (n_b / n) |correct_b / n_b - confidence_b / n_b| = sum_b |correct_b - confidence_b| / n``."""
    count = np.asarray(count, dtype=np.float64)
    gaps = np.abs(np.asarray(correct_sum, dtype=np.float64) - np.asarray(confidence_sum, dtype=np.float64))
    return float(gaps.sum() / count.sum())


def brier_score(confidence: Any, correct: Any) -> float:
    """``mean((confidence - correct)^2)``: the Brier score of the confidence in the prediction."""
    conf = _probability(confidence, "confidence")
    corr = _binary(correct, "correct", conf.size)
    return float(np.mean((conf - corr) ** 2))


# ------------------------------------------------------------------ summary
def _warn_degenerate(pos: int, neg: int, what: str) -> None:
    kind = "no misclassified row" if pos == 0 else "no correctly classified row"
    warnings.warn(
        f"The split has {kind} ({pos} errors, {neg} correct): {what} undefined and set to NaN.",
        NoErrorsWarning,
        stacklevel=3,
    )


def evaluate(
    uncertainty: Any, errors: Any, confidence: Any | None = None, *, n_bins: int = 15
) -> dict[str, float]:
    """All metrics for one split.

    Parameters
    ----------
    uncertainty : (n,) float, higher = more likely wrong
    errors : (n,) in {0, 1}, 1 = misclassified (the positive class)
    confidence : (n,) in [0, 1] or None, the model's probability for its own prediction
    n_bins : int, equal-width bins for the ECE

    Returns
    -------
    dict with ``roc_auc``, ``pr_auc`` (average precision), ``aurc``, ``ece``, ``brier``,
    ``accuracy`` (``1 - mean(errors)``), ``n`` and ``n_errors``. ``roc_auc`` and ``pr_auc`` are
    NaN, with one :class:`~adue.exceptions.NoErrorsWarning`, when all rows are right or all
    are wrong; ``ece`` and ``brier`` are NaN when ``confidence`` is None.
    """
    _check_n_bins(n_bins, "evaluate")
    u = _vector(uncertainty, "uncertainty")
    e = _binary(errors, "errors", u.size)
    conf = None if confidence is None else _probability(confidence, "confidence", u.size)
    pos = int(e.sum())
    degenerate = pos == 0 or pos == e.size
    if degenerate:
        _warn_degenerate(pos, e.size - pos, "roc_auc and pr_auc are")
        roc = pr = math.nan
    else:
        roc = roc_auc(u, e)
        pr = average_precision(u, e)
    out = {
        "roc_auc": roc,
        "pr_auc": pr,
        "aurc": aurc(u, e),
        "ece": math.nan if conf is None else expected_calibration_error(conf, 1 - e, n_bins),
        "brier": math.nan if conf is None else brier_score(conf, 1 - e),
        "accuracy": float(1.0 - e.mean()),
        "n": int(e.size),
        "n_errors": pos,
    }
    return out
