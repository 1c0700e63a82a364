"""adue: trustworthy uncertainty for fine-tuned transformer classifiers.

The package is split into small modules:

- :mod:`adue.features` -- the :class:`~adue.features.Features` container (z, logits, labels).
- :mod:`adue.methods` -- uncertainty methods behind one interface and a name registry.
- :mod:`adue.metrics` -- ROC-AUC, PR-AUC, AURC, ECE, Brier.
"""

from adue.exceptions import NotFittedError

__version__ = "0.1.0"

__all__ = ["NotFittedError", "__version__"]
