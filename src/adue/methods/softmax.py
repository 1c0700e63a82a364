"""Softmax baselines: softmax response (``sr``) and predictive entropy (``entropy``).

Both read only the logits; ``fit`` records the feature width and class count so that features
from a different model are refused at scoring time.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from adue.features import Features
from adue.methods import register
from adue.methods.base import UncertaintyMethod

__all__ = ["SoftmaxResponse", "PredictiveEntropy"]


class _SoftmaxMethod(UncertaintyMethod):
    fit_needs_labels = False

    def __init__(self) -> None:
        pass

    def fit(self, train: Features, val: Features | None = None) -> _SoftmaxMethod:
        """Record ``n_features_in_`` and ``n_classes_`` of ``train``; return ``self``."""
        train = self._check_features(train, "train")
        if val is not None:
            self._check_features(val, "val")
        self.n_features_in_ = train.dim
        self.n_classes_ = train.num_classes
        return self

    def _log_probs(self, features: Features) -> np.ndarray:
        self._check_is_fitted()
        features = self._check_features(features)
        self._check_width(features, self.n_features_in_, self.n_classes_)
        return log_softmax(features.logits.astype(np.float64), axis=1)


@register("sr")
class SoftmaxResponse(_SoftmaxMethod):
    """Softmax response (Geifman and El-Yaniv, 2017): ``U(x) = 1 - max_c p_c(x)``.

    ``p = softmax(logits)`` in float64. Output (n,), in ``[0, 1 - 1/C]``; higher = less
    confident = more likely wrong.
    """

    def uncertainty(self, features: Features) -> np.ndarray:
        """``1 - max_c softmax(logits)_c`` per row, shape (n,), float64."""
        logp = self._log_probs(features)
        return 1.0 - np.exp(logp.max(axis=1))


@register("entropy")
class PredictiveEntropy(_SoftmaxMethod):
    """Predictive entropy: ``U(x) = -sum_c p_c log p_c`` (natural log).

    Computed from ``log_softmax`` in float64 (``0 log 0 = 0``). Output (n,), in
    ``[0, log C]``; higher = flatter softmax = more likely wrong.
    """

    def uncertainty(self, features: Features) -> np.ndarray:
        """``-sum_c p_c log p_c`` per row, shape (n,), float64."""
        logp = self._log_probs(features)
        p = np.exp(logp)
        ent = -np.einsum("nc,nc->n", p, np.where(p > 0.0, logp, 0.0))
        return np.maximum(ent, 0.0)
