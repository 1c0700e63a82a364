"""Per-architecture knowledge about Hugging Face sequence classifiers, found generically.

Every function takes a loaded ``*ForSequenceClassification`` model, wrapped by peft or not
(a ``PeftModel`` is unwrapped with ``get_base_model()``; a head wrapped in peft's
``ModulesToSaveWrapper`` is read through its active copy). The classification head is found
by the modules the model holds directly (not by ``model_type``), so any architecture with one
of these layouts works; ``z`` is the input of the head, captured by a forward hook:

=============================  ==========================  ==========  ====================
head modules on the model      examples                    pooling     head copied as
=============================  ==========================  ==========  ====================
``classifier`` Linear          BERT, ALBERT                pooled      Linear on the pooler
                                                                       output
``classifier`` with ``dense``  RoBERTa, XLM-R, ELECTRA,    cls         dense, act, out_proj
+ ``out_proj``                 MPNet
``classification_head`` idem   BART, T5                    eos         dense, tanh, out_proj
``pre_classifier`` +           DistilBERT                  cls         dense, ReLU, out_proj
``classifier``
``pooler`` (``dense``) +       DeBERTa, DeBERTa-v2         cls         dense, act, out_proj
``classifier``
``head`` + ``classifier``      ModernBERT                  pooled      Linear on the output
                                                                       of ``head``
``score`` Linear               GPT-2, Llama, Mistral,      last_token  Linear (no bias)
                               Qwen, Gemma, Phi, ...
=============================  ==========================  ==========  ====================

``pooled``: the model pools before the head (BERT/ALBERT pooler ``tanh(W h_[CLS] + b)``;
ModernBERT's ``head`` = LayerNorm(act(dense(pooled))), whose LayerNorm a two-layer
:class:`~adue.heads.ClassifierHead` cannot hold, so only its final ``classifier`` is the
head). ``cls``: the last-layer hidden state of the first token. ``eos``: the hidden state at
the last end-of-sequence token, selected by the model. ``last_token``: decoders pool at the
last non-pad token, as transformers does (rightmost token whose id is not ``pad_token_id``).
Two-layer heads compute ``out_proj(act(dense(z)))``; every two-layer copy is checked against
the model's own head modules on a random input, and a head that the copy cannot reproduce
(another activation, an extra layer) is refused with an error that says so.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adue.heads import ClassifierHead, _activation_name

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "DECODER_MODEL_TYPES",
    "model_family",
    "unwrap_model",
    "model_type",
    "lora_target_modules",
    "head_module_names",
    "head_module_name",
    "head_kind",
    "pooling_kind",
    "features_and_logits",
    "classifier_head",
    "last_token_index",
]

logger = logging.getLogger(__name__)

#: Model types the test-suite checks on tiny random models (pooling, head copy, LoRA).
#: Others go through the same generic path; their two-layer heads are probed on copy.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = (
    "bert", "roberta", "xlm-roberta", "electra", "mpnet", "llama", "mistral", "qwen2", "qwen3",
    "distilbert", "deberta-v2", "albert", "gpt2", "gemma", "phi", "modernbert",
)

#: ``config.model_type`` of the decoder-only language models (their sequence classifiers pool
#: the last non-pad token). The one list of decoders in adue; everything else is an encoder.
DECODER_MODEL_TYPES: frozenset[str] = frozenset(
    {
        "arcee", "biogpt", "bloom", "cohere", "cohere2", "ctrl", "deepseek_v2", "deepseek_v3",
        "diffllama", "doge", "exaone4", "falcon", "gemma", "gemma2", "gemma3", "gemma3_text",
        "glm", "glm4", "gpt-sw3", "gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "gpt_oss",
        "gptj", "granite", "helium", "hunyuan_v1_dense", "hunyuan_v1_moe", "jamba", "jetmoe",
        "llama", "minicpm3", "minimax", "ministral", "ministral3", "mistral", "mixtral",
        "modernbert-decoder", "mpt", "nemotron", "olmo", "olmo2", "olmo3", "openai-gpt", "opt",
        "persimmon", "phi", "phi3", "phimoe", "qwen2", "qwen2_moe", "qwen3", "qwen3_5",
        "qwen3_5_text", "qwen3_moe", "qwen3_next", "seed_oss", "smollm3", "stablelm",
        "starcoder2", "zamba", "zamba2",
    }
)


def model_family(model_type: str) -> str:
    """``"decoder"`` for a decoder-only LM's ``config.model_type`` (see
    :data:`DECODER_MODEL_TYPES`), ``"encoder"`` for any other."""
    if not isinstance(model_type, str) or not model_type.strip():
        raise ValueError(
            "The 'model_type' parameter of model_family must be a non-empty string "
            f"(a config.model_type). Got {model_type!r} instead."
        )
    return "decoder" if model_type.strip().lower() in DECODER_MODEL_TYPES else "encoder"


# Attention projections LoRA adapts, first match wins (leaf names of Linear / GPT-2 Conv1D).
_QKV_NAMES: tuple[tuple[str, ...], ...] = (
    ("query", "key", "value"),  # BERT, RoBERTa, ELECTRA, ALBERT
    ("q", "k", "v"),  # MPNet
    ("q_proj", "k_proj", "v_proj"),  # Llama, Mistral, Qwen, Gemma, Phi, BART
    ("query_proj", "key_proj", "value_proj"),  # DeBERTa-v2
    ("in_proj",),  # DeBERTa (v1)
    ("q_lin", "k_lin", "v_lin"),  # DistilBERT
    ("Wqkv",),  # ModernBERT
    ("qkv_proj",),  # Phi-3
    ("query_key_value",),  # GPT-NeoX, Falcon, Bloom
    ("c_attn",),  # GPT-2
)


@dataclass(frozen=True)
class _Layout:
    modules: tuple[str, ...]  # the head's modules, attributes of the model (peft modules_to_save)
    hook: str  # the module whose input is z (before pooling)
    pooling: str  # "pooled" | "cls" | "eos" | "last_token"
    kind: str  # "linear" | "two_layer"
    seq_input: bool  # whether the hooked module gets (n, length, d) rather than (n, d)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a ``PeftModel`` (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base) and hasattr(model, "peft_config"):
        return get_base()
    return model


def model_type(model: nn.Module) -> str:
    """``config.model_type`` of the (unwrapped) model."""
    base = unwrap_model(model)
    config = getattr(base, "config", None)
    mtype = getattr(config, "model_type", None)
    if not isinstance(mtype, str):
        raise TypeError(
            "The 'model' must be a Hugging Face model with a config. "
            f"Got {type(model).__name__} instead."
        )
    return mtype


def _active_head(wrapper: Any) -> Any:
    """The module that actually runs: the active copy inside peft's ModulesToSaveWrapper."""
    copies = getattr(wrapper, "modules_to_save", None)
    original = getattr(wrapper, "original_module", None)
    if isinstance(copies, nn.ModuleDict) and isinstance(original, nn.Module):
        active = list(getattr(wrapper, "active_adapters", []) or [])
        if getattr(wrapper, "disable_adapters", False) or not active or active[0] not in copies:
            return original
        return copies[active[0]]
    return wrapper


