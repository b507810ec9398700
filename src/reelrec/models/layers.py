"""Building blocks shared by the neural models: activations by name, MLP towers, output heads."""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    name.lower(): getattr(nn.modules.activation, name)
    for name in nn.modules.activation.__all__
    if isinstance(getattr(nn.modules.activation, name), type)
    and issubclass(getattr(nn.modules.activation, name), nn.Module)
    and name not in ("MultiheadAttention", "Softmax2d")
}
_ALIASES = {
    "leaky_relu": "leakyrelu",
    "swish": "silu",
    "prelu": "prelu",
    "relu6": "relu6",
    "log_sigmoid": "logsigmoid",
}


def activation_names() -> list[str]:
    """Every activation name :func:`make_activation` accepts (any ``torch.nn`` activation)."""
    return sorted(_ACTIVATIONS)


def make_activation(name: str) -> nn.Module:
    """A ``torch.nn`` activation by (case-insensitive) class name, e.g. ``relu``, ``GELU``, ``leaky_relu``."""
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key).replace("_", "")
    try:
        return _ACTIVATIONS[key]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; use a torch.nn activation such as relu, gelu, tanh"
        ) from None


def check_activation(name: str) -> str:
    make_activation(name)
    return name


def mlp_tower(
    in_features: int, hidden: list[int], activation: str, dropout: float, batch_norm: bool
) -> tuple[nn.Sequential, int]:
    """``Linear -> [BatchNorm] -> activation -> [Dropout]`` per hidden size; returns (tower, out width)."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(make_activation(activation))
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    return nn.Sequential(*layers), width


def init_linear(module: nn.Module, kind: str) -> None:
    """He (kaiming) or Xavier initialisation of every ``Linear`` in ``module``, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            if kind == "he":
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def scaled_sigmoid(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """A sigmoid stretched to ``(low, high)`` (slightly beyond, so the ends are reachable)."""
    margin = 0.05 * (high - low)
    return (low - margin) + (high - low + 2 * margin) * torch.sigmoid(x)
