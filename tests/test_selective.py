"""SGR and coverage thresholds: Clopper-Pearson against scipy, the guarantee by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from adue.selective import (
    SelectiveThreshold,
    clopper_pearson_upper,
    coverage_threshold,
    min_calibration_rows,
    no_threshold,
    sgr_threshold,
)


@pytest.mark.parametrize(("k", "n", "delta"), [(0, 10, 0.05), (3, 50, 0.05), (17, 200, 0.01), (99, 100, 0.1)])
def test_clopper_pearson_matches_scipy_binomtest(k, n, delta):
    # one-sided upper bound at level delta == upper end of binomtest's one-sided interval
    ref = binomtest(k, n, alternative="less").proportion_ci(confidence_level=1 - delta, method="exact").high
    assert clopper_pearson_upper(k, n, delta) == pytest.approx(ref, abs=1e-10)
    # and it solves the defining equation of Lemma 3.1: P(Bin(n, b) <= k) = delta
    b = clopper_pearson_upper(k, n, delta)
    assert binom.cdf(k, n, b) == pytest.approx(delta, abs=1e-9)


def test_clopper_pearson_closed_form_and_edges():
    # zero errors: b = 1 - delta ** (1 / n)
    assert clopper_pearson_upper(0, 30, 0.05) == pytest.approx(1 - 0.05 ** (1 / 30), abs=1e-12)
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0
    with pytest.raises(ValueError, match="errors <= n"):
        clopper_pearson_upper(6, 5, 0.05)


def _simulate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """u ~ U(0, 1), P(error | u) = u**2: the true selective risk at threshold t <= 1 is t**2 / 3."""
    u = rng.random(n)
    e = (rng.random(n) < u**2).astype(np.int64)
    return u, e


def _naive_threshold(u: np.ndarray, e: np.ndarray, r: float) -> float | None:
    """Largest coverage whose empirical selective risk is <= r (no bound)."""
    order = np.argsort(u)
    risk = np.cumsum(e[order]) / np.arange(1, u.size + 1)
    ok = np.flatnonzero(risk <= r)
    return None if ok.size == 0 else float(u[order][ok[-1]])


def test_sgr_guarantee_holds_over_500_repetitions_and_naive_rule_fails():
    r, delta, m, n_test, reps = 0.15, 0.1, 2000, 20000, 500
    rng = np.random.default_rng(0)
    sgr_viol = naive_viol = true_viol = 0
    coverages = []
    for _ in range(reps):
        u, e = _simulate(rng, m)
        res = sgr_threshold(u, e, target_risk=r, delta=delta)
        ut, et = _simulate(rng, n_test)
        if res.abstain_all:  # the paper's search can end with no passing rule: keeps nothing
            coverages.append(0.0)
        else:
            assert res.bound <= r
            keep = ut <= res.threshold
            sgr_viol += et[keep].mean() > r
            true_viol += res.threshold**2 / 3 > r  # exact selective risk of the chosen rule
            coverages.append(keep.mean())
        t_naive = _naive_threshold(u, e, r)
        naive_viol += et[ut <= t_naive].mean() > r
    slack = 3 * math.sqrt(delta * (1 - delta) / reps)
    assert sgr_viol / reps <= delta + slack
    assert true_viol / reps <= delta + slack
    assert naive_viol / reps >= 0.3  # the naive rule sits at the target: exceeds it ~half the time
    assert naive_viol / reps > sgr_viol / reps + 0.2
    # and SGR is not trivially conservative: it keeps a real share (the oracle keeps sqrt(0.45) = 0.671)
    assert 0.55 < np.mean(coverages) < 0.671
    assert np.mean(np.array(coverages) == 0) < 0.02


def test_sgr_follows_the_paper_binary_search():
    rng = np.random.default_rng(1)
    u, e = _simulate(rng, 1000)
    res = sgr_threshold(u, e, target_risk=0.15, delta=0.05)
    k = math.ceil(math.log2(1000))
    assert len(res.steps) == k
    # replay the algorithm by hand: z in confidence-ascending order
    u_desc = np.sort(u)[::-1]
    zmin, zmax = 1, 1000
    for step in res.steps:
        z = math.ceil((zmin + zmax) / 2)
        assert step["threshold"] == u_desc[z - 1]
        keep = u <= u_desc[z - 1]
        assert step["n_kept"] == keep.sum() and step["n_errors"] == e[keep].sum()
        assert step["bound"] == pytest.approx(clopper_pearson_upper(int(e[keep].sum()), int(keep.sum()), 0.05 / k))
        zmin, zmax = (zmin, z) if step["bound"] <= 0.15 else (z, zmax)
    best = max((s for s in res.steps if s["passed"]), key=lambda s: s["n_kept"])
    assert res.threshold == best["threshold"] and res.coverage == best["n_kept"] / 1000
    assert res.abstain(np.array([res.threshold, res.threshold + 1e-9])).tolist() == [False, True]


def test_sgr_abstains_on_all_when_no_threshold_meets_the_target():
    rng = np.random.default_rng(2)
    u = rng.random(500)
    e = np.ones(500, dtype=np.int64)  # every prediction wrong
    res = sgr_threshold(u, e, target_risk=0.05, delta=0.05)
    assert res.threshold is None and res.abstain_all and res.bound is None
    assert res.abstain(u).all()
    assert "abstaining on all" in res.message
    again = SelectiveThreshold.from_dict(res.to_dict())
    assert again.abstain_all and again.to_dict() == res.to_dict()


def test_min_calibration_rows_is_exact_and_enforced():
    need = min_calibration_rows(0.05, 0.05)
    steps = math.ceil(math.log2(need))
    assert clopper_pearson_upper(0, need - 1, 0.05 / steps) <= 0.05
    prev = need - 1
    assert clopper_pearson_upper(0, prev - 1, 0.05 / math.ceil(math.log2(prev))) > 0.05
    u, e = np.linspace(0, 1, need - 1), np.zeros(need - 1, dtype=np.int64)
    with pytest.raises(ValueError, match=f"need at least {need}"):
        sgr_threshold(u, e, target_risk=0.05, delta=0.05)
    # from the minimum on, no error: a result (here the binary search, which halves the kept
    # set first, finds no rule -- so it abstains on all rather than failing)
    u, e = np.linspace(0, 1, need), np.zeros(need, dtype=np.int64)
    assert sgr_threshold(u, e, target_risk=0.05, delta=0.05).n_calibration == need
    u, e = np.linspace(0, 1, 4 * need), np.zeros(4 * need, dtype=np.int64)
    assert sgr_threshold(u, e, target_risk=0.05, delta=0.05).coverage > 0.99


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_target_risk_outside_unit_interval_is_an_error(bad):
    with pytest.raises(ValueError, match=r"The 'target_risk' parameter of sgr_threshold must be a float in the range \(0"):
        sgr_threshold(np.zeros(10), np.zeros(10), target_risk=bad)


def test_coverage_threshold_keeps_the_fraction_without_guarantee():
    u = np.arange(10, dtype=float)
    e = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1, 1])
    res = coverage_threshold(u, e, 0.5)
    assert res.threshold == 4.0 and res.coverage == 0.5 and res.risk == pytest.approx(0.2)
    assert not res.guaranteed and res.bound is None and "no guarantee" in res.message
    with pytest.raises(ValueError, match="'coverage' parameter"):
        coverage_threshold(u, e, 0.0)


def test_no_threshold_never_abstains():
    res = no_threshold(np.array([0.1, 5.0]), np.array([0, 1]))
    assert not res.abstain_all and res.abstain(np.array([1e9, -1.0])).tolist() == [False, False]
    assert res.risk == 0.5 and res.coverage == 1.0
    assert not SelectiveThreshold.from_dict(res.to_dict()).abstain(np.array([1e9])).any()
