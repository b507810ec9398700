"""Biased matrix factorisation: ``r(u, i) = mu + b_u + b_i + p_u . q_i``.

The notebooks' ``CFModel`` (a Keras dot product of two embeddings), done right: global mean
and per-user/per-item biases, small-normal initialisation and L2 on the embeddings *of the
batch* (so a user is regularised in proportion to how often it is seen, as in Funk's SGD).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.init import init_embedding


class MFConfig(ModelConfig):
    """Hyperparameters of :class:`MatrixFactorization`."""

    embedding_size: int = Field(64, ge=1, le=4096, description="factors per user and item")
    reg: float = Field(0.04, ge=0, description="L2 weight on the batch's user and item factors")
    bias_reg: float = Field(0.004, ge=0, description="L2 weight on the batch's biases")
    init: Literal["normal", "uniform", "xavier", "he"] = "normal"
    init_std: float = Field(0.01, gt=0, description="scale of the normal/uniform initialiser")
    use_bias: bool = True


class MatrixFactorization(RatingModel):
    """Biased MF in PyTorch; see :class:`MFConfig`."""

    name: ClassVar[str] = "mf"
    config_class: ClassVar[type[ModelConfig]] = MFConfig
    config: MFConfig

    def __init__(self, n_users: int, n_items: int, config: MFConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or MFConfig())
        k = self.config.embedding_size
        self.user_factors = nn.Embedding(n_users, k)
        self.item_factors = nn.Embedding(n_items, k)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        for emb in (self.user_factors, self.item_factors):
            init_embedding(emb.weight, self.config.init, self.config.init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        if not self.config.use_bias:
            self.user_bias.weight.requires_grad_(False)
            self.item_bias.weight.requires_grad_(False)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_factors(users) * self.item_factors(items)).sum(-1)
        return self.global_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + dot

    def training_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        # one lookup per table serves both the prediction and the penalty
        cfg = self.config
        p, q = self.user_factors(users), self.item_factors(items)
        bu, bi = self.user_bias(users).squeeze(-1), self.item_bias(items).squeeze(-1)
        pred = self.global_mean + bu + bi + (p * q).sum(-1)
        loss = torch.mean((pred - ratings) ** 2) + cfg.reg * ((p * p).sum(-1) + (q * q).sum(-1)).mean()
        if cfg.use_bias and cfg.bias_reg:
            loss = loss + cfg.bias_reg * (bu * bu + bi * bi).mean()
        return loss

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        scores = self.user_factors(users) @ self.item_factors.weight.T
        return scores + self.global_mean + self.user_bias(users) + self.item_bias.weight.T

    def item_vectors(self) -> torch.Tensor:
        return self.item_factors.weight.detach()
