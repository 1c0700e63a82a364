"""Mahalanobis distance to the nearest class (``md``; Lee et al., 2018).

One Gaussian per class with a shared within-class covariance, all in float64::

    x     = phi(z)                     (z itself, or the head's SN dense layer; then L2 if asked)
    mu_c  = mean{x_i : y_i = c}
    Sigma = (1/n) sum_i (x_i - mu_{y_i}) (x_i - mu_{y_i})^T        (divided by n)
    U(z)  = min_c (x - mu_c)^T Sigma^{-1} (x - mu_c)               (squared distance)

``Sigma^{-1}`` is exact wherever the covariance is well defined; directions without training
variance get one absolute eigenvalue floor derived from the pooled covariance (see
:mod:`adue.methods._covariance`), so a singular covariance (``d`` above ``n - C``, duplicated or
constant features) still gives finite scores; a warning is logged when the floor is used.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from adue._validation import check_number
from adue.features import Features
from adue.methods import register
from adue.methods._covariance import (
    DEFAULT_EIGEN_FLOOR,
    FeatureMapMixin,
    GaussianWhiteners,
    between_class_covariance,
    class_means,
    squared_mahalanobis,
    within_class_covariance,
)
from adue.methods.base import UncertaintyMethod

__all__ = ["MahalanobisDistance"]

logger = logging.getLogger(__name__)


def check_class_rows(owner: str, train: Features) -> np.ndarray:
    """Class counts of ``train`` (C,); raise when a class has no row or every class has one."""
    counts = np.bincount(train.labels, minlength=train.num_classes)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(
            f"{owner} needs training rows of every class to estimate its mean; class(es) "
            f"{missing.tolist()} have no row in the training split (the logits have "
            f"{train.num_classes} classes)."
        )
    if counts.max() < 2:
        raise ValueError(
            f"{owner} needs at least two training rows in some class to estimate the "
            f"within-class covariance; every class has exactly one training row here "
            f"({train.n} rows, {train.num_classes} classes)."
        )
    return counts


def log_regularisation(owner: str, reg: GaussianWhiteners, n: int) -> None:
    """Log a warning when the eigenvalue floor was used (singular / ill-conditioned covariance)."""
    d = reg.class_whitener.shape[0]
    if reg.n_floored:
        logger.warning(
            "%s: the within-class covariance of %d features from %d training rows is singular "
            "or ill-conditioned: the pooled covariance has numerical rank %d; %d of %d "
            "within-class eigenvalues were raised to eigen_floor * largest pooled eigenvalue = %.3g.",
            owner, d, n, reg.rank, reg.n_floored, d, reg.floor,
        )


@register("md")
class MahalanobisDistance(FeatureMapMixin, UncertaintyMethod):
    """Minimum squared Mahalanobis distance to the class means (Lee et al., 2018).

    Parameters
    ----------
    l2_normalize : bool, default False
        Divide each (mapped) row by its Euclidean norm before fitting and scoring (the
        paper's "L2 norm" rows).
    eigen_floor : float in (0, 1), default 1e-10
        ``eps``: eigenvalues below ``eps * lam_max`` of the pooled covariance are treated as
        zero variance and raised to that floor (a condition number up to ``1/eps`` is
        inverted exactly).
    feature_map : {"z", "sn"}, default "z"
        ``"z"``: the head's input; ``"sn"``: ``act(dense_sn(z))``, the two-layer head's dense
        layer with its trained weight divided by its spectral norm (paper, Appendix B.1).
    head : classification head or None
        Needed for ``feature_map="sn"``: an ``adue.heads.ClassifierHead`` with a dense layer
        (or a module with ``dense`` and ``out_proj``).

    Attributes
    ----------
    classes_ : (C,) int64, ``0..C-1``
    means_ : (C, h) float64 class means
    covariance_ : (h, h) float64 shared within-class covariance (divided by n)
    precision_ : (h, h) float64 regularised inverse of ``covariance_``
    whitener_ : (h, h) float64, ``W`` with ``precision_ = W W^T``
    rank_ : int, numerical rank of the pooled covariance (``W``'s first ``rank_`` columns)
    eigen_floor_value_ : float, the absolute floor ``tau``
    n_eigen_floored_ : int, within-class eigenvalues raised to the floor
    sn_weight_, sn_bias_, sn_activation_, spectral_norm_ : the SN map (None for ``"z"``)
    n_features_in_, n_classes_ : int

    ``uncertainty`` returns (n,) float64 ``>= 0``: higher = farther from every class.
    """

    def __init__(
        self,
        *,
        l2_normalize: bool = False,
        eigen_floor: float = DEFAULT_EIGEN_FLOOR,
        feature_map: str = "z",
        head: Any = None,
    ) -> None:
        self.l2_normalize = l2_normalize
        self.eigen_floor = eigen_floor
        self.feature_map = feature_map
        self.head = head

    def _validate_params(self) -> None:
        self._validate_feature_map()
        check_number("eigen_floor", type(self).__name__, self.eigen_floor, low=0.0, high=1.0,
                     low_inclusive=False, high_inclusive=False)

    def fit(self, train: Features, val: Features | None = None) -> MahalanobisDistance:
        """Estimate class means and the shared covariance from ``train``; return ``self``."""
        self._fit_class_gaussians(train, val)
        return self

    def _fit_class_gaussians(self, train: Features, val: Features | None) -> GaussianWhiteners:
        """Fit the class Gaussians; return the whiteners (the background one is RMD's)."""
        self._validate_params()
        train = self._check_features(train, "train")
        if val is not None:
            self._check_features(val, "val")
        owner = type(self).__name__
        counts = check_class_rows(owner, train)
        row_map = self._fit_feature_map(train.dim)
        means, _ = class_means(train.z, train.labels, train.num_classes, row_map)
        cov = within_class_covariance(train.z, train.labels, means, row_map)
        mean0, between = between_class_covariance(means, counts)
        reg = GaussianWhiteners.from_covariances(cov, cov + between, self.eigen_floor)
        log_regularisation(owner, reg, train.n)
        self.classes_ = np.arange(train.num_classes, dtype=np.int64)
        self.class_counts_ = counts.astype(np.int64)
        self.means_ = means
        self.covariance_ = cov
        self.whitener_ = reg.class_whitener
        self.precision_ = reg.class_whitener @ reg.class_whitener.T
        self.rank_ = reg.rank
        self.eigen_floor_value_ = reg.floor
        self.n_eigen_floored_ = reg.n_floored
        self.n_features_in_ = train.dim
        self.n_classes_ = train.num_classes
        return reg

    def _z(self, features: Features) -> np.ndarray:
        self._check_is_fitted()
        features = self._check_features(features)
        self._check_width(features, self.n_features_in_, self.n_classes_)
        return features.z

    def class_distances(self, features: Features) -> np.ndarray:
        """Squared distances to every class mean, (n, C) float64."""
        return squared_mahalanobis(self._z(features), self.means_, self.whitener_, self._row_map())

    def uncertainty(self, features: Features) -> np.ndarray:
        """``min_c (x - mu_c)^T precision_ (x - mu_c)`` per row, shape (n,), float64."""
        return self.class_distances(features).min(axis=1)
