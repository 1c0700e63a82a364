"""MD and RMD against references built independently from sklearn's EmpiricalCovariance."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance

from adue.features import Features
from adue.methods import get_method
from adue.methods._covariance import GaussianWhiteners, l2_normalize, squared_mahalanobis


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


def test_shared_floor_on_the_pooled_range():
    """One absolute floor tau = eps * max(pooled eigenvalue) for both covariances; directions
    without pooled variance are identical columns of both whiteners."""
    within = np.diag([1.0, 1e-3, 1e-12, 0.0])
    total = np.diag([2.0, 1e-3, 1e-12, 0.0])  # between-class variance 1 along e_0
    reg = GaussianWhiteners.from_covariances(within, total, eps=1e-10)
    tau = 2e-10
    assert reg.rank == 2 and reg.floor == pytest.approx(tau) and reg.n_floored == 2
    p, p0 = reg.class_whitener @ reg.class_whitener.T, reg.background_whitener @ reg.background_whitener.T
    np.testing.assert_allclose(p, np.diag([1.0, 1e3, 1 / tau, 1 / tau]), rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(p0, np.diag([0.5, 1e3, 1 / tau, 1 / tau]), rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(np.abs(reg.class_whitener[:, 2:]), np.abs(reg.background_whitener[:, 2:]))
    # a within-class direction without variance inside the pooled range is raised to tau too
    reg = GaussianWhiteners.from_covariances(np.diag([0.0, 1e-3, 0.0]), np.diag([2.0, 1e-3, 0.0]))
    assert reg.rank == 2 and reg.n_floored == 2
    p = reg.class_whitener @ reg.class_whitener.T
    np.testing.assert_allclose(p, np.diag([1 / reg.floor, 1e3, 1 / reg.floor]), rtol=1e-10)
    # squared distances via the whitener equal the precision quadratic form
    x = np.array([[1.0, 1.0, 1.0], [0.5, -2.0, 0.0]])
    m = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    d2 = squared_mahalanobis(x, m, reg.class_whitener)
    expected = np.array([[(xi - mj) @ p @ (xi - mj) for mj in m] for xi in x])
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
        ({"feature_map": "pca"}, "'feature_map' parameter of MahalanobisDistance must be one of \\{'z', 'sn'\\}"),
        ({"feature_map": "sn"}, "'head' parameter of MahalanobisDistance must be a two-layer classification head when feature_map='sn'. Got NoneType instead: no classification head was given"),
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
    cov = np.diag([1.0, 0.5, 2.0])
    reg = GaussianWhiteners.from_covariances(cov, cov)
    offset = np.array([1e7, -3e6, 5e6])
    x = rng.standard_normal((5, 3))
    m = rng.standard_normal((2, 3))
    precision = np.linalg.inv(cov)
    expected = np.array([[(xi - mj) @ precision @ (xi - mj) for mj in m] for xi in x])
    got = squared_mahalanobis(x + offset, m + offset, reg.class_whitener)
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
    mean, cov = cov_mod.gaussian(z, normalize)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True), rtol=1e-10, atol=1e-14)
    means, counts = cov_mod.class_means(z, labels, 3, normalize)
    np.testing.assert_allclose(means, [x[labels == c].mean(axis=0) for c in range(3)], rtol=1e-12)
    assert counts.tolist() == [17, 17, 16]
    within = cov_mod.within_class_covariance(z, labels, means, normalize)
    centred = x - means[labels]
    np.testing.assert_allclose(within, centred.T @ centred / 50, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(z, z_before)  # inputs untouched
    z64 = z.astype(np.float64)
    cov_mod.within_class_covariance(z64, labels, means, normalize)
    cov_mod.gaussian(z64, normalize)
    np.testing.assert_array_equal(z64, z_before.astype(np.float64))  # float64 input untouched too


# ----------------------------------------------------------------- exact formula references
def _exact_md_rmd(train: Features, test: Features, inverse=np.linalg.inv, z=None, x=None):
    """MD and RMD straight from the paper's formulas, numpy only, float64 (an independent
    implementation: explicit means, covariances divided by n, ``inverse`` of each); ``z``, ``x``
    replace the train / test rows (float64 arrays) when given."""
    z = train.z.astype(np.float64) if z is None else z
    x = test.z.astype(np.float64) if x is None else x
    y = train.labels
    mus = np.stack([z[y == c].mean(axis=0) for c in range(train.num_classes)])
    centred = z - mus[y]
    p = inverse(centred.T @ centred / len(z))
    mu0 = z.mean(axis=0)
    p0 = inverse((z - mu0).T @ (z - mu0) / len(z))
    md_c = np.stack([np.einsum("nd,de,ne->n", x - m, p, x - m) for m in mus], axis=1)
    md_0 = np.einsum("nd,de,ne->n", x - mu0, p0, x - mu0)
    return md_c.min(axis=1), md_c.min(axis=1) - md_0


def _seven_decades(n, seed, d=30, c=3, hard_frac=0.1):
    """Full-rank features whose within-class spectrum falls over seven decades (1 .. 1e-7), with
    well separated classes (pooled largest eigenvalue ~ 10x the within-class one) and a 'hard'
    subpopulation shifted along low-variance directions with random labels."""
    geo = np.random.default_rng(1234)
    q, _ = np.linalg.qr(geo.standard_normal((d, d)))
    scales = np.sqrt(np.logspace(0.0, -7.0, d))
    means = 5.0 * q[:, :c].T  # (c, d), along the top directions
    shift = q[:, d - 8 :] @ (4.0 * scales[d - 8 :] * geo.choice([-1.0, 1.0], 8))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    z = means[labels] + (rng.standard_normal((n, d)) * scales) @ q.T
    logits = z @ means.T - 0.5 * (means**2).sum(axis=1)
    labels = np.where(rng.random(n) < 0.05, rng.integers(0, c, n), labels)  # label noise
    hard = rng.random(n) < hard_frac
    z[hard] += shift
    labels[hard] = rng.integers(0, c, int(hard.sum()))
    return Features(z, logits, labels)


@pytest.mark.parametrize("l2", [False, True])
def test_seven_decade_spectrum_scores_equal_the_exact_formula(l2):
    """n > d, condition number ~1e7: no regularisation is applied and MD / RMD equal the exact
    float64 formula (the old per-covariance floor 1e-6 * own largest eigenvalue did not)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    train, test = _seven_decades(4000, seed=0), _seven_decades(3000, seed=1)
    if l2:
        train, test = (Features(l2_normalize(f.z), f.logits, f.labels) for f in (train, test))
    cond = np.linalg.cond(get_method("md").fit(train).covariance_)
    assert 1e6 < cond < 1e8
    md_ref, rmd_ref = _exact_md_rmd(train, test)
    errors = test.errors()
    for name, ref in (("md", md_ref), ("rmd", rmd_ref)):
        m = get_method(name).fit(train)
        assert m.n_eigen_floored_ == 0 and m.rank_ == train.dim
        u = m.uncertainty(test)
        assert spearmanr(u, ref)[0] >= 0.99
        assert abs(roc_auc_score(errors, u) - roc_auc_score(errors, ref)) <= 1e-3
        np.testing.assert_allclose(u, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    rmd = get_method("rmd").fit(train)
    np.testing.assert_allclose(  # RMD = MD - MD_0 exactly when nothing is floored
        rmd.uncertainty(test), rmd.class_distances(test).min(axis=1) - rmd.background_distances(test),
        rtol=1e-8, atol=1e-8 * np.abs(rmd_ref).max(),
    )


def test_rank_deficient_float32_duplicates_stay_finite_and_rank_like_md():
    """d = 100 > n = 80: 12 base features and 88 float32 linear combinations of them. RMD is
    finite, equals the exact formula on the 12 base features (pseudo-inverse argument), and the
    duplication costs it no more ROC-AUC than it costs MD (here: none for either)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    mix = np.random.default_rng(9).standard_normal((12, 88))

    def dup(f):
        return Features(np.hstack([f.z, f.z @ mix]).astype(np.float32), f.logits, f.labels)

    for seed in (2, 5):
        base = [_seven_decades(80, seed=seed, d=12), _seven_decades(400, seed=seed + 1, d=12)]
        base = [Features(f.z.astype(np.float32), f.logits, f.labels) for f in base]
        train, test = dup(base[0]), dup(base[1])
        assert train.dim == 100 > train.n
        errors = test.errors()
        auc = {}
        for name, ref in zip(("md", "rmd"), _exact_md_rmd(*base, inverse=np.linalg.pinv), strict=True):
            m = get_method(name).fit(train)
            assert m.rank_ == 12 and m.n_eigen_floored_ == 88
            u = m.uncertainty(test)
            assert np.all(np.isfinite(u))
            assert spearmanr(u, ref)[0] >= 0.99
            auc[name] = roc_auc_score(errors, u) - roc_auc_score(errors, ref)  # change vs base
        assert abs(auc["md"]) <= 0.005 and auc["rmd"] >= auc["md"] - 0.005


def test_one_row_per_class_is_a_clear_error():
    """Issue 8: every class with one row gives a zero within-class covariance, not 'constant'."""
    z = np.array([[0.0, 1.0], [2.0, 0.5], [1.0, 3.0]])
    train = Features(z, np.zeros((3, 3)), np.array([0, 1, 2]))
    for name in ("md", "rmd"):
        with pytest.raises(ValueError, match=r"at least two training rows in some class .* every "
                           r"class has exactly one training row here \(3 rows, 3 classes\)"):
            get_method(name).fit(train)
    # two identical rows per class: the within-class covariance is zero, said so
    train = Features(np.repeat(z, 2, axis=0), np.zeros((6, 3)), np.repeat([0, 1, 2], 2))
    with pytest.raises(ValueError, match="within-class covariance is zero: every training row equals the mean of its class"):
        get_method("md").fit(train)


# ------------------------------------------------------------ spectral-normalised feature map
#: Dense weight (4, 3) with singular values 4, 2, 1 (a scaled permutation): spectral norm 4.
DENSE_W = np.array([[0.0, 4.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
DENSE_B = np.array([0.125, -0.25, 0.375, 0.0625])  # exact in float32


def _two_layer_head(activation="tanh"):
    import torch

    from adue.heads import ClassifierHead

    head = ClassifierHead(3, 2, hidden_features=4, activation=activation)
    with torch.no_grad():
        head.dense.weight.copy_(torch.tensor(DENSE_W))
        head.dense.bias.copy_(torch.tensor(DENSE_B))
    return head


def _sn_by_hand(z, l2=False):
    """tanh((W / 4) z + b), the known answer, then L2 normalisation when asked."""
    x = np.tanh(np.asarray(z, np.float64) @ (DENSE_W / 4.0).T + DENSE_B)
    return l2_normalize(x) if l2 else x


def test_spectral_norm_power_iteration_equals_torch_matrix_norm():
    import torch

    from adue.methods._covariance import spectral_norm

    assert spectral_norm(DENSE_W) == pytest.approx(4.0, rel=1e-12)
    rng = np.random.default_rng(11)
    for shape in ((64, 32), (384, 384), (10, 300)):  # Gaussian: close top singular values
        w = rng.standard_normal(shape)
        expected = float(torch.linalg.matrix_norm(torch.tensor(w), ord=2))
        assert spectral_norm(w) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="weight is zero"):
        spectral_norm(np.zeros((3, 2)))


@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu", "identity"])
def test_sn_row_map_equals_the_torch_head_with_normalised_weight(activation):
    import torch

    from adue.methods._covariance import sn_row_map

    head = _two_layer_head(activation)
    row_map, sigma = sn_row_map(head)
    assert sigma == pytest.approx(4.0, rel=1e-12)
    np.testing.assert_allclose(row_map.weight, DENSE_W / 4.0, rtol=1e-12)
    z = np.random.default_rng(12).standard_normal((20, 3)) * 3
    with torch.no_grad():
        dense = torch.nn.functional.linear(torch.tensor(z), torch.tensor(DENSE_W / 4.0), torch.tensor(DENSE_B))
        expected = head.act(dense).numpy()
    np.testing.assert_allclose(row_map(z), expected, rtol=1e-12, atol=1e-14)
    if activation == "tanh":
        np.testing.assert_allclose(row_map(z), _sn_by_hand(z), rtol=1e-12)


@pytest.mark.parametrize("l2", [False, True])
def test_sn_feature_map_equals_methods_on_hand_mapped_features(l2):
    """md/rmd with feature_map='sn' = the plain method on tanh((W/4) z + b) computed by hand;
    the fitted state alone (plain arrays) scores, without the head."""
    train, test = _split(300, 3, 2, seed=13), _split(80, 3, 2, seed=14)
    # the zero 4th row of W makes a constant feature: pinv drops it, as MD / RMD do
    refs = _exact_md_rmd(train, test, np.linalg.pinv, _sn_by_hand(train.z, l2), _sn_by_hand(test.z, l2))
    for name, ref in zip(("md", "rmd"), refs, strict=True):
        sn = get_method(name, feature_map="sn", head=_two_layer_head(), l2_normalize=l2).fit(train)
        assert sn.spectral_norm_ == pytest.approx(4.0) and sn.sn_activation_ == "tanh"
        assert isinstance(sn.sn_weight_, np.ndarray) and sn.sn_weight_.shape == (4, 3)
        assert sn.means_.shape == (2, 4)
        np.testing.assert_allclose(sn.uncertainty(test), ref, rtol=1e-8, atol=1e-8)
        sn.head = None  # scoring needs only the fitted arrays
        np.testing.assert_allclose(sn.uncertainty(test), ref, rtol=1e-8, atol=1e-8)
    plain = get_method("md").fit(train)
    assert plain.sn_weight_ is None and plain.spectral_norm_ is None


def test_sn_feature_map_refuses_a_single_linear_head_and_says_why():
    import torch

    from adue.heads import ClassifierHead
    from adue.methods._covariance import sn_unavailable_reason

    train = _split(50, 3, 2, seed=15)
    linear = torch.nn.Linear(3, 2)
    for head in (linear, ClassifierHead(3, 2)):
        reason = sn_unavailable_reason(head)
        assert "single Linear layer" in reason
        for name in ("md", "rmd", "rde"):
            with pytest.raises(ValueError, match="must be a two-layer classification head when "
                               "feature_map='sn'.*single Linear layer"):
                get_method(name, feature_map="sn", head=head).fit(train)
    assert "must be an nn.Linear" in sn_unavailable_reason(torch.nn.ReLU())
    assert sn_unavailable_reason(_two_layer_head()) is None
    with pytest.raises(ValueError, match="dense layer takes features of width 3; the training "
                       "features have width 5"):
        get_method("md", feature_map="sn", head=_two_layer_head()).fit(_split(50, 5, 2, seed=16))


def test_sn_variants_apply_only_to_two_layer_heads():
    import torch

    from adue.variants import SN_ROWS, VARIANTS, get_variant, unavailable_reason

    assert SN_ROWS == ("md_sn", "rmd_sn", "rde_sn", "md_sn_l2", "rmd_sn_l2", "rde_sn_l2")
    train, test = _split(120, 3, 2, seed=17), _split(40, 3, 2, seed=18)
    for name in SN_ROWS:
        v = get_variant(name)
        assert v.needs_head and v.params["feature_map"] == "sn"
        assert v.params["l2_normalize"] is name.endswith("_l2")
        assert "single Linear layer" in unavailable_reason(v, torch.nn.Linear(3, 2))
        assert unavailable_reason(v, _two_layer_head()) is None
        params = dict(v.params, head=_two_layer_head())
        if v.method == "rde":
            params.update(n_components=4, random_state=0)
        u = get_method(v.method, **params).fit(train).uncertainty(test)
        assert u.shape == (40,) and np.all(np.isfinite(u))
    assert unavailable_reason(VARIANTS["md"], torch.nn.Linear(3, 2)) is None
    assert not VARIANTS["md"].needs_head
