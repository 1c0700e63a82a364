"""Per-architecture pooling, head input, head copy and LoRA targets on tiny random models."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import DECODER_ARCHS, TINY_ARCHS

from adue.architectures import (
    SUPPORTED_MODEL_TYPES,
    classifier_head,
    features_and_logits,
    head_kind,
    head_module_name,
    last_token_index,
    lora_target_modules,
    pooling_kind,
)
from adue.heads import ClassifierHead

EXPECTED = {
    # arch: (pooling, head attribute, head kind, LoRA targets, activation)
    "bert": ("pooled", "classifier", "linear", ["query", "key", "value"], None),
    "roberta": ("cls", "classifier", "two_layer", ["query", "key", "value"], "tanh"),
    "xlm-roberta": ("cls", "classifier", "two_layer", ["query", "key", "value"], "tanh"),
    "electra": ("cls", "classifier", "two_layer", ["query", "key", "value"], "gelu"),
    "mpnet": ("cls", "classifier", "two_layer", ["q", "k", "v"], "tanh"),
    "llama": ("last_token", "score", "linear", ["q_proj", "k_proj", "v_proj"], None),
    "mistral": ("last_token", "score", "linear", ["q_proj", "k_proj", "v_proj"], None),
    "qwen2": ("last_token", "score", "linear", ["q_proj", "k_proj", "v_proj"], None),
    "qwen3": ("last_token", "score", "linear", ["q_proj", "k_proj", "v_proj"], None),
}
TOL = 1e-4
LENGTHS = (7, 3, 5, 1)


def _reference_z(model, ids, mask):
    """z computed independently of the hook: from the bare encoder/decoder, per sequence."""
    arch = model.config.model_type
    base = model.base_model  # BertModel, RobertaModel, LlamaModel, ...
    if arch == "bert":
        return base(input_ids=ids, attention_mask=mask).pooler_output
    if EXPECTED[arch][0] == "cls":
        return base(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    # decoders: run each sequence alone, unpadded, and take its final position
    rows = []
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        rows.append(base(input_ids=ids[i : i + 1, :n]).last_hidden_state[0, n - 1])
    return torch.stack(rows)


def test_every_supported_type_is_tested():
    assert set(SUPPORTED_MODEL_TYPES) == set(EXPECTED) == set(TINY_ARCHS)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_arch_facts(arch, tiny_model):
    model = tiny_model(arch, 3)
    pooling, head_name, kind, targets, _ = EXPECTED[arch]
    assert pooling_kind(model) == pooling
    assert head_module_name(model) == head_name
    assert head_kind(model) == kind
    assert lora_target_modules(model) == targets
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert set(targets) <= leaf_names
    for target in targets:  # each target is a Linear in every layer
        hits = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == target]
        assert len(hits) == 2 and all(isinstance(m, torch.nn.Linear) for m in hits)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_features_and_logits_match_forward(arch, tiny_model, tiny_batch):
    model = tiny_model(arch, 3)
    ids, mask = tiny_batch(model, LENGTHS)
    z, logits = features_and_logits(model, ids, mask)
    with torch.no_grad():
        ref_logits = model(input_ids=ids, attention_mask=mask).logits
        ref_z = _reference_z(model, ids, mask)
    assert z.shape == (len(LENGTHS), 32) and logits.shape == (len(LENGTHS), 3)
    assert z.dtype == torch.float32 and not z.requires_grad
    assert (logits - ref_logits).abs().max().item() < TOL
    assert (z - ref_z).abs().max().item() < TOL
    # the trained head, rebuilt on z, gives the same logits
    head = classifier_head(model)
    assert isinstance(head, ClassifierHead) and not head.training
    with torch.no_grad():
        assert (head(z) - logits).abs().max().item() < TOL


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_classifier_head_structure(arch, tiny_model):
    model = tiny_model(arch, 4)
    head = classifier_head(model)
    _, _, kind, _, activation = EXPECTED[arch]
    assert head.num_classes == 4 and head.in_features == 32
    assert head.is_linear == (kind == "linear")
    if kind == "two_layer":
        assert head.activation_name == activation
        assert head.hidden_features == 32
        assert head.dropout.p == pytest.approx(0.1)  # hidden_dropout_prob of the tiny config
        assert head.out_proj.bias is not None
    elif arch == "bert":
        assert head.dropout.p == pytest.approx(0.1)  # BertForSequenceClassification.dropout
        assert head.out_proj.bias is not None
    else:  # decoders: score is Linear(hidden, C, bias=False), no dropout
        assert head.out_proj.bias is None and head.dropout.p == 0.0
    # a copy, not a view: changing it leaves the model alone
    with torch.no_grad():
        head.out_proj.weight.add_(1.0)
    assert not torch.equal(head.out_proj.weight, classifier_head(model).out_proj.weight)


def test_wrong_activation_would_be_caught(tiny_model, tiny_batch):
    """ELECTRA's head uses GELU: a tanh copy gives different logits (the parity test bites)."""
    model = tiny_model("electra", 3)
    ids, mask = tiny_batch(model, LENGTHS)
    z, logits = features_and_logits(model, ids, mask)
    head = classifier_head(model)
    wrong = ClassifierHead(32, 3, hidden_features=32, activation="tanh")
    wrong.load_state_dict(head.state_dict())
    with torch.no_grad():
        assert (wrong.eval()(z) - logits).abs().max().item() > 1e-3