def _is_two_layer(module: Any) -> bool:
    return isinstance(getattr(module, "dense", None), nn.Linear) and isinstance(
        getattr(module, "out_proj", None), nn.Linear
    )


def _find_layout(base: nn.Module, mtype: str) -> _Layout | None:
    kids = {name: _active_head(m) for name, m in base.named_children()}

    def linear(name: str) -> bool:
        return isinstance(kids.get(name), nn.Linear)

    if linear("pre_classifier") and linear("classifier"):  # DistilBERT
        return _Layout(
            ("pre_classifier", "classifier"), "pre_classifier", "cls", "two_layer", False
        )
    if linear("classifier") and isinstance(getattr(kids.get("pooler"), "dense", None), nn.Linear):
        return _Layout(("pooler", "classifier"), "pooler", "cls", "two_layer", True)  # DeBERTa
    if linear("classifier") and isinstance(getattr(kids.get("head"), "dense", None), nn.Linear):
        return _Layout(("head", "classifier"), "classifier", "pooled", "linear", False)  # ModernBERT
    for name, pooling in (("classifier", "cls"), ("classification_head", "eos")):
        if _is_two_layer(kids.get(name)):
            return _Layout((name,), name, pooling, "two_layer", pooling == "cls")
    decoder = model_family(mtype) == "decoder"
    for name in ("score", "classifier"):
        if linear(name):
            pooling = "last_token" if decoder or name == "score" else "pooled"
            return _Layout((name,), name, pooling, "linear", pooling == "last_token")
    return None


