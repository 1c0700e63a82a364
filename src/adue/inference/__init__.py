"""Features of texts under a classifier: the one forward pass behind evaluation, extraction,
prediction and serving.

>>> z, logits = extract_features(model, tokenizer, ["a fine film", "dull"], max_length=128)
... # doctest: +SKIP

``z`` (n, d) is the input of the classification head (see :mod:`adue.architectures`) and
``logits`` (n, C) the model's output of the same pass, both float32 and in the order of the
texts. Texts are tokenised once (:mod:`adue.inference.tokenize`), batched by length (longest
first) and padded per batch on the right, so a row's outputs do not depend on its batch mates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from adue.inference import tokenize
from adue.inference.tokenize import encode_texts, length_sorted_batches, pad_batch, pad_token_id

__all__ = ["extract_features", "features_from_ids", "forward_batches", "assemble", "tokenize"]


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(
            "The 'texts' parameter of extract_features must be a sequence of str. "
            f"Got {type(texts).__name__} instead."
        )
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(
            "The 'texts' parameter of extract_features must hold only str. "
            f"Got {type(texts[bad[0]]).__name__} at row {bad[0]} instead."
        )
    return list(texts)


def _check_batch_size(batch_size: Any, owner: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"The 'batch_size' parameter of {owner} must be an int >= 1. Got {batch_size!r} instead."
        )


def _place(model: Any, device: Any) -> torch.device:
    """``model`` moved to ``device`` (a setting, see :func:`adue.device.resolve_device`), or
    the device its parameters are on when ``device`` is ``None``."""
    if device is None:
        return next(model.parameters()).device
    from adue.device import resolve_device

    dev = resolve_device(device)
    model.to(dev)
    return dev


def forward_batches(
    model: Any,
    ids: Sequence[Sequence[int]],
    batches: Sequence[np.ndarray],
    *,
    pad_id: int,
    device: torch.device,
    pad_to: int | None = None,
    progress: bool = False,
    desc: str = "extract",
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, z (b, d), logits (b, C))`` float32 for each batch of row indices of ``ids``.

    The model must be in eval mode; no gradients. Each batch is right-padded to its longest
    row (or to ``pad_to``).
    """
    from tqdm.auto import tqdm

    from adue.architectures import features_and_logits

    for idx in tqdm(batches, desc=desc, disable=not progress, leave=False):
        b = pad_batch([ids[i] for i in idx], pad_id, pad_to=pad_to)
        z, logits = features_and_logits(
            model, b["input_ids"].to(device), b["attention_mask"].to(device)
        )
        yield idx, z.float().cpu().numpy(), logits.float().cpu().numpy()


def assemble(n: int, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Put ``(rows, z, logits)`` parts covering ``range(n)`` back into row order."""
    if not parts:
        raise ValueError("No batches to assemble.")
    z_all = np.empty((n, parts[0][1].shape[1]), dtype=np.float32)
    logit_all = np.empty((n, parts[0][2].shape[1]), dtype=np.float32)
    for rows, z, logits in parts:
        z_all[rows] = z
        logit_all[rows] = logits
    return z_all, logit_all


@torch.no_grad()
def features_from_ids(
    model: Any,
    ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = 32,
    device: Any = None,
    progress: bool = False,
    desc: str = "extract",
    pad_to: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`extract_features` for texts already tokenised (``ids``: one list per row)."""
    _check_batch_size(batch_size, "extract_features")
    if len(ids) == 0:
        raise ValueError("Cannot extract features of no rows.")
    dev = _place(model, device)
    was_training = model.training
    model.eval()
    try:
        batches = length_sorted_batches([len(s) for s in ids], batch_size)
        parts = list(
            forward_batches(
                model, ids, batches, pad_id=pad_id, device=dev, pad_to=pad_to,
                progress=progress, desc=desc,
            )
        )
    finally:
        model.train(was_training)
    return assemble(len(ids), parts)


def extract_features(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 32,
    device: Any = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(z (n, d), logits (n, C))`` float32 of ``texts``, in their order.

    Parameters
    ----------
    model : transformers ``*ForSequenceClassification`` (peft-wrapped or not)
        Run in eval mode without gradients (its previous mode is restored afterwards).
    tokenizer : transformers tokenizer
        Its pad id (else its end-of-sequence id) pads the batches.
    texts : sequence of str
    max_length : int
        Texts are truncated to this many tokens (special tokens included).
    batch_size : int
        Rows per forward pass (batches are grouped by length, longest first).
    device : str, torch.device or None
        Where to run: ``None`` keeps the model where it is; otherwise a device setting
        (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``) and the model is moved there.
    progress : bool
        Show a progress bar.
    """
    texts = _check_texts(texts)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(
            f"The 'max_length' parameter of extract_features must be an int >= 2. Got {max_length!r} instead."
        )
    _check_batch_size(batch_size, "extract_features")
    if not texts:
        raise ValueError("The 'texts' parameter of extract_features must hold at least one text. Got [] instead.")
    ids = encode_texts(tokenizer, texts, max_length)
    return features_from_ids(
        model, ids, pad_id=pad_token_id(tokenizer), batch_size=batch_size, device=device,
        progress=progress,
    )
