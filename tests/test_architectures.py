"""Per-architecture pooling, head input, head copy and LoRA targets on tiny random models.

The nine model types of ``conftest.TINY_ARCHS`` come from the shared factory; seven more
(DistilBERT, DeBERTa-v2, ALBERT, GPT-2, Gemma, Phi, ModernBERT) are built here from tiny
configs, and all sixteen go through the same generic head-finding path.
"""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import DECODER_ARCHS, TINY_ARCHS, TINY_VOCAB, make_tiny_model

from adue.architectures import (
    DECODER_MODEL_TYPES,
    SUPPORTED_MODEL_TYPES,
    classifier_head,
    features_and_logits,
    head_kind,
    head_module_name,
    head_module_names,
    last_token_index,
    lora_target_modules,
    model_family,
    pooling_kind,
)
from adue.heads import ClassifierHead

_QKV = ["query", "key", "value"]
_DEC = ["q_proj", "k_proj", "v_proj"]
EXPECTED = {
    # arch: (pooling, head modules, head kind, LoRA targets, activation, head dropout)
    "bert": ("pooled", ["classifier"], "linear", _QKV, None, 0.1),
    "roberta": ("cls", ["classifier"], "two_layer", _QKV, "tanh", 0.1),
    "xlm-roberta": ("cls", ["classifier"], "two_layer", _QKV, "tanh", 0.1),
    "electra": ("cls", ["classifier"], "two_layer", _QKV, "gelu", 0.1),
    "mpnet": ("cls", ["classifier"], "two_layer", ["q", "k", "v"], "tanh", 0.1),
    "llama": ("last_token", ["score"], "linear", _DEC, None, 0.0),
    "mistral": ("last_token", ["score"], "linear", _DEC, None, 0.0),
    "qwen2": ("last_token", ["score"], "linear", _DEC, None, 0.0),
    "qwen3": ("last_token", ["score"], "linear", _DEC, None, 0.0),
    "distilbert": (
        "cls", ["pre_classifier", "classifier"], "two_layer", ["q_lin", "k_lin", "v_lin"], "relu",
        0.2,
    ),
    "deberta-v2": (
        "cls", ["pooler", "classifier"], "two_layer", ["query_proj", "key_proj", "value_proj"],
        "gelu", 0.1,
    ),
    "albert": ("pooled", ["classifier"], "linear", _QKV, None, 0.1),
    "gpt2": ("last_token", ["score"], "linear", ["c_attn"], None, 0.0),
    "gemma": ("last_token", ["score"], "linear", _DEC, None, 0.0),
    "phi": ("last_token", ["score"], "linear", _DEC, None, 0.0),
    "modernbert": ("pooled", ["head", "classifier"], "linear", ["Wqkv"], None, 0.0),
}
EXTRA_ARCHS = ("distilbert", "deberta-v2", "albert", "gpt2", "gemma", "phi", "modernbert")
ALL_ARCHS = TINY_ARCHS + EXTRA_ARCHS
TOL = 1e-5
LENGTHS = (7, 3, 5, 1)


def _extra_config(arch: str, num_labels: int):
    import transformers as tf

    common = dict(
        vocab_size=TINY_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
    )
    dec = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)  # pad = eos, as for real decoders
    if arch == "distilbert":
        return tf.DistilBertConfig(
            vocab_size=TINY_VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
            max_position_embeddings=64, seq_classif_dropout=0.2, pad_token_id=0,
            num_labels=num_labels,
        )
    if arch == "deberta-v2":
        return tf.DebertaV2Config(
            **common, pad_token_id=0, relative_attention=True, position_buckets=16,
            pos_att_type=["p2c", "c2p"], pooler_hidden_size=32, pooler_hidden_act="gelu",
        )
    if arch == "albert":
        return tf.AlbertConfig(**common, embedding_size=16, pad_token_id=0)
    if arch == "gpt2":
        return tf.GPT2Config(
            vocab_size=TINY_VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
            num_labels=num_labels, **dec,
        )
    if arch == "gemma":
        return tf.GemmaConfig(**common, num_key_value_heads=2, head_dim=8, **dec)
    if arch == "phi":
        return tf.PhiConfig(**common, **dec)
    if arch == "modernbert":  # mean pooling: z depends on the attention mask
        return tf.ModernBertConfig(
            **common, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
            sep_token_id=2, classifier_pooling="mean",
        )
    raise ValueError(arch)


