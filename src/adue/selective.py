"""Abstention thresholds on an uncertainty score: guaranteed risk (SGR) or fixed coverage.

A row is **kept** (predicted) when its uncertainty ``u <= threshold`` and the model
**abstains** otherwise. The selective risk of a threshold is the error rate among kept rows,
its coverage the fraction of rows kept.

Selection with guaranteed risk (Geifman & El-Yaniv 2017, "Selective classification for deep
neural networks", Algorithm 1 "SGR"), exactly as implemented by :func:`sgr_threshold`:

1. Sort the ``m`` calibration rows by confidence ``kappa = -u`` ascending (most uncertain
   first); call them ``x_1 .. x_m``.
2. ``z_min = 1``, ``z_max = m``, ``k = ceil(log2 m)``.
3. For ``i = 1 .. k``: ``z = ceil((z_min + z_max) / 2)``, ``theta_i = kappa(x_z)``; the rule
   ``g_i`` keeps the rows with ``kappa >= theta_i`` (i.e. ``u <= u(x_z)``, ties kept);
   ``b*_i`` = the one-sided Clopper-Pearson upper bound at level ``delta / k`` of the risk of
   ``g_i`` from its ``n_i`` kept rows and ``e_i`` errors among them (Lemma 3.1: the ``b`` with
   ``sum_{j<=e_i} C(n_i, j) b^j (1-b)^(n_i-j) = delta / k``, i.e.
   ``b = Beta.ppf(1 - delta/k, e_i + 1, n_i - e_i)``, and ``1`` when ``e_i = n_i``).
   If ``b*_i <= R`` (the paper writes ``<``): ``z_max = z`` (try more coverage), else
   ``z_min = z``.
4. The union bound over the ``k`` tested rules gives, with probability at least
   ``1 - delta`` over the calibration draw, ``risk(g_i) <= b*_i`` for all ``i`` at once
   (the paper's Theorem 3.2 argument).

One deviation, in the safe direction: the paper outputs the last tested rule ``g_k`` with its
bound ``b*_k``, which may exceed ``R``. Here the output is the tested rule of largest coverage
whose bound is at most ``R`` (covered by the same union bound); when no tested rule meets
``R`` the result is "abstain on all" (``threshold=None``), never a rule that fails.

A property of the paper's search worth knowing: it tests at most ``ceil(log2 m)`` rules and
starts at half coverage, so with few calibration rows or a target near the error rate of the
best rules it can end with no passing rule ("abstain on all") although a rule between the
tested ones would have passed; more calibration rows or a larger target help. (In
``tests/test_selective.py``, P(error | u) = u with R = 0.1, delta = 0.1 and m = 2000 ended so in
about a quarter of draws; P(error | u) = u**2 with R = 0.15 never did.)

Assumption: the calibration rows are exchangeable with (drawn from the same distribution as)
the future inputs, and were used neither to train the classifier nor to fit the uncertainty
method. :func:`coverage_threshold` keeps a fixed fraction of the calibration rows and gives
**no** guarantee on the risk.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import beta as _beta

from adue._validation import check_number

__all__ = [
    "SelectiveThreshold",
    "clopper_pearson_upper",
    "coverage_threshold",
    "min_calibration_rows",
    "no_threshold",
    "sgr_threshold",
]


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson upper bound on a binomial rate: ``P(rate <= b) >= 1 - delta``.

    ``b = Beta.ppf(1 - delta, errors + 1, n - errors)``; ``1.0`` when ``errors == n``.
    """
    if n <= 0 or errors < 0 or errors > n:
        raise ValueError(f"Clopper-Pearson needs 0 <= errors <= n and n > 0. Got errors={errors}, n={n} instead.")
    if errors == n:
        return 1.0
    return float(_beta.ppf(1.0 - delta, errors + 1, n - errors))


def _search_steps(m: int) -> int:
    """Number of binary-search steps ``ceil(log2 m)`` (at least 1)."""
    return max(1, math.ceil(math.log2(m)))


