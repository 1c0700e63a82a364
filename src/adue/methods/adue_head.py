"""AdUE: a copy of the classification head fine-tuned to predict the model's own errors.

Zabolotnyi et al. 2025, section 3. The head ``z -> logits`` is initialised from the trained
classification head and trained on ``(z, e)`` pairs, ``e = 1`` where the original model is
wrong, with

    U   = 1 - SmoothMax(softmax(head(z))),   SmoothMax(p) = (1/lam) log sum_i exp(lam p_i)
    L   = BCE(U, e) + alpha * mean((U - U_SR)^2) + beta * sum ||theta - theta_init||^2

(``U_SR = 1 - max softmax`` of the original logits; ``l2sp="mean"`` divides the L2-SP sum by
the number of head parameters, and ``loss="auto"`` searches over the loss variants, beyond the
paper). Differences from the paper's code, all
documented in :mod:`adue.methods._smoothmax` and :mod:`adue.methods._adue_train`:

- the BCE is computed on ``U`` in log space instead of on ``clamp(U, eps, 1 - eps)``, so a
  confidently wrong training row keeps its gradient (``1 - SmoothMax`` no longer rounds to 0);
- the head runs in eval mode while training (no dropout), so training is deterministic and the
  batched hyper-parameter search equals the one-config-at-a-time loop to float32 rounding.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import warnings

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from adue._validation import check_in, check_number, param_error
from adue.architectures import classifier_head
from adue.device import resolve_device
from adue.exceptions import NoErrorsWarning
from adue.features import Features
from adue.heads import ClassifierHead
from adue.methods import register
from adue.methods._adue_train import (
    L2SP_MODES,
    HeadArch,
    TrainConfig,
    build_head,
    stack_uncertainty,
    train_batched,
    train_sequential,
)
from adue.methods._smoothmax import adue_score_parts, softmax_response
from adue.methods.base import UncertaintyMethod
from adue.metrics import roc_auc

__all__ = ["AdUE", "PAPER_GRID", "LOSSES", "INITS"]

logger = logging.getLogger(__name__)

#: The paper's search grid (appendix C), 3 x 3 x 4 x 4 = 144 configs, lam = 100.
PAPER_GRID: dict[str, tuple] = {
    "lr": (1e-3, 1e-4, 1e-5),
    "epochs": (5, 10, 20),
    "alpha": (0.0, 0.1, 0.3, 1.0),
    "beta": (0.01, 0.1, 0.5, 1.0),
}
#: Loss ablations (paper Table 2): which of the alpha (reg) / beta (L2-SP) terms are on.
#: ``"auto"`` (not in the paper) keeps both and lets the search pick the loss: it adds
#: ``beta = 0`` to the grid and tries L2-SP as a sum and as a mean over parameters.
LOSSES = {
    "full": (True, True),
    "bce": (False, False),
    "bce_l2sp": (False, True),
    "bce_reg": (True, False),
    "auto": (True, True),
}
INITS = ("classifier", "random_classifier", "random_linear")
#: Validation ROC-AUCs closer than this to the best count as ties; the first config in grid
#: order among them wins (so float32 rounding cannot flip the choice).
SELECTION_TOL = 1e-6
_GRID_KEYS = ("lr", "epochs", "alpha", "beta", "l2sp")
_SCORE_ROWS = 8192


def _tensor(a: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` without a copy, copying only read-only arrays (torch warns on them)."""
    return torch.from_numpy(np.require(a, requirements="W"))


def _score_problem(scores: np.ndarray) -> str | None:
    """Why scores cannot rank rows ("non-finite", "constant"), or None when they can."""
    if not np.all(np.isfinite(scores)):
        return "non-finite"
    if scores.size and scores.max() == scores.min():
        return "constant"
    return None