def _model(arch: str, num_labels: int = 3, *, seed: int = 0):
    """A tiny random classifier of any of ``ALL_ARCHS``, eval mode, head weights randomised."""
    from transformers import AutoModelForSequenceClassification

    if arch in TINY_ARCHS:
        return make_tiny_model(arch, num_labels, seed=seed)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(_extra_config(arch, num_labels))
    with torch.no_grad():
        for name in EXPECTED[arch][1]:
            for p in getattr(model, name).parameters():
                p.normal_(0.0, 0.5)
    return model.float().eval()


def _reference_z(model, ids, mask):
    """z computed independently of the hook: from the bare encoder/decoder, per sequence."""
    arch = model.config.model_type
    base = model.base_model  # BertModel, RobertaModel, LlamaModel, ...
    if arch in ("bert", "albert"):
        return base(input_ids=ids, attention_mask=mask).pooler_output
    if arch == "modernbert":
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        return model.head((hidden * m).sum(1) / m.sum(1))
    if EXPECTED[arch][0] == "cls":
        return base(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    # decoders: run each sequence alone, unpadded, and take its final position
    rows = []
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        rows.append(base(input_ids=ids[i : i + 1, :n]).last_hidden_state[0, n - 1])
    return torch.stack(rows)


def test_every_supported_type_is_tested():
    assert set(SUPPORTED_MODEL_TYPES) == set(EXPECTED) == set(ALL_ARCHS)
    assert {_model(a).config.model_type for a in EXTRA_ARCHS} == set(EXTRA_ARCHS)


def test_model_family_is_the_one_decoder_list():
    from transformers import CONFIG_MAPPING

    assert sorted(t for t in DECODER_MODEL_TYPES if t not in CONFIG_MAPPING) == []
    for arch in ALL_ARCHS:
        want = "decoder" if EXPECTED[arch][0] == "last_token" else "encoder"
        assert model_family(arch) == want, arch
    assert model_family("GPT2") == "decoder" and model_family("t5") == "encoder"
    with pytest.raises(ValueError, match="'model_type' parameter of model_family"):
        model_family("")


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_arch_facts(arch):
    model = _model(arch, 3)
    pooling, heads, kind, targets, _, _ = EXPECTED[arch]
    assert pooling_kind(model) == pooling
    assert head_module_names(model) == heads
    assert head_kind(model) == kind
    assert lora_target_modules(model) == targets
    for target in targets:  # each target is a Linear (GPT-2: Conv1D) in the layers
        hits = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == target]
        assert hits and all(type(m).__name__ in ("Linear", "Conv1D") for m in hits)
    if len(heads) == 1:
        assert head_module_name(model) == heads[0]
    else:
        with pytest.raises(ValueError, match="use head_module_names"):
            head_module_name(model)


def _batch(model, lengths=LENGTHS):
    from conftest import make_tiny_batch

    return make_tiny_batch(model, lengths)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_features_and_logits_match_forward(arch):
    model = _model(arch, 3)
    ids, mask = _batch(model)
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


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_classifier_head_structure(arch):
    model = _model(arch, 4)
    head = classifier_head(model)
    _, _, kind, _, activation, dropout = EXPECTED[arch]
    assert head.num_classes == 4 and head.in_features == 32
    assert head.is_linear == (kind == "linear")
    assert head.dropout.p == pytest.approx(dropout)
    if kind == "two_layer":
        assert head.activation_name == activation
        assert head.hidden_features == 32
        assert head.out_proj.bias is not None
    else:  # decoders: score is Linear(hidden, C, bias=False)
        assert (head.out_proj.bias is None) == (EXPECTED[arch][0] == "last_token")
    # a copy, not a view: changing it leaves the model alone
    with torch.no_grad():
        head.out_proj.weight.add_(1.0)
    assert not torch.equal(head.out_proj.weight, classifier_head(model).out_proj.weight)


def test_wrong_activation_would_be_caught():
    """ELECTRA's head uses GELU: a tanh copy gives different logits (the parity test bites)."""
    model = _model("electra", 3)
    ids, mask = _batch(model)
    z, logits = features_and_logits(model, ids, mask)
    head = classifier_head(model)
    wrong = ClassifierHead(32, 3, hidden_features=32, activation="tanh")
    wrong.load_state_dict(head.state_dict())
    with torch.no_grad():
        assert (wrong.eval()(z) - logits).abs().max().item() > 1e-3


