"""Per-architecture knowledge about Hugging Face sequence classifiers.

Every function takes a loaded ``*ForSequenceClassification`` model, wrapped by peft or not
(a ``PeftModel`` is unwrapped with ``get_base_model()``; a head wrapped in peft's
``ModulesToSaveWrapper`` is read through its active copy). The representation ``z`` is the
input of the classification head:

=================  ==========  ==============================================  ===========
model_type         pooling     z                                               head
=================  ==========  ==============================================  ===========
bert               pooled      pooler output ``tanh(W h_[CLS] + b)``           ``classifier`` Linear
roberta, xlm-r.,   cls         last-layer hidden state of the first token      ``classifier``
electra, mpnet                                                                 dense, act, out_proj
llama, mistral,    last_token  last-layer hidden state of the last non-pad     ``score`` Linear
qwen2, qwen3                   token (as the model pools: rightmost token      (no bias)
                               whose id is not ``pad_token_id``)
=================  ==========  ==============================================  ===========

Two-layer heads compute ``out_proj(act(dense(z)))`` with ``act`` tanh (RoBERTa, MPNet) or GELU
(ELECTRA); dropout sits before ``dense`` and before ``out_proj`` and is inactive in eval mode.
"""

from __future__ import annotations

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
    "head_module_name",
    "head_kind",
    "pooling_kind",
    "features_and_logits",
    "classifier_head",
    "last_token_index",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Arch:
    pooling: str  # "cls" | "pooled" | "last_token"
    head: str  # attribute holding the head
    head_kind: str  # "linear" | "two_layer"
    lora: tuple[str, ...]
    activation: str | None = None  # two-layer heads: fixed activation; None = read from head


_BERT_QKV = ("query", "key", "value")
_DEC_QKV = ("q_proj", "k_proj", "v_proj")
_ARCHS: dict[str, _Arch] = {
    "bert": _Arch("pooled", "classifier", "linear", _BERT_QKV),
    "roberta": _Arch("cls", "classifier", "two_layer", _BERT_QKV, "tanh"),
    "xlm-roberta": _Arch("cls", "classifier", "two_layer", _BERT_QKV, "tanh"),
    "electra": _Arch("cls", "classifier", "two_layer", _BERT_QKV, None),
    "mpnet": _Arch("cls", "classifier", "two_layer", ("q", "k", "v"), "tanh"),
    "llama": _Arch("last_token", "score", "linear", _DEC_QKV),
    "mistral": _Arch("last_token", "score", "linear", _DEC_QKV),
    "qwen2": _Arch("last_token", "score", "linear", _DEC_QKV),
    "qwen3": _Arch("last_token", "score", "linear", _DEC_QKV),
}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_ARCHS)

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


