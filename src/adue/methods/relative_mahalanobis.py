"""Relative Mahalanobis distance (``rmd``; Ren et al., 2021).

Class Gaussians as in :mod:`adue.methods.mahalanobis` (shared within-class covariance) and a
background Gaussian fitted on all training rows, all covariances divided by ``n``, float64::

    MD_c(z) = (z - mu_c)^T Sigma^{-1} (z - mu_c)
    MD_0(z) = (z - mu_0)^T Sigma_0^{-1} (z - mu_0),   mu_0 = mean(z), Sigma_0 = Cov(z)
    U(z)    = min_c [MD_c(z) - MD_0(z)] = min_c MD_c(z) - MD_0(z)

``Sigma_0 = Sigma + sum_c (n_c/n)(mu_c - mu_0)(mu_c - mu_0)^T`` exactly (law of total
covariance), so the background costs no second pass over the rows. Both inverses use the
relative eigenvalue floor of :mod:`adue.methods._covariance`. Scoring uses one quadratic form:
with ``x = z - mu_0`` and ``delta_c = mu_c - mu_0``,
``MD_c - MD_0 = x^T (P - P_0) x - 2 x^T P delta_c + delta_c^T P delta_c``.
"""

from __future__ import annotations

import numpy as np

from adue.features import Features
from adue.methods import register
from adue.methods._covariance import (
    RegularizedPrecision,
    between_class_covariance,
    row_blocks,
    squared_mahalanobis,
)
from adue.methods.mahalanobis import MahalanobisDistance, log_regularisation

__all__ = ["RelativeMahalanobisDistance"]


@register("rmd")
class RelativeMahalanobisDistance(MahalanobisDistance):
    """``min_c MD_c(z) - MD_0(z)`` (Ren et al., 2021).

    Parameters
    ----------
    l2_normalize : bool, default False
        Divide each ``z`` by its Euclidean norm before fitting and scoring.
    eigen_floor : float in (0, 1), default 1e-6
        Relative eigenvalue floor for both covariances (see :class:`MahalanobisDistance`).

    Attributes
    ----------
    Those of :class:`MahalanobisDistance`, plus ``background_mean_`` (d,),
    ``background_covariance_`` (d, d), ``background_precision_`` (d, d),
    ``background_whitener_`` (d, d).

    ``uncertainty`` returns (n,) float64 (may be negative): higher = relatively farther from
    every class than from the background = more likely wrong.
    """

    def fit(self, train: Features, val: Features | None = None) -> RelativeMahalanobisDistance:
        """Fit the class Gaussians and the background Gaussian on ``train``; return ``self``."""
        self._fit_class_gaussians(train, val)
        mean0, between = between_class_covariance(self.means_, self.class_counts_)
        cov0 = self.covariance_ + between
        reg0 = RegularizedPrecision.from_covariance(cov0, self.eigen_floor)
        log_regularisation(type(self).__name__, "background covariance", reg0, train.n, train.n - 1)
        self.background_mean_ = mean0
        self.background_covariance_ = cov0
        self.background_precision_ = reg0.precision
        self.background_whitener_ = reg0.whitener
        return self

    def background_distances(self, features: Features) -> np.ndarray:
        """``MD_0`` per row, (n,) float64."""
        z = self._z(features)
        return squared_mahalanobis(
            z, self.background_mean_, self.background_whitener_, normalize=bool(self.l2_normalize)
        )[:, 0]

    def uncertainty(self, features: Features) -> np.ndarray:
        """``min_c MD_c(z) - MD_0(z)`` per row, shape (n,), float64."""
        z = self._z(features)
        p = self.precision_
        diff = p - self.background_precision_
        delta = self.means_ - self.background_mean_  # (C, d)
        p_delta = p @ delta.T  # (d, C)
        const = np.einsum("cd,dc->c", delta, p_delta)
        out = np.empty(z.shape[0], dtype=np.float64)
        for start, x in row_blocks(z, bool(self.l2_normalize)):
            x -= self.background_mean_
            quad = np.einsum("nd,nd->n", x @ diff, x)
            rel = quad[:, None] - 2.0 * (x @ p_delta) + const[None, :]
            out[start : start + x.shape[0]] = rel.min(axis=1)
        return out