def min_calibration_rows(target_risk: float, delta: float) -> int:
    """Smallest ``m`` for which SGR can meet ``target_risk`` at all.

    The largest rule SGR tests keeps ``m - 1`` rows; with no error among them its bound is
    ``1 - (delta / ceil(log2 m)) ** (1 / (m - 1))``. Returns the least ``m >= 2`` where that
    is ``<= target_risk``.
    """
    _check_risk_delta(target_risk, delta, "min_calibration_rows")
    m = 2
    while clopper_pearson_upper(0, m - 1, delta / _search_steps(m)) > target_risk:
        m = max(m + 1, int(m * 1.05))
    lo = max(2, int(m / 1.05) - 1)
    for cand in range(lo, m + 1):  # refine the geometric step back to the exact minimum
        if clopper_pearson_upper(0, cand - 1, delta / _search_steps(cand)) <= target_risk:
            return cand
    return m  # pragma: no cover - the loop above always returns


@dataclass
class SelectiveThreshold:
    """An abstention rule ``abstain = u > threshold`` with what was measured on calibration.

    ``threshold=None`` means abstain on every input. ``bound`` is the SGR upper bound on the
    selective risk (None for a coverage rule: no guarantee). ``coverage`` / ``risk`` are the
    kept fraction and the error rate among kept rows on the ``n_calibration`` rows.
    """

    mode: str  # "risk" (SGR), "coverage" or "none" (never abstain)
    threshold: float | None
    guaranteed: bool
    target_risk: float | None
    delta: float | None
    target_coverage: float | None
    bound: float | None
    coverage: float
    risk: float | None
    n_calibration: int
    n_kept: int
    n_errors_kept: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    @property
    def abstain_all(self) -> bool:
        """True when no threshold met the target: every input is abstained on."""
        return self.threshold is None and self.mode != "none"

    def abstain(self, uncertainty: np.ndarray) -> np.ndarray:
        """(n,) bool, True where the model should abstain (``u > threshold``)."""
        u = np.asarray(uncertainty, dtype=np.float64)
        if self.mode == "none":
            return np.zeros(u.shape, dtype=bool)
        if self.threshold is None:
            return np.ones(u.shape, dtype=bool)
        return u > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``from_dict`` restores it)."""
        out = asdict(self)
        out["abstain_all"] = self.abstain_all
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SelectiveThreshold:
        """Inverse of :meth:`to_dict`."""
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in keys})


def _check_risk_delta(target_risk: Any, delta: Any, owner: str) -> None:
    check_number("target_risk", owner, target_risk, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    check_number("delta", owner, delta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)


def _inputs(uncertainty: Any, errors: Any, owner: str) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(uncertainty, dtype=np.float64)
    e = np.asarray(errors)
    if u.ndim != 1 or e.shape != u.shape:
        raise ValueError(
            f"The 'uncertainty' and 'errors' arguments of {owner} must be 1-D of the same length. "
            f"Got shapes {u.shape} and {e.shape} instead."
        )
    if not np.all(np.isfinite(u)):
        raise ValueError(f"The 'uncertainty' argument of {owner} must be finite. Got NaN or inf instead.")
    if not np.all((e == 0) | (e == 1)):
        raise ValueError(f"The 'errors' argument of {owner} must hold only 0 and 1.")
    return u, e.astype(np.int64)


def _kept(u: np.ndarray, e: np.ndarray, threshold: float) -> tuple[int, int]:
    keep = u <= threshold
    return int(keep.sum()), int(e[keep].sum())


def sgr_threshold(uncertainty: Any, errors: Any, target_risk: float, delta: float = 0.05) -> SelectiveThreshold:
    """SGR threshold (module docstring): largest tested coverage with bound ``<= target_risk``.

    ``uncertainty`` (m,) higher = more likely wrong, ``errors`` (m,) 1 = misclassified, on
    calibration rows unseen by the classifier and the method. Raises ``ValueError`` when
    ``m < min_calibration_rows(target_risk, delta)`` (no threshold could ever qualify).
    """
    owner = "sgr_threshold"
    _check_risk_delta(target_risk, delta, owner)
    u, e = _inputs(uncertainty, errors, owner)
    m = u.size
    need = min_calibration_rows(target_risk, delta)
    if m < need:
        raise ValueError(
            f"Too few calibration rows for target risk {target_risk} at delta {delta}: got {m}, "
            f"need at least {need} (even with no errors the bound could not reach the target). "
            "Use more calibration rows, a larger target risk or a larger delta."
        )
    k = _search_steps(m)
    level = delta / k
    u_desc = np.sort(u)[::-1]  # x_1..x_m by confidence -u ascending
    z_min, z_max = 1, m
    steps: list[dict[str, Any]] = []
    for _ in range(k):
        z = math.ceil((z_min + z_max) / 2)
        theta = float(u_desc[z - 1])
        n_i, e_i = _kept(u, e, theta)
        b = clopper_pearson_upper(e_i, n_i, level)
        steps.append({"threshold": theta, "n_kept": n_i, "n_errors": e_i, "bound": b, "passed": b <= target_risk})
        if b <= target_risk:
            z_max = z
        else:
            z_min = z
    passed = [s for s in steps if s["passed"]]
    common = dict(mode="risk", guaranteed=True, target_risk=float(target_risk), delta=float(delta),
                  target_coverage=None, n_calibration=m, steps=steps)
    if not passed:
        return SelectiveThreshold(
            threshold=None, bound=None, coverage=0.0, risk=None, n_kept=0, n_errors_kept=0,
            message=(f"No threshold reaches a risk bound <= {target_risk} at delta {delta} on {m} "
                     "calibration rows: abstaining on all inputs."),
            **common,
        )
    best = max(passed, key=lambda s: (s["n_kept"], -s["bound"]))
    return SelectiveThreshold(
        threshold=best["threshold"], bound=best["bound"], coverage=best["n_kept"] / m,
        risk=best["n_errors"] / best["n_kept"], n_kept=best["n_kept"], n_errors_kept=best["n_errors"],
        message=(f"Risk <= {best['bound']:.4f} (target {target_risk}) with probability >= {1 - delta:g}, "
                 f"coverage {best['n_kept'] / m:.4f} on {m} calibration rows."),
        **common,
    )


def coverage_threshold(uncertainty: Any, errors: Any, coverage: float) -> SelectiveThreshold:
    """Threshold keeping the ``ceil(coverage * m)`` least uncertain calibration rows (ties kept).

    **No guarantee** on the selective risk: ``bound`` is None and ``guaranteed`` False.
    """
    owner = "coverage_threshold"
    check_number("coverage", owner, coverage, low=0.0, high=1.0, low_inclusive=False)
    u, e = _inputs(uncertainty, errors, owner)
    m = u.size
    if m == 0:
        raise ValueError("coverage_threshold needs at least one calibration row. Got none instead.")
    n_keep = min(m, max(1, math.ceil(coverage * m - 1e-9)))
    theta = float(np.sort(u)[n_keep - 1])
    n_kept, n_err = _kept(u, e, theta)
    return SelectiveThreshold(
        mode="coverage", threshold=theta, guaranteed=False, target_risk=None, delta=None,
        target_coverage=float(coverage), bound=None, coverage=n_kept / m, risk=n_err / n_kept,
        n_calibration=m, n_kept=n_kept, n_errors_kept=n_err,
        message=(f"Coverage {n_kept / m:.4f} on {m} calibration rows (empirical risk {n_err / n_kept:.4f}); "
                 "no guarantee on the risk."),
    )


def no_threshold(uncertainty: Any, errors: Any) -> SelectiveThreshold:
    """The rule that never abstains (coverage 1), with the calibration rows' error rate."""
    u, e = _inputs(uncertainty, errors, "no_threshold")
    m = u.size
    if m == 0:
        raise ValueError("no_threshold needs at least one calibration row. Got none instead.")
    return SelectiveThreshold(
        mode="none", threshold=None, guaranteed=False, target_risk=None, delta=None,
        target_coverage=None, bound=None, coverage=1.0, risk=float(e.mean()), n_calibration=m,
        n_kept=m, n_errors_kept=int(e.sum()),
        message=f"No abstention rule: every input is predicted (risk {e.mean():.4f} on {m} calibration rows).",
    )
