"""Shared test helpers: tiny random Hugging Face classifiers and padded batches.

Fixtures ``tiny_model`` and ``tiny_batch`` return the factory functions below, so any test can
do ``model = tiny_model("roberta", 3)`` and ``ids, mask = tiny_batch(model)``.
"""

from __future__ import annotations

import pytest
import torch

TINY_VOCAB = 96
# Decoders: pad = eos, as adue.backbones.load_backbone sets it for real decoders.
_DECODER_IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
TINY_ARCHS = ("bert", "roberta", "xlm-roberta", "electra", "mpnet", "llama", "mistral", "qwen2",
              "qwen3")
DECODER_ARCHS = ("llama", "mistral", "qwen2", "qwen3")


def _tiny_config(arch: str, num_labels: int):
    import transformers as tf

    common = dict(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    encoder = dict(common, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    decoder = dict(common, num_key_value_heads=2, **_DECODER_IDS)
    if arch == "bert":
        return tf.BertConfig(**encoder, pad_token_id=0)
    if arch == "roberta":
        return tf.RobertaConfig(**encoder, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if arch == "xlm-roberta":
        return tf.XLMRobertaConfig(**encoder, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if arch == "electra":
        return tf.ElectraConfig(**encoder, embedding_size=16, pad_token_id=0)
    if arch == "mpnet":
        return tf.MPNetConfig(**encoder, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if arch == "llama":
        return tf.LlamaConfig(**decoder)
    if arch == "mistral":
        return tf.MistralConfig(**decoder, sliding_window=None)
    if arch == "qwen2":
        return tf.Qwen2Config(**decoder)
    if arch == "qwen3":
        return tf.Qwen3Config(**decoder, head_dim=8)
    raise ValueError(f"unknown tiny arch {arch!r}; known: {TINY_ARCHS}")


def make_tiny_model(arch: str, num_labels: int = 3, *, seed: int = 0):
    """A randomly initialised ``*ForSequenceClassification`` (hidden 32, 2 layers, 4 heads,
    vocab 96), float32, in eval mode. Heads get non-trivial random weights."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = _tiny_config(arch, num_labels)
    model = AutoModelForSequenceClassification.from_config(config)
    # Default inits can leave biases at zero; randomise every head parameter so a wrong
    # activation, bias or pooling position cannot go unnoticed.
    head = getattr(model, "classifier", None) or model.score
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    return model.float().eval()


def make_tiny_batch(model, lengths=(7, 3, 5, 1), *, seed: int = 0):
    """``(input_ids, attention_mask)``, right-padded with the model's pad id; real tokens are
    drawn from ids >= 4 so they never equal a special token."""
    pad = model.config.pad_token_id
    pad = 0 if pad is None else int(pad)
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(4, TINY_VOCAB, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask


@pytest.fixture
def tiny_model():
    """Factory ``tiny_model(arch, num_labels=3)`` for a tiny random classifier."""
    return make_tiny_model


@pytest.fixture
def tiny_batch():
    """Factory ``tiny_batch(model, lengths=(7, 3, 5, 1), seed=0) -> (input_ids, mask)``."""
    return make_tiny_batch


@pytest.fixture
def require_minilm():
    """Fail (never skip) when the MiniLM backbone is missing (``_pipeline.check_minilm``)."""
    from _pipeline import check_minilm

    check_minilm()


def pytest_runtest_setup(item):
    """Enforce the ``needs_minilm`` marker: such a test fails when MiniLM is missing."""
    if item.get_closest_marker("needs_minilm") is not None:
        from _pipeline import check_minilm

        check_minilm()