def _roc_auc(errors: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC (:func:`adue.metrics.roc_auc`); NaN for non-finite or constant scores, so
    such a config is never selected."""
    if _score_problem(scores) is not None:
        return math.nan
    return roc_auc(scores, errors)


def _warn_bad_configs(problems: dict[int, str], configs: list[TrainConfig], where: str) -> None:
    """One warning naming the configs whose scores were non-finite or constant on ``where``."""
    if not problems:
        return
    shown = "; ".join(
        f"{configs[i].as_dict()} ({why})" for i, why in sorted(problems.items())[:5]
    )
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    msg = (
        f"AdUE: {len(problems)} config(s) gave non-finite or constant scores on {where}: "
        f"{shown}{more}. They are never selected (a learning rate this large diverges; "
        "lower 'lr')."
    )
    logger.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=4)


def _degenerate(errors: np.ndarray) -> str | None:
    """Why ROC-AUC is undefined on these error labels, or None when it is defined."""
    n_err = int(errors.sum())
    if n_err == 0:
        return "has no misclassified rows"
    if n_err == errors.size:
        return "has only misclassified rows"
    return None


def _module_state(module: nn.Module | None) -> dict | None:
    """A head as arrays + config (for :meth:`AdUE.save`): ``nn.Linear`` stays one, any other
    head is stored as the :class:`ClassifierHead` it copies to."""
    if module is None:
        return None
    if isinstance(module, nn.Linear):
        kind = "linear"
        config = {"in_features": module.in_features, "out_features": module.out_features,
                  "bias": module.bias is not None}
    else:
        module = classifier_head(module)
        kind, config = "classifier_head", module.config()
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    return {"kind": kind, "config": config, "state": state}


def _module_from_state(saved: dict | None) -> nn.Module | None:
    """Inverse of :func:`_module_state` (eval mode, CPU; torch's global RNG untouched)."""
    if saved is None:
        return None
    with torch.random.fork_rng(devices=[]):
        cls = nn.Linear if saved["kind"] == "linear" else ClassifierHead
        module = cls(**saved["config"])
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in saved["state"].items()})
    return module.float().eval()


class _Selector:
    """``on_done`` callback: scores finished configs on an evaluation split, keeps the weights
    of the configs that can still be selected."""

    def __init__(
        self,
        z: torch.Tensor,
        errors: np.ndarray,
        arch: HeadArch,
        lam: float,
        *,
        keep_weights: bool,
        keep_all: bool = False,
    ) -> None:
        self.z, self.errors, self.arch, self.lam = z, errors, arch, lam
        self.keep_weights, self.keep_all = keep_weights, keep_all
        self.auc: dict[int, float] = {}
        self.problems: dict[int, str] = {}
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.best = -math.inf

    def __call__(self, indices: list[int], params: dict[str, torch.Tensor]) -> None:
        u = stack_uncertainty(params, self.arch, self.z, lam=self.lam).cpu().numpy()
        for j, i in enumerate(indices):
            why = _score_problem(u[j])
            if why is not None:
                self.problems[i] = why
            auc = _roc_auc(self.errors, u[j])
            self.auc[i] = auc
            if not math.isnan(auc):
                self.best = max(self.best, auc)
            if self.keep_weights and (self.keep_all or auc >= self.best - SELECTION_TOL):
                self.weights[i] = {k: v[j].detach().cpu().clone() for k, v in params.items()}
        if self.keep_weights and not self.keep_all:
            for i in [i for i in self.weights if not self.auc[i] >= self.best - SELECTION_TOL]:
                del self.weights[i]


def _select(aucs: list[float]) -> int:
    """First index (grid order) whose AUC is within SELECTION_TOL of the best; -1 if all NaN."""
    finite = [a for a in aucs if not math.isnan(a)]
    if not finite:
        return -1
    best = max(finite)
    return next(i for i, a in enumerate(aucs) if not math.isnan(a) and a >= best - SELECTION_TOL)


