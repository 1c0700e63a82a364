"""The method variants a cell evaluates: name -> registered method + parameters + fit split.

A *variant* is one row of the paper's tables: a registered uncertainty method
(:func:`adue.methods.get_method`) with fixed parameters and the split its ``fit`` learns from.

- ``fit_on="train"``: ``fit(train, validation)``, the paper's protocol (the statistics / head
  are learned on the rows the LoRA was trained on; validation chooses hyper-parameters).
- ``fit_on="validation"``: ``fit(validation)`` only -- rows the LoRA never saw; searched
  hyper-parameters come from cross-validation inside that split (``search_cv``).

Every variant is evaluated on the test split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Variant",
    "VARIANTS",
    "list_variants",
    "get_variant",
    "resolve_variants",
    "variant_params",
    "labels",
    "MAIN_ROWS",
    "EXTRA_ROWS",
    "ABLATION_ROWS",
    "L2_ROWS",
    "PAIRED_ROWS",
]


@dataclass(frozen=True)
class Variant:
    """One evaluated configuration.

    Attributes
    ----------
    name : str
        Key in the cell JSON's ``methods`` and row id in the reports.
    method : str
        Registered method name (see :func:`adue.methods.list_methods`).
    params : dict
        Constructor parameters, besides the run-dependent ones the runner adds
        (``head`` for AdUE, ``seed`` / ``random_state`` from the cell's seed).
    fit_on : {"train", "validation"}
        Split passed as the first argument of ``fit``.
    label : str
        Row label in the reports (the paper's wording where it has one).
    searched : bool
        Whether ``fit`` searches hyper-parameters (the cell JSON then stores ``best_params``).
    score_is_probability : bool
        Whether the score is an error probability in [0, 1] (then ``1 - U`` is a confidence and
        the cell also records the ECE / Brier score of that confidence).
    """

    name: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    fit_on: str = "train"
    label: str = ""
    searched: bool = False
    score_is_probability: bool = False

    @property
    def needs_head(self) -> bool:
        """AdUE variants start from the fine-tuned classification head."""
        return self.method == "adue"


def _adue(name: str, label: str, fit_on: str = "train", **params: Any) -> Variant:
    base: dict[str, Any] = {"loss": "full", "init": "classifier", "search": "paper"}
    base.update(params)
    return Variant(
        name, "adue", base, fit_on=fit_on, label=label, searched=True, score_is_probability=True
    )


_ALL: tuple[Variant, ...] = (
    Variant("sr", "sr", label="SR", score_is_probability=True),
    Variant("entropy", "entropy", label="Entropy"),
    Variant("md", "md", {"l2_normalize": False}, label="MD"),
    Variant("md_l2", "md", {"l2_normalize": True}, label="MD L2 norm"),
    Variant("rmd", "rmd", {"l2_normalize": False}, label="RMD"),
    Variant("rmd_l2", "rmd", {"l2_normalize": True}, label="RMD L2 norm"),
    Variant("rde", "rde", {"l2_normalize": False}, label="RDE"),
    Variant("rde_l2", "rde", {"l2_normalize": True}, label="RDE L2 norm"),
    _adue("adue", "AdUE"),
    # Paper Tables 2-4: each ablation keeps the paper's search over the remaining terms.
    _adue("adue_bce", "Loss: BCE", loss="bce"),
    _adue("adue_bce_l2sp", "Loss: BCE+L2SP", loss="bce_l2sp"),
    _adue("adue_bce_reg", "Loss: BCE+reg", loss="bce_reg"),
    _adue("adue_rand_cls", "Full loss: rand cls", init="random_classifier"),
    _adue("adue_rand_linear", "Full loss: random linear", init="random_linear"),
    # Not in the paper: the head trained on rows the LoRA never saw (validation split),
    # hyper-parameters by 5-fold cross-validation inside it.
    _adue("adue_heldout", "AdUE held-out (val, 5-fold CV)", fit_on="validation", search_cv=5),
    # Not in the paper: one search over the loss variants (beta = 0 added, L2-SP as a sum or
    # a mean over parameters), chosen on validation; and the same fitted on validation rows.
    _adue("adue_auto", "AdUE auto loss", loss="auto"),
    _adue("adue_auto_heldout", "AdUE auto loss held-out (val, 5-fold CV)", fit_on="validation",
          search_cv=5, loss="auto"),
)

#: All variants by name, in report order.
VARIANTS: dict[str, Variant] = {v.name: v for v in _ALL}

#: Rows of the paper's Table 1 (corrected labels, see the paper notes): baselines on
#: L2-normalised features, SR, AdUE.
MAIN_ROWS: tuple[str, ...] = ("rmd_l2", "md_l2", "rde_l2", "sr", "adue")
#: Rows we add beyond the paper.
EXTRA_ROWS: tuple[str, ...] = ("sr", "entropy", "adue", "adue_heldout")
#: Rows of the paper's Tables 2-4.
ABLATION_ROWS: tuple[str, ...] = (
    "adue",
    "adue_bce",
    "adue_bce_l2sp",
    "adue_bce_reg",
    "adue_rand_cls",
    "adue_rand_linear",
)
#: Rows of the paper's Tables 7-8.
L2_ROWS: tuple[str, ...] = ("rmd", "rmd_l2", "md", "md_l2", "rde", "rde_l2", "sr", "adue")
#: Paired comparisons ``(A, B)`` behind the paper's claims: AdUE vs SR, L2 vs raw features,
#: the full loss / classifier initialisation vs each ablation, the held-out head.
PAIRED_ROWS: tuple[tuple[str, str], ...] = (
    ("adue", "sr"),
    ("md_l2", "md"),
    ("rmd_l2", "rmd"),
    ("rde_l2", "rde"),
    ("adue", "adue_bce"),
    ("adue", "adue_bce_l2sp"),
    ("adue", "adue_bce_reg"),
    ("adue", "adue_rand_cls"),
    ("adue", "adue_rand_linear"),
    ("adue_heldout", "adue"),
    ("adue_heldout", "sr"),
)


def list_variants() -> list[str]:
    """Variant names in report order."""
    return list(VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; unknown names raise ``ValueError`` listing valid ones."""
    if not isinstance(name, str) or name not in VARIANTS:
        raise ValueError(
            f"Unknown method variant {name!r}. Valid variants: {', '.join(VARIANTS)}."
        )
    return VARIANTS[name]


def resolve_variants(names: str | Iterable[str] | None) -> list[Variant]:
    """Variants for ``names`` (``None`` or ``"all"``: every variant; a string may be comma-separated).

    Order follows :data:`VARIANTS`; duplicates are dropped; unknown names raise ``ValueError``
    naming them and listing the valid ones.
    """
    if names is None:
        return list(VARIANTS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if names == ["all"]:
        return list(VARIANTS.values())
    if not names:
        raise ValueError("The 'methods' option must name at least one variant. Got an empty list instead.")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(
            f"Unknown method variant(s) {unknown}. Valid variants: {', '.join(VARIANTS)}."
        )
    wanted = set(names)
    return [v for v in VARIANTS.values() if v.name in wanted]


def variant_params(variant: Variant, *, seed: int, head: Any = None, search: Any = None,
                   device: str | None = None) -> dict[str, Any]:
    """Constructor parameters of ``variant`` for one cell.

    Adds the cell's ``seed`` (``seed`` for AdUE, ``random_state`` for RDE), the fine-tuned
    ``head`` for AdUE variants, an optional replacement for the AdUE ``search`` grid and the
    AdUE ``device``.
    """
    params = dict(variant.params)
    if variant.method == "adue":
        params["head"] = head
        params["seed"] = int(seed)
        if search is not None:
            params["search"] = search
        if device is not None:
            params["device"] = device
    elif variant.method == "rde":
        params["random_state"] = int(seed)
    return params


def labels(names: Sequence[str]) -> list[str]:
    """Report labels of the variants ``names``."""
    return [VARIANTS[n].label if n in VARIANTS else n for n in names]
