"""Display names and column order of the report (the paper's order: CoLA, News, SST-2, SST-5, ToxiGen)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DATASET_ORDER",
    "BACKBONE_ORDER",
    "METRICS",
    "dataset_label",
    "backbone_label",
    "order_datasets",
    "order_backbones",
]

DATASET_ORDER = ("cola", "20newsgroups", "sst2", "sst5", "toxigen")
_DATASET_LABELS = {
    "cola": "CoLA",
    "20newsgroups": "News",
    "sst2": "SST-2",
    "sst5": "SST-5",
    "toxigen": "ToxiGen",
}
BACKBONE_ORDER = ("minilm", "mpnet", "smollm2", "qwen")
_BACKBONE_LABELS = {"minilm": "MiniLM", "mpnet": "MPNet", "smollm2": "SmolLM2", "qwen": "Qwen"}

#: Report metrics: key -> (title, higher is better).
METRICS: dict[str, tuple[str, bool]] = {
    "roc_auc": ("ROC-AUC", True),
    "pr_auc": ("PR-AUC (errors as positives)", True),
    "aurc": ("AURC (area under the risk-coverage curve)", False),
    "ece": ("ECE", False),
    "brier": ("Brier score", False),
    "ece_score": ("ECE of the score (1 - U as confidence)", False),
    "brier_score": ("Brier score of the score (1 - U as confidence)", False),
    "accuracy": ("Accuracy", True),
}


def dataset_label(name: str) -> str:
    return _DATASET_LABELS.get(name, name)


def backbone_label(name: str) -> str:
    return _BACKBONE_LABELS.get(name, name)


def _order(names: Iterable[str], known: tuple[str, ...]) -> list[str]:
    names = set(names)
    return [n for n in known if n in names] + sorted(names - set(known))


def order_datasets(names: Iterable[str]) -> list[str]:
    """Known datasets in the paper's column order, then others alphabetically."""
    return _order(names, DATASET_ORDER)


def order_backbones(names: Iterable[str]) -> list[str]:
    """Known backbones in preset order, then others alphabetically."""
    return _order(names, BACKBONE_ORDER)
