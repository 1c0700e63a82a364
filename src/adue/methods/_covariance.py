"""Shared maths for the distance-based methods (MD, RMD, RDE), all in float64.

- :func:`l2_normalize`: rows scaled to unit Euclidean norm.
- :class:`RowMap`: the feature map applied to every row before fitting and scoring: the
  identity, or the classification head's spectral-normalised dense layer and activation
  (paper, Appendix B.1), optionally followed by L2 normalisation.
- :func:`spectral_norm`: the largest singular value of a weight matrix by power iteration
  (as ``torch.nn.utils.spectral_norm``).
- :func:`class_means`, :func:`within_class_covariance`, :func:`gaussian`: the statistics of
  Lee et al. (2018) and Ren et al. (2021), covariances divided by ``n`` (maximum likelihood, as
  the paper's code and ``sklearn.covariance.EmpiricalCovariance``).
- :class:`GaussianWhiteners`: whitening maps of the within-class covariance ``S_w`` and the
  pooled (background) covariance ``S_0 = S_w + S_b``, regularised by one absolute floor on one
  subspace, so that MD_c - MD_0 keeps cancelling where both are ill-defined.
- :func:`squared_mahalanobis`: squared distances from many rows to many means at once, by
  whitening once and using matrix products (no Python loop over rows).

Regularisation
--------------
``S_0 = V_0 diag(lam_0) V_0^T`` (``eigh``). One absolute floor ``tau = eps * max(lam_0)``
(``eps`` = ``eigen_floor``, default ``1e-10``) splits the space into the numerical range
``R`` of ``S_0`` (``lam_0 > tau``, ``r`` columns ``U``) and the shared null space ``N`` (the
rest, ``V_N``). Because ``0 <= S_w <= S_0`` (Loewner order), ``N`` is (numerically) a null
space of ``S_w`` too, and every class mean differs from ``mu_0`` only inside ``R``. Then::

    U^T S_w U = Q diag(lam_w) Q^T                      (r x r)
    W   = [ U Q diag(max(lam_w, tau))^-1/2 ,  V_N / sqrt(tau) ]      within-class whitener
    W_0 = [ U diag(lam_0[R])^-1/2          ,  V_N / sqrt(tau) ]      background whitener

so ``(x - m)^T P (x - m) = ||(x - m) W||^2`` with ``P = W W^T``. Where both covariances are
well conditioned (``lam >= tau``) nothing is changed and MD / RMD equal the exact formula; a
condition number up to ``1/eps`` is kept exactly (real embeddings' spectra fall over about
seven decades, so the old per-covariance floor ``1e-6 * lam_max`` distorted them). The
null-space columns are identical in ``W`` and ``W_0``, so RMD drops them exactly (the
pseudo-inverse on the shared range ``R``) instead of subtracting two huge terms; MD keeps
them, so a test row that moves along a direction without training variance is far. Within
``R``, within-class eigenvalues below ``tau`` (at most ``C - 1`` directions when ``d`` is
close to or above ``n``) are raised to the same ``tau``. ``eps = 1e-10`` sits three decades
above float64 round-off in the covariance and its ``eigh`` (about ``d * 1e-16``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from adue._validation import check_in, param_error

__all__ = [
    "DEFAULT_EIGEN_FLOOR",
    "FEATURE_MAPS",
    "FeatureMapMixin",
    "GaussianWhiteners",
    "RowMap",
    "between_class_covariance",
    "check_bool",
    "class_means",
    "gaussian",
    "l2_normalize",
    "prepare_z",
    "row_blocks",
    "sn_row_map",
    "sn_unavailable_reason",
    "spectral_norm",
    "squared_mahalanobis",
    "symmetric_eigh",
    "within_class_covariance",
]

logger = logging.getLogger(__name__)

#: Default eigenvalue floor ``eps``, relative to the pooled covariance's largest eigenvalue.
DEFAULT_EIGEN_FLOOR = 1e-10

#: Feature maps of the distance methods: ``"z"`` (the head's input itself) or ``"sn"``
#: (``act(dense_sn(z))``, the spectral-normalised dense layer of a two-layer head).
FEATURE_MAPS = ("z", "sn")

#: Rows processed per block in :func:`row_blocks` (bounds temporary memory).
_BLOCK_ROWS = 8192

#: Power iteration: at most this many steps, stopped at eigen-residual <= tol * lambda.
_POWER_MAX_ITER = 20_000
_POWER_TOL = 1e-10


def l2_normalize(z: np.ndarray) -> np.ndarray:
    """Rows of ``z`` (n, d) divided by their Euclidean norm, float64; zero rows stay zero."""
    z = np.asarray(z, dtype=np.float64)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norms > 0.0, norms, 1.0)


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))  # exact GELU, as torch.nn.GELU()


_ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": _gelu,
}


@dataclass(frozen=True)
class RowMap:
    """``z (m, d) -> act(z W^T + b)`` (when ``weight`` is set), then L2 normalisation (when asked).

    Attributes
    ----------
    normalize : bool, L2-normalise the (mapped) rows
    weight : (h, d) float64 or None, the dense weight already divided by its spectral norm
    bias : (h,) float64 or None
    activation : one of ``"identity", "tanh", "relu", "gelu"``
    """

    normalize: bool = False
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    activation: str = "identity"

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Mapped rows, a fresh float64 array (m, h)."""
        x = np.array(block, dtype=np.float64, copy=True)
        if self.weight is not None:
            x = x @ self.weight.T
            if self.bias is not None:
                x += self.bias
            x = _ACTIVATIONS[self.activation](x)
        return l2_normalize(x) if self.normalize else x


