"""A canonical classification head that takes ``z`` directly.

Hugging Face heads differ in where they take their input (a token slice, a pooled vector) and
in their layers. The uncertainty methods only need the map ``z -> logits``; this module gives
one class for it:

- one ``Linear`` (BERT/MiniLM ``classifier``, Llama/Qwen ``score``): ``logits = W z + b``;
- two layers (RoBERTa/ELECTRA/MPNet): ``logits = out_proj(act(dense(z)))`` (dropout in training).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierHead", "ACTIVATIONS"]

ACTIVATIONS = ("tanh", "gelu", "relu", "identity")


def _make_activation(name: str) -> nn.Module:
    return {"tanh": nn.Tanh(), "gelu": nn.GELU(), "relu": nn.ReLU(), "identity": nn.Identity()}[name]


def _activation_name(act: object) -> str:
    """Name (in :data:`ACTIVATIONS`) of a Hugging Face or torch activation, exactly: an
    approximate GELU (``gelu_new``, ``gelu_pytorch_tanh``, ...) is not ``"gelu"`` and raises."""
    import torch.nn.functional as F

    kind = type(act).__name__
    if act is torch.tanh or isinstance(act, nn.Tanh):
        return "tanh"
    if act in (torch.relu, F.relu) or isinstance(act, nn.ReLU):
        return "relu"
    if isinstance(act, nn.Identity) or kind == "LinearActivation":
        return "identity"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    inner = getattr(act, "act", None)
    if kind == "GELUActivation" and getattr(inner, "__name__", "") in ("gelu", "_gelu_python"):
        return "gelu"  # transformers' exact GELU (erf)
    raise ValueError(
        f"The head activation {act!r} cannot be represented by adue.heads.ClassifierHead; "
        f"supported: {ACTIVATIONS} (gelu = the exact erf form)."
    )


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
    def from_layers(
        cls,
        dense: nn.Linear | None,
        out_proj: nn.Linear,
        *,
        activation: str = "tanh",
        dropout: float = 0.0,
    ) -> ClassifierHead:
        """A float32 copy of ``out_proj(act(dense(z)))`` (``dense`` None: one Linear), eval
        mode. A ``dense`` without bias gets a zero bias (the same map)."""
        hidden = None if dense is None else dense.out_features
        width = out_proj.in_features if dense is None else dense.in_features
        head = cls(
            width,
            out_proj.out_features,
            hidden_features=hidden,
            activation=activation,
            bias=out_proj.bias is not None,
            dropout=dropout,
        )
        with torch.no_grad():
            if dense is not None:
                head.dense.weight.copy_(dense.weight.float())
                head.dense.bias.zero_()
                if dense.bias is not None:
                    head.dense.bias.copy_(dense.bias.float())
            head.out_proj.weight.copy_(out_proj.weight.float())
            if out_proj.bias is not None:
                head.out_proj.bias.copy_(out_proj.bias.float())
        return head.eval()
