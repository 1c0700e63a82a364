"""LoRA wrapping and optimizer parameter groups.

LoRA (rank ``r``, scale ``alpha / r``, dropout) goes on the attention projections chosen per
architecture by :func:`adue.architectures.lora_target_modules`; the classification head
(:func:`adue.architectures.head_module_names`: one module, or several as DistilBERT's
``pre_classifier`` + ``classifier``) is trained in full through peft's
``modules_to_save``, so the saved adapter carries the trained head as well.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from adue.config import RunConfig

__all__ = [
    "wrap_lora",
    "param_groups",
    "trainable_state",
    "load_trainable_state",
    "is_head_param",
]

logger = logging.getLogger(__name__)


def wrap_lora(model: nn.Module, cfg: RunConfig) -> nn.Module:
    """A ``peft.PeftModel`` with LoRA on the architecture's attention projections.

    Every base weight is frozen; LoRA ``A``/``B`` and the whole classification head train.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    from adue.architectures import head_module_names, lora_target_modules

    targets = list(lora_target_modules(model))
    head = head_module_names(model)
    lcfg = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        modules_to_save=list(head),  # peft extends this list in place (SEQ_CLS adds its names)
        bias="none",
    )
    peft_model = get_peft_model(model, lcfg)
    n_train = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in peft_model.parameters())
    logger.info(
        "LoRA r=%d alpha=%g on %s; head %s trained in full; %d trainable of %d parameters",
        cfg.lora_r,
        cfg.lora_alpha,
        targets,
        head,
        n_train,
        n_all,
    )
    return peft_model


def is_head_param(name: str) -> bool:
    """Whether a parameter name belongs to the fully trained head (peft ``modules_to_save``)."""
    return ".modules_to_save." in name


def _no_decay(name: str, param: torch.Tensor) -> bool:
    # As the transformers Trainer: no weight decay on biases and normalisation weights.
    lname = name.lower()
    return param.ndim < 2 or name.endswith(".bias") or "norm" in lname


def param_groups(model: nn.Module, cfg: RunConfig) -> list[dict[str, Any]]:
    """AdamW groups: (adapter | head) x (decay | no decay), with ``lr`` / ``head_lr``.

    Every group carries ``"name"`` so logs and checkpoints can tell them apart.
    """
    groups: dict[tuple[str, bool], list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = "head" if is_head_param(name) else "adapter"
        groups.setdefault((part, _no_decay(name, p)), []).append(p)
    out = []
    for part in ("adapter", "head"):
        for nd in (False, True):
            params = groups.get((part, nd))
            if not params:
                continue
            out.append(
                {
                    "params": params,
                    "lr": cfg.effective_head_lr if part == "head" else cfg.lr,
                    "weight_decay": 0.0 if nd else cfg.weight_decay,
                    "name": f"{part}{'_no_decay' if nd else ''}",
                }
            )
    if not any(g["name"].startswith("head") for g in out):
        raise ValueError("No trainable head parameters found: the LoRA wrapper did not keep the head trainable.")
    return out


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached float copies of every trainable parameter (adapter and head), on CPU."""
    return {
        n: p.detach().to("cpu", copy=True).contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (from :func:`trainable_state`) into ``model``'s trainable parameters."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise ValueError(
            "Checkpoint does not match the model's trainable parameters: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    with torch.no_grad():
        for n, p in params.items():
            if tuple(state[n].shape) != tuple(p.shape):
                raise ValueError(f"Checkpoint tensor {n!r} has shape {tuple(state[n].shape)}, model {tuple(p.shape)}.")
            p.copy_(state[n].to(p.device, p.dtype))
