"""Saving a fitted uncertainty method without pickle: one safetensors file.

Layout of the file written by :meth:`adue.methods.UncertaintyMethod.save`:

- tensors: every numpy array of the constructor parameters and fitted attributes (``t0``,
  ``t1``, ...), with their dtype and shape;
- metadata (strings): ``format`` (``"adue.method"``), ``format_version`` (an integer, see
  :data:`FORMAT_VERSION`), ``method`` (registry name), ``state`` (a JSON tree of the
  parameters and fitted attributes in which arrays are references ``{"__array__": "t3"}``),
  and ``sha256``: a hash over ``state`` and every tensor's name, dtype, shape and bytes, so a
  modified or corrupted file is refused instead of giving silently wrong scores.

The JSON tree holds ``None``, bools, numbers (NaN allowed), strings, lists, tuples, dicts,
numpy scalars (as 0-d tensors), dataclasses defined in ``adue`` and fitted scikit-learn
estimators (their ``__dict__``). Loading rebuilds only those: a class is looked up only in
``adue.*`` (dataclasses) or ``sklearn.*`` (``BaseEstimator`` subclasses), and no code from the
file is run. Methods whose fitted state holds other objects (the AdUE head, a torch module)
convert them in their ``_export_state`` / ``_import_state`` hooks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "write_method_file", "read_method_file"]

FORMAT = "adue.method"
#: Version of the file layout; files with a higher version are refused with a clear error.
FORMAT_VERSION = 1
_TAGS = ("__array__", "__scalar__", "__tuple__", "__dict__", "__dataclass__", "__sklearn__")


class _Encoder:
    """Turns a value into a JSON tree, collecting its arrays as named tensors."""

    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] = {}

    def _array(self, a: np.ndarray, where: str) -> str:
        if a.dtype == object or a.dtype.kind not in "biufc":
            raise TypeError(f"Cannot save {where}: arrays of dtype {a.dtype} are not supported.")
        key = f"t{len(self.tensors)}"
        self.tensors[key] = np.ascontiguousarray(a)
        return key

    def encode(self, v: Any, where: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, np.generic):
            return v
        if isinstance(v, np.ndarray):
            return {"__array__": self._array(v, where)}
        if isinstance(v, np.generic):
            return {"__scalar__": self._array(np.asarray(v), where)}
        if isinstance(v, tuple):
            return {"__tuple__": [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v) and not any(k in _TAGS for k in v):
                return {k: self.encode(x, f"{where}[{k!r}]") for k, x in v.items()}
            return {"__dict__": [[self.encode(k, where), self.encode(x, f"{where}[{k!r}]")]
                                 for k, x in v.items()]}
        cls = type(v)
        if dataclasses.is_dataclass(v) and cls.__module__.startswith("adue."):
            fields = {f.name: self.encode(getattr(v, f.name), f"{where}.{f.name}")
                      for f in dataclasses.fields(v)}
            return {"__dataclass__": _class_ref(cls), "fields": fields}
        if _is_sklearn_estimator(cls):
            return {"__sklearn__": _class_ref(cls), "state": self.encode(vars(v), where)}
        raise TypeError(
            f"Cannot save {where}: values of type {cls.__module__}.{cls.__qualname__} are not "
            "supported (arrays, numbers, strings, lists, dicts, adue dataclasses and fitted "
            "scikit-learn estimators are). Override the method's _export_state hook."
        )


def _class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_sklearn_estimator(cls: type) -> bool:
    if not cls.__module__.startswith("sklearn."):
        return False
    from sklearn.base import BaseEstimator

    return issubclass(cls, BaseEstimator)


def _find_class(ref: str, kind: str) -> type:
    module, _, qualname = ref.partition(":")
    prefix = "adue." if kind == "__dataclass__" else "sklearn."
    if not module.startswith(prefix) or not qualname or "<" in qualname:
        raise ValueError(f"refers to class {ref!r}, which is not an allowed {prefix}* class")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    ok = dataclasses.is_dataclass(obj) if kind == "__dataclass__" else _is_sklearn_estimator(obj)
    if not isinstance(obj, type) or not ok:
        raise ValueError(f"refers to {ref!r}, which is not an allowed class")
    return obj


def _decode(v: Any, tensors: dict[str, np.ndarray]) -> Any:
    if isinstance(v, list):
        return [_decode(x, tensors) for x in v]
    if not isinstance(v, dict):
        return v
    if "__array__" in v:
        return tensors[v["__array__"]]
    if "__scalar__" in v:
        return tensors[v["__scalar__"]][()]
    if "__tuple__" in v:
        return tuple(_decode(x, tensors) for x in v["__tuple__"])
    if "__dict__" in v:
        return {_decode(k, tensors): _decode(x, tensors) for k, x in v["__dict__"]}
    if "__dataclass__" in v:
        cls = _find_class(v["__dataclass__"], "__dataclass__")
        obj = cls.__new__(cls)
        for name, x in v["fields"].items():
            object.__setattr__(obj, name, _decode(x, tensors))
        return obj
    if "__sklearn__" in v:
        cls = _find_class(v["__sklearn__"], "__sklearn__")
        obj = cls.__new__(cls)
        obj.__dict__.update(_decode(v["state"], tensors))
        return obj
    return {k: _decode(x, tensors) for k, x in v.items()}


def _digest(state: str, tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(state.encode("utf-8"))
    for key in sorted(tensors):
        a = np.ascontiguousarray(tensors[key])
        h.update(f"\0{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_method_file(path: str | os.PathLike, name: str, params: dict, fitted: dict) -> Path:
    """Write a method's ``params`` and ``fitted`` attributes to ``path`` atomically."""
    from safetensors.numpy import save_file

    from adue._atomic import atomic_path

    enc = _Encoder()
    tree = {"params": enc.encode(params, "parameter"), "fitted": enc.encode(fitted, "attribute")}
    state = json.dumps(tree, sort_keys=True)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "method": name,
        "state": state,
        "sha256": _digest(state, enc.tensors),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(enc.tensors, tmp, metadata=metadata)
    return path


def read_method_file(path: str | os.PathLike) -> tuple[str, dict, dict]:
    """``(method name, params, fitted attributes)`` read back from a file of
    :func:`write_method_file`; a missing, truncated, modified or newer-format file raises."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No saved method at {path}.")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:
        raise ValueError(
            f"Cannot read method file {path}: it is truncated or not a safetensors file ({exc})."
        ) from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an adue method file (no format={FORMAT!r} metadata).")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise ValueError(f"Method file {path} has an unreadable format version.") from None
    if version > FORMAT_VERSION:
        raise ValueError(
            f"Method file {path} has format version {version}, written by a newer adue; this "
            f"adue reads versions up to {FORMAT_VERSION}. Upgrade adue to load it."
        )
    state = meta.get("state", "")
    if meta.get("sha256") != _digest(state, tensors):
        raise ValueError(
            f"Method file {path} was modified or is corrupted: its content does not match the "
            "sha256 recorded when it was saved."
        )
    try:
        tree = json.loads(state)
        params = _decode(tree["params"], tensors)
        fitted = _decode(tree["fitted"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError, ImportError) as exc:
        raise ValueError(f"Method file {path} holds an unreadable state: {exc}") from exc
    return meta.get("method", ""), params, fitted