def as_row_map(row_map: bool | RowMap) -> RowMap:
    """``row_map`` itself, or ``RowMap(normalize=row_map)`` for a bool."""
    return row_map if isinstance(row_map, RowMap) else RowMap(normalize=bool(row_map))


def prepare_z(z: np.ndarray, row_map: bool | RowMap) -> np.ndarray:
    """``z`` mapped by ``row_map`` (a bool = L2-normalise or not), float64 (n, h)."""
    return as_row_map(row_map)(z)


def check_bool(name: str, owner: str, value: object) -> None:
    """Raise the standard parameter error unless ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise param_error(name, owner, "a bool", value)


def row_blocks(z: np.ndarray, row_map: bool | RowMap = False, block_rows: int | None = None):
    """Yield ``(start, block)``: rows of ``z`` mapped by ``row_map`` as fresh float64 arrays.

    Working block by block keeps a float64 copy of a large float32 split out of memory; the
    blocks are copies, so callers may modify them in place. A bool ``row_map`` means
    L2-normalise (True) or not.
    """
    step = _BLOCK_ROWS if block_rows is None else block_rows
    rm = as_row_map(row_map)
    for start in range(0, z.shape[0], step):
        yield start, rm(z[start : start + step])


# ------------------------------------------------------------------ spectral-normalised map
def spectral_norm(weight: np.ndarray, *, seed: int = 0) -> float:
    """Largest singular value ``sigma(W)`` of an (h, d) weight by power iteration, float64.

    The iteration of ``torch.nn.utils.spectral_norm`` (``v = W^T u / ||W^T u||``,
    ``u = W v / ||W v||``, ``sigma = u^T W v``) is power iteration on ``G = W^T W``; it is run
    here on ``G`` (or ``W W^T`` when h < d) from a seeded standard-normal start until the
    eigen-residual ``||G v - lam v|| <= 1e-10 lam`` (so ``lam = sigma^2`` is accurate to about
    ``1e-20 lam^2 / gap``), at most 20,000 steps, rather than one step per training forward
    pass. With a near-degenerate top singular value the estimate still lies between
    ``sigma_2`` and ``sigma_1``.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2 or not np.all(np.isfinite(w)):
        raise ValueError(f"The weight must be a finite 2-D array. Got shape {w.shape} instead.")
    gram = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T
    v = np.random.default_rng(seed).standard_normal(gram.shape[0])
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(_POWER_MAX_ITER):
        gv = gram @ v
        lam = float(v @ gv)
        norm_gv = float(np.linalg.norm(gv))
        if norm_gv == 0.0 or np.linalg.norm(gv - lam * v) <= _POWER_TOL * lam:
            break
        v = gv / norm_gv
    if not lam > 0.0:
        raise ValueError("The dense layer's weight is zero; its spectral norm is 0 and W / sigma is undefined.")
    return float(np.sqrt(lam))


def sn_unavailable_reason(head: Any) -> str | None:
    """Why the spectral-normalised feature map cannot be built from ``head``; None when it can.

    It needs a two-layer head ``out_proj(act(dense(z)))`` (RoBERTa / ELECTRA / MPNet style):
    an :class:`adue.heads.ClassifierHead` with ``hidden_features``, or a module with ``dense``
    and ``out_proj`` Linear layers.
    """
    from adue.architectures import classifier_head

    if head is None:
        return "no classification head was given (feature_map='sn' maps z through the fine-tuned head's dense layer)"
    try:
        head = classifier_head(head)
    except (TypeError, ValueError) as exc:
        return str(exc)
    if head.is_linear:
        return (
            "the classification head is a single Linear layer (logits = W z + b): there is no "
            "dense -> activation layer to spectral-normalise (the paper's SN map needs a "
            "two-layer head, dense -> activation -> out_proj)"
        )
    return None


