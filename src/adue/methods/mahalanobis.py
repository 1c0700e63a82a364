"""Mahalanobis distance to the nearest class (``md``; Lee et al., 2018).

One Gaussian per class with a shared within-class covariance, all in float64::

    mu_c  = mean{z_i : y_i = c}
    Sigma = (1/n) sum_i (z_i - mu_{y_i}) (z_i - mu_{y_i})^T        (divided by n)
    U(z)  = min_c (z - mu_c)^T Sigma^{-1} (z - mu_c)               (squared distance)

``Sigma^{-1}`` is regularised by a relative eigenvalue floor (see
:mod:`adue.methods._covariance`), so a singular covariance (``d`` above ``n - C``, duplicated
or constant features) still gives finite scores; a warning is logged when the floor is used.
"""

from __future__ import annotations

import logging

import numpy as np

from adue._validation import check_number
from adue.features import Features
from adue.methods import register
from adue.methods._covariance import (
    DEFAULT_EIGEN_FLOOR,
    RegularizedPrecision,
    check_bool,
    class_means,
    squared_mahalanobis,
    within_class_covariance,
)
from adue.methods.base import UncertaintyMethod

__all__ = ["MahalanobisDistance"]

logger = logging.getLogger(__name__)


def check_all_classes_present(owner: str, train: Features) -> np.ndarray:
    """Class counts of ``train`` (C,); raise naming the classes that have no training row."""
    counts = np.bincount(train.labels, minlength=train.num_classes)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(
            f"{owner} needs training rows of every class to estimate its mean; class(es) "
            f"{missing.tolist()} have no row in the training split (the logits have "
            f"{train.num_classes} classes)."
        )
    return counts


def log_regularisation(owner: str, what: str, reg: RegularizedPrecision, n: int, rank_bound: int) -> None:
    """Log a warning when the eigenvalue floor changed the covariance (singular / ill-conditioned)."""
    d = reg.eigenvalues.size
    if reg.n_floored or d > rank_bound:
        logger.warning(
            "%s: the %s of %d features from %d training rows is singular or ill-conditioned "
            "(rank <= %d); %d of %d eigenvalues were raised to eigen_floor * largest = %.3g.",
            owner, what, d, n, rank_bound, reg.n_floored, d, reg.eps * float(reg.eigenvalues.max()),
        )


@register("md")
class MahalanobisDistance(UncertaintyMethod):
    """Minimum squared Mahalanobis distance to the class means (Lee et al., 2018).

    Parameters
    ----------
    l2_normalize : bool, default False
        Divide each ``z`` by its Euclidean norm before fitting and scoring (the paper's
        "L2 norm" rows).
    eigen_floor : float in (0, 1), default 1e-6
        Relative eigenvalue floor ``eps``: covariance eigenvalues below ``eps * lam_max`` are
        raised to it before inverting (caps the condition number at ``1/eps``; a
        well-conditioned covariance is inverted exactly).

    Attributes
    ----------
    classes_ : (C,) int64, ``0..C-1``
    means_ : (C, d) float64 class means
    covariance_ : (d, d) float64 shared within-class covariance (divided by n)
    precision_ : (d, d) float64 regularised inverse of ``covariance_``
    whitener_ : (d, d) float64, ``W`` with ``precision_ = W W^T``
    n_eigen_floored_ : int, eigenvalues raised to the floor
    n_features_in_, n_classes_ : int

    ``uncertainty`` returns (n,) float64 ``>= 0``: higher = farther from every class.
    """

    def __init__(self, *, l2_normalize: bool = False, eigen_floor: float = DEFAULT_EIGEN_FLOOR) -> None:
        self.l2_normalize = l2_normalize
        self.eigen_floor = eigen_floor

    def _validate_params(self) -> None:
        owner = type(self).__name__
        check_bool("l2_normalize", owner, self.l2_normalize)
        check_number("eigen_floor", owner, self.eigen_floor, low=0.0, high=1.0,
                     low_inclusive=False, high_inclusive=False)

    def fit(self, train: Features, val: Features | None = None) -> MahalanobisDistance:
        """Estimate class means and the shared covariance from ``train``; return ``self``."""
        self._fit_class_gaussians(train, val)
        return self

    def _fit_class_gaussians(self, train: Features, val: Features | None) -> None:
        self._validate_params()
        train = self._check_features(train, "train")
        if val is not None:
            self._check_features(val, "val")
        owner = type(self).__name__
        counts = check_all_classes_present(owner, train)
        norm = bool(self.l2_normalize)
        means, _ = class_means(train.z, train.labels, train.num_classes, normalize=norm)
        cov = within_class_covariance(train.z, train.labels, means, normalize=norm)
        reg = RegularizedPrecision.from_covariance(cov, self.eigen_floor)
        log_regularisation(owner, "within-class covariance", reg, train.n, train.n - train.num_classes)
        self.classes_ = np.arange(train.num_classes, dtype=np.int64)
        self.class_counts_ = counts.astype(np.int64)
        self.means_ = means
        self.covariance_ = cov
        self.precision_ = reg.precision
        self.whitener_ = reg.whitener
        self.n_eigen_floored_ = reg.n_floored
        self.n_features_in_ = train.dim
        self.n_classes_ = train.num_classes

    def _z(self, features: Features) -> np.ndarray:
        self._check_is_fitted()
        features = self._check_features(features)
        self._check_width(features, self.n_features_in_, self.n_classes_)
        return features.z

    def class_distances(self, features: Features) -> np.ndarray:
        """Squared distances to every class mean, (n, C) float64."""
        return squared_mahalanobis(
            self._z(features), self.means_, self.whitener_, normalize=bool(self.l2_normalize)
        )

    def uncertainty(self, features: Features) -> np.ndarray:
        """``min_c (z - mu_c)^T precision_ (z - mu_c)`` per row, shape (n,), float64."""
        return self.class_distances(features).min(axis=1)