@pytest.mark.parametrize("arch", DECODER_ARCHS[:2])
def test_decoder_pad_id_inside_and_at_end(arch, tiny_model, caplog):
    """pad = eos: an eos inside a sequence does not move the pooled position; an eos as the
    last real token makes the model (and z) pool at the token before it, with a warning."""
    model = tiny_model(arch, 3)
    pad = model.config.pad_token_id
    ids = torch.tensor(
        [
            [10, 11, pad, 12, 13, pad, pad],  # eos in the middle, length 5
            [20, 21, 22, 23, 24, 25, 26],  # full length
            [30, 31, pad, pad, pad, pad, pad],  # ends with eos as a real token (length 3)
        ]
    )
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1] * 7, [1, 1, 1, 0, 0, 0, 0]])
    assert last_token_index(ids, pad).tolist() == [4, 6, 1]
    with caplog.at_level(logging.WARNING, logger="adue.architectures"):
        z, logits = features_and_logits(model, ids, mask)
    assert "1 of 3 sequences end with the pad token id" in caplog.text
    with torch.no_grad():
        ref_logits = model(input_ids=ids, attention_mask=mask).logits
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (logits - ref_logits).abs().max().item() < TOL
    expected_z = hidden[torch.arange(3), torch.tensor([4, 6, 1])]
    assert (z - expected_z).abs().max().item() < TOL


def test_last_token_index_left_padding_and_no_pad():
    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 4]])
    assert last_token_index(ids, 0).tolist() == [3, 3]
    assert last_token_index(ids[:1], None).tolist() == [3]
    with pytest.raises(ValueError, match="pad_token_id"):
        last_token_index(ids, None)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_peft_lora_wrapped(arch, tiny_model, tiny_batch):
    """A LoRA-wrapped model (non-zero adapters, head changed during 'training') keeps parity;
    the head copy is the trained one, not the frozen original."""
    from peft import LoraConfig, get_peft_model

    model = tiny_model(arch, 3)
    ids, mask = tiny_batch(model, LENGTHS)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits.clone()
    cfg = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=lora_target_modules(model))
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(0.3 * torch.randn_like(p))
    peft_model.eval()
    assert head_module_name(peft_model) == EXPECTED[arch][1]
    assert lora_target_modules(peft_model) == EXPECTED[arch][3]
    z, logits = features_and_logits(peft_model, ids, mask)
    with torch.no_grad():
        ref = peft_model(input_ids=ids, attention_mask=mask).logits
        head_logits = classifier_head(peft_model)(z)
    assert (logits - ref).abs().max().item() < TOL
    assert (head_logits - logits).abs().max().item() < TOL
    assert (logits - before).abs().max().item() > 1e-2  # the adapters changed something


def test_bad_input(tiny_model, tiny_batch):
    model = tiny_model("bert", 3)
    ids, mask = tiny_batch(model, LENGTHS)
    with pytest.raises(ValueError, match="'attention_mask' parameter of features_and_logits"):
        features_and_logits(model, ids, mask[:, :-1])
    with pytest.raises(ValueError, match="'input_ids' parameter of features_and_logits"):
        features_and_logits(model, ids[0], mask[0])
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        features_and_logits(model, ids, mask)


def test_unknown_architecture():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    model = DistilBertForSequenceClassification(cfg)
    for fn in (lora_target_modules, head_module_name, head_kind, pooling_kind, classifier_head):
        with pytest.raises(ValueError, match="model_type 'distilbert'"):
            fn(model)


def test_headless_model_refused():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match="AutoModelForSequenceClassification"):
        lora_target_modules(model)
    with pytest.raises(TypeError, match="Hugging Face model"):
        pooling_kind(torch.nn.Linear(2, 2))