def test_unrepresentable_heads_are_refused():
    """An approximate GELU, or a head with a layer the copy lacks, is an error naming it."""
    from transformers.activations import NewGELUActivation

    model = _model("electra", 3)
    model.classifier.activation = NewGELUActivation()
    with pytest.raises(ValueError, match="cannot be represented"):
        classifier_head(model)

    model = _model("roberta", 3)
    original = model.classifier.forward
    norm = torch.nn.LayerNorm(32)

    def forward_with_norm(features, **kwargs):  # dense -> tanh -> LayerNorm -> out_proj
        head = model.classifier
        return head.out_proj(norm(torch.tanh(head.dense(features[:, 0]))))

    model.classifier.forward = forward_with_norm
    with pytest.raises(ValueError, match=r"\['classifier'\] of RobertaForSequenceClassification"):
        classifier_head(model)
    model.classifier.forward = original
    classifier_head(model)  # the plain head passes the same check


def test_bare_head_modules():
    lin = torch.nn.Linear(5, 3)
    z = torch.randn(4, 5)
    with torch.no_grad():
        assert torch.allclose(classifier_head(lin)(z), lin(z), atol=1e-6)
        two = classifier_head(_model("roberta", 3).classifier)
        assert two.activation_name == "tanh" and two.hidden_features == 32
        again = classifier_head(two)
        assert again is not two and torch.equal(again(torch.ones(2, 32)), two(torch.ones(2, 32)))


@pytest.mark.parametrize("arch", DECODER_ARCHS[:2] + ("gpt2",))
def test_decoder_pad_id_inside_and_at_end(arch, caplog):
    """pad = eos: an eos inside a sequence does not move the pooled position; an eos as the
    last real token makes the model (and z) pool at the token before it, with a warning."""
    model = _model(arch, 3)
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
@pytest.mark.filterwarnings("ignore:fan_in_fan_out:UserWarning")
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_peft_lora_wrapped(arch):
    """A LoRA-wrapped model (non-zero adapters, head changed during 'training') keeps parity;
    the head copy is the trained one, not the frozen original."""
    from peft import LoraConfig, get_peft_model

    model = _model(arch, 3)
    ids, mask = _batch(model)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits.clone()
    cfg = LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=lora_target_modules(model),
        modules_to_save=head_module_names(model), fan_in_fan_out=arch == "gpt2",
    )
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(0.3 * torch.randn_like(p))
    peft_model.eval()
    assert head_module_names(peft_model) == EXPECTED[arch][1]
    assert lora_target_modules(peft_model) == EXPECTED[arch][3]
    z, logits = features_and_logits(peft_model, ids, mask)
    with torch.no_grad():
        ref = peft_model(input_ids=ids, attention_mask=mask).logits
        head_logits = classifier_head(peft_model)(z)
    assert (logits - ref).abs().max().item() < TOL
    assert (head_logits - logits).abs().max().item() < TOL
    assert (logits - before).abs().max().item() > 1e-2  # the adapters changed something


def test_bad_input():
    model = _model("bert", 3)
    ids, mask = _batch(model)
    with pytest.raises(ValueError, match="'attention_mask' parameter of features_and_logits"):
        features_and_logits(model, ids, mask[:, :-1])
    with pytest.raises(ValueError, match="'input_ids' parameter of features_and_logits"):
        features_and_logits(model, ids[0], mask[0])
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        features_and_logits(model, ids, mask)


def test_headless_model_refused():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match="Cannot find the classification head.*"
                                         "AutoModelForSequenceClassification"):
        lora_target_modules(model)
    with pytest.raises(TypeError, match="Hugging Face model"):
        pooling_kind(torch.nn.Conv1d(1, 1, 1))


def test_bart_classification_head_pools_at_eos():
    """BART's ``classification_head`` (dense, tanh, out_proj) gets the hidden state at the last
    eos token, selected by the model: z is that (n, d) input, as is."""
    from transformers import BartConfig, BartForSequenceClassification

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=TINY_VOCAB, d_model=32, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                     decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0,
                     bos_token_id=1, eos_token_id=2, num_labels=3)
    model = BartForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for p in model.classification_head.parameters():
            p.normal_(0.0, 0.5)
    ids = torch.tensor([[1, 10, 11, 12, 2], [1, 20, 2, 0, 0]])
    mask = (ids != 0).long()
    assert pooling_kind(model) == "eos" and head_module_names(model) == ["classification_head"]
    z, logits = features_and_logits(model, ids, mask)
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        ref_logits = model(input_ids=ids, attention_mask=mask).logits
        head_logits = classifier_head(model)(z)
    assert (z - hidden[torch.arange(2), torch.tensor([4, 2])]).abs().max().item() < TOL
    assert (logits - ref_logits).abs().max().item() < TOL
    assert (head_logits - logits).abs().max().item() < TOL
