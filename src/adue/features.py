"""The feature container: one split of ``z``, logits and labels.

``z`` is the representation that feeds the classification head (shape ``(n, d)``),
``logits`` the head's output on it (``(n, C)``) and ``labels`` the gold classes (``(n,)``),
or ``None`` for rows without labels (new inputs to score).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Features", "load_features", "save_features", "features_path", "SPLITS"]

SPLITS = ("train", "validation", "test")


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"The '{name}' field of Features must be array-like. Got {type(x)!r} instead.") from exc


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Validated labels as int64: 1-D integers in ``[0, n_classes)``."""
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ValueError("The 'labels' field of Features must hold integers. Got non-integer values instead.")
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"The 'labels' field of Features must be integer. Got dtype {labels.dtype} instead.")
    labels = labels.astype(np.int64, copy=False)
    out = (labels < 0) | (labels >= n_classes)
    if out.any():
        bad_vals = sorted(set(labels[out].tolist()))[:5]
        raise ValueError(
            f"The 'labels' field of Features must lie in [0, {n_classes}) (the logits have "
            f"{n_classes} columns). Got {bad_vals} instead."
        )
    return labels


@dataclass(frozen=True, eq=False)
class Features:
    """One split of extracted features.

    Parameters
    ----------
    z : array-like of shape (n, d)
        Input of the classification head; stored as float32.
    logits : array-like of shape (n, C)
        Output of the classification head; stored as float32.
    labels : array-like of shape (n,) or None
        Gold labels in ``[0, C)``; stored as int64. ``None``: unlabelled rows, which every
        method can score; :meth:`errors` and :meth:`accuracy` then raise ``ValueError``.

    Torch tensors and numpy arrays are accepted. Construction validates shapes, equal row
    counts, finite values and the label range, and raises ``ValueError`` naming the problem.
    """

    z: np.ndarray
    logits: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        z = _to_numpy(self.z, "z")
        logits = _to_numpy(self.logits, "logits")
        labels = None if self.labels is None else _to_numpy(self.labels, "labels")
        if z.ndim != 2:
            raise ValueError(f"The 'z' field of Features must be 2-D (n, d). Got shape {z.shape} instead.")
        if logits.ndim != 2:
            raise ValueError(
                f"The 'logits' field of Features must be 2-D (n, C). Got shape {logits.shape} instead."
            )
        if labels is not None and labels.ndim != 1:
            raise ValueError(
                f"The 'labels' field of Features must be 1-D (n,). Got shape {labels.shape} instead."
            )
        n = z.shape[0]
        if logits.shape[0] != n or (labels is not None and labels.shape[0] != n):
            got = f"z has {n}, logits {logits.shape[0]}"
            if labels is not None:
                got += f", labels {labels.shape[0]}"
            raise ValueError(f"Features fields must have the same number of rows: {got}.")
        if n == 0:
            raise ValueError("Features must hold at least one row. Got an empty split instead.")
        if logits.shape[1] < 2:
            raise ValueError(
                f"The 'logits' field of Features must have at least 2 classes. Got {logits.shape[1]} instead."
            )
        if not np.issubdtype(z.dtype, np.number) or not np.issubdtype(logits.dtype, np.number):
            raise ValueError("The 'z' and 'logits' fields of Features must be numeric.")
        z = z.astype(np.float32, copy=False)
        logits = logits.astype(np.float32, copy=False)
        for name, arr in (("z", z), ("logits", logits)):
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.flatnonzero(bad.any(axis=1))
                raise ValueError(
                    f"The '{name}' field of Features must be finite. Got NaN or inf in "
                    f"{rows.size} row(s), first at row {int(rows[0])}, instead."
                )
        object.__setattr__(self, "z", np.ascontiguousarray(z))
        object.__setattr__(self, "logits", np.ascontiguousarray(logits))
        if labels is not None:
            labels = _check_labels(labels, logits.shape[1])
            object.__setattr__(self, "labels", np.ascontiguousarray(labels))

    # ------------------------------------------------------------------ views
    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.z.shape[0])

    @property
    def dim(self) -> int:
        """Feature width ``d``."""
        return int(self.z.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes ``C`` (columns of the logits)."""
        return int(self.logits.shape[1])

    def __len__(self) -> int:
        return self.n

    @property
    def has_labels(self) -> bool:
        """Whether the rows carry gold labels."""
        return self.labels is not None

    def _require_labels(self, what: str) -> np.ndarray:
        if self.labels is None:
            raise ValueError(
                f"Features.{what}() needs gold labels, and these features have none "
                "(labels=None: unlabelled rows can be scored but not evaluated)."
            )
        return self.labels

    def predictions(self) -> np.ndarray:
        """Predicted classes ``argmax logits``, shape (n,), int64."""
        return self.logits.argmax(axis=1).astype(np.int64)

    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, computed in float64, shape (n, C)."""
        return _softmax(self.logits.astype(np.float64))

    def errors(self) -> np.ndarray:
        """Misclassification indicator ``pred != label``, shape (n,), int64 (1 = wrong)."""
        return (self.predictions() != self._require_labels("errors")).astype(np.int64)

    def accuracy(self) -> float:
        """Fraction of correct predictions (raises ``ValueError`` without labels)."""
        self._require_labels("accuracy")
        return float(1.0 - self.errors().mean())

    def subset(self, index: np.ndarray) -> Features:
        """Rows ``index`` (integer indices or boolean mask) as a new container."""
        labels = None if self.labels is None else self.labels[index]
        return Features(z=self.z[index], logits=self.logits[index], labels=labels)

    def __repr__(self) -> str:
        tail = f"accuracy={self.accuracy():.4f}" if self.has_labels else "no labels"
        return f"Features(n={self.n}, d={self.dim}, C={self.num_classes}, {tail})"


# ---------------------------------------------------------------------- I/O
def features_path(run_dir: str | os.PathLike, split: str) -> Path:
    """Path of a split's feature file inside a run folder: ``RUN/features/<split>.safetensors``."""
    return Path(run_dir) / "features" / f"{split}.safetensors"


def save_features(features: Features, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``features`` to a safetensors file atomically (temp file + rename); unlabelled
    features are written without a ``labels`` tensor."""
    from safetensors.numpy import save_file

    from adue._atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tensors = {"z": features.z, "logits": features.logits}
        if features.labels is not None:
            tensors["labels"] = features.labels
        save_file(tensors, tmp, metadata=metadata)
    return path


def load_features(run_dir: str | os.PathLike, split: str) -> Features:
    """Read a split written by ``adue extract`` (or :func:`save_features`).

    ``run_dir`` may be a run folder (then ``RUN/features/<split>.safetensors`` is read) or
    the path of a ``.safetensors`` file itself. A file without a ``labels`` tensor gives
    unlabelled features.
    """
    from safetensors.numpy import load_file

    p = Path(run_dir)
    path = p if p.suffix == ".safetensors" else features_path(p, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"No features for split {split!r} at {path}. Run 'adue extract {run_dir}' first."
        )
    try:
        data = load_file(str(path))
    except Exception as exc:
        raise ValueError(f"Cannot read features file {path}: {exc}") from exc
    missing = {"z", "logits"} - set(data)
    if missing:
        raise ValueError(f"Features file {path} lacks tensors {sorted(missing)}.")
    return Features(z=data["z"], logits=data["logits"], labels=data.get("labels"))
