"""A canonical classification head that takes ``z`` directly.

Hugging Face heads differ in where they take their input (a token slice, a pooled vector) and
in their layers. The uncertainty methods only need the map ``z -> logits``; this module gives
one class for it:

- one ``Linear`` (BERT/MiniLM ``classifier``, Llama/Qwen ``score``): ``logits = W z + b``;
- two layers (RoBERTa/ELECTRA/MPNet): ``logits = out_proj(act(dense(z)))`` (dropout in training).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ClassifierHead", "ACTIVATIONS"]

ACTIVATIONS = ("tanh", "gelu", "relu", "identity")


def _make_activation(name: str) -> nn.Module:
    return {"tanh": nn.Tanh(), "gelu": nn.GELU(), "relu": nn.ReLU(), "identity": nn.Identity()}[name]


def _activation_name(act: object) -> str:
    """Best-effort name of a Hugging Face activation object or function."""
    if act is None:
        return "tanh"
    if act is torch.tanh or isinstance(act, nn.Tanh):
        return "tanh"
    if isinstance(act, nn.ReLU) or act is torch.relu:
        return "relu"
    if isinstance(act, nn.Identity):
        return "identity"
    cls = type(act).__name__.lower()
    if "gelu" in cls or getattr(act, "__name__", "") == "gelu":
        return "gelu"
    if "tanh" in cls:
        return "tanh"
    if "relu" in cls:
        return "relu"
    raise ValueError(f"Unsupported head activation {act!r}; supported: {ACTIVATIONS}.")


class ClassifierHead(nn.Module):
    """``z (n, d) -> logits (n, C)``: an optional ``dense`` + activation, then ``out_proj``.

    Parameters
    ----------
    in_features : int
        Width ``d`` of ``z``.
    num_classes : int
        Number of classes ``C``.
    hidden_features : int or None
        Width of the ``dense`` layer; ``None`` means a single ``Linear`` head.
    activation : {"tanh", "gelu", "relu", "identity"}
        Activation after ``dense`` (ignored for a single ``Linear``).
    bias : bool
        Whether ``out_proj`` has a bias (Llama/Qwen ``score`` has none).
    dropout : float
        Dropout before each layer, active only in training mode.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden_features: int | None = None,
        activation: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"The 'activation' parameter of ClassifierHead must be one of {ACTIVATIONS}. "
                f"Got {activation!r} instead."
            )
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.hidden_features = None if hidden_features is None else int(hidden_features)
        self.activation_name = activation
        self.dropout = nn.Dropout(dropout)
        if self.hidden_features is None:
            self.dense = None
            self.act = nn.Identity()
            self.out_proj = nn.Linear(self.in_features, self.num_classes, bias=bias)
        else:
            self.dense = nn.Linear(self.in_features, self.hidden_features)
            self.act = _make_activation(activation)
            self.out_proj = nn.Linear(self.hidden_features, self.num_classes, bias=bias)

    @property
    def is_linear(self) -> bool:
        """True for a single ``Linear`` head."""
        return self.dense is None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dropout(z)
        if self.dense is not None:
            x = self.dropout(self.act(self.dense(x)))
        return self.out_proj(x)

    def config(self) -> dict:
        """Constructor arguments as a JSON-serialisable dict."""
        return {
            "in_features": self.in_features,
            "num_classes": self.num_classes,
            "hidden_features": self.hidden_features,
            "activation": self.activation_name,
            "bias": self.out_proj.bias is not None,
            "dropout": float(self.dropout.p),
        }

    @classmethod
    def from_module(cls, module: nn.Module) -> ClassifierHead:
        """Copy of a trained head as a :class:`ClassifierHead` (weights copied, float32).

        Accepts an ``nn.Linear``, a ``ClassifierHead``, or a two-layer Hugging Face head with
        ``dense`` and ``out_proj`` submodules (RoBERTa/ELECTRA/MPNet style; the activation is read
        from an ``activation`` attribute when present, else ``tanh`` as in RoBERTa and MPNet).
        """
        if isinstance(module, ClassifierHead):
            return copy.deepcopy(module).float()
        if isinstance(module, nn.Linear):
            head = cls(module.in_features, module.out_features, bias=module.bias is not None)
            with torch.no_grad():
                head.out_proj.weight.copy_(module.weight.float())
                if module.bias is not None:
                    head.out_proj.bias.copy_(module.bias.float())
            return head
        dense = getattr(module, "dense", None)
        out = getattr(module, "out_proj", None)
        if isinstance(dense, nn.Linear) and isinstance(out, nn.Linear):
            act = _activation_name(getattr(module, "activation", None))
            drop = getattr(module, "dropout", None)
            p = float(drop.p) if isinstance(drop, nn.Dropout) else 0.0
            head = cls(
                dense.in_features,
                out.out_features,
                hidden_features=dense.out_features,
                activation=act,
                bias=out.bias is not None,
                dropout=p,
            )
            with torch.no_grad():
                head.dense.weight.copy_(dense.weight.float())
                head.dense.bias.copy_(dense.bias.float())
                head.out_proj.weight.copy_(out.weight.float())
                if out.bias is not None:
                    head.out_proj.bias.copy_(out.bias.float())
            return head
        raise TypeError(
            "The 'head' must be an nn.Linear, an adue.heads.ClassifierHead or a module with "
            f"'dense' and 'out_proj' Linear layers. Got {type(module).__name__} instead."
        )
