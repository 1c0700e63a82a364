"""Loading the five datasets from the Hugging Face hub (scikit-learn for 20 Newsgroups).

Used only when no local data directory is configured and the user cache holds no files.
These paths need internet; on the project's offline machines they fail and the caller
turns the failure into an error listing the local paths tried.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adue.data.readers import RawSplit
from adue.data.registry import DATASETS, NEWSGROUPS

__all__ = ["HUB_LOADERS", "load_from_hub"]


def _hf_split(ds, text_col: str, labels: np.ndarray | None = None) -> RawSplit:
    texts = list(ds[text_col])
    y = np.asarray(ds["label"] if labels is None else labels, dtype=np.int64)
    return RawSplit(texts, y)


def _glue(config: str) -> dict[str, RawSplit]:
    import datasets

    spec = DATASETS[config]
    ds = datasets.load_dataset(spec.hub_id, spec.hub_config)
    # GLUE test labels are hidden: the GLUE validation split is our test set.
    return {
        "train": _hf_split(ds["train"], "sentence"),
        "test": _hf_split(ds["validation"], "sentence"),
    }


def hub_sst2() -> dict[str, RawSplit]:
    """GLUE SST-2 from the hub (``nyu-mll/glue``, config ``sst2``)."""
    return _glue("sst2")


def hub_cola() -> dict[str, RawSplit]:
    """GLUE CoLA from the hub (``nyu-mll/glue``, config ``cola``)."""
    return _glue("cola")


def hub_sst5() -> dict[str, RawSplit]:
    """SST-5 from the hub (``SetFit/sst5``; train / validation / test as released)."""
    import datasets

    ds = datasets.load_dataset(DATASETS["sst5"].hub_id)
    return {s: _hf_split(ds[s], "text") for s in ("train", "validation", "test")}


def hub_20newsgroups() -> dict[str, RawSplit]:
    """20 Newsgroups bydate via scikit-learn (headers kept, default shuffling)."""
    from sklearn.datasets import fetch_20newsgroups

    out = {}
    for subset in ("train", "test"):
        bunch = fetch_20newsgroups(subset=subset, remove=())
        if tuple(bunch.target_names) != NEWSGROUPS:
            raise ValueError(f"Unexpected 20 Newsgroups classes: {bunch.target_names}.")
        out[subset] = RawSplit(list(bunch.data), np.asarray(bunch.target, dtype=np.int64))
    return out


def hub_toxigen() -> dict[str, RawSplit]:
    """ToxiGen ``annotated`` (``skg/toxigen-data``, gated); label = ai + human toxicity > 5.5."""
    import datasets

    spec = DATASETS["toxigen"]
    ds = datasets.load_dataset(spec.hub_id, spec.hub_config)
    out = {}
    for split in ("train", "test"):
        part = ds[split]
        score = np.asarray(part["toxicity_ai"], float) + np.asarray(part["toxicity_human"], float)
        out[split] = _hf_split(part, "text", (score > 5.5).astype(np.int64))
    return out


HUB_LOADERS: dict[str, Callable[[], dict[str, RawSplit]]] = {
    "sst2": hub_sst2,
    "sst5": hub_sst5,
    "cola": hub_cola,
    "20newsgroups": hub_20newsgroups,
    "toxigen": hub_toxigen,
}


def load_from_hub(name: str) -> dict[str, RawSplit]:
    """Download (or read from the hub caches) dataset ``name``; needs internet."""
    return HUB_LOADERS[name]()