@register("adue")
class AdUE(UncertaintyMethod):
    """The AdUE uncertainty head, with its ablations and a batched hyper-parameter search.

    Parameters
    ----------
    head : torch.nn.Module or None
        The trained classification head taking ``z``: an ``nn.Linear``, an
        :class:`adue.heads.ClassifierHead` or a Hugging Face two-layer head (``dense``,
        activation, ``out_proj``). Deep-copied by ``fit``; never modified. Required unless
        ``init="random_linear"``.
    lam : float
        SmoothMax sharpness ``lam > 0`` (paper: 100).
    lr, epochs, alpha, beta : float, int, float, float
        Adam peak learning rate (one-cycle schedule), epochs, weight of the softmax-response
        regulariser, weight of L2-SP. Used as given when ``search=None`` and as the documented
        fallback config when a search cannot run.
    l2sp : {"sum", "mean"}
        L2-SP as ``sum_j (theta_j - theta_init,j)^2`` over the head's parameters (paper) or as
        their mean (divided by the parameter count, so its pull does not grow with C x d).
    batch_size : int
        Rows per Adam step (paper: 128).
    loss : {"full", "bce", "bce_l2sp", "bce_reg", "auto"}
        Loss ablation (paper Table 2): terms switched off have their weight forced to 0.
        ``"auto"`` (beyond the paper): the search also tries ``beta = 0`` and, for every
        ``beta > 0``, both ``l2sp`` modes, so it chooses among the loss variants on validation
        (paper grid: 3 x 3 x 4 x (1 + 4 x 2) = 324 configs).
    init : {"classifier", "random_classifier", "random_linear"}
        Start from the trained head, from a seeded fresh head of the same architecture, or from
        one seeded ``Linear(d, 1)`` with ``U = sigmoid(w.z + b)`` (no SmoothMax). L2-SP anchors
        on the starting point.
    search : None, "paper" or dict
        ``None``: train the single config ``(lr, epochs, alpha, beta, l2sp)``. ``"paper"``: the
        paper's 144-config grid (:data:`PAPER_GRID`). A dict with keys among ``lr, epochs,
        alpha, beta, l2sp`` (lists) is a user grid; missing keys take the scalar parameter. The config with the
        best validation ROC-AUC wins (ties within 1e-6: first in grid order). All configs are
        trained together in one batched run.
    search_cv : int or None
        With a search, choose the config by stratified ``search_cv``-fold cross-validation
        inside the training features (mean ROC-AUC over folds; ``val`` is not used), then refit
        it on all of them.
    seed : int
        Seeds the batch order and the random inits.
    device : str or torch.device
        Where training runs: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``, resolved at fit time by :func:`adue.device.resolve_device`.

    Attributes
    ----------
    head_ : ClassifierHead or nn.Linear
        The trained head (``nn.Linear(d, 1)`` for ``init="random_linear"``), on CPU, eval mode.
    best_params_ : dict
        ``lr, epochs, alpha, beta, l2sp`` of the trained head (after the loss ablation's
        zeroing; ``l2sp`` is ``"sum"`` whenever ``beta = 0``).
    search_results_ : list of dict
        One dict per config tried, with its params and ``roc_auc`` (validation, or the mean
        over folds with ``fold_roc_auc``); for ``search=None`` the single config with its
        validation ROC-AUC (NaN without a usable ``val``).
    search_fallback_ : str or None
        Why the search could not run and the default config was trained instead (a warning is
        issued too); None when it ran normally.
    n_features_in_, n_classes_ : int
        Width ``d`` of ``z`` and number of classes ``C``.
    """

    uses_validation = True

    def __init__(
        self,
        *,
        head: nn.Module | None = None,
        lam: float = 100.0,
        lr: float = 1e-3,
        epochs: int = 10,
        alpha: float = 0.1,
        beta: float = 0.1,
        l2sp: str = "sum",
        batch_size: int = 128,
        loss: str = "full",
        init: str = "classifier",
        search: str | dict | None = None,
        search_cv: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.head = head
        self.lam = lam
        self.lr = lr
        self.epochs = epochs
        self.alpha = alpha
        self.beta = beta
        self.l2sp = l2sp
        self.batch_size = batch_size
        self.loss = loss
        self.init = init
        self.search = search
        self.search_cv = search_cv
        self.seed = seed
        self.device = device
        # "batched" (default) or "sequential": the engine used to train the configs.
        self._engine = "batched"
        # Tests: keep every config's final weights in ``_all_weights`` after a search.
        self._keep_all = False

    # ------------------------------------------------------------ validation
    def _validate_params(self) -> torch.device:
        owner = "AdUE"
        check_number("lam", owner, self.lam, low=0.0, low_inclusive=False)
        check_number("lr", owner, self.lr, low=0.0, low_inclusive=False)
        check_number("epochs", owner, self.epochs, low=0, integer=True)
        check_number("alpha", owner, self.alpha, low=0.0)
        check_number("beta", owner, self.beta, low=0.0)
        check_in("l2sp", owner, self.l2sp, L2SP_MODES)
        check_number("batch_size", owner, self.batch_size, low=1, integer=True)
        check_in("loss", owner, self.loss, tuple(LOSSES))
        check_in("init", owner, self.init, INITS)
        check_number("seed", owner, self.seed, low=0, integer=True)
        if self.search_cv is not None:
            check_number("search_cv", owner, self.search_cv, low=2, integer=True)
            if self.search is None:
                raise param_error(
                    "search_cv",
                    owner,
                    "None when 'search' is None (cross-validation selects "
                    "among the configs of a search)",
                    self.search_cv,
                )
        if self.head is not None and not isinstance(self.head, nn.Module):
            raise param_error("head", owner, "a torch.nn.Module or None", type(self.head).__name__)
        if self.head is None and self.init != "random_linear":
            raise param_error(
                "head",
                owner,
                f"a torch.nn.Module (the trained classification head) when init={self.init!r}",
                None,
            )
        return resolve_device(self.device, owner=owner)

    def _grid(self) -> list[TrainConfig] | None:
        """The search's configs in grid order (ablation zeroing applied, duplicates dropped)."""
        if self.search is None:
            return None
        grid = self._grid_values()
        if self.loss == "auto":
            grid["beta"] = [0.0] + [b for b in grid["beta"] if b != 0]
            grid["l2sp"] = list(dict.fromkeys([*grid["l2sp"], *L2SP_MODES]))
        out: list[TrainConfig] = []
        seen = set()
        for lr, ep, a, b, mode in itertools.product(*(grid[k] for k in _GRID_KEYS)):
            cfg = self._ablate(TrainConfig(float(lr), int(ep), float(a), float(b), mode))
            if cfg not in seen:
                seen.add(cfg)
                out.append(cfg)
        return out

    def _grid_values(self) -> dict[str, list]:
        """Value lists per grid key from ``search`` (missing keys: the scalar parameter)."""
        owner = "AdUE"
        if isinstance(self.search, str):
            check_in("search", owner, self.search, ("paper",))
            return {k: list(PAPER_GRID.get(k, [getattr(self, k)])) for k in _GRID_KEYS}
        if not isinstance(self.search, dict):
            raise param_error("search", owner, "None, 'paper' or a dict of lists", self.search)
        unknown = [k for k in self.search if k not in _GRID_KEYS]
        if unknown:
            raise param_error("search", owner, f"a dict with keys among {list(_GRID_KEYS)}", unknown)
        grid = {}
        for k in _GRID_KEYS:
            vals = self.search.get(k, getattr(self, k))
            vals = list(vals) if isinstance(vals, (list, tuple, np.ndarray)) else [vals]
            if not vals:
                raise param_error("search", owner, f"a non-empty list for {k!r}", vals)
            vals = [v.item() if isinstance(v, np.generic) else v for v in vals]
            for v in vals:
                if k == "l2sp":
                    check_in(f"search['{k}']", owner, v, L2SP_MODES)
                elif k == "epochs":
                    check_number(f"search['{k}']", owner, v, low=0, integer=True)
                elif k == "lr":
                    check_number(f"search['{k}']", owner, v, low=0.0, low_inclusive=False)
                else:
                    check_number(f"search['{k}']", owner, v, low=0.0)
            grid[k] = vals
        return grid

    def _ablate(self, cfg: TrainConfig) -> TrainConfig:
        use_alpha, use_beta = LOSSES[self.loss]
        beta = cfg.beta if use_beta else 0.0
        return TrainConfig(
            cfg.lr, cfg.epochs, cfg.alpha if use_alpha else 0.0, beta, cfg.l2sp if beta else "sum"
        )

    def _initial_head(self, train: Features) -> tuple[ClassifierHead, HeadArch]:
        # Building modules draws from torch's global RNG: fork it so fit leaves it untouched.
        with torch.random.fork_rng(devices=[]):
            return self._initial_head_rng(train)

    def _initial_head_rng(self, train: Features) -> tuple[ClassifierHead, HeadArch]:
        d, c = train.dim, train.num_classes
        src = classifier_head(self.head) if self.head is not None else None
        if src is not None:
            if src.in_features != d:
                raise ValueError(
                    f"The head of AdUE takes inputs of width {src.in_features} but the features "
                    f"have width {d}. Pass the head that produced these features' logits."
                )
            if src.num_classes != c:
                raise ValueError(
                    f"The head of AdUE has {src.num_classes} outputs but the features' logits "
                    f"have {c} classes."
                )
        if self.init == "classifier":
            init = src
        else:
            torch.manual_seed(self.seed)
            init = (
                ClassifierHead(**src.config())
                if self.init == "random_classifier"
                else ClassifierHead(d, 1)
            )
        init = init.float().eval()
        output = "sigmoid" if self.init == "random_linear" else "smoothmax"
        return init, HeadArch.of(init, output)

    # ------------------------------------------------------------------- fit
    def _check_fit_inputs(self, train: Features, val: Features | None) -> torch.device:
        device = self._validate_params()
        train = self._check_features(train, "train")
        if val is not None:
            val = self._check_features(val, "val")
            if val.dim != train.dim or val.num_classes != train.num_classes:
                raise ValueError(
                    f"The 'val' features (width {val.dim}, {val.num_classes} classes) must match "
                    f"the 'train' features (width {train.dim}, {train.num_classes} classes)."
                )
        if self._engine not in ("batched", "sequential"):
            raise ValueError(f"Unknown AdUE engine {self._engine!r}.")
        return device

    def _warn_setup(self, train: Features, arch: HeadArch) -> None:
        lo = 1.0 / train.num_classes + math.log(train.num_classes) / self.lam
        if arch.output == "smoothmax" and lo >= 1.0:
            warnings.warn(
                f"lam={self.lam} is so small that U = 1 - SmoothMax <= 1 - {lo:.3g} < 0 for every "
                f"input with {train.num_classes} classes; the paper uses lam=100.",
                UserWarning,
                stacklevel=3,
            )
        why = _degenerate(train.errors())
        if why is not None:
            warnings.warn(
                f"The training split {why}: the AdUE head is trained on a constant target.",
                NoErrorsWarning,
                stacklevel=3,
            )

    def fit(self, train: Features, val: Features | None = None) -> AdUE:
        """Train the head on ``train`` (and select its config on ``val`` or by CV); returns self."""
        device = self._check_fit_inputs(train, val)
        init, arch = self._initial_head(train)
        self._warn_setup(train, arch)
        z = _tensor(train.z).to(device)
        e_t = torch.from_numpy(train.errors().astype(np.float32)).to(device)
        usr = softmax_response(_tensor(train.logits).double()).float().to(device)
        default = self._ablate(self._default_config())
        grid = self._grid()
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)  # refitting: drop the previous fit's attributes first
        self._fallback_msg: str | None = None
        self._results: list[dict] = []
        t0 = time.perf_counter()
        if grid is None:
            params = self._train_one(init, arch, z, e_t, usr, default)
            self._results = [dict(default.as_dict(), roc_auc=self._val_auc(params, arch, val))]
            chosen = default
        elif self.search_cv is not None:
            chosen, params = self._search_cv(init, arch, train, z, e_t, usr, grid, default, device)
        else:
            chosen, params = self._search_val(init, arch, val, z, e_t, usr, grid, default, device)
        logger.info(
            "AdUE fitted in %.2fs (%d config(s) tried, chosen %s)",
            time.perf_counter() - t0,
            max(len(grid or ()), 1),
            chosen.as_dict(),
        )
        self._check_trained(params, arch, z, chosen)
        self.best_params_ = chosen.as_dict()
        self.search_results_ = self._results
        self.search_fallback_ = self._fallback_msg
        self.head_ = self._final_head(arch, params, init)
        self._arch = arch
        self.n_features_in_ = train.dim
        self.n_classes_ = train.num_classes
        return self

    def _default_config(self) -> TrainConfig:
        return TrainConfig(
            float(self.lr), int(self.epochs), float(self.alpha), float(self.beta), self.l2sp
        )

    def _check_trained(self, params, arch: HeadArch, z: torch.Tensor, chosen: TrainConfig) -> None:
        """Warn when the trained head's scores on the training rows cannot rank them."""
        stacked = {k: v.unsqueeze(0).to(z.device) for k, v in params.items()}
        u = stack_uncertainty(stacked, arch, z, lam=float(self.lam))[0].cpu().numpy()
        why = _score_problem(u)
        if why is not None:
            _warn_bad_configs({0: why}, [chosen], "the training rows (the trained head)")

    @staticmethod
    def _final_head(arch: HeadArch, params, init: ClassifierHead) -> nn.Module:
        head = build_head(arch, params, init)
        if arch.output != "sigmoid":
            return head
        lin = nn.utils.skip_init(nn.Linear, arch.in_features, 1)
        with torch.no_grad():
            lin.weight.copy_(head.out_proj.weight)
            lin.bias.copy_(head.out_proj.bias)
        return lin.eval()

    # ------------------------------------------------------------- training
    def _run(self, init, arch, z, e_t, usr, configs, on_done) -> None:
        engine = train_batched if self._engine == "batched" else train_sequential
        engine(
            init,
            arch,
            z,
            e_t,
            usr,
            configs,
            lam=float(self.lam),
            batch_size=int(self.batch_size),
            seed=int(self.seed),
            on_done=on_done,
        )

    def _train_one(self, init, arch, z, e_t, usr, cfg: TrainConfig) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}

        def keep(indices, params):
            out.update({k: v[0].detach().cpu().clone() for k, v in params.items()})

        self._run(init, arch, z, e_t, usr, [cfg], keep)
        return out

    def _val_auc(self, params, arch, val: Features | None) -> float:
        if val is None or _degenerate(val.errors()) is not None:
            return math.nan
        stacked = {k: v.unsqueeze(0) for k, v in params.items()}
        u = stack_uncertainty(stacked, arch, _tensor(val.z), lam=float(self.lam))
        return _roc_auc(val.errors(), u[0].numpy())

    def _fallback(self, reason: str, category: type[Warning], init, arch, z, e_t, usr, default):
        msg = (
            f"AdUE search skipped: {reason}. Trained the default config "
            f"{default.as_dict()} instead."
        )
        logger.warning(msg)
        warnings.warn(msg, category, stacklevel=3)
        self._fallback_msg = msg
        self._results = []
        return default, self._train_one(init, arch, z, e_t, usr, default)

    def _search_val(self, init, arch, val, z, e_t, usr, grid, default, device):
        if val is None:
            return self._fallback(
                f"search={self.search!r} needs a validation split and val is None "
                "(or pass search_cv=k)",
                UserWarning,
                init,
                arch,
                z,
                e_t,
                usr,
                default,
            )
        e_val = val.errors()
        why = _degenerate(e_val)
        if why is not None:
            return self._fallback(
                f"the validation split {why}, so its ROC-AUC is undefined",
                NoErrorsWarning,
                init,
                arch,
                z,
                e_t,
                usr,
                default,
            )
        sel = _Selector(
            _tensor(val.z).to(device),
            e_val,
            arch,
            float(self.lam),
            keep_weights=True,
            keep_all=self._keep_all,
        )
        self._run(init, arch, z, e_t, usr, grid, sel)
        aucs = [sel.auc[i] for i in range(len(grid))]
        self._results = [dict(c.as_dict(), roc_auc=a) for c, a in zip(grid, aucs, strict=True)]
        if self._keep_all:
            self._all_weights = sel.weights
        _warn_bad_configs(sel.problems, grid, "the validation split")
        best = _select(aucs)
        if best < 0:
            raise RuntimeError(
                "Every AdUE config produced non-finite or constant validation scores; lower 'lr'."
            )
        return grid[best], sel.weights[best]

    def _search_cv(self, init, arch, train, z, e_t, usr, grid, default, device):
        k = int(self.search_cv)
        e = train.errors()
        n_err = int(e.sum())
        if min(n_err, e.size - n_err) < k:
            return self._fallback(
                f"search_cv={k} needs at least {k} misclassified and {k} correct training rows "
                f"(got {n_err} and {e.size - n_err})",
                NoErrorsWarning,
                init,
                arch,
                z,
                e_t,
                usr,
                default,
            )
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(self.seed))
        per_fold: list[list[float]] = []
        problems: dict[int, str] = {}
        for tr, te in folds.split(np.zeros(e.size), e):
            tr_t = torch.from_numpy(tr).to(device)
            sel = _Selector(
                z[torch.from_numpy(te).to(device)], e[te], arch, float(self.lam), keep_weights=False
            )
            self._run(init, arch, z[tr_t], e_t[tr_t], usr[tr_t], grid, sel)
            per_fold.append([sel.auc[i] for i in range(len(grid))])
            problems.update(sel.problems)
        _warn_bad_configs(problems, grid, "a cross-validation fold")
        folds_arr = np.asarray(per_fold)  # (k, n_configs)
        means = [float(np.mean(folds_arr[:, i])) for i in range(len(grid))]
        self._results = [
            dict(c.as_dict(), roc_auc=m, fold_roc_auc=folds_arr[:, i].tolist())
            for i, (c, m) in enumerate(zip(grid, means, strict=True))
        ]
        best = _select(means)
        if best < 0:
            raise RuntimeError(
                "Every AdUE config produced non-finite or constant cross-validation scores; "
                "lower 'lr'."
            )
        return grid[best], self._train_one(init, arch, z, e_t, usr, grid[best])

    # ------------------------------------------------------------ save / load
    def _export_state(self) -> tuple[dict, dict]:
        """Heads (the ``head`` parameter and ``head_``) as arrays + config; ``device`` as str."""
        params, fitted = super()._export_state()
        params["head"] = _module_state(self.head)
        params["device"] = str(self.device)
        fitted["head_"] = _module_state(self.head_)
        fitted["_arch"] = self._arch
        return params, fitted

    @classmethod
    def _import_state(cls, params: dict, fitted: dict) -> AdUE:
        params = dict(params, head=_module_from_state(params["head"]))
        fitted = dict(fitted, head_=_module_from_state(fitted["head_"]))
        return super()._import_state(params, fitted)

    # ----------------------------------------------------------- uncertainty
    def uncertainty(self, features: Features) -> np.ndarray:
        """``U = 1 - SmoothMax(softmax(head_(z)))`` (or ``sigmoid`` for random_linear), (n,)
        float64; higher = more likely misclassified."""
        self._check_is_fitted()
        features = self._check_features(features)
        self._check_width(features, self.n_features_in_, self.n_classes_)
        head = self.head_
        out = []
        with torch.no_grad():
            for s in range(0, features.n, _SCORE_ROWS):
                o = head(_tensor(features.z[s : s + _SCORE_ROWS])).double()
                if self._arch.output == "sigmoid":
                    out.append(torch.sigmoid(o[:, 0]))
                else:
                    out.append(adue_score_parts(o, float(self.lam))[0])
        return torch.cat(out).numpy().astype(np.float64)
