"""Uncertainty methods, registered by name.

>>> from adue.methods import get_method, list_methods
>>> m = get_method("md", l2_normalize=True)   # unfitted, parameters only
>>> m.fit(train).uncertainty(test)            # (n,), higher = more likely wrong  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from adue.methods.base import UncertaintyMethod

__all__ = ["UncertaintyMethod", "get_method", "list_methods", "register", "method_class"]

_REGISTRY: dict[str, type[UncertaintyMethod]] = {}

# Modules holding the built-in methods (one file per method); imported on first use.
_BUILTIN_MODULES = (
    "adue.methods.softmax",
    "adue.methods.mahalanobis",
    "adue.methods.relative_mahalanobis",
    "adue.methods.rde",
    "adue.methods.adue_head",
)
_loaded = False

T = TypeVar("T", bound=type[UncertaintyMethod])


def register(name: str) -> Callable[[T], T]:
    """Class decorator adding a method to the registry under ``name``."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"An uncertainty method named {name!r} is already registered.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a real missing dependency inside the module
                raise
    _loaded = True


def list_methods() -> list[str]:
    """Registered method names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def method_class(name: str) -> type[UncertaintyMethod]:
    """The class registered under ``name``; unknown names raise ``ValueError`` listing valid ones."""
    _load_builtins()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"The 'name' parameter of get_method must be one of {list_methods()}. Got {name!r} instead."
        )
    return _REGISTRY[name]


def get_method(name: str, **params: Any) -> UncertaintyMethod:
    """An unfitted instance of the method ``name`` with ``params`` (keyword-only).

    Unknown parameter names raise ``ValueError`` listing the valid ones.
    """
    cls = method_class(name)
    valid = cls._param_names()
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for method {name!r}. Valid parameters: {valid}."
        )
    return cls(**params)
