"""Shared Gaussian maths for the distance-based methods (MD, RMD, RDE), all in float64.

- :func:`l2_normalize`: rows scaled to unit Euclidean norm.
- :func:`class_means`, :func:`within_class_covariance`, :func:`gaussian`: the statistics of
  Lee et al. (2018) and Ren et al. (2021), covariances divided by ``n`` (maximum likelihood, as
  the paper's code and ``sklearn.covariance.EmpiricalCovariance``).
- :class:`RegularizedPrecision`: the eigen-decomposition of a covariance with a relative
  eigenvalue floor, giving a precision matrix and a whitening map that stay finite when the
  covariance is singular or ill-conditioned (``d`` close to or above ``n``, duplicated or
  constant features).
- :func:`squared_mahalanobis`: squared distances from many rows to many means at once, by
  whitening once and using matrix products (no Python loop over rows).

Regularisation
--------------
With ``Sigma = V diag(lam) V^T`` (``eigh``), every eigenvalue below ``eps * lam_max`` is raised
to ``eps * lam_max``::

    lam_reg   = max(lam, eps * lam_max)
    precision = V diag(1 / lam_reg) V^T
    whitener  W = V diag(1 / sqrt(lam_reg))          so  (x-m)^T precision (x-m) = ||(x-m) W||^2

This caps the condition number of the covariance at ``1 / eps`` and leaves a well-conditioned
covariance (``lam_min >= eps * lam_max``) untouched, so the result equals the plain inverse there.
Directions with (near-)zero training variance keep a large but finite precision
``1 / (eps * lam_max)``: a test row that moves along them is far, as it should be, while the
numerical noise of a training-span row there (about ``1e-16 * ||x||``) stays negligible. The
default ``eps = 1e-6`` sits well above float64 round-off in an ``eigh`` of a covariance built
from float32 features (about ``1e-12`` relative) and well below the spread of a usable
representation's spectrum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from adue._validation import param_error

__all__ = [
    "DEFAULT_EIGEN_FLOOR",
    "RegularizedPrecision",
    "between_class_covariance",
    "class_means",
    "gaussian",
    "check_bool",
    "l2_normalize",
    "prepare_z",
    "row_blocks",
    "squared_mahalanobis",
    "symmetric_eigh",
    "within_class_covariance",
]

logger = logging.getLogger(__name__)

#: Default relative eigenvalue floor ``eps`` (see the module docstring).
DEFAULT_EIGEN_FLOOR = 1e-6

#: Rows processed per block in :func:`squared_mahalanobis` (bounds temporary memory).
_BLOCK_ROWS = 8192


def l2_normalize(z: np.ndarray) -> np.ndarray:
    """Rows of ``z`` (n, d) divided by their Euclidean norm, float64; zero rows stay zero."""
    z = np.asarray(z, dtype=np.float64)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norms > 0.0, norms, 1.0)


def prepare_z(z: np.ndarray, normalize: bool) -> np.ndarray:
    """``z`` as float64 (n, d), L2-normalised per row when ``normalize``."""
    return l2_normalize(z) if normalize else np.asarray(z, dtype=np.float64)


def check_bool(name: str, owner: str, value: object) -> None:
    """Raise the standard parameter error unless ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise param_error(name, owner, "a bool", value)


def row_blocks(z: np.ndarray, normalize: bool = False, block_rows: int | None = None):
    """Yield ``(start, block)``: rows of ``z`` as fresh float64 copies, L2-normalised if asked.

    Working block by block keeps a float64 copy of a large float32 split out of memory; the
    blocks are copies, so callers may modify them in place.
    """
    step = _BLOCK_ROWS if block_rows is None else block_rows
    for start in range(0, z.shape[0], step):
        block = np.array(z[start : start + step], dtype=np.float64, copy=True)
        yield start, (l2_normalize(block) if normalize else block)