def sn_row_map(head: Any, normalize: bool = False) -> tuple[RowMap, float]:
    """``(RowMap, sigma)``: ``z -> act((W / sigma) z + b)`` from a two-layer head's ``dense``.

    ``W``, ``b``: the trained dense weight (h, d) and bias (h,); ``sigma = spectral_norm(W)``.
    Raises ``ValueError`` with :func:`sn_unavailable_reason`'s text for any other head.
    """
    from adue.architectures import classifier_head

    reason = sn_unavailable_reason(head)
    if reason is not None:
        raise ValueError(f"The spectral-normalised feature map does not apply: {reason}.")
    head = classifier_head(head)
    w = head.dense.weight.detach().cpu().double().numpy()
    b = head.dense.bias.detach().cpu().double().numpy()
    sigma = spectral_norm(w)
    return RowMap(bool(normalize), w / sigma, b, head.activation_name), sigma


class FeatureMapMixin:
    """The ``feature_map`` / ``head`` / ``l2_normalize`` parameters shared by MD, RMD and RDE.

    Fitted state (plain arrays, no head object needed to score): ``sn_weight_`` (h, d) the
    dense weight divided by its spectral norm, ``sn_bias_`` (h,), ``sn_activation_`` (str) and
    ``spectral_norm_`` (float) for ``feature_map="sn"``; all None for ``"z"``.
    """

    feature_map: str
    head: Any
    l2_normalize: bool

    def _validate_feature_map(self) -> None:
        owner = type(self).__name__
        check_bool("l2_normalize", owner, self.l2_normalize)
        check_in("feature_map", owner, self.feature_map, FEATURE_MAPS)
        if self.feature_map == "sn":
            reason = sn_unavailable_reason(self.head)
            if reason is not None:
                raise ValueError(
                    f"The 'head' parameter of {owner} must be a two-layer classification head "
                    f"when feature_map='sn'. Got {type(self.head).__name__} instead: {reason}."
                )

    def _fit_feature_map(self, dim: int) -> RowMap:
        """Build the map for features of width ``dim`` and store it as fitted arrays."""
        self.sn_weight_ = self.sn_bias_ = self.sn_activation_ = self.spectral_norm_ = None
        if self.feature_map != "sn":
            return RowMap(normalize=bool(self.l2_normalize))
        row_map, sigma = sn_row_map(self.head, bool(self.l2_normalize))
        if row_map.weight.shape[1] != dim:
            raise ValueError(
                f"{type(self).__name__}: the head's dense layer takes features of width "
                f"{row_map.weight.shape[1]}; the training features have width {dim}."
            )
        self.sn_weight_, self.sn_bias_ = row_map.weight, row_map.bias
        self.sn_activation_, self.spectral_norm_ = row_map.activation, sigma
        return row_map

    def _row_map(self) -> RowMap:
        """The fitted map (from the stored arrays)."""
        weight = getattr(self, "sn_weight_", None)
        return RowMap(
            normalize=bool(self.l2_normalize),
            weight=weight,
            bias=getattr(self, "sn_bias_", None),
            activation=getattr(self, "sn_activation_", None) or "identity",
        )


