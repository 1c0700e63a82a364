"""Relative Mahalanobis distance (``rmd``; Ren et al., 2021).

Class Gaussians as in :mod:`adue.methods.mahalanobis` (shared within-class covariance) and a
background Gaussian fitted on all training rows, all covariances divided by ``n``, float64::

    MD_c(x) = (x - mu_c)^T Sigma^{-1} (x - mu_c)
    MD_0(x) = (x - mu_0)^T Sigma_0^{-1} (x - mu_0),   mu_0 = mean(x), Sigma_0 = Cov(x)
    U(z)    = min_c [MD_c(x) - MD_0(x)] = min_c MD_c(x) - MD_0(x),     x = phi(z)

``Sigma_0 = Sigma + sum_c (n_c/n)(mu_c - mu_0)(mu_c - mu_0)^T`` exactly (law of total
covariance), so the background costs no second pass over the rows. Both inverses are exact
wherever the covariances are well defined and are regularised the same way elsewhere
(:class:`adue.methods._covariance.GaussianWhiteners`): directions without pooled variance
cancel exactly (both precisions restricted to the pooled covariance's numerical range), and
within-class eigenvalues below the shared absolute floor are raised to it. Scoring uses one
quadratic form: with ``x' = x - mu_0``, ``delta_c = mu_c - mu_0`` and the range-restricted
precisions ``P_R``, ``P_0R``,
``MD_c - MD_0 = x'^T (P_R - P_0R) x' - 2 x'^T P_R delta_c + delta_c^T P_R delta_c``.
"""

from __future__ import annotations

import numpy as np

from adue.features import Features
from adue.methods import register
from adue.methods._covariance import between_class_covariance, row_blocks, squared_mahalanobis
from adue.methods.mahalanobis import MahalanobisDistance

__all__ = ["RelativeMahalanobisDistance"]


@register("rmd")
class RelativeMahalanobisDistance(MahalanobisDistance):
    """``min_c MD_c(x) - MD_0(x)`` (Ren et al., 2021).

    Parameters
    ----------
    Those of :class:`MahalanobisDistance` (``l2_normalize``, ``eigen_floor``,
    ``feature_map``, ``head``); the floor is shared by both covariances.

    Attributes
    ----------
    Those of :class:`MahalanobisDistance`, plus ``background_mean_`` (h,),
    ``background_covariance_`` (h, h), ``background_precision_`` (h, h),
    ``background_whitener_`` (h, h) (its last ``h - rank_`` columns equal ``whitener_``'s)
    and ``relative_precision_`` (h, h), ``P_R - P_0R``.

    ``uncertainty`` returns (n,) float64 (may be negative): higher = relatively farther from
    every class than from the background = more likely wrong.
    """

    def fit(self, train: Features, val: Features | None = None) -> RelativeMahalanobisDistance:
        """Fit the class Gaussians and the background Gaussian on ``train``; return ``self``."""
        reg = self._fit_class_gaussians(train, val)
        mean0, between = between_class_covariance(self.means_, self.class_counts_)
        w0 = reg.background_whitener
        wc_r, w0_r = reg.class_whitener[:, : reg.rank], w0[:, : reg.rank]
        self.background_mean_ = mean0
        self.background_covariance_ = self.covariance_ + between
        self.background_whitener_ = w0
        self.background_precision_ = w0 @ w0.T
        self.relative_precision_ = wc_r @ wc_r.T - w0_r @ w0_r.T
        return self

    def background_distances(self, features: Features) -> np.ndarray:
        """``MD_0`` per row, (n,) float64."""
        z = self._z(features)
        return squared_mahalanobis(
            z, self.background_mean_, self.background_whitener_, self._row_map()
        )[:, 0]

    def uncertainty(self, features: Features) -> np.ndarray:
        """``min_c MD_c(x) - MD_0(x)`` per row, shape (n,), float64."""
        z = self._z(features)
        wc_r = self.whitener_[:, : self.rank_]
        delta = self.means_ - self.background_mean_  # (C, h), inside the pooled range
        dw = delta @ wc_r  # (C, r)
        p_delta = wc_r @ dw.T  # (h, C) = P_R delta^T
        const = np.einsum("cr,cr->c", dw, dw)
        out = np.empty(z.shape[0], dtype=np.float64)
        for start, x in row_blocks(z, self._row_map()):
            x -= self.background_mean_
            quad = np.einsum("nd,nd->n", x @ self.relative_precision_, x)
            rel = quad[:, None] - 2.0 * (x @ p_delta) + const[None, :]
            out[start : start + x.shape[0]] = rel.min(axis=1)
        return out
