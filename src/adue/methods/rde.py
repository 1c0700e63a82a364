"""Robust density estimation (``rde``; Yoo et al., 2022).

``z`` is mapped by an RBF kernel PCA to ``k`` components (default 256), a class-agnostic
Minimum Covariance Determinant estimate (scikit-learn ``MinCovDet``, FastMCD) is fitted on the
training projections, and the score is the robust squared Mahalanobis distance::

    phi(z) = kernel-PCA projection of z, (k,)
    U(z)   = (phi(z) - m)^T S^{-1} (phi(z) - m)          (m, S: reweighted MCD location, covariance)

Higher = farther from the bulk of the training data = more likely wrong. ``z`` may first be
mapped by the head's spectral-normalised dense layer (``feature_map="sn"``) and/or
L2-normalised (:class:`adue.methods._covariance.RowMap`).

The fitted state is plain arrays (saveable without pickle): both kernel paths are stored as
``phi(x) = (k_c(x, L) - kernel_mean_) @ projection_`` with ``L = landmarks_``, and the MCD as
its location and precision.

Kernel map
----------
``kernel_approx="exact"`` is scikit-learn ``KernelPCA`` on the RBF kernel: it builds the n x n
training kernel (8 n^2 bytes: 0.2 GB at 5k rows, 23 GB at 54k) and a dense eigensolver
(O(n^3)), so it only fits small splits. ``"nystroem"`` approximates it in O(n m d + n m^2)
time and O(m^2 + block * m) memory: ``m`` landmark rows ``L`` drawn at random (seeded) give the
Nystroem feature map ``f(x) = k_c(x, L) U_r diag(s_r)^{-1/2}``, where ``k_c`` is the kernel
centred on the landmarks' mean feature and ``K_c(L, L) = U diag(s) U^T`` (eigenvalues below
``1e-10 * s_max`` dropped); ``f(x) . f(y)`` is the inner product of the projections of
``phi(x)``, ``phi(y)`` onto the span of the landmarks. A linear PCA of ``f`` over all training
rows (centred with their mean, as kernel PCA centres in feature space) gives the ``k``
components: this is kernel PCA of the Nystroem kernel, and with every training row as a
landmark it reproduces the exact projections (tested). Centring the landmark kernel first
removes its dominant constant mode, which at small ``gamma`` (every kernel value close to 1)
would otherwise bury the informative eigenvalues in round-off. Nystroem is preferred over
random Fourier features because it is data-dependent: for kernels whose spectrum decays fast
(an RBF kernel on a representation) its error falls much faster with the number of features
(Yang et al., NeurIPS 2012), and only the top-``k`` subspace matters here (the MCD distance is
invariant to any invertible linear map of the components). ``kernel_approx="auto"`` (default)
uses the exact path up to ``approx_threshold`` training rows (default 3000: a 72 MB kernel and
a few seconds of ``eigh``) and Nystroem above.

Gamma
-----
``gamma=None`` means ``1 / d`` (scikit-learn's ``KernelPCA`` default, which the reference RDE
code uses): ``k(x, y) = exp(-||x - y||^2 / d)``. A property of RBF kernel PCA (not of the
approximation): a row so far from the training data that ``gamma ||x - x_i||^2 >> 1`` for all
``i`` has a kernel row near 0 and maps near a single point, so RDE does not keep ranking rows
by distance beyond the kernel's reach; a smaller ``gamma`` widens the reach.

MCD
---
FastMCD in 256 dimensions is slow whatever the row count: hundreds of C-steps, each with a
256 x 256 eigendecomposition (measured with one BLAS thread on two busy cores: 12 s at 1000
rows, 23 s at 2000, and the final full-data C-steps grow with n). It is therefore fitted on at
most ``mcd_max_samples`` training rows (default 1000, drawn with ``random_state``; ``None`` =
all rows; it must exceed ``n_components``), while the kernel map uses every row. On the
benchmark's 54k-row synthetic split, 1000 and 2000 MCD rows gave test ROC-AUC 0.609 and 0.592,
a difference within the method's seed-to-seed variation. The fit runs with one BLAS thread
(faster for these small matrices, and much faster on busy cores). When ``MinCovDet`` fails
(raises, or returns a non-finite or zero covariance), it is retried with
``support_fraction=0.9`` and then ``1.0``, as the paper's code does; ``support_fraction_``
records the value that succeeded (``None`` = scikit-learn's default ``(n + k + 1) / 2n``) and
``mcd_attempts_`` every failure. scikit-learn's "Determinant has increased" ``RuntimeWarning``
is emitted routinely by individual FastMCD candidates (the previous, better estimate is kept),
so it is only treated as a failure when ``strict_mcd=True``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from adue._validation import check_in, check_number, param_error
from adue.features import Features
from adue.methods import register
from adue.methods._covariance import (
    FeatureMapMixin,
    RowMap,
    check_bool,
    prepare_z,
    row_blocks,
    symmetric_eigh,
)
from adue.methods.base import UncertaintyMethod

__all__ = ["RobustDensityEstimation", "rbf_kernel"]

logger = logging.getLogger(__name__)

_BLOCK_ROWS = 4096
_NYSTROEM_RCOND = 1e-10
_SUPPORT_FRACTIONS: tuple[float | None, ...] = (None, 0.9, 1.0)


def rbf_kernel(x: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma ||x_i - y_j||^2)``, (n, m) float64, for x (n, d) and y (m, d)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d2 = np.einsum("nd,nd->n", x, x)[:, None] + np.einsum("md,md->m", y, y)[None, :]
    d2 -= 2.0 * (x @ y.T)
    np.maximum(d2, 0.0, out=d2)
    d2 *= -gamma
    return np.exp(d2, out=d2)


def _center_rows(kernel: np.ndarray, landmark_mean: np.ndarray) -> np.ndarray:
    """Kernel rows ``k(x, L)`` (n, m) centred in feature space on the landmark mean, in place.

    ``k_c(x, l) = <phi(x) - phi_L, phi(l) - phi_L>`` with ``phi_L`` the mean landmark feature:
    ``k(x, l) - mean_j k(x, l_j) - mean_i k(l_i, l) + mean_ij k(l_i, l_j)``. Centring removes
    the kernel's dominant constant mode (large when ``gamma`` is small and every kernel value
    is close to 1), which would otherwise swamp the informative eigenvalues in round-off.
    """
    kernel -= kernel.mean(axis=1, keepdims=True)
    kernel -= landmark_mean[None, :] - landmark_mean.mean()
    return kernel


@dataclass(frozen=True)
class _NystroemMap:
    """``phi(x) = (k_c(x, L) - kernel_mean) @ projection``, (n, k)."""

    landmarks: np.ndarray  # (m, d)
    landmark_mean: np.ndarray  # (m,), mean_i k(l_i, l)
    kernel_mean: np.ndarray  # (m,), mean over training rows of k_c(x, L)
    projection: np.ndarray  # (m, k)
    gamma: float
    row_map: RowMap  # applied to raw z first (SN map, L2 normalisation)

    def transform(self, z: np.ndarray) -> np.ndarray:
        """Projections of the rows of raw ``z`` (n, d), (n, k) float64, block by block."""
        out = np.empty((z.shape[0], self.projection.shape[1]), dtype=np.float64)
        for start, block in row_blocks(z, self.row_map, _BLOCK_ROWS):
            kb = _center_rows(rbf_kernel(block, self.landmarks, self.gamma), self.landmark_mean)
            kb -= self.kernel_mean
            out[start : start + kb.shape[0]] = kb @ self.projection
        return out


@register("rde")
class RobustDensityEstimation(FeatureMapMixin, UncertaintyMethod):
    """RBF kernel PCA + Minimum Covariance Determinant distance (Yoo et al., 2022).

    Parameters
    ----------
    n_components : int, default 256
        Kernel PCA components ``k``; must be below the number of rows the MCD is fitted on.
    gamma : float or None, default None
        RBF coefficient; ``None`` = ``1 / h`` (``h``: width of the mapped rows).
    kernel_approx : {"auto", "exact", "nystroem"}, default "auto"
        Exact ``KernelPCA`` or the Nystroem approximation; ``"auto"`` = exact up to
        ``approx_threshold`` training rows.
    approx_threshold : int, default 3000
        Largest training split for which ``"auto"`` uses the exact kernel.
    n_landmarks : int, default 1024
        Nystroem landmark rows ``m`` (clipped to the number of training rows); ``>= k``.
    mcd_max_samples : int or None, default 1000
        Rows (seeded random subset of the training split) used to fit the MCD; ``None`` = all.
    strict_mcd : bool, default False
        Also treat ``RuntimeWarning`` from ``MinCovDet`` as a failure that triggers the retry.
    l2_normalize : bool, default False
        Divide each (mapped) row by its Euclidean norm first.
    feature_map : {"z", "sn"}, default "z"
        ``"sn"``: ``act(dense_sn(z))``, the two-layer head's dense layer with its trained
        weight divided by its spectral norm (paper, Appendix B.1); needs ``head``.
    head : classification head or None
        The fine-tuned two-layer head, for ``feature_map="sn"``.
    random_state : int or None, default 0
        Seed for the landmarks, the MCD subsample, ``KernelPCA`` and ``MinCovDet``.

    Attributes
    ----------
    kernel_approx_ : "exact" or "nystroem", the path used
    gamma_ : float
    n_components_ : int, components actually used
    landmarks_ : (m, h) float64, the (mapped) rows the kernel is evaluated against: every
        training row on the exact path, the landmarks on the Nystroem path
    landmark_kernel_mean_ : (m,) float64, ``mean_i k(l_i, l)`` (kernel centring)
    kernel_mean_ : (m,) float64, mean centred kernel row of the training split (0 on the exact path)
    projection_ : (m, k) float64: ``phi(x) = (k_c(x, L) - kernel_mean_) @ projection_``; on
        the exact path ``KernelPCA``'s eigenvectors divided by the square roots of their eigenvalues
    mcd_location_ : (k,), mcd_covariance_ : (k, k), mcd_precision_ : (k, k) float64, the
        reweighted MCD estimate (``MinCovDet``'s ``location_``, ``covariance_``, ``precision_``)
    mcd_support_ : (mcd_n_samples_,) bool, the MCD's support
    support_fraction_ : None, 0.9 or 1.0, the support fraction of the MCD
    mcd_attempts_ : list of dicts ``{"support_fraction", "error"}`` for failed attempts
    mcd_n_samples_ : int, rows the MCD was fitted on
    sn_weight_, sn_bias_, sn_activation_, spectral_norm_ : the SN map (None for ``"z"``)
    n_features_in_, n_classes_ : int
    """

    # The fit uses z (and the head for the SN map) only: unlabelled rows fit it too.
    fit_needs_labels = False

    def __init__(
        self,
        *,
        n_components: int = 256,
        gamma: float | None = None,
        kernel_approx: str = "auto",
        approx_threshold: int = 3000,
        n_landmarks: int = 1024,
        mcd_max_samples: int | None = 1000,
        strict_mcd: bool = False,
        l2_normalize: bool = False,
        random_state: int | None = 0,
        feature_map: str = "z",
        head: Any = None,
    ) -> None:
        self.n_components = n_components
        self.gamma = gamma
        self.kernel_approx = kernel_approx
        self.approx_threshold = approx_threshold
        self.n_landmarks = n_landmarks
        self.mcd_max_samples = mcd_max_samples
        self.strict_mcd = strict_mcd
        self.l2_normalize = l2_normalize
        self.random_state = random_state
        self.feature_map = feature_map
        self.head = head

    # ------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        owner = type(self).__name__
        check_number("n_components", owner, self.n_components, low=1, integer=True)
        if self.gamma is not None:
            check_number("gamma", owner, self.gamma, low=0.0, low_inclusive=False)
        check_in("kernel_approx", owner, self.kernel_approx, ("auto", "exact", "nystroem"))
        check_number("approx_threshold", owner, self.approx_threshold, low=1, integer=True)
        check_number("n_landmarks", owner, self.n_landmarks, low=1, integer=True)
        if self.n_landmarks < self.n_components:
            raise param_error(
                "n_landmarks", owner, f">= n_components ({self.n_components})", self.n_landmarks
            )
        if self.mcd_max_samples is not None:
            check_number("mcd_max_samples", owner, self.mcd_max_samples, low=2, integer=True)
        check_bool("strict_mcd", owner, self.strict_mcd)
        self._validate_feature_map()
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, Integral) or rs < 0):
            raise param_error("random_state", owner, "a non-negative int or None", rs)

    # ------------------------------------------------------------------ fit
    def fit(self, train: Features, val: Features | None = None) -> RobustDensityEstimation:
        """Fit the kernel map on ``train`` and the MCD on its projections; return ``self``."""
        from sklearn.utils import check_random_state

        self._validate_params()
        train = self._check_features(train, "train")
        if val is not None:
            self._check_features(val, "val")
        owner = type(self).__name__
        n = train.n
        rng = check_random_state(self.random_state)
        mcd_rows = None
        if self.mcd_max_samples is not None and n > self.mcd_max_samples:
            mcd_rows = np.sort(rng.permutation(n)[: self.mcd_max_samples])
        n_mcd = n if mcd_rows is None else mcd_rows.size
        if self.n_components >= n_mcd:
            raise param_error(
                "n_components", owner,
                f"below the number of rows the MCD is fitted on ({n_mcd} here: a covariance of "
                "k components needs more than k rows)",
                self.n_components,
            )
        row_map = self._fit_feature_map(train.dim)
        width = train.dim if row_map.weight is None else row_map.weight.shape[0]
        gamma = 1.0 / width if self.gamma is None else float(self.gamma)
        path = self.kernel_approx
        if path == "auto":
            path = "exact" if n <= self.approx_threshold else "nystroem"
        if np.all(train.z == train.z[0]):
            raise ValueError(
                f"{owner}: every training row of z is identical; a kernel PCA and a covariance "
                "are undefined."
            )

        kernel_map, proj_mcd = self._fit_kernel_map(train.z, path, gamma, rng, row_map, mcd_rows)
        k = proj_mcd.shape[1]
        if k < self.n_components:
            logger.warning(
                "%s: the kernel map has rank %d < n_components=%d; using %d components.",
                owner, k, self.n_components, k,
            )
        mcd, fraction, attempts = self._fit_mcd(proj_mcd)
        self.landmarks_ = kernel_map.landmarks
        self.landmark_kernel_mean_ = kernel_map.landmark_mean
        self.kernel_mean_ = kernel_map.kernel_mean
        self.projection_ = kernel_map.projection
        self.gamma_ = gamma
        self.kernel_approx_ = path
        self.n_components_ = int(k)
        self.mcd_n_samples_ = int(proj_mcd.shape[0])
        self.mcd_location_ = np.asarray(mcd.location_, dtype=np.float64)
        self.mcd_covariance_ = np.asarray(mcd.covariance_, dtype=np.float64)
        self.mcd_precision_ = np.asarray(mcd.precision_, dtype=np.float64)
        self.mcd_support_ = np.asarray(mcd.support_, dtype=bool)
        self.support_fraction_ = fraction
        self.mcd_attempts_ = attempts
        self.n_features_in_ = train.dim
        self.n_classes_ = train.num_classes
        return self

    def _fit_kernel_map(
        self, z: np.ndarray, path: str, gamma: float, rng: np.random.RandomState,
        row_map: RowMap, mcd_rows: np.ndarray | None,
    ) -> tuple[_NystroemMap, np.ndarray]:
        """The kernel map and the projections of the MCD rows, (n_mcd, k).

        Exact path: scikit-learn ``KernelPCA(kernel="rbf")``; its transform of new rows,
        ``K_c(x, X) @ eigenvectors_ / sqrt(eigenvalues_)`` with ``KernelCenterer``'s centring
        (``K_fit_rows_``: the training kernel's column means), is the same map as the Nystroem
        one with every training row as a landmark, so both are stored as the same arrays.
        """
        if path == "nystroem":
            kernel_map = self._fit_nystroem(z, gamma, rng, row_map)
            return kernel_map, kernel_map.transform(z if mcd_rows is None else z[mcd_rows])
        from sklearn.decomposition import KernelPCA

        x = prepare_z(z, row_map)
        kpca = KernelPCA(n_components=self.n_components, kernel="rbf", gamma=gamma,
                         random_state=self.random_state)
        proj = kpca.fit_transform(x)
        lam = kpca.eigenvalues_
        scale = np.zeros_like(lam)
        scale[lam != 0] = 1.0 / np.sqrt(lam[lam != 0])  # as KernelPCA.transform
        landmark_mean = np.asarray(kpca._centerer.K_fit_rows_, dtype=np.float64)
        kernel_map = _NystroemMap(x, landmark_mean, np.zeros(x.shape[0]),
                                  kpca.eigenvectors_ * scale, gamma, row_map)
        return kernel_map, proj if mcd_rows is None else proj[mcd_rows]

    def _fit_nystroem(
        self, z: np.ndarray, gamma: float, rng: np.random.RandomState, row_map: RowMap
    ) -> _NystroemMap:
        """Fit the Nystroem map + PCA on raw ``z`` (n, d) mapped by ``row_map``, block by block."""
        n = z.shape[0]
        m = min(self.n_landmarks, n)
        landmarks = prepare_z(z[np.sort(rng.permutation(n)[:m])], row_map)
        k_ll = rbf_kernel(landmarks, landmarks, gamma)
        landmark_mean = k_ll.mean(axis=0)
        s, u = symmetric_eigh(_center_rows(k_ll, landmark_mean))
        keep = s > _NYSTROEM_RCOND * max(float(s[-1]), 0.0)
        if not keep.any() or s[-1] <= 0.0:
            raise ValueError(
                f"{type(self).__name__}: the landmark rows are identical in the kernel's feature "
                "space (the centred landmark kernel is zero); the Nystroem map is undefined."
            )
        feature_map = u[:, keep] / np.sqrt(s[keep])  # (m, r): f(x) = k_c(x, L) @ feature_map
        # Mean and covariance of k_c(x, L) over all rows, shifted by the first block's mean
        # against cancellation.
        shift = None
        total = np.zeros(m)
        gram = np.zeros((m, m))
        for _, block in row_blocks(z, row_map, _BLOCK_ROWS):
            kb = _center_rows(rbf_kernel(block, landmarks, gamma), landmark_mean)
            if shift is None:
                shift = kb.mean(axis=0)
            kb -= shift
            total += kb.sum(axis=0)
            gram += kb.T @ kb
        mean_shifted = total / n
        cov_k = gram / n - np.outer(mean_shifted, mean_shifted)
        cov_f = feature_map.T @ cov_k @ feature_map  # (r, r): covariance of f over the rows
        lam, vec = symmetric_eigh((cov_f + cov_f.T) / 2.0)
        k = min(self.n_components, int(np.count_nonzero(lam > _NYSTROEM_RCOND * lam[-1])))
        top = vec[:, ::-1][:, :k]
        return _NystroemMap(
            landmarks, landmark_mean, mean_shifted + shift, feature_map @ top, gamma, row_map
        )

    def _fit_mcd(self, x: np.ndarray) -> tuple[Any, float | None, list[dict[str, Any]]]:
        from sklearn.covariance import MinCovDet
        from threadpoolctl import threadpool_limits

        owner = type(self).__name__
        attempts: list[dict[str, Any]] = []
        for fraction in _SUPPORT_FRACTIONS:
            error = None
            with warnings.catch_warnings(record=True) as caught, threadpool_limits(1, "blas"):
                warnings.simplefilter("always")
                try:
                    mcd = MinCovDet(support_fraction=fraction, random_state=self.random_state)
                    mcd.fit(x)
                except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
            if error is None and not (
                np.all(np.isfinite(mcd.location_)) and np.all(np.isfinite(mcd.precision_))
            ):
                error = "non-finite location or precision"
            if error is None and not np.trace(mcd.covariance_) > 0.0:
                error = "zero covariance"
            if error is None and self.strict_mcd and runtime:
                error = f"RuntimeWarning: {runtime[0]}"
            for w in caught:
                if not issubclass(w.category, RuntimeWarning):
                    logger.warning("%s: MinCovDet(support_fraction=%s): %s", owner, fraction, w.message)
            if error is None:
                if runtime:
                    logger.debug("%s: MinCovDet emitted %d RuntimeWarning(s).", owner, len(runtime))
                if attempts:
                    logger.warning(
                        "%s: MinCovDet failed with support_fraction=%s; used %s.",
                        owner, [a["support_fraction"] for a in attempts], fraction,
                    )
                return mcd, fraction, attempts
            attempts.append({"support_fraction": fraction, "error": error})
        details = "; ".join(f"support_fraction={a['support_fraction']}: {a['error']}" for a in attempts)
        raise ValueError(
            f"{owner}: the Minimum Covariance Determinant failed for every support fraction "
            f"({details}). The training projections are degenerate (e.g. most rows identical); "
            "lower n_components or check the features."
        )

    # -------------------------------------------------------------- scoring
    def transform(self, features: Features) -> np.ndarray:
        """Kernel-PCA projections ``phi(z)``, (n, n_components_) float64."""
        self._check_is_fitted()
        features = self._check_features(features)
        self._check_width(features, self.n_features_in_, self.n_classes_)
        kernel_map = _NystroemMap(
            self.landmarks_, self.landmark_kernel_mean_, self.kernel_mean_, self.projection_,
            self.gamma_, self._row_map(),
        )
        return kernel_map.transform(features.z)

    def uncertainty(self, features: Features) -> np.ndarray:
        """Robust squared Mahalanobis distance ``(phi - location)^T P (phi - location)``, (n,) float64."""
        proj = self.transform(features)  # checks fitted and width first
        proj -= self.mcd_location_
        return np.einsum("nk,nk->n", proj @ self.mcd_precision_, proj)
