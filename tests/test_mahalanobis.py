"""MD and RMD against references built independently from sklearn's EmpiricalCovariance."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance

from adue.features import Features
from adue.methods import get_method
from adue.methods._covariance import RegularizedPrecision, squared_mahalanobis


def _split(n, d, c, seed, shift=1.5):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.arange(c), rng.integers(0, c, n - c)]
    a = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
    z = rng.standard_normal((n, d)) @ a + shift * np.eye(c, d)[labels] * 3
    return Features(z, rng.standard_normal((n, c)), labels)


def _reference(train: Features, test: Features, l2: bool = False):
    """Per-class squared distances and background distances via EmpiricalCovariance."""
    z = train.z.astype(np.float64)
    zt = test.z.astype(np.float64)
    if l2:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        zt = zt / np.linalg.norm(zt, axis=1, keepdims=True)
    classes = range(train.num_classes)
    mus = np.stack([z[train.labels == c].mean(axis=0) for c in classes])
    within = EmpiricalCovariance(assume_centered=True).fit(z - mus[train.labels])
    per_class = np.stack([within.mahalanobis(zt - mus[c]) for c in classes], axis=1)
    background = EmpiricalCovariance().fit(z).mahalanobis(zt)
    return per_class, background


@pytest.mark.parametrize("l2", [False, True])
def test_md_and_rmd_equal_sklearn_reference(l2):
    train, test = _split(400, 6, 3, seed=0), _split(100, 6, 3, seed=1)
    per_class, background = _reference(train, test, l2)
    md = get_method("md", l2_normalize=l2).fit(train)
    rmd = get_method("rmd", l2_normalize=l2).fit(train)
    assert md.n_eigen_floored_ == 0
    np.testing.assert_allclose(md.class_distances(test), per_class, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(md.uncertainty(test), per_class.min(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rmd.background_distances(test), background, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        rmd.uncertainty(test), per_class.min(axis=1) - background, rtol=1e-9, atol=1e-8
    )


def test_fitted_statistics():
    train = _split(300, 5, 2, seed=2)
    z = train.z.astype(np.float64)
    md = get_method("md").fit(train)
    rmd = get_method("rmd").fit(train)
    mus = np.stack([z[train.labels == c].mean(axis=0) for c in range(2)])
    np.testing.assert_allclose(md.means_, mus, rtol=1e-12)
    centered = z - mus[train.labels]
    np.testing.assert_allclose(md.covariance_, centered.T @ centered / len(z), rtol=1e-10)
    np.testing.assert_allclose(md.precision_, np.linalg.inv(md.covariance_), rtol=1e-8)
    np.testing.assert_allclose(md.whitener_ @ md.whitener_.T, md.precision_, rtol=1e-8)
    # background covariance via the law of total covariance equals the direct one (divide by n)
    np.testing.assert_allclose(rmd.background_covariance_, np.cov(z.T, bias=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rmd.background_mean_, z.mean(axis=0), rtol=1e-12, atol=1e-12)
    assert md.classes_.tolist() == [0, 1] and md.n_features_in_ == 5 and md.n_classes_ == 2
    assert md.class_counts_.sum() == 300


def test_rank_deficient_duplicated_features_d_above_n(caplog):
    """d = 40 > n = 30: duplicated features make the covariance singular.

    The floored precision treats the duplicate (null-space) directions as having tiny
    variance; test rows that are duplicated the same way have no component there, and for them
    the distance equals the plain distance on the 10 base features (pseudo-inverse argument),
    computed here with sklearn on the base features.
    """
    base_train, base_test = _split(30, 10, 2, seed=3, shift=0.8), _split(20, 10, 2, seed=4, shift=0.8)

    def dup(f):
        return Features(np.tile(f.z, 4), f.logits, f.labels)

    train, test = dup(base_train), dup(base_test)
    assert train.dim == 40 > train.n
    per_class, background = _reference(base_train, base_test)
    with caplog.at_level(logging.WARNING, logger="adue.methods.mahalanobis"):
        md = get_method("md").fit(train)
    assert "singular or ill-conditioned" in caplog.text
    assert md.n_eigen_floored_ == 30  # rank 10 of 40
    u = md.uncertainty(test)
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u, per_class.min(axis=1), rtol=1e-6)
    rmd = get_method("rmd").fit(train)
    np.testing.assert_allclose(rmd.uncertainty(test), per_class.min(axis=1) - background, rtol=1e-6, atol=1e-6)


def test_more_features_than_rows_still_scores_far_points_higher(caplog):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((20, 50))
    labels = np.arange(20) % 2
    train = Features(z, rng.standard_normal((20, 2)), labels)
    with caplog.at_level(logging.WARNING):
        md = get_method("md").fit(train)
    assert "50 features from 20 training rows" in caplog.text
    centre = z.mean(axis=0)
    far = centre + 5.0 * rng.standard_normal(50)
    test = Features(np.stack([centre, far]), np.zeros((2, 2)), np.array([0, 1]))
    for name in ("md", "rmd"):
        u = get_method(name).fit(train).uncertainty(test)
        assert np.all(np.isfinite(u)) and u[1] > u[0]
    assert np.all(np.isfinite(md.precision_))


def test_eigen_floor_caps_the_condition_number():
    cov = np.diag([1.0, 1e-3, 1e-9, 0.0])
    reg = RegularizedPrecision.from_covariance(cov, eps=1e-6)
    assert reg.n_floored == 2
    np.testing.assert_allclose(np.sort(reg.eigenvalues), [1e-6, 1e-6, 1e-3, 1.0])
    np.testing.assert_allclose(reg.precision, np.diag([1.0, 1e3, 1e6, 1e6]), rtol=1e-10)
    # squared distances via the whitener equal the precision quadratic form
    x = np.array([[1.0, 1.0, 1.0, 1.0], [0.5, -2.0, 0.0, 3.0]])
    m = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    d2 = squared_mahalanobis(x, m, reg.whitener)
    expected = np.array([[(xi - mj) @ reg.precision @ (xi - mj) for mj in m] for xi in x])
    np.testing.assert_allclose(d2, expected, rtol=1e-12, atol=1e-9)


def test_missing_class_is_named():
    rng = np.random.default_rng(6)
    train = Features(rng.standard_normal((30, 4)), rng.standard_normal((30, 4)), np.r_[[0] * 15, [2] * 15])
    for name in ("md", "rmd"):
        with pytest.raises(ValueError, match=r"class\(es\) \[1, 3\] have no row in the training split"):
            get_method(name).fit(train)


def test_constant_features_raise():
    train = Features(np.ones((10, 3)), np.zeros((10, 2)), np.arange(10) % 2)
    with pytest.raises(ValueError, match="no positive variance"):
        get_method("md").fit(train)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"eigen_floor": 0.0}, "'eigen_floor' parameter of MahalanobisDistance must be a float in the range \\(0.0, 1.0\\)"),
        ({"eigen_floor": 1.0}, "'eigen_floor' parameter"),
        ({"eigen_floor": "small"}, "'eigen_floor' parameter"),
        ({"l2_normalize": "yes"}, "'l2_normalize' parameter of MahalanobisDistance must be a bool. Got 'yes' instead."),
    ],
)
def test_bad_parameters(params, match):
    train = _split(50, 3, 2, seed=7)
    with pytest.raises(ValueError, match=match):
        get_method("md", **params).fit(train)


def test_squared_distances_keep_precision_under_a_large_common_offset():
    """The expansion ||a||^2 - 2ab + ||b||^2 is taken after removing the mean of the means."""
    rng = np.random.default_rng(8)
    reg = RegularizedPrecision.from_covariance(np.diag([1.0, 0.5, 2.0]))
    offset = np.array([1e7, -3e6, 5e6])
    x = rng.standard_normal((5, 3))
    m = rng.standard_normal((2, 3))
    expected = np.array([[(xi - mj) @ reg.precision @ (xi - mj) for mj in m] for xi in x])
    got = squared_mahalanobis(x + offset, m + offset, reg.whitener)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_blockwise_statistics_equal_numpy(normalize, monkeypatch):
    import adue.methods._covariance as cov_mod

    monkeypatch.setattr(cov_mod, "_BLOCK_ROWS", 7)  # many blocks, a ragged last one
    rng = np.random.default_rng(10)
    z = rng.standard_normal((50, 4)).astype(np.float32)
    z_before = z.copy()
    labels = np.arange(50) % 3
    assert len(list(cov_mod.row_blocks(z))) == 8
    x = z.astype(np.float64)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean, cov = cov_mod.gaussian(z, normalize=normalize)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True), rtol=1e-10, atol=1e-14)
    means, counts = cov_mod.class_means(z, labels, 3, normalize=normalize)
    np.testing.assert_allclose(means, [x[labels == c].mean(axis=0) for c in range(3)], rtol=1e-12)
    assert counts.tolist() == [17, 17, 16]
    within = cov_mod.within_class_covariance(z, labels, means, normalize=normalize)
    centred = x - means[labels]
    np.testing.assert_allclose(within, centred.T @ centred / 50, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(z, z_before)  # inputs untouched
    z64 = z.astype(np.float64)
    cov_mod.within_class_covariance(z64, labels, means, normalize=normalize)
    cov_mod.gaussian(z64, normalize=normalize)
    np.testing.assert_array_equal(z64, z_before.astype(np.float64))  # float64 input untouched too
