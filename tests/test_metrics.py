"""adue.metrics against scikit-learn and hand-computed exact cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from adue.exceptions import NoErrorsWarning
from adue.metrics import (
    aurc,
    average_precision,
    brier_score,
    ece_from_sums,
    evaluate,
    expected_calibration_error,
    reliability_counts,
    reliability_curve,
    risk_at_coverage,
    risk_coverage_curve,
    roc_auc,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_roc_and_pr_equal_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    n = 500
    errors = (rng.random(n) < 0.2).astype(int)
    u = rng.standard_normal(n) + errors
    if ties:
        u = np.round(u, 1)  # many tied scores
    res = evaluate(u, errors)
    assert res["roc_auc"] == pytest.approx(roc_auc_score(errors, u), abs=1e-12)
    assert res["pr_auc"] == pytest.approx(average_precision_score(errors, u), abs=1e-12)
    assert roc_auc(u, errors) == res["roc_auc"]
    assert average_precision(u, errors) == res["pr_auc"]
    assert res["accuracy"] == pytest.approx(1 - errors.mean())
    assert res["n"] == n and res["n_errors"] == errors.sum()


def test_roc_auc_hand_case():
    # errors at 0.9 and 0.4; correct at 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert roc_auc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)
    # a tie between an error and a correct row counts one half
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)


def test_aurc_hand_case():
    # sorted by uncertainty: errors 0,1,0,1 -> risks 0, 1/2, 1/3, 2/4
    u = [0.1, 0.2, 0.3, 0.4]
    e = [0, 1, 0, 1]
    cov, risk = risk_coverage_curve(u, e)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.5])
    assert aurc(u, e) == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    assert evaluate(u, e)["aurc"] == pytest.approx(1.3333333333333333 / 4)


def test_aurc_perfect_and_reversed_ranking():
    e = np.array([0, 0, 0, 1])
    # best ranking: the error last -> risks 0, 0, 0, 1/4
    assert aurc([1, 2, 3, 4], e) == pytest.approx(0.25 / 4)
    # worst ranking: the error first -> risks 1, 1/2, 1/3, 1/4
    assert aurc([4, 3, 2, 1], e) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_aurc_ties_are_averaged_and_order_free():
    # two tied rows, one error: expected risk 1/2 at k=1 and k=2
    assert aurc([0.3, 0.3], [1, 0]) == pytest.approx(0.5)
    assert aurc([0.3, 0.3], [0, 1]) == pytest.approx(0.5)
    # a tied block after a correct row: risks 0, (1/2)/2, 1/3 -> mean
    assert aurc([0.1, 0.5, 0.5], [0, 1, 0]) == pytest.approx((0 + 0.25 + 1 / 3) / 3)
    rng = np.random.default_rng(0)
    u = np.round(rng.random(200), 1)
    e = (rng.random(200) < 0.3).astype(int)
    perm = rng.permutation(200)
    assert aurc(u, e) == pytest.approx(aurc(u[perm], e[perm]), abs=1e-15)
    # the tie average equals the mean over random tie-breaks (checked by brute force)
    small_u = np.array([0.1, 0.2, 0.2, 0.2, 0.3])
    small_e = np.array([0, 1, 0, 0, 1])
    brute = []
    import itertools

    for p in itertools.permutations([1, 2, 3]):
        order = [0, *p, 4]
        es = small_e[order]
        brute.append(np.mean(np.cumsum(es) / np.arange(1, 6)))
    assert aurc(small_u, small_e) == pytest.approx(np.mean(brute), abs=1e-15)


def test_ece_hand_case():
    conf = [0.95, 0.95, 0.55, 0.55]
    correct = [1, 0, 1, 1]
    # bin (0.9, 1]: conf 0.95, acc 0.5 -> 0.45 * 2/4; bin (0.5, 0.6]: conf 0.55, acc 1 -> 0.45 * 2/4
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.45)
    res = evaluate([0.05, 0.05, 0.45, 0.45], [0, 1, 0, 0], confidence=conf, n_bins=10)
    assert res["ece"] == pytest.approx(0.45)
    # brier: (0.05^2 + 0.95^2 + 0.45^2 + 0.45^2) / 4
    assert res["brier"] == pytest.approx((0.0025 + 0.9025 + 0.2025 + 0.2025) / 4)
    assert brier_score(conf, correct) == pytest.approx(res["brier"])


def test_ece_perfectly_calibrated_is_zero_and_bins_are_right_closed():
    # 0.5 belongs to (0.4, 0.5] with 10 bins; 0 goes to the first bin, 1 to the last
    curve = reliability_curve([0.0, 0.5, 0.5, 1.0], [0, 1, 0, 1], n_bins=10)
    assert curve.count.tolist() == [1, 0, 0, 0, 2, 0, 0, 0, 0, 1]
    assert curve.accuracy[4] == pytest.approx(0.5)
    assert curve.confidence[4] == pytest.approx(0.5)
    assert np.isnan(curve.accuracy[1])
    assert expected_calibration_error([0.0, 0.5, 0.5, 1.0], [0, 1, 0, 1], n_bins=10) == 0.0
    # the default is 15 bins
    assert reliability_curve([0.3], [1]).count.size == 15


def test_ece_equals_direct_loop():
    rng = np.random.default_rng(3)
    conf = rng.random(1000)
    correct = (rng.random(1000) < conf).astype(int)
    edges = np.linspace(0, 1, 16)
    expected = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if lo == 0.0:
            m |= conf == 0.0
        if m.any():
            expected += m.mean() * abs(correct[m].mean() - conf[m].mean())
    assert expected_calibration_error(conf, correct) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("errors", [[0, 0, 0], [1, 1, 1]])
def test_degenerate_splits_give_nan_with_warning(errors):
    with pytest.warns(NoErrorsWarning, match="undefined"):
        res = evaluate([0.1, 0.2, 0.3], errors, confidence=[0.9, 0.8, 0.7])
    assert math.isnan(res["roc_auc"]) and math.isnan(res["pr_auc"])
    assert res["aurc"] == pytest.approx(float(np.mean(errors)))
    assert not math.isnan(res["ece"]) and not math.isnan(res["brier"])
    assert res["accuracy"] == pytest.approx(1 - np.mean(errors))
    with pytest.warns(NoErrorsWarning):
        assert math.isnan(roc_auc([0.1, 0.2, 0.3], errors))
    with pytest.warns(NoErrorsWarning):
        assert math.isnan(average_precision([0.1, 0.2, 0.3], errors))


def test_no_warning_on_a_normal_split_and_nan_without_confidence():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = evaluate([0.1, 0.9], [0, 1])
    assert math.isnan(res["ece"]) and math.isnan(res["brier"])
    assert res["roc_auc"] == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"uncertainty": [0.1, 0.2], "errors": [0, 1, 1]}, "same length"),
        ({"uncertainty": [[0.1, 0.2]], "errors": [0, 1]}, "1-D"),
        ({"uncertainty": [0.1, np.nan], "errors": [0, 1]}, "finite"),
        ({"uncertainty": [0.1, 0.2], "errors": [0, 2]}, "only 0 and 1"),
        ({"uncertainty": [], "errors": []}, "at least one"),
        ({"uncertainty": ["a", "b"], "errors": [0, 1]}, "numeric"),
        ({"uncertainty": [0.1, 0.2], "errors": [0, 1], "confidence": [0.5, 1.5]}, r"\[0, 1\]"),
        ({"uncertainty": [0.1, 0.2], "errors": [0, 1], "confidence": [0.5]}, "same length"),
        ({"uncertainty": [0.1, 0.2], "errors": [0, 1], "n_bins": 0}, "'n_bins' parameter"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(**kwargs)


def test_accepts_bool_errors_and_torch():
    import torch
    res = evaluate(torch.tensor([0.2, 0.8, 0.5]), np.array([False, True, False]))
    assert res["roc_auc"] == 1.0


# ------------------------------------------------------------------ curves stored in cells
def test_risk_at_coverage_hand_case():
    u = np.array([0.1, 0.2, 0.2, 0.9])
    e = np.array([0, 1, 0, 1])
    # k=1: 0/1; k=2: cuts the tie {0.2, 0.2} holding one error -> 0.5 expected errors / 2;
    # k=3: 1/3; k=4: 2/4; k = 0.4 * 4 = 1.6: 0.3 expected errors (linear inside the tie) / 1.6
    got = risk_at_coverage(u, e, [0.25, 0.5, 0.75, 1.0, 0.4, 0.1])
    np.testing.assert_allclose(got, [0.0, 0.25, 1 / 3, 0.5, 0.3 / 1.6, 0.0])


def test_risk_at_coverage_is_the_risk_coverage_curve_at_whole_k():
    rng = np.random.default_rng(3)
    u = np.round(rng.random(203), 2)  # many ties
    e = (rng.random(203) < 0.3).astype(int)
    cov, risk = risk_coverage_curve(u, e)
    np.testing.assert_allclose(risk_at_coverage(u, e, cov), risk, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="'coverage'"):
        risk_at_coverage(u, e, [1.5])


def test_reliability_counts_hand_case_and_curve():
    conf = np.array([0.0, 0.2, 0.21, 0.5, 0.99, 1.0])
    correct = np.array([0, 1, 0, 1, 1, 1])
    rel = reliability_counts(conf, correct, n_bins=5)  # bins (0, .2], (.2, .4], ... ; 0 -> bin 0
    assert rel["n_bins"] == 5 and rel["count"] == [2, 1, 1, 0, 2]
    np.testing.assert_allclose(rel["confidence_sum"], [0.2, 0.21, 0.5, 0.0, 1.99])
    np.testing.assert_allclose(rel["correct_sum"], [1, 0, 1, 0, 2])
    curve = reliability_curve(conf, correct, n_bins=5)  # the same bins, as means
    np.testing.assert_array_equal(curve.count, rel["count"])
    filled = curve.count > 0
    np.testing.assert_allclose(curve.confidence[filled] * curve.count[filled],
                               np.asarray(rel["confidence_sum"])[filled])


def test_ece_from_sums_pools_bins_exactly():
    rng = np.random.default_rng(5)
    conf = rng.random(300)
    correct = (rng.random(300) < conf).astype(int)
    a, b = reliability_counts(conf[:100], correct[:100]), reliability_counts(conf[100:], correct[100:])
    pooled = [np.add(a[k], b[k]) for k in ("count", "confidence_sum", "correct_sum")]
    assert ece_from_sums(*pooled) == pytest.approx(expected_calibration_error(conf, correct), abs=1e-12)
    # by hand: one bin of 4 rows, mean confidence 0.75, 2 correct -> |2 - 3| / 4
    assert ece_from_sums([4], [3.0], [2.0]) == 0.25