# ------------------------------------------------------------------------- statistics
def class_means(
    z: np.ndarray, labels: np.ndarray, n_classes: int, row_map: bool | RowMap = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means ``mu_c = mean{phi(z_i) : y_i = c}`` and counts, in float64.

    Parameters
    ----------
    z : (n, d) array; labels : (n,) int array in ``[0, n_classes)``; row_map : the map
    ``phi`` applied to each row first (a bool: L2-normalise or not).

    Returns
    -------
    means : (n_classes, h) float64 (a class without rows gets a row of NaN)
    counts : (n_classes,) int64
    """
    from scipy import sparse

    counts = np.bincount(labels, minlength=n_classes).astype(np.int64)
    sums = None
    for start, block in row_blocks(z, row_map):
        m = block.shape[0]
        lab = labels[start : start + m]
        onehot = sparse.csr_matrix((np.ones(m), (lab, np.arange(m))), shape=(n_classes, m))
        part = onehot @ block  # (n_classes, h)
        sums = part if sums is None else sums + part
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    return means, counts


def within_class_covariance(
    z: np.ndarray, labels: np.ndarray, means: np.ndarray, row_map: bool | RowMap = False
) -> np.ndarray:
    """Shared within-class covariance ``(1/n) sum_i (phi(z_i) - mu_{y_i})(...)^T``, (h, h)."""
    cov = np.zeros((means.shape[1], means.shape[1]))
    for start, block in row_blocks(z, row_map):
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


def gaussian(z: np.ndarray, row_map: bool | RowMap = False) -> tuple[np.ndarray, np.ndarray]:
    """One Gaussian on all (mapped) rows: mean (h,) and covariance divided by ``n`` (h, h)."""
    total = None
    for _, block in row_blocks(z, row_map):
        part = block.sum(axis=0)
        total = part if total is None else total + part
    mean = total / z.shape[0]
    cov = np.zeros((mean.size, mean.size))
    for _, block in row_blocks(z, row_map):
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


def _symmetric(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a + a.T) / 2.0


@dataclass(frozen=True)
class GaussianWhiteners:
    """Within-class and background whiteners with one floor on one subspace (module docstring).

    Attributes
    ----------
    class_whitener : (d, d) float64 ``W``; class precision ``P = W W^T``
    background_whitener : (d, d) float64 ``W_0``; background precision ``P_0 = W_0 W_0^T``
    rank : int, ``r`` = numerical rank of the pooled covariance: the first ``r`` columns of
        both whiteners span its range, the last ``d - r`` (identical in both) its null space
    floor : float, the absolute floor ``tau = eps * max(lam_0)``
    n_floored : int, within-class eigenvalues raised to ``tau`` (the ``d - r`` null-space ones
        included)
    eps : float
    """

    class_whitener: np.ndarray
    background_whitener: np.ndarray
    rank: int
    floor: float
    n_floored: int
    eps: float

    @classmethod
    def from_covariances(
        cls, within: np.ndarray, total: np.ndarray, eps: float = DEFAULT_EIGEN_FLOOR
    ) -> GaussianWhiteners:
        """Decompose ``total`` (d, d), then ``within`` (d, d) on ``total``'s numerical range."""
        lam0, vec0 = symmetric_eigh(_symmetric(total))
        lam0_max = float(lam0[-1]) if lam0.size else 0.0
        if not np.isfinite(lam0_max) or lam0_max <= 0.0:
            raise ValueError(
                "The training features have no positive variance (all training rows are "
                "identical); a Mahalanobis distance is undefined."
            )
        floor = eps * lam0_max
        keep = lam0 > floor
        u, null = vec0[:, keep], vec0[:, ~keep] / np.sqrt(floor)
        lam_w, q = symmetric_eigh(_symmetric(u.T @ within @ u))
        if not float(lam_w[-1]) > 0.0:
            raise ValueError(
                "The within-class covariance is zero: every training row equals the mean of its "
                "class (e.g. one row per class, or identical rows within each class); a "
                "Mahalanobis distance is undefined."
            )
        n_low = int(np.count_nonzero(lam_w < floor))
        w = np.hstack([(u @ q) / np.sqrt(np.maximum(lam_w, floor)), null])
        w0 = np.hstack([u / np.sqrt(lam0[keep]), null])
        return cls(w, w0, int(keep.sum()), floor, n_low + int((~keep).sum()), float(eps))


def squared_mahalanobis(
    z: np.ndarray, means: np.ndarray, whitener: np.ndarray, row_map: bool | RowMap = False
) -> np.ndarray:
    """Squared Mahalanobis distances of every (mapped) row to every mean, (n, k) float64.

    ``D[i, c] = (x_i - m_c)^T P (x_i - m_c) = ||x_i W - m_c W||^2`` with ``x_i = phi(z_i)`` and
    ``P = W W^T``; ``W`` may have fewer columns than rows (a precision restricted to a
    subspace). Rows are whitened once (after subtracting the mean of the means); for ``k``
    means the distances come from ``||a||^2 - 2 a.b + ||b||^2`` with one (n, r) x (r, k)
    product, in blocks of rows. Tiny negative values from round-off are clipped to 0.

    Parameters
    ----------
    z : (n, d) array; means : (k, h) or (h,) array; whitener : (h, r) array; row_map : the
    map ``phi`` (a bool: L2-normalise or not).
    """
    means = np.atleast_2d(np.asarray(means, dtype=np.float64))
    # Subtracting a common reference changes no distance but removes shared offsets (e.g. a
    # constant feature along a floored direction) before the expansion below.
    ref = means.mean(axis=0)
    mw = (means - ref) @ whitener  # (k, r)
    mw_sq = np.einsum("kd,kd->k", mw, mw)
    out = np.empty((z.shape[0], means.shape[0]), dtype=np.float64)
    for start, block in row_blocks(z, row_map):
        block = (block - ref) @ whitener
        d2 = np.einsum("nd,nd->n", block, block)[:, None] - 2.0 * (block @ mw.T) + mw_sq[None, :]
        out[start : start + block.shape[0]] = d2
    np.maximum(out, 0.0, out=out)
    return out
