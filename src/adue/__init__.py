"""adue: trustworthy uncertainty for fine-tuned transformer classifiers.

The package is split into small modules:

- :mod:`adue.features` -- the :class:`~adue.features.Features` container (z, logits, labels).
- :mod:`adue.methods` -- uncertainty methods behind one interface and a name registry.
- :mod:`adue.metrics` -- ROC-AUC, PR-AUC, AURC, ECE, Brier.
- :mod:`adue.classifier` -- :class:`~adue.classifier.UncertainClassifier`: your model + a fitted
  method + an abstention threshold, saved as a bundle (``adue fit`` / ``adue predict``).
- :mod:`adue.serve` -- the bundle over HTTP (``adue serve``).
"""

from typing import Any

from adue.exceptions import NotFittedError

__version__ = "0.1.0"

__all__ = ["NotFittedError", "UncertainClassifier", "__version__"]


def __getattr__(name: str) -> Any:
    """``from adue import UncertainClassifier`` without importing torch at ``import adue``."""
    if name == "UncertainClassifier":
        from adue.classifier import UncertainClassifier

        return UncertainClassifier
    raise AttributeError(f"module 'adue' has no attribute {name!r}")