def _arch(model: nn.Module) -> tuple[nn.Module, _Layout]:
    base = unwrap_model(model)
    mtype = model_type(base)
    layout = _find_layout(base, mtype)
    if layout is None:
        kids = ", ".join(f"{n} ({type(m).__name__})" for n, m in base.named_children())
        raise ValueError(
            f"Cannot find the classification head of the {mtype!r} model {type(base).__name__} "
            f"(its modules: {kids}). adue reads a 'classifier' or 'score' Linear, a "
            "'classifier'/'classification_head' with 'dense' and 'out_proj' layers, "
            "'pre_classifier' + 'classifier', 'pooler' + 'classifier' or 'head' + "
            "'classifier'. Load the model with AutoModelForSequenceClassification; if the head "
            "itself carries LoRA layers, merge the adapter first (merge_and_unload)."
        )
    return base, layout


def lora_target_modules(model: nn.Module) -> list[str]:
    """Leaf names of the attention projections LoRA adapts (query/key/value style per model:
    the first of :data:`_QKV_NAMES` whose names all occur as Linear/Conv1D layers)."""
    base, layout = _arch(model)
    leaves: set[str] = set()
    for name, module in base.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            name = name.removesuffix(".base_layer")  # a layer peft has wrapped
            leaves.add(name.rsplit(".", 1)[-1])
    for names in _QKV_NAMES:
        if set(names) <= leaves:
            return list(names)
    raise ValueError(
        f"Cannot tell the attention projections of the {model_type(base)!r} model "
        f"{type(base).__name__}: none of {[list(n) for n in _QKV_NAMES]} are all layers of it."
    )


def head_module_names(model: nn.Module) -> list[str]:
    """Attributes of the model that make up its classification head (``["classifier"]``,
    ``["score"]``, ``["pre_classifier", "classifier"]``, ...), for peft's ``modules_to_save``."""
    return list(_arch(model)[1].modules)


def head_module_name(model: nn.Module) -> str:
    """The head's one attribute (``"classifier"`` or ``"score"``); a head made of several
    modules (DistilBERT, DeBERTa, ModernBERT) raises: use :func:`head_module_names`."""
    names = head_module_names(model)
    if len(names) != 1:
        raise ValueError(
            f"The head of the {model_type(model)!r} model is made of {names}; use "
            "head_module_names(model) (all of them belong in peft's modules_to_save)."
        )
    return names[0]


def head_kind(model: nn.Module) -> str:
    """``"linear"`` (one Linear) or ``"two_layer"`` (dense, activation, out_proj)."""
    return _arch(model)[1].kind


def pooling_kind(model: nn.Module) -> str:
    """``"pooled"``, ``"cls"``, ``"eos"`` or ``"last_token"`` (see the module docstring)."""
    return _arch(model)[1].pooling


