"""Loading a user's trained classifier: an adue run folder, a ``save_pretrained`` folder, a
hub id or a PEFT adapter folder, as one :class:`LoadedClassifier` with a reference that pins
the exact weight files (sha256) it was loaded from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadedClassifier", "load_classifier", "verify_reference", "match_labels"]


@dataclass
class LoadedClassifier:
    """A sequence classifier ready for :func:`adue.inference.extract_features`.

    ``model``: the ``*ForSequenceClassification`` (adapter merged), eval mode, on ``device``;
    ``tokenizer``: its tokenizer (right padding, pad token set); ``max_length``: the token limit
    used for it; ``label_names``: class ``i``'s name at position ``i``; ``reference``: JSON-able
    dict ``{"kind": "run"|"checkpoint"|"adapter"|"hub", "path" or "id", "revision", "base"
    (the base model's reference for an adapter or run, else None), "files": {name: sha256}}``.
    """

    model: Any
    tokenizer: Any
    max_length: int
    label_names: list[str]
    reference: dict[str, Any] = field(default_factory=dict)


def load_classifier(
    model_ref: str | os.PathLike,
    *,
    base: str | os.PathLike | None = None,
    device: Any = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedClassifier:
    """Load a trained sequence classifier from ``model_ref``: an adue run folder, a
    ``save_pretrained`` folder, a PEFT adapter folder (its base from ``base`` or the adapter's
    ``base_model_name_or_path``) or a hub id."""
    raise NotImplementedError("IFACE: the implementation follows in the next commit")


def verify_reference(reference: dict[str, Any]) -> None:
    """Re-hash every local weight file of ``reference``; raise ``ValueError`` naming the first
    file whose sha256 changed (or that is missing)."""
    raise NotImplementedError("IFACE: the implementation follows in the next commit")


def match_labels(model_label_names: list[str], data_label_names: list[str]) -> list[int]:
    """``mapping[j]`` = the model's class id for the data's class ``j`` (by name when the model
    has real names, by integer for ``LABEL_0``-style names); a clear error otherwise."""
    raise NotImplementedError("IFACE: the implementation follows in the next commit")
