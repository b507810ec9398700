"""Embedding initialisers by name (shared by every embedding model)."""

from __future__ import annotations

import math

import torch
from torch import nn


def init_embedding(weight: torch.Tensor, kind: str, scale: float = 0.01) -> None:
    """Initialise an embedding table in place.

    ``normal``: N(0, scale²); ``uniform``: U(-scale, scale); ``xavier``: Glorot uniform;
    ``he``: Kaiming normal (fan-in = embedding size).
    """
    with torch.no_grad():
        if kind == "normal":
            nn.init.normal_(weight, std=scale)
        elif kind == "uniform":
            nn.init.uniform_(weight, -scale, scale)
        elif kind == "xavier":
            nn.init.xavier_uniform_(weight)
        elif kind == "he":
            nn.init.normal_(weight, std=math.sqrt(2.0 / weight.shape[1]))
        else:
            raise ValueError(f"unknown initialiser {kind!r}; use normal, uniform, xavier or he")