def class_means(
    z: np.ndarray, labels: np.ndarray, n_classes: int, *, normalize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means ``mu_c = mean{z_i : y_i = c}`` and counts, in float64.

    Parameters
    ----------
    z : (n, d) array; labels : (n,) int array in ``[0, n_classes)``; normalize : L2-normalise
    rows first.

    Returns
    -------
    means : (n_classes, d) float64 (a class without rows gets a row of NaN)
    counts : (n_classes,) int64
    """
    from scipy import sparse

    counts = np.bincount(labels, minlength=n_classes).astype(np.int64)
    sums = np.zeros((n_classes, z.shape[1]))
    for start, block in row_blocks(z, normalize):
        m = block.shape[0]
        lab = labels[start : start + m]
        onehot = sparse.csr_matrix((np.ones(m), (lab, np.arange(m))), shape=(n_classes, m))
        sums += onehot @ block  # (n_classes, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    return means, counts


def within_class_covariance(
    z: np.ndarray, labels: np.ndarray, means: np.ndarray, *, normalize: bool = False
) -> np.ndarray:
    """Shared within-class covariance ``(1/n) sum_i (z_i - mu_{y_i})(z_i - mu_{y_i})^T``, (d, d)."""
    cov = np.zeros((z.shape[1], z.shape[1]))
    for start, block in row_blocks(z, normalize):
        block -= means[labels[start : start + block.shape[0]]]
        cov += block.T @ block
    cov /= z.shape[0]
    return cov


def between_class_covariance(means: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overall mean ``mu_0 = sum_c (n_c/n) mu_c`` and ``sum_c (n_c/n)(mu_c - mu_0)(mu_c - mu_0)^T``.

    With the within-class covariance ``S_w`` (divided by n), the covariance of all rows
    (divided by n) is exactly ``S_w + S_b`` (law of total covariance), so the background
    Gaussian of RMD needs no second pass over the rows.
    """
    weights = counts.astype(np.float64) / counts.sum()
    mean0 = weights @ means
    dev = means - mean0
    return mean0, (dev * weights[:, None]).T @ dev


def gaussian(z: np.ndarray, *, normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One Gaussian on all rows: mean (d,) and covariance divided by ``n`` (d, d), float64."""
    mean = np.zeros(z.shape[1])
    for _, block in row_blocks(z, normalize):
        mean += block.sum(axis=0)
    mean /= z.shape[0]
    cov = np.zeros((z.shape[1], z.shape[1]))
    for _, block in row_blocks(z, normalize):
        block -= mean
        cov += block.T @ block
    cov /= z.shape[0]
    return mean, cov


def symmetric_eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix, float64.

    LAPACK ``syevd`` with the BLAS thread pool limited to one thread: eigen-decompositions of
    a few hundred to a few thousand rows are latency-bound, and threaded OpenBLAS made a
    768 x 768 ``eigh`` 10-50x slower on busy cores (0.2 s single-threaded vs 2.5-10 s measured).
    """
    from scipy.linalg import eigh
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return eigh(a, driver="evd", check_finite=False)


@dataclass(frozen=True)
class RegularizedPrecision:
    """Eigen-decomposition of a covariance with the relative eigenvalue floor.

    Attributes
    ----------
    eigenvectors : (d, d) float64, columns ``V``
    eigenvalues : (d,) float64, the floored ``lam_reg`` (ascending)
    n_floored : int, how many eigenvalues were raised to the floor
    eps : float, the relative floor used
    """

    eigenvectors: np.ndarray
    eigenvalues: np.ndarray
    n_floored: int
    eps: float

    @classmethod
    def from_covariance(cls, cov: np.ndarray, eps: float = DEFAULT_EIGEN_FLOOR) -> RegularizedPrecision:
        """Decompose a symmetric (d, d) covariance and floor its eigenvalues at ``eps * lam_max``."""
        cov = np.asarray(cov, dtype=np.float64)
        cov = (cov + cov.T) / 2.0
        lam, vec = symmetric_eigh(cov)
        lam_max = float(lam[-1]) if lam.size else 0.0
        if not np.isfinite(lam_max) or lam_max <= 0.0:
            raise ValueError(
                "The covariance has no positive variance (all training features are constant); "
                "a Mahalanobis distance is undefined."
            )
        floor = eps * lam_max
        n_floored = int(np.count_nonzero(lam < floor))
        return cls(eigenvectors=vec, eigenvalues=np.maximum(lam, floor), n_floored=n_floored, eps=eps)

    @property
    def precision(self) -> np.ndarray:
        """``V diag(1/lam_reg) V^T``, (d, d)."""
        v = self.eigenvectors
        return (v / self.eigenvalues) @ v.T

    @property
    def whitener(self) -> np.ndarray:
        """``W = V diag(1/sqrt(lam_reg))``, (d, d): ``||(x - m) W||^2`` is the squared distance."""
        return self.eigenvectors / np.sqrt(self.eigenvalues)


def squared_mahalanobis(
    z: np.ndarray, means: np.ndarray, whitener: np.ndarray, *, normalize: bool = False
) -> np.ndarray:
    """Squared Mahalanobis distances of every row to every mean, (n, k) float64.

    ``D[i, c] = (z_i - m_c)^T P (z_i - m_c) = ||z_i W - m_c W||^2`` with ``P = W W^T``.
    Rows are whitened once (after subtracting the mean of the means); for ``k`` means the
    distances come from ``||a||^2 - 2 a.b + ||b||^2`` with one (n, d) x (d, k) product, in
    blocks of rows.
    Tiny negative values from round-off are clipped to 0.

    Parameters
    ----------
    z : (n, d) array (L2-normalised per row first when ``normalize``); means : (k, d) or (d,)
    array; whitener : (d, d) array.
    """
    means = np.atleast_2d(np.asarray(means, dtype=np.float64))
    # Subtracting a common reference changes no distance but removes shared offsets (e.g. a
    # constant feature along a floored direction) before the expansion below.
    ref = means.mean(axis=0)
    mw = (means - ref) @ whitener  # (k, d)
    mw_sq = np.einsum("kd,kd->k", mw, mw)
    n = z.shape[0]
    out = np.empty((n, means.shape[0]), dtype=np.float64)
    for start, block in row_blocks(z, normalize):
        block = (block - ref) @ whitener
        d2 = np.einsum("nd,nd->n", block, block)[:, None] - 2.0 * (block @ mw.T) + mw_sq[None, :]
        out[start : start + block.shape[0]] = d2
    np.maximum(out, 0.0, out=out)
    return out
