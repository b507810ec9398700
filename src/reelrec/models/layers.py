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


#: the keep decision's resolution: one 16-bit uniform field per element
_FIELD = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A boolean CPU mask of ``shape``, each entry ``True`` with probability ``1 - p`` (to
    1/65,536): three 16-bit fields of every 64-bit random word, so a third of the generator
    calls of ``bernoulli_`` (which draws once per element, 30% of an MLP batch's time here). The
    top field of a word is skipped (``random_`` leaves the sign bit 0); the global generator is
    used, so a seeded run is repeatable."""
    n = 1
    for size in shape:
        n *= int(size)
    words = torch.empty((n + 2) // 3, dtype=torch.int64).random_()
    fields = words.view(torch.int16).view(-1, 4)[:, :3]
    threshold = -(_FIELD // 2) + round(p * _FIELD)  # fields are uniform on -32768..32767
    return (fields >= threshold).reshape(-1)[:n].view(tuple(shape))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper training mask on the CPU (:func:`keep_mask`, 2-3x faster
    forward and backward); the same module everywhere else (CUDA's fused kernel, evaluation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or self.inplace or x.device.type != "cpu":
            return super().forward(x)
        return x * keep_mask(x.shape, self.p) * (1.0 / (1.0 - self.p))


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
            layers.append(Dropout(dropout))
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


def pass_through(tower: nn.Sequential, head: nn.Linear, columns: slice) -> bool:
    """Set ``tower`` and ``head`` so that ``head(tower(x))`` starts as ``x[:, columns].sum(-1)``.

    Two units of every hidden layer carry the sum as ``relu(s)`` and ``relu(-s)`` (``relu(s) -
    relu(-s) = s``); the other units keep their random weights, and the head reads only the two
    (its other weights start at zero), so a network fed ``[p; q; p * q]`` starts at the dot
    product ``p . q`` of a pre-trained MF and learns what it misses from there. Applied only to a
    ReLU tower without batch norm whose layers are all at least 2 wide; returns whether it was.
    """
    linears = [m for m in tower if isinstance(m, nn.Linear)]
    if (
        not linears
        or any(not isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)) for m in tower)
        or any(m.out_features < 2 for m in linears)
        or head.out_features != 1
    ):
        return False
    with torch.no_grad():
        first = linears[0]
        first.weight[:2] = 0.0
        first.weight[0, columns] = 1.0
        first.weight[1, columns] = -1.0
        first.bias[:2] = 0.0
        for layer in linears[1:]:
            layer.weight[:2] = 0.0
            layer.weight[0, :2] = torch.tensor([1.0, -1.0])
            layer.weight[1, :2] = torch.tensor([-1.0, 1.0])
            layer.bias[:2] = 0.0
        head.weight.zero_()
        head.weight[0, :2] = torch.tensor([1.0, -1.0])
        head.bias.zero_()
    return True
