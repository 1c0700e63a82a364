"""The one interface every uncertainty method follows.

Contract (tested for every registered method by ``tests/test_method_battery.py``):

- The constructor is keyword-only and only stores its parameters (no validation, no work).
- ``fit(train, val=None)`` validates parameters and inputs, learns from the ``train``
  :class:`~adue.features.Features` (``val`` is used by methods that select or stop early),
  sets attributes ending in ``_`` and returns ``self``.
- ``uncertainty(features)`` returns a float64 array of shape ``(n,)``: **higher means the
  prediction is more likely wrong**.
- Calling ``uncertainty`` before ``fit`` raises :class:`adue.exceptions.NotFittedError`.
- ``get_params(deep=True)`` / ``set_params`` follow scikit-learn, so ``sklearn.base.clone``
  gives an unfitted copy with equal parameters.
- ``save(path)`` writes the fitted state to one safetensors file (no pickle) and
  :func:`adue.methods.load_method` reads it back; scores after reloading equal those before.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
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
    #: Whether ``fit`` needs gold labels on ``train`` (and ``val``).
    fit_needs_labels: ClassVar[bool] = True

    # ------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind == p.KEYWORD_ONLY
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn convention).

        With ``deep=True``, parameters of nested objects that have ``get_params`` are added
        as ``<param>__<name>``.
        """
        out: dict[str, Any] = {}
        for k in self._param_names():
            v = getattr(self, k)
            out[k] = v
            if deep and hasattr(v, "get_params") and not isinstance(v, type):
                out.update({f"{k}__{sk}": sv for sk, sv in v.get_params().items()})
        return out

    def set_params(self, **params: Any) -> UncertaintyMethod:
        """Set constructor parameters (``<param>__<name>`` sets a nested one); unknown names
        raise ``ValueError``."""
        valid = self._param_names()
        for k, v in params.items():
            top, _, sub = k.partition("__")
            if top not in valid:
                raise ValueError(
                    f"Unknown parameter {k!r} for {type(self).__name__}. Valid parameters: {valid}."
                )
            if sub:
                getattr(self, top).set_params(**{sub: v})
            else:
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

    # ------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted method to ``path`` (one safetensors file, no pickle), atomically.

        Arrays become tensors; parameters and the other fitted attributes are JSON metadata,
        with the method name and a format version. Read it back with
        :func:`adue.methods.load_method`.
        """
        from adue.methods._state import write_method_file

        self._check_is_fitted()
        params, fitted = self._export_state()
        return write_method_file(path, type(self).name, params, fitted)

    def _export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Hook: ``(constructor params, fitted attributes)`` to save. Override to convert
        values the file format cannot hold (e.g. torch modules) into arrays and dicts."""
        fitted = {k: v for k, v in vars(self).items() if _is_fitted_attr(k)}
        return self.get_params(deep=False), fitted

    @classmethod
    def _import_state(cls, params: dict[str, Any], fitted: dict[str, Any]) -> UncertaintyMethod:
        """Hook: rebuild a fitted instance from what :meth:`_export_state` returned."""
        obj = cls(**params)
        for k, v in fitted.items():
            setattr(obj, k, v)
        return obj

    # --------------------------------------------------------------- helpers
    def _is_fitted(self) -> bool:
        return any(_is_fitted_attr(k) for k in vars(self))

    def _check_is_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with the "
                "training features before using it."
            )

    def _check_features(self, features: Any, what: str = "features") -> Features:
        """``features`` if it is a :class:`Features`; ``train`` / ``val`` must hold labels
        unless the method's ``fit_needs_labels`` is False."""
        if not isinstance(features, Features):
            raise TypeError(
                f"The '{what}' argument must be an adue.features.Features instance. "
                f"Got {type(features).__name__} instead."
            )
        if what in ("train", "val") and self.fit_needs_labels and not features.has_labels:
            raise ValueError(
                f"The '{what}' features of {type(self).__name__}.fit must have labels (the "
                "method learns from the model's errors or the classes). Got Features without "
                "labels instead."
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


def _is_fitted_attr(name: str) -> bool:
    """Fitted attributes end in ``_`` and are public (scikit-learn convention)."""
    return name.endswith("_") and not name.startswith("_")
