"""The one interface every uncertainty method follows.

Contract (tested for every registered method by ``tests/test_method_battery.py``):

- The constructor is keyword-only and only stores its parameters (no validation, no work).
- ``fit(train, val=None)`` validates parameters and inputs, learns from the ``train``
  :class:`~adue.features.Features` (``val`` is used by methods that select or stop early),
  sets attributes ending in ``_`` and returns ``self``.
- ``uncertainty(features)`` returns a float64 array of shape ``(n,)``: **higher means the
  prediction is more likely wrong**.
- Calling ``uncertainty`` before ``fit`` raises :class:`adue.exceptions.NotFittedError`.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from adue.exceptions import NotFittedError
from adue.features import Features

__all__ = ["UncertaintyMethod"]


class UncertaintyMethod:
    """Base class: keyword-only params, ``fit`` -> self, ``uncertainty`` -> (n,) higher = worse."""

    #: Registry name, set by :func:`adue.methods.register`.
    name: ClassVar[str] = ""
    #: Whether ``fit`` uses the ``val`` split (for selection or early stopping).
    uses_validation: ClassVar[bool] = False

    # ------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind == p.KEYWORD_ONLY
        ]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn convention)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> UncertaintyMethod:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(
                    f"Unknown parameter {k!r} for {type(self).__name__}. Valid parameters: {valid}."
                )
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k != "head")
        return f"{type(self).__name__}({args})"

    # -------------------------------------------------------------- protocol
    def fit(self, train: Features, val: Features | None = None) -> UncertaintyMethod:
        """Learn from ``train`` (and ``val`` where used); return ``self``."""
        raise NotImplementedError

    def uncertainty(self, features: Features) -> np.ndarray:
        """Score each row: shape (n,), float64, higher = more likely misclassified."""
        raise NotImplementedError

    def fit_uncertainty(self, train: Features, test: Features, val: Features | None = None) -> np.ndarray:
        """``fit(train, val)`` then ``uncertainty(test)``."""
        return self.fit(train, val).uncertainty(test)

    # --------------------------------------------------------------- helpers
    def _is_fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _check_is_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with the "
                "training features before using it."
            )

    @staticmethod
    def _check_features(features: Any, what: str = "features") -> Features:
        if not isinstance(features, Features):
            raise TypeError(
                f"The '{what}' argument must be an adue.features.Features instance. "
                f"Got {type(features).__name__} instead."
            )
        return features

    def _check_width(self, features: Features, fitted_dim: int, fitted_classes: int | None = None) -> None:
        """Raise if ``features`` differ in width (or class count) from what was fitted."""
        if features.dim != fitted_dim:
            raise ValueError(
                f"{type(self).__name__} was fitted on features of width {fitted_dim}; "
                f"got width {features.dim} instead."
            )
        if fitted_classes is not None and features.num_classes != fitted_classes:
            raise ValueError(
                f"{type(self).__name__} was fitted on {fitted_classes} classes; got logits "
                f"with {features.num_classes} columns instead."
            )
