"""RDE: the exact path against scikit-learn, the Nystroem path against the exact one, retries."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from sklearn.covariance import MinCovDet
from sklearn.decomposition import KernelPCA
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from adue.features import Features
from adue.methods import get_method
from adue.methods.rde import rbf_kernel


def _split(n, d, seed, hard_frac=0.0, shift=4.0):
    """Two Gaussian classes; a 'hard' subpopulation shifted off the data, labelled at random."""
    geo = np.random.default_rng(100)
    means = geo.standard_normal((2, d))
    direction = geo.standard_normal(d)
    direction /= np.linalg.norm(direction)
    scales = np.linspace(1.5, 0.5, d)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    z = means[labels] + rng.standard_normal((n, d)) * scales
    hard = rng.random(n) < hard_frac
    z[hard] += shift * direction
    labels[hard] = rng.integers(0, 2, hard.sum())
    logits = z @ means.T - 0.5 * (means**2).sum(axis=1)  # nearest-mean classifier
    return Features(z, logits, labels)


def _sklearn_rde(train, test, n_components, gamma, l2=False):
    z = train.z.astype(np.float64)
    zt = test.z.astype(np.float64)
    if l2:
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        zt /= np.linalg.norm(zt, axis=1, keepdims=True)
    kpca = KernelPCA(n_components=n_components, kernel="rbf", gamma=gamma, random_state=0)
    proj = kpca.fit_transform(z)
    with threadpool_limits(1, "blas"):  # speed only (small matrices); same result
        mcd = MinCovDet(random_state=0).fit(proj)
    return mcd.mahalanobis(kpca.transform(zt))


@pytest.mark.parametrize("l2, gamma, k", [(False, None, 12), (True, 0.5, 12), (False, None, 5)])
def test_exact_path_equals_sklearn_kernel_pca_and_min_cov_det(l2, gamma, k):
    train, test = _split(300, 10, seed=0), _split(80, 10, seed=1)
    ref = _sklearn_rde(train, test, k, 1 / 10 if gamma is None else gamma, l2)
    m = get_method("rde", n_components=k, gamma=gamma, l2_normalize=l2).fit(train)
    assert m.kernel_approx_ == "exact" and m.support_fraction_ is None and m.mcd_attempts_ == []
    assert m.gamma_ == pytest.approx(0.1 if gamma is None else gamma)
    assert m.n_components_ == k and m.mcd_n_samples_ == 300
    np.testing.assert_allclose(m.uncertainty(test), ref, rtol=1e-7, atol=1e-9)


def test_nystroem_with_every_row_as_landmark_reproduces_exact_kernel_pca():
    """With L = all training rows the Nystroem kernel is the exact kernel: same projections
    up to the sign of each component, hence identical MCD distances."""
    train, test = _split(250, 6, seed=2), _split(60, 6, seed=3)
    exact = get_method("rde", n_components=8, kernel_approx="exact").fit(train)
    nys = get_method("rde", n_components=8, kernel_approx="nystroem", n_landmarks=250).fit(train)
    assert nys.kernel_approx_ == "nystroem" and nys.landmarks_.shape == (250, 6)
    np.testing.assert_allclose(np.abs(nys.transform(test)), np.abs(exact.transform(test)), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(nys.uncertainty(test), exact.uncertainty(test), rtol=1e-6)


def test_rbf_kernel_matches_sklearn():
    from sklearn.metrics.pairwise import rbf_kernel as sk_rbf

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(rbf_kernel(x, y, 0.3), sk_rbf(x, y, gamma=0.3), rtol=1e-12)


#: Stated tolerance of the approximation: |ROC-AUC(nystroem) - ROC-AUC(exact)| <= 0.02 on this
#: case (m = 100 landmarks for 500 rows, 16 components), scores rank-correlated >= 0.98.
#: (Measured when written: differences <= 0.003, Spearman >= 0.997.)
AUC_TOLERANCE = 0.02


def test_nystroem_is_within_tolerance_of_exact_in_roc_auc():
    from scipy.stats import spearmanr

    train, test = _split(500, 16, seed=5, hard_frac=0.03), _split(600, 16, seed=6, hard_frac=0.15)
    errors = test.errors()
    params = {"n_components": 16, "gamma": 0.01}
    exact = get_method("rde", kernel_approx="exact", **params).fit(train)
    nys = get_method("rde", kernel_approx="nystroem", n_landmarks=100, **params).fit(train)
    u_exact, u_nys = exact.uncertainty(test), nys.uncertainty(test)
    auc_exact, auc_nys = roc_auc_score(errors, u_exact), roc_auc_score(errors, u_nys)
    assert auc_exact > 0.8  # the hard rows are detectable: the comparison is meaningful
    assert abs(auc_nys - auc_exact) <= AUC_TOLERANCE, (auc_exact, auc_nys)
    assert spearmanr(u_exact, u_nys).statistic >= 0.98


def test_auto_switches_to_nystroem_above_threshold_and_subsamples_the_mcd():
    train, test = _split(400, 6, seed=7), _split(30, 6, seed=8)
    m = get_method("rde", n_components=4, approx_threshold=300, n_landmarks=64, mcd_max_samples=150)
    m.fit(train)
    assert m.kernel_approx_ == "nystroem" and m.landmarks_.shape == (64, 6)
    assert m.mcd_n_samples_ == 150 and m.mcd_support_.shape == (150,)
    assert m.n_components_ == 4 and m.transform(test).shape == (30, 4)
    exact = get_method("rde", n_components=4, approx_threshold=400).fit(train)
    assert exact.kernel_approx_ == "exact" and exact.landmarks_.shape == (400, 6)
    assert np.all(exact.kernel_mean_ == 0.0)


def test_seeded_and_seed_dependent():
    train, test = _split(400, 6, seed=9), _split(30, 6, seed=10)
    params = {"n_components": 4, "kernel_approx": "nystroem", "n_landmarks": 50, "mcd_max_samples": 200}
    a = get_method("rde", random_state=3, **params).fit(train).uncertainty(test)
    b = get_method("rde", random_state=3, **params).fit(train).uncertainty(test)
    c = get_method("rde", random_state=4, **params).fit(train).uncertainty(test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def _with_duplicates(n_dup, seed=11):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((200, 5))
    z[:n_dup] = z[0]
    return Features(z, rng.standard_normal((200, 2)), np.arange(200) % 2)


@pytest.mark.parametrize("n_dup, used", [(140, 0.9), (184, 1.0)])
def test_mcd_retries_with_larger_support_fraction(n_dup, used, caplog):
    """Most rows identical: the default support (about half the rows) is one point, its
    covariance is zero and MinCovDet raises; a larger support fraction takes distinct rows."""
    with caplog.at_level(logging.WARNING, logger="adue.methods.rde"):
        m = get_method("rde", n_components=4).fit(_with_duplicates(n_dup))
    assert m.support_fraction_ == used
    failed = [a["support_fraction"] for a in m.mcd_attempts_]
    assert failed == ([None] if used == 0.9 else [None, 0.9])
    assert all("ValueError" in a["error"] for a in m.mcd_attempts_)
    assert f"used {used}" in caplog.text
    assert np.all(np.isfinite(m.uncertainty(_with_duplicates(n_dup, seed=12))))


def test_strict_mcd_treats_runtime_warnings_as_failures(monkeypatch):
    original = MinCovDet.fit

    def fit_warning_at_default(self, x, y=None):
        if self.support_fraction is None:
            warnings.warn("Determinant has increased; this should not happen", RuntimeWarning, stacklevel=2)
        return original(self, x, y)

    monkeypatch.setattr(MinCovDet, "fit", fit_warning_at_default)
    train = _split(300, 6, seed=13)
    lenient = get_method("rde", n_components=4).fit(train)
    assert lenient.support_fraction_ is None and lenient.mcd_attempts_ == []
    strict = get_method("rde", n_components=4, strict_mcd=True).fit(train)
    assert strict.support_fraction_ == 0.9
    assert strict.mcd_attempts_[0]["error"].startswith("RuntimeWarning: Determinant has increased")


def test_error_when_every_support_fraction_fails(monkeypatch):
    def always_fail(self, x, y=None):
        raise ValueError("Singular covariance matrix.")

    monkeypatch.setattr(MinCovDet, "fit", always_fail)
    with pytest.raises(ValueError, match=r"failed for every support fraction \(support_fraction=None: "
                       r"ValueError: Singular covariance matrix.; support_fraction=0.9"):
        get_method("rde", n_components=4).fit(_split(100, 6, seed=14))


def test_identical_rows_and_too_few_rows_raise():
    same = Features(np.ones((50, 3)), np.zeros((50, 2)), np.arange(50) % 2)
    with pytest.raises(ValueError, match="every training row of z is identical"):
        get_method("rde", n_components=2).fit(same)
    with pytest.raises(ValueError, match="'n_components' parameter of RobustDensityEstimation must be below"):
        get_method("rde").fit(_split(100, 6, seed=15))  # 256 components, 100 rows


@pytest.mark.parametrize(
    "params, name",
    [
        ({"n_components": 0}, "n_components"),
        ({"gamma": -1.0}, "gamma"),
        ({"kernel_approx": "rff"}, "kernel_approx"),
        ({"approx_threshold": 0}, "approx_threshold"),
        ({"n_landmarks": 2}, "n_landmarks"),
        ({"mcd_max_samples": 1}, "mcd_max_samples"),
        ({"strict_mcd": 1}, "strict_mcd"),
        ({"l2_normalize": None}, "l2_normalize"),
        ({"random_state": -1}, "random_state"),
        ({"random_state": 1.5}, "random_state"),
    ],
)
def test_bad_parameters(params, name):
    kwargs = {"n_components": 4, **params}
    with pytest.raises(ValueError, match=f"The '{name}' parameter of RobustDensityEstimation must be"):
        get_method("rde", **kwargs).fit(_split(100, 6, seed=16))


def test_sn_feature_map_equals_rde_on_hand_mapped_features():
    """feature_map='sn' = RDE on tanh((W / sigma) z + b) by hand; gamma defaults to 1 / h."""
    import torch

    from adue.heads import ClassifierHead

    w = np.array([[0.0, 4.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    sigma = float(torch.linalg.matrix_norm(torch.tensor(w), ord=2))
    b = np.array([0.125, -0.25, 0.375, 0.0625, 0.0])  # exact in float32
    head = ClassifierHead(3, 2, hidden_features=5, activation="tanh")
    with torch.no_grad():
        head.dense.weight.copy_(torch.tensor(w))
        head.dense.bias.copy_(torch.tensor(b))
    train, test = _split(200, 3, seed=5), _split(50, 3, seed=6)

    def mapped(f):
        return Features(np.tanh(f.z @ (w / sigma).T + b), f.logits, f.labels)

    for l2 in (False, True):
        sn = get_method("rde", n_components=6, feature_map="sn", head=head, l2_normalize=l2).fit(train)
        ref = get_method("rde", n_components=6, l2_normalize=l2).fit(mapped(train))
        assert sn.gamma_ == pytest.approx(1 / 5) == ref.gamma_
        assert sn.spectral_norm_ == pytest.approx(sigma, rel=1e-10)
        np.testing.assert_allclose(sn.uncertainty(test), ref.uncertainty(mapped(test)), rtol=1e-6, atol=1e-9)
        nys = get_method("rde", n_components=6, kernel_approx="nystroem", n_landmarks=200,
                         feature_map="sn", head=head, l2_normalize=l2).fit(train)
        np.testing.assert_allclose(nys.uncertainty(test), sn.uncertainty(test), rtol=1e-5)


@pytest.mark.parametrize("name", ["md", "rmd", "rde"])
@pytest.mark.parametrize("feature_map", ["z", "sn"])
def test_fitted_state_is_plain_data_and_scores_alone(name, feature_map):
    """Every fitted attribute is a numpy array, a JSON scalar or a list of JSON-scalar dicts
    (saveable without pickle), and a fresh instance given only the params (no head) and those
    attributes scores identically."""
    import json

    import torch

    from adue.heads import ClassifierHead

    torch.manual_seed(0)
    head = ClassifierHead(6, 2, hidden_features=5, activation="gelu")
    for exact in ("exact", "nystroem"):
        params = {"feature_map": feature_map, "head": head if feature_map == "sn" else None}
        if name == "rde":
            params.update(n_components=4, kernel_approx=exact, n_landmarks=100)
        elif exact == "nystroem":
            continue
        train, test = _split(150, 6, seed=20), _split(40, 6, seed=21)
        fitted = get_method(name, **params).fit(train)
        state = {k: v for k, v in vars(fitted).items() if k.endswith("_") and not k.startswith("_")}
        for value in state.values():
            if not isinstance(value, np.ndarray):
                json.dumps(value)  # raises for anything but JSON data
        fresh = get_method(name, **dict(params, head=None))
        for key, value in state.items():
            setattr(fresh, key, value.copy() if isinstance(value, np.ndarray) else value)
        np.testing.assert_array_equal(fresh.uncertainty(test), fitted.uncertainty(test))