def _arch(model: nn.Module) -> tuple[nn.Module, _Arch]:
    base = unwrap_model(model)
    mtype = model_type(base)
    arch = _ARCHS.get(mtype)
    if arch is None:
        raise ValueError(
            f"Unsupported architecture: model_type {mtype!r} ({type(base).__name__}). "
            f"Supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    if not isinstance(getattr(base, arch.head, None), nn.Module):
        raise ValueError(
            f"The {mtype!r} model {type(base).__name__} has no '{arch.head}' classification "
            "head; load it with AutoModelForSequenceClassification."
        )
    return base, arch


def _active_head(wrapper: nn.Module) -> nn.Module:
    """The module that actually runs: the active copy inside peft's ModulesToSaveWrapper."""
    copies = getattr(wrapper, "modules_to_save", None)
    original = getattr(wrapper, "original_module", None)
    if isinstance(copies, nn.ModuleDict) and isinstance(original, nn.Module):
        active = list(getattr(wrapper, "active_adapters", []) or [])
        if getattr(wrapper, "disable_adapters", False) or not active or active[0] not in copies:
            return original
        return copies[active[0]]
    return wrapper


def lora_target_modules(model: nn.Module) -> list[str]:
    """Names of the attention projections LoRA adapts (query/key/value style per model)."""
    return list(_arch(model)[1].lora)


def head_module_name(model: nn.Module) -> str:
    """Attribute of the classification head (``"classifier"`` or ``"score"``), for peft's
    ``modules_to_save``."""
    return _arch(model)[1].head


def head_kind(model: nn.Module) -> str:
    """``"linear"`` (one Linear) or ``"two_layer"`` (dense, activation, out_proj)."""
    return _arch(model)[1].head_kind


def pooling_kind(model: nn.Module) -> str:
    """``"cls"`` (first token), ``"pooled"`` (BERT pooler output) or ``"last_token"``."""
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


def features_and_logits(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, logits)`` from one forward pass, without gradients.

    ``z`` (n, d) is the input of the classification head (see the module docstring) and
    ``logits`` (n, C) the model's own output for the same pass, so ``head(z) == logits``.
    The model must be in eval mode (dropout would make both random). Both come back in the
    model's dtype, detached.
    """
    base, arch = _arch(model)
    _check_batch(input_ids, attention_mask)
    if model.training or base.training:
        raise ValueError(
            "features_and_logits needs the model in eval mode; call model.eval() first "
            "(dropout would make z and the logits random)."
        )
    head = getattr(base, arch.head)
    captured: list[torch.Tensor] = []

    def _grab(module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        captured.append(x)

    handle = head.register_forward_pre_hook(_grab, with_kwargs=True)
    try:
        with torch.no_grad():
            out = model(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(
            f"expected the '{arch.head}' head to run once in the forward pass, it ran "
            f"{len(captured)} times"
        )
    x = captured[0]
    logits = out.logits if hasattr(out, "logits") else out[0]
    if arch.pooling == "cls":
        z = x[:, 0, :]
    elif arch.pooling == "pooled":
        z = x
    else:
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
        z = x[torch.arange(x.shape[0], device=x.device), idx]
    return z.detach(), logits.detach()


def classifier_head(model: nn.Module) -> ClassifierHead:
    """A float32 copy of the model's (trained) head as a :class:`ClassifierHead` on ``z``.

    In eval mode ``classifier_head(model)(z) == logits`` for ``(z, logits)`` from
    :func:`features_and_logits`. Dropout probabilities are copied (BERT: the model's dropout
    before ``classifier``; decoders: none). The copy is returned in eval mode.
    """
    base, arch = _arch(model)
    head = _active_head(getattr(base, arch.head))
    if arch.head_kind == "linear":
        if not isinstance(head, nn.Linear):
            raise TypeError(
                f"expected the '{arch.head}' head of {type(base).__name__} to be an nn.Linear, "
                f"got {type(head).__name__}"
            )
        drop = getattr(base, "dropout", None) if arch.pooling == "pooled" else None
        p = float(drop.p) if isinstance(drop, nn.Dropout) else 0.0
        out = ClassifierHead(
            head.in_features, head.out_features, bias=head.bias is not None, dropout=p
        )
        with torch.no_grad():
            out.out_proj.weight.copy_(head.weight.float())
            if head.bias is not None:
                out.out_proj.bias.copy_(head.bias.float())
        return out.eval()
    dense, proj = getattr(head, "dense", None), getattr(head, "out_proj", None)
    if not isinstance(dense, nn.Linear) or not isinstance(proj, nn.Linear):
        raise TypeError(
            f"expected the '{arch.head}' head of {type(base).__name__} to have 'dense' and "
            f"'out_proj' Linear layers, got {type(head).__name__}"
        )
    activation = arch.activation or _activation_name(getattr(head, "activation", None))
    drop = getattr(head, "dropout", None)
    out = ClassifierHead(
        dense.in_features,
        proj.out_features,
        hidden_features=dense.out_features,
        activation=activation,
        bias=proj.bias is not None,
        dropout=float(drop.p) if isinstance(drop, nn.Dropout) else 0.0,
    )
    with torch.no_grad():
        out.dense.weight.copy_(dense.weight.float())
        out.dense.bias.copy_(dense.bias.float())
        out.out_proj.weight.copy_(proj.weight.float())
        if proj.bias is not None:
            out.out_proj.bias.copy_(proj.bias.float())
    return out.eval()
