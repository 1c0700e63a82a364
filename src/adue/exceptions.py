"""Exceptions raised by adue."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError


class NotFittedError(_SkNotFittedError):
    """Raised when a method is used before ``fit``.

    Subclasses scikit-learn's ``NotFittedError`` (itself a ``ValueError`` and
    ``AttributeError``), so code catching either works.
    """


class NoErrorsWarning(UserWarning):
    """A split has no misclassifications (or only misclassifications): ROC-AUC is undefined."""
