"""The paper's published numbers (``paper_numbers.json``), for comparison beside ours.

Stored: ROC-AUC x 100 (mean, std over 5 LoRA seeds) for every row of Tables 7-8 (MD, RMD, RDE
raw and L2-normalised, SR, AdUE) and Tables 3-4 (loss and initialisation ablations), test
accuracy x 100 from Table 6, and the Rank columns of Tables 2-4 and 7-8. Table 1 repeats
Tables 7-8 with shifted row labels (``shared/paper/NOTES.md``) and is not stored.

Each of our backbones stands in for one of the paper's: MiniLM -> ELECTRA-base,
MPNet -> RoBERTa-base, SmolLM2 -> LLaMA-2-7B, Qwen (small) -> Qwen2.5-7B.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from adue.report.stats import Stat

__all__ = ["paper_numbers", "stand_in", "paper_stat", "paper_model_label"]


@lru_cache(maxsize=1)
def paper_numbers() -> dict[str, Any]:
    """The parsed ``paper_numbers.json``."""
    text = resources.files("adue.report").joinpath("paper_numbers.json").read_text(encoding="utf-8")
    return json.loads(text)


def stand_in(backbone: str) -> str | None:
    """The paper model our ``backbone`` stands in for (``None`` if none)."""
    return paper_numbers()["stand_in"].get(backbone)


def paper_model_label(model: str) -> str:
    return paper_numbers()["models"].get(model, model)


def paper_stat(metric: str, model: str, dataset: str, variant: str | None = None) -> Stat | None:
    """The paper's value as a fraction (mean / 100, std / 100, n = 5), or ``None`` if not published.

    ``metric`` is ``"roc_auc"`` (with ``variant``) or ``"accuracy"``.
    """
    data = paper_numbers()
    if metric == "accuracy":
        pair = data["accuracy"].get(model, {}).get(dataset)
    elif metric == "roc_auc" and variant is not None:
        pair = data["roc_auc"].get(model, {}).get(variant, {}).get(dataset)
    else:
        return None
    if pair is None:
        return None
    return Stat(pair[0] / 100.0, pair[1] / 100.0, 5)
