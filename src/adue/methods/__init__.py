"""Uncertainty methods, registered by name.

>>> from adue.methods import get_method, list_methods
>>> m = get_method("md", l2_normalize=True)   # unfitted, parameters only
>>> m.fit(train).uncertainty(test)            # (n,), higher = more likely wrong  # doctest: +SKIP
>>> m.save("md.safetensors"); load_method("md.safetensors")  # fitted again  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

from adue.methods.base import UncertaintyMethod

__all__ = [
    "UncertaintyMethod",
    "get_method",
    "list_methods",
    "register",
    "method_class",
    "load_method",
]

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
        importlib.import_module(mod)
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


def load_method(path: str | os.PathLike) -> UncertaintyMethod:
    """The fitted method saved by :meth:`UncertaintyMethod.save` at ``path``.

    Nothing is unpickled. A missing, truncated or modified file, a file of a newer format
    version or an unknown method name raises an error naming the file.
    """
    from adue.methods._state import read_method_file

    name, params, fitted = read_method_file(path)
    if name not in list_methods():
        raise ValueError(
            f"Method file {path} holds method {name!r}, which is not registered. Registered "
            f"methods: {list_methods()}."
        )
    return method_class(name)._import_state(params, fitted)