def last_token_index(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Position the decoders pool at, as transformers does: the rightmost token whose id is not
    ``pad_token_id`` (works for right and left padding). Shape ``(n,)``, int64.

    With ``pad_token_id`` None only a batch of one is allowed (position ``-1``, i.e. last).
    """
    n, length = input_ids.shape
    if pad_token_id is None:
        if n != 1:
            raise ValueError(
                "The model has no pad_token_id, so it cannot find the last token of a padded "
                "batch; set model.config.pad_token_id (adue.backbones.load_backbone does)."
            )
        return torch.full((1,), length - 1, dtype=torch.long, device=input_ids.device)
    non_pad = (input_ids != pad_token_id).to(torch.int32)
    positions = torch.arange(length, device=input_ids.device, dtype=torch.int32)
    return (positions * non_pad).argmax(-1).long()


def _check_batch(input_ids: Any, attention_mask: Any) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        raise ValueError(
            "The 'input_ids' parameter of features_and_logits must be a 2-D tensor (n, length). "
            f"Got {getattr(input_ids, 'shape', type(input_ids).__name__)} instead."
        )
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(
            "The 'attention_mask' parameter of features_and_logits must be a tensor shaped like "
            f"input_ids {tuple(input_ids.shape)}. "
            f"Got {getattr(attention_mask, 'shape', type(attention_mask).__name__)} instead."
        )


def _last_token_z(
    base: nn.Module, x: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    pad_id = base.config.get_text_config().pad_token_id
    idx = last_token_index(input_ids, pad_id).to(x.device)
    if pad_id is not None:
        mask = attention_mask.to(device=x.device, dtype=torch.int32)
        positions = torch.arange(mask.shape[1], device=x.device, dtype=torch.int32)
        last_real = (positions * mask).argmax(-1).long()
        ends = idx != last_real
        if bool(ends.any()):
            logger.warning(
                "%d of %d sequences end with the pad token id %d; the model pools at the "
                "last token that is not the pad id, and so does z",
                int(ends.sum()),
                len(idx),
                pad_id,
            )
    return x[torch.arange(x.shape[0], device=x.device), idx]


def _pool(
    base: nn.Module,
    layout: _Layout,
    x: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """``z`` (n, d) from the captured head input ``x``: (n, d) as is, (n, length, d) pooled."""
    if x.ndim == 2:
        return x
    if x.ndim == 3 and layout.pooling == "cls":
        return x[:, 0, :]
    if x.ndim == 3 and layout.pooling == "last_token":
        return _last_token_z(base, x, input_ids, attention_mask)
    raise ValueError(
        f"The '{layout.hook}' head of {type(base).__name__} got an input of shape "
        f"{tuple(x.shape)}; adue cannot tell how the model pools it ({layout.pooling!r})."
    )


def features_and_logits(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, logits)`` from one forward pass, without gradients.

    ``z`` (n, d) is the input of the classification head (see the module docstring) and
    ``logits`` (n, C) the model's own output for the same pass, so ``head(z) == logits``.
    The model must be in eval mode (dropout would make both random). Both come back in the
    model's dtype, detached.
    """
    base, layout = _arch(model)
    _check_batch(input_ids, attention_mask)
    if model.training or base.training:
        raise ValueError(
            "features_and_logits needs the model in eval mode; call model.eval() first "
            "(dropout would make z and the logits random)."
        )
    captured: list[torch.Tensor] = []

    def _grab(module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else next(iter(kwargs.values())))

    handle = getattr(base, layout.hook).register_forward_pre_hook(_grab, with_kwargs=True)
    try:
        with torch.no_grad():
            out = model(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(
            f"expected the '{layout.hook}' head to run once in the forward pass, it ran "
            f"{len(captured)} times"
        )
    logits = out.logits if hasattr(out, "logits") else out[0]
    z = _pool(base, layout, captured[0], input_ids, attention_mask)
    return z.detach(), logits.detach()


def _dropout_p(*modules: Any) -> float:
    """``p`` of the first ``nn.Dropout`` among ``modules`` (0.0 when there is none)."""
    for m in modules:
        if isinstance(m, nn.Dropout):
            return float(m.p)
    return 0.0


def _copy_model_head(base: nn.Module, layout: _Layout) -> ClassifierHead:
    heads = [_active_head(getattr(base, name)) for name in layout.modules]
    model_drop = _dropout_p(getattr(base, "dropout", None), getattr(base, "drop", None))
    if layout.kind == "linear":
        return ClassifierHead.from_layers(None, heads[-1], dropout=model_drop)
    if layout.modules == ("pre_classifier", "classifier"):  # ReLU in the model's forward
        return ClassifierHead.from_layers(*heads, activation="relu", dropout=model_drop)
    if layout.modules == ("pooler", "classifier"):
        from transformers.activations import ACT2FN

        pooler, classifier = heads
        act = ACT2FN[pooler.config.pooler_hidden_act]
        return ClassifierHead.from_layers(
            pooler.dense, classifier, activation=_activation_name(act), dropout=model_drop
        )
    return _copy_two_layer(heads[0])


def _copy_two_layer(head: nn.Module) -> ClassifierHead:
    """A ``dense`` / ``out_proj`` head (RoBERTa style): activation from its ``activation``
    attribute, else tanh (RoBERTa, MPNet, BART call ``torch.tanh`` in their forward)."""
    act = getattr(head, "activation", None)
    return ClassifierHead.from_layers(
        head.dense,
        head.out_proj,
        activation="tanh" if act is None else _activation_name(act),
        dropout=_dropout_p(getattr(head, "dropout", None)),
    )


def _model_head_forward(base: nn.Module, layout: _Layout, x: torch.Tensor) -> torch.Tensor:
    """The model's own head modules on a hook-shaped input ``x`` (eval mode)."""
    heads = [_active_head(getattr(base, name)) for name in layout.modules]
    if layout.modules == ("pre_classifier", "classifier"):
        return heads[1](torch.relu(heads[0](x)))
    if len(heads) == 2:
        return heads[1](heads[0](x))
    return heads[0](x)


@torch.no_grad()
def _probe(base: nn.Module, layout: _Layout, copy_: ClassifierHead) -> None:
    """Check ``copy_`` against the model's head modules on a random input; raise if it differs."""
    first = _active_head(getattr(base, layout.modules[0]))
    weight = first.dense.weight if hasattr(first, "dense") else first.weight
    shape = (3, 4, copy_.in_features) if layout.seq_input else (3, copy_.in_features)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device=weight.device, dtype=weight.dtype)
    modules = [_active_head(getattr(base, name)) for name in layout.modules]
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        want = _model_head_forward(base, layout, x).float().cpu()
    finally:
        for m, flag in zip(modules, was_training, strict=True):
            m.train(flag)
    z = x[:, 0, :] if x.ndim == 3 else x
    got = copy_(z.float().cpu())
    tol = 1e-4 if weight.dtype == torch.float32 else 5e-2
    err = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
    if not err <= tol * (1.0 + want.abs().max().item()):
        raise ValueError(
            f"The classification head {list(layout.modules)} of {type(base).__name__} cannot be "
            f"represented as dense -> {copy_.activation_name} -> out_proj (largest difference "
            f"{err:.3g} on a random input): it has another activation or extra layers."
        )


def classifier_head(model: nn.Module) -> ClassifierHead:
    """A float32 copy of a trained head as a :class:`ClassifierHead` on ``z``, in eval mode.

    ``model`` is a ``*ForSequenceClassification`` (peft-wrapped or not): in eval mode
    ``classifier_head(model)(z) == logits`` for ``(z, logits)`` from
    :func:`features_and_logits`; two-layer copies are checked against the model's own head
    modules (see :func:`_probe`). Dropout probabilities are copied (BERT: the model's dropout
    before ``classifier``; decoders: none). A bare head module is accepted too: an
    ``nn.Linear``, a :class:`ClassifierHead`, or a module with ``dense`` and ``out_proj``
    layers (activation from its ``activation`` attribute, else tanh as in RoBERTa and MPNet).
    """
    if isinstance(model, ClassifierHead):
        return copy.deepcopy(model).float().eval()
    if isinstance(model, nn.Linear):
        return ClassifierHead.from_layers(None, model)
    if _is_two_layer(model) and getattr(model, "config", None) is None:
        return _copy_two_layer(model)
    if getattr(unwrap_model(model), "config", None) is None:
        raise TypeError(
            "The 'head' must be an nn.Linear, an adue.heads.ClassifierHead, a module with "
            "'dense' and 'out_proj' Linear layers or a Hugging Face *ForSequenceClassification. "
            f"Got {type(model).__name__} instead."
        )
    base, layout = _arch(model)
    head = _copy_model_head(base, layout)
    if layout.kind == "two_layer":
        _probe(base, layout, head)
    return head
