"""MLP over concatenated user and movie embeddings (the notebooks' "neural network with embeddings").

``[p_u ; q_i] -> dropout -> (Linear -> [BatchNorm] -> activation -> [Dropout]) x depth -> head``,
plus (by default) the global mean and user/item biases around the output. Every choice the
notebooks make is a config field: hidden sizes, activation, dropout on embeddings and between
layers, batch norm, embedding initialiser, per-table L2, output (linear, scaled sigmoid or a
softmax over the rating levels) and target standardisation.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from reelrec.models.base import ModelConfig
from reelrec.models.init import init_embedding
from reelrec.models.layers import init_linear, mlp_tower
from reelrec.models.neural import NeuralConfig, NeuralRatingModel


class MLPConfig(NeuralConfig):
    """Hyperparameters of :class:`MLP` (all of :class:`NeuralConfig`)."""


class MLP(NeuralRatingModel):
    """User and movie embeddings, concatenated and fed through an MLP."""

    name: ClassVar[str] = "mlp"
    config_class: ClassVar[type[ModelConfig]] = MLPConfig
    config: MLPConfig

    def __init__(self, n_users: int, n_items: int, config: MLPConfig | None = None) -> None:
        config = config or MLPConfig()
        k = config.embedding_size
        tower, width = mlp_tower(2 * k, config.hidden, config.activation, config.dropout, config.batch_norm)
        super().__init__(n_users, n_items, config, width)
        self.user_embedding = nn.Embedding(n_users, k)
        self.item_embedding = nn.Embedding(n_items, k)
        for emb in (self.user_embedding, self.item_embedding):
            init_embedding(emb.weight, config.init, config.init_std)
        self.tower = tower
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        init_linear(self.tower, "he" if config.init == "he" else "xavier")

    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, q = self.user_embedding(users), self.item_embedding(items)
        x = self.embedding_dropout(torch.cat([p, q], dim=-1))
        return self.tower(x), self._embedding_penalty([p], [q])
