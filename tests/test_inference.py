"""adue.inference.extract_features against plain transformers forward passes, the tokenising
helpers, and the device setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_VOCAB, make_tiny_model

from adue.device import resolve_device
from adue.inference import extract_features, features_from_ids
from adue.inference.tokenize import encode_texts, length_sorted_batches, pad_batch, pad_token_id

WORDS = [f"w{i}" for i in range(TINY_VOCAB - 4)]
TEXTS = [
    "w5 w6 w7 w8 w9 w10 w11",
    "w3",
    "w20 w21 w22",
    "w40 w41 w42 w43 w44 w45 w46 w47 w48 w49 w50 w51",
    "w60 w61",
    "w70 w71 w72 w73 w74",
    "w80",
]


def _tokenizer(pad_id: int):
    """A word-level fast tokenizer over TINY_VOCAB ids (ids 0-3 special: pad at ``pad_id``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = {0: "[A]", 1: "[B]", 2: "[C]", 3: "[UNK]"}
    vocab = {tok: i for i, tok in specials.items()} | {w: i + 4 for i, w in enumerate(WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # a first special token, as encoders' [CLS] / decoders' BOS
    tk.post_processor = processors.TemplateProcessing(single="[B] $A", special_tokens=[("[B]", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token=specials[pad_id]
    )


def _rowwise(model, tok, texts, max_length):
    """z and logits from plain transformers, one unpadded row at a time."""
    zs, logits = [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=max_length, return_tensors="pt")
            out = model(**enc, output_hidden_states=True)
            h = out.hidden_states[-1][0]
            if model.config.model_type == "roberta":
                zs.append(h[0].numpy())  # the first token's last hidden state
            else:
                # the final hidden state (after the final norm) at the last token
                zs.append(model.model(**enc).last_hidden_state[0, -1].numpy())
            logits.append(out.logits[0].numpy())
    return np.stack(zs), np.stack(logits)


@pytest.mark.parametrize("arch", ["roberta", "llama"])
def test_extract_features_equals_plain_transformers(arch):
    model = make_tiny_model(arch, 3)
    tok = _tokenizer(int(model.config.pad_token_id))
    model.train()  # extract_features runs in eval mode and restores the mode afterwards
    z, logits = extract_features(model, tok, TEXTS, max_length=10, batch_size=3)
    assert model.training
    model.eval()
    z_ref, logits_ref = _rowwise(model, tok, TEXTS, 10)
    assert z.dtype == np.float32 and logits.dtype == np.float32
    assert z.shape == (len(TEXTS), 32) and logits.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(logits, logits_ref, atol=1e-5)
    np.testing.assert_allclose(z, z_ref, atol=1e-5)
    # the batch size changes nothing (right padding, rows independent of their batch mates)
    z1, logits1 = extract_features(model, tok, TEXTS, max_length=10, batch_size=1)
    np.testing.assert_allclose(logits1, logits, atol=1e-5)
    np.testing.assert_allclose(z1, z, atol=1e-5)


def test_extract_features_bad_input():
    model = make_tiny_model("roberta", 2)
    tok = _tokenizer(int(model.config.pad_token_id))
    with pytest.raises(ValueError, match="'texts' parameter of extract_features must be a sequence of str"):
        extract_features(model, tok, "one text", max_length=8)
    with pytest.raises(ValueError, match="must hold only str. Got int at row 1"):
        extract_features(model, tok, ["w1", 3], max_length=8)
    with pytest.raises(ValueError, match="at least one text"):
        extract_features(model, tok, [], max_length=8)
    with pytest.raises(ValueError, match="'max_length' parameter of extract_features"):
        extract_features(model, tok, ["w1"], max_length=0)
    with pytest.raises(ValueError, match="'batch_size' parameter of extract_features"):
        extract_features(model, tok, ["w1"], max_length=8, batch_size=0)
    with pytest.raises(ValueError, match="Cannot extract features of no rows"):
        features_from_ids(model, [], pad_id=1)


def test_tokenize_helpers():
    tok = _tokenizer(0)
    ids = encode_texts(tok, ["w1 w2 w3 w4", "w5"], max_length=3)
    assert ids == [[1, 5, 6], [1, 9]]  # special first token, truncated to 3
    assert pad_token_id(tok) == 0
    b = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert pad_batch([[1]], 9, pad_to=3)["input_ids"].tolist() == [[1, 9, 9]]
    with pytest.raises(ValueError, match="shorter than the longest"):
        pad_batch([[1, 2]], 0, pad_to=1)
    batches = length_sorted_batches([3, 9, 1, 9, 4], 2)
    assert [x.tolist() for x in batches] == [[1, 3], [4, 0], [2]]


def test_resolve_device():
    cuda = torch.cuda.is_available()
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda" if cuda else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "", 3, "CPU"):
        with pytest.raises(ValueError, match=r"The 'device' parameter of resolve_device must be "
                                             r"'auto', 'cpu', 'cuda' or 'cuda:N'\. Got .* instead\."):
            resolve_device(bad)
    n = torch.cuda.device_count() if cuda else 0
    with pytest.raises(ValueError, match=rf"must name a device this machine has.*Got 'cuda:{n}'"):
        resolve_device(f"cuda:{n}")


def test_extract_features_device_setting_moves_the_model():
    model = make_tiny_model("roberta", 2)
    tok = _tokenizer(int(model.config.pad_token_id))
    z, _ = extract_features(model, tok, ["w1 w2"], max_length=8, device="cpu")
    assert next(model.parameters()).device == torch.device("cpu") and z.shape == (1, 32)
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match="must name a device this machine has"):
        extract_features(model, tok, ["w1"], max_length=8, device=f"cuda:{n}")
