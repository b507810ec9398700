"""MLP over concatenated user and movie embeddings (the notebooks' "neural network with embeddings").

``[p_u ; q_i] -> dropout -> (Linear -> [BatchNorm] -> activation -> [Dropout]) x depth -> head``,
plus (by default) the global mean and user/item biases around the output. Every choice the
notebooks make is a config field: hidden sizes, activation, dropout on embeddings and between
layers, batch norm, embedding initialiser, per-table L2, output (linear, scaled sigmoid or a
softmax over the rating levels) and target standardisation.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig
from reelrec.models.init import init_embedding
from reelrec.models.layers import init_linear, mlp_tower
from reelrec.models.neural import NeuralConfig, NeuralRatingModel


class MLPConfig(NeuralConfig):
    """Hyperparameters of :class:`MLP` (all of :class:`NeuralConfig`, plus the input layout)."""

    inputs: Literal["concat", "concat_product"] = Field(
        "concat",
        description="the tower's input: [p_u ; q_i] (the notebooks'), or [p_u ; q_i ; p_u * q_i], which "
        "hands the tower the dot-product interaction an MLP finds hard to learn (Rendle et al. 2020)",
    )
    pretrained_mf: str | None = Field(
        None,
        description="run directory of an mf model trained on the same data: its factors and biases "
        "initialise the embeddings and biases (embedding_size must match)",
    )


class MLP(NeuralRatingModel):
    """User and movie embeddings, concatenated and fed through an MLP."""

    name: ClassVar[str] = "mlp"
    config_class: ClassVar[type[ModelConfig]] = MLPConfig
    config: MLPConfig

    def __init__(self, n_users: int, n_items: int, config: MLPConfig | None = None) -> None:
        config = config or MLPConfig()
        k = config.embedding_size
        n_in = 3 * k if config.inputs == "concat_product" else 2 * k
        tower, width = mlp_tower(n_in, config.hidden, config.activation, config.dropout, config.batch_norm)
        super().__init__(n_users, n_items, config, width)
        self.user_embedding = nn.Embedding(n_users, k)
        self.item_embedding = nn.Embedding(n_items, k)
        for emb in (self.user_embedding, self.item_embedding):
            init_embedding(emb.weight, config.init, config.init_std)
        self.tower = tower
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        init_linear(self.tower, "he" if config.init == "he" else "xavier")

    def prepare(self, train: Dataset) -> None:
        super().prepare(train)
        if self.config.pretrained_mf:
            self._load_mf(self.config.pretrained_mf, train)

    def _load_mf(self, path: str, train: Dataset) -> None:
        """Start from a trained MF run: its factors become the embeddings, its biases the biases."""
        from reelrec.artifacts import load_run

        other = load_run(path)
        if other.model.name != "mf":
            raise ConfigError(f"pretrained_mf: {path} is a {other.model.name!r} run, not an mf run")
        if not (
            np.array_equal(other.users.ids, train.users.ids)
            and np.array_equal(other.items.ids, train.items.ids)
        ):
            raise ConfigError(f"pretrained_mf: {path} was trained on different users or movies")
        mf = other.model
        width = int(mf.user_factors.weight.shape[1])
        if width != self.config.embedding_size:
            raise ConfigError(f"pretrained_mf: {path} has {width} factors; set embedding_size={width}")
        if self.config.output != "linear" or self.config.standardize:
            raise ConfigError("pretrained_mf needs output='linear' without standardize (the MF scale)")
        with torch.no_grad():
            self.user_embedding.weight.copy_(mf.user_factors.weight)
            self.item_embedding.weight.copy_(mf.item_factors.weight)
            if self.config.use_bias:
                self.user_bias.weight.copy_(mf.user_bias.weight)
                self.item_bias.weight.copy_(mf.item_bias.weight)
                self.global_mean.copy_(mf.global_mean)

    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, q = self.user_embedding(users), self.item_embedding(items)
        parts = [p, q, p * q] if self.config.inputs == "concat_product" else [p, q]
        x = self.embedding_dropout(torch.cat(parts, dim=-1))
        return self.tower(x), self._embedding_penalty(users, items, [p], [q])
