"""Matrix factorisation for implicit feedback, trained with sampled negatives.

``score(u, i) = p_u · q_i + b_i``. Each training interaction ``(u, i)`` in a batch is paired
with ``negatives`` items ``j`` drawn uniformly (vectorised, one ``randint`` per batch; a draw
that is one of the user's training items is redrawn once), and the Trainer minimises

    mean -log σ(score(u, i) - score(u, j))  +  reg · mean(|p_u|² + |q_i|² + |q_j|²)  (+ bias_reg · b²)

with ``loss="bpr"`` (Rendle et al. 2009, the default). ``loss="bce"`` replaces the first term
by the pointwise ``-log σ(score(u, i)) - Σ_j log σ(-score(u, j))`` (NCF's objective), and
``loss="softmax"`` by the sampled softmax ``-score(u, i) + log Σ_{x ∈ {i} ∪ J} exp(score(u, x))``
(uniform negatives need no log-Q correction).

Early stopping watches ``1 - Recall@20`` of the validation interactions (full catalogue,
training items masked), and :class:`~reelrec.recommender.Recommender` then refits on
train + validation for the best number of epochs (``refit`` in ``default_train``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import AliasChoices, Field
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig, RatingModel, biased_retrieval_vectors
from reelrec.models.ranking import interaction_keys, ranking_validation_loss, sample_negatives


class BPRConfig(ModelConfig):
    """Hyperparameters of :class:`BPR` (defaults chosen on validation data)."""

    embedding_size: int = Field(128, ge=1, le=4096)
    reg: float = Field(1e-5, ge=0, description="L2 weight on the batch's user and item vectors")
    bias_reg: float = Field(1e-4, ge=0, description="L2 weight on the batch's item biases")
    negatives: int = Field(1, ge=1, le=1000, description="sampled negatives per positive")
    loss: Literal["bpr", "bce", "softmax"] = Field(
        "bpr", description="bpr (pairwise), bce (pointwise) or softmax (sampled softmax over 1 + negatives)"
    )
    init_std: float = Field(0.01, gt=0)
    use_bias: bool = Field(
        True,
        validation_alias=AliasChoices("use_bias", "item_bias"),
        description="learn an item bias (formerly item_bias)",
    )


#: training interactions past which BPR trains with :data:`LARGE_DATA_TRAIN_BPR` (MF's threshold)
LARGE_DATA_BPR = 2_000_000
#: 16x larger batches (the row-sparse steps cost per batch), a proportionally larger step, at most 20
#: epochs with patience 2, no refit: bounded to well under an hour on ML-25M-sized data
LARGE_DATA_TRAIN_BPR: dict[str, Any] = {
    "batch_size": 32_768,
    "learning_rate": 5e-3,
    "epochs": 20,
    "patience": 2,
    "refit": False,
}


class BPR(RatingModel):
    """MF with the BPR (or BCE / sampled-softmax) loss; see the module docs."""

    name: ClassVar[str] = "bpr"
    config_class: ClassVar[type[ModelConfig]] = BPRConfig
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "batch_size": 2048,
        "learning_rate": 2e-3,
        "patience": 5,
        "refit": True,
    }
    config: BPRConfig

    @classmethod
    def train_defaults(
        cls, n_ratings: int | None = None, config: ModelConfig | None = None
    ) -> dict[str, Any]:
        """:attr:`default_train`; past :data:`LARGE_DATA_BPR` training interactions the
        large-data recipe :data:`LARGE_DATA_TRAIN_BPR` (an epoch of 21M interactions at batch 2048
        costs 156 s here, and up to 200 epochs plus a refit would take many hours)."""
        values = dict(cls.default_train)
        if n_ratings is not None and n_ratings > LARGE_DATA_BPR:
            values.update(LARGE_DATA_TRAIN_BPR)
        return values

    def __init__(self, n_users: int, n_items: int, config: BPRConfig | None = None) -> None:
        config = config or BPRConfig()
        super().__init__(n_users, n_items, config)
        self.user_factors = nn.Embedding(n_users, config.embedding_size)
        self.item_factors = nn.Embedding(n_items, config.embedding_size)
        self.item_bias = nn.Embedding(n_items, 1)
        for table in (self.user_factors, self.item_factors):
            nn.init.normal_(table.weight, 0.0, config.init_std)
        nn.init.zeros_(self.item_bias.weight)
        self.item_bias.weight.requires_grad_(config.use_bias)
        # training positives (sorted user * n_items + item keys), for sampling and validation
        self.register_buffer("positive_keys", torch.zeros(0, dtype=torch.long), persistent=False)

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return False

    def prepare(self, train: Dataset) -> None:
        super().prepare(train)
        keys = interaction_keys(train, self.n_items)
        self.positive_keys = torch.as_tensor(keys, device=self.global_mean.device)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, q = self.user_factors(users), self.item_factors(items)
        return (p * q).sum(-1) + self.item_bias(items).squeeze(-1)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors(users) @ self.item_factors.weight.T + self.item_bias.weight[:, 0][None, :]

    def retrieval_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``[p_u ; 1]`` and ``[q_i ; b_i]``: their inner product is the score (ANN serving, and
        the full-ranking metrics of a large run, ranked from the factors)."""
        return biased_retrieval_vectors(
            self.user_factors.weight, self.item_factors.weight, self.item_bias.weight
        )

    def training_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        neg = sample_negatives(self.positive_keys, users, cfg.negatives, self.n_items)
        p = self.user_factors(users)  # (b, d)
        q_pos, q_neg = self.item_factors(items), self.item_factors(neg)  # (b, d), (b, k, d)
        b_pos, b_neg = self.item_bias(items).squeeze(-1), self.item_bias(neg).squeeze(-1)
        x_pos = (p * q_pos).sum(-1) + b_pos
        x_neg = (p[:, None, :] * q_neg).sum(-1) + b_neg
        if cfg.loss == "bpr":
            loss = -nn.functional.logsigmoid(x_pos[:, None] - x_neg).mean()
        elif cfg.loss == "bce":
            loss = -(nn.functional.logsigmoid(x_pos) + nn.functional.logsigmoid(-x_neg).sum(1)).mean()
        else:
            logits = torch.cat([x_pos[:, None], x_neg], dim=1)
            loss = (torch.logsumexp(logits, dim=1) - x_pos).mean()
        l2 = (p * p).sum(-1).mean() + (q_pos * q_pos).sum(-1).mean() + (q_neg * q_neg).sum(-1).mean()
        loss = loss + cfg.reg * l2
        if cfg.use_bias and cfg.bias_reg:
            loss = loss + cfg.bias_reg * ((b_pos * b_pos).mean() + (b_neg * b_neg).mean())
        return loss

    def validation_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> float | None:
        """``1 - Recall@20`` of the validation interactions (training items masked)."""
        return ranking_validation_loss(self, users, items, self.positive_keys)

    def item_vectors(self) -> torch.Tensor:
        return self.item_factors.weight.detach()
