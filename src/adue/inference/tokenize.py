"""Tokenisation and length-sorted batching, shared by training, extraction and prediction.

Texts are tokenised once, truncated to ``max_length`` and never padded up front; each batch
is padded on the right to its own longest row (dynamic padding). Right padding keeps every
real token at the same position whatever the batch: encoders mask the pads, and decoders'
causal attention never looks at them, so a row's outputs do not depend on its batch mates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "encode_texts",
    "pad_batch",
    "length_sorted_batches",
    "pad_token_id",
]


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id; falls back to the end-of-sequence id (decoders)."""
    pid = getattr(tokenizer, "pad_token_id", None)
    if pid is None:
        pid = getattr(tokenizer, "eos_token_id", None)
    if pid is None:
        raise ValueError(
            "The tokenizer has neither a pad token nor an end-of-sequence token; set "
            "tokenizer.pad_token before training."
        )
    return int(pid)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text (special tokens added, truncated to ``max_length``), unpadded."""
    texts = list(texts)
    if not texts:
        return []
    enc = tokenizer(
        texts,
        truncation=True,
        max_length=int(max_length),
        padding=False,
        add_special_tokens=True,
        return_attention_mask=False,
    )
    ids = [list(map(int, x)) for x in enc["input_ids"]]
    empty = [i for i, x in enumerate(ids) if len(x) == 0]
    if empty:
        raise ValueError(f"Text at row {empty[0]} tokenises to no tokens ({len(empty)} such row(s)).")
    return ids


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, *, pad_to: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad ``seqs`` to their longest (or ``pad_to``) length.

    Returns ``input_ids`` and ``attention_mask`` of shape ``(b, L)`` (int64; mask 1 = token).
    """
    if not seqs:
        raise ValueError("Cannot pad an empty batch.")
    width = max(len(s) for s in seqs)
    if pad_to is not None:
        if pad_to < width:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest row ({width}).")
        width = pad_to
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row indices grouped into batches of similar length (longest first).

    A stable sort keeps equal-length rows in their original order, so the batching is a
    deterministic function of the lengths.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Got {batch_size} instead.")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
