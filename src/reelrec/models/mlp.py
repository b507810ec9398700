"""MLP over concatenated user and movie embeddings (the notebooks' "neural network with embeddings").

``[p_u ; q_i] -> dropout -> (Linear -> [BatchNorm] -> activation -> [Dropout]) x depth -> head``,
plus (by default) the global mean and user/item biases around the output. Every choice the
notebooks make is a config field: hidden sizes, activation, dropout on embeddings and between
layers, batch norm, embedding initialiser, per-table L2, output (linear, scaled sigmoid or a
softmax over the rating levels) and target standardisation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, Pretrain, RatingModel
from reelrec.models.init import init_embedding
from reelrec.models.layers import Dropout, init_linear, mlp_tower, pass_through
from reelrec.models.neural import SCORE_BLOCK_FLOATS, NeuralConfig, NeuralRatingModel


class MLPConfig(NeuralConfig):
    """Hyperparameters of :class:`MLP` (all of :class:`NeuralConfig`, plus the input layout).

    The defaults are the best recipe measured on ML-1M holdout90 (validation RMSE, 2026-11-26 and
    2026-12-02): 128-dimensional embeddings started from an MF trained first in the same fit
    (``pretrain``), the tower fed ``[p; q; p * q]`` through one 64-unit layer, MF's
    frequency-weighted L2 and light embedding dropout, fine-tuned at a low learning rate
    (:attr:`MLP.finetune_train`). The notebooks' network is ``inputs="concat"``,
    ``hidden=[64, 32, 16, 8]``, ``pretrain="none"`` (``reelrec experiment --preset seed000``).
    """

    embedding_size: int = Field(128, ge=1, le=4096, description="size of each user and item embedding")
    hidden: list[int] = Field(default_factory=lambda: [64], description="MLP hidden sizes")
    embedding_dropout: float = Field(0.1, ge=0, lt=1)
    init_std: float = Field(0.01, gt=0, description="scale of the normal/uniform embedding initialiser")
    user_reg: float = Field(0.2, ge=0, description="L2 weight on the batch's user embeddings (see reg_alpha)")
    item_reg: float = Field(
        0.03, ge=0, description="L2 weight on the batch's item embeddings (see reg_alpha)"
    )
    reg_alpha: float = Field(0.5, ge=0, le=1, description="see NeuralConfig.reg_alpha (MF's default here)")
    bias_init: Literal["baseline", "zero"] = Field("baseline", description="see NeuralConfig.bias_init")
    inputs: Literal["concat", "concat_product"] = Field(
        "concat_product",
        description="the tower's input: [p_u ; q_i] (the notebooks'), or [p_u ; q_i ; p_u * q_i], which "
        "hands the tower the dot-product interaction an MLP finds hard to learn (Rendle et al. 2020)",
    )
    pretrain: Literal["auto", "mf", "none"] = Field(
        "auto", description="start from an MF trained first in the same fit (see NeuralConfig.pretrain)"
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
    #: fine-tuning from the pre-trained MF (the default): a low learning rate, early-stopped on the
    #: validation part, then refitted on train + validation for the best number of epochs
    finetune_train: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 4096,
        "learning_rate": 1e-4,
        "refit": True,
    }

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
        self.embedding_dropout = Dropout(config.embedding_dropout)
        init_linear(self.tower, "he" if config.init == "he" else "xavier")

    @classmethod
    def pretrained_runs(cls, config: ModelConfig) -> dict[str, str]:
        assert isinstance(config, MLPConfig)
        return {"mf": config.pretrained_mf} if config.pretrained_mf else {}

    @classmethod
    def pretraining(cls, config: ModelConfig) -> dict[str, Pretrain]:
        assert isinstance(config, MLPConfig)
        if config.pretrain == "none" or config.pretrained_mf or not config.mf_compatible:
            return {}
        return {"mf": Pretrain("mf", {"embedding_size": config.embedding_size})}

    def init_from(self, sources: dict[str, RatingModel]) -> None:
        """Start from an MF (role ``mf``): its factors become the embeddings, its biases the biases,
        and with ``inputs = "concat_product"`` a ReLU tower starts as a pass-through of ``p . q``
        (:func:`~reelrec.models.layers.pass_through`), so the MLP starts at the MF's predictions."""
        unknown = set(sources) - {"mf"}
        if unknown:
            super().init_from({k: sources[k] for k in unknown})
        mf = sources.get("mf")
        if mf is None:
            return
        factors = getattr(mf, "user_factors", None)
        if not isinstance(factors, nn.Embedding):
            raise ConfigError(f"pretrained_mf: a {mf.name!r} model, not an mf model")
        if (mf.n_users, mf.n_items) != (self.n_users, self.n_items):
            raise ConfigError("pretrained_mf: the MF was trained on different users or movies")
        width = int(factors.weight.shape[1])
        if width != self.config.embedding_size:
            raise ConfigError(f"pretrained_mf: the MF has {width} factors; set embedding_size={width}")
        if not self.config.mf_compatible:
            raise ConfigError(
                "pretrained_mf needs output='linear', use_bias and no standardize (the MF scale)"
            )
        if self.config.inputs == "concat_product":  # start at the MF's prediction
            pass_through(self.tower, self.head, slice(2 * width, 3 * width))
        with torch.no_grad():
            self.user_embedding.weight.copy_(factors.weight)
            self.item_embedding.weight.copy_(mf.item_factors.weight)
            if self.config.use_bias:
                self.user_bias.weight.copy_(mf.user_bias.weight)
                self.item_bias.weight.copy_(mf.item_bias.weight)
                self.global_mean.copy_(mf.global_mean)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every item for each user (equal to :meth:`forward`), with the
        tower's first layer split by its inputs: ``W [p; q; p * q] = W_p p + W_q q + W_pq (p * q)``.
        The item part is computed once for the catalogue, the user part once per user, and the
        product part as one matrix product per block of users (``(P ⊙ w_j) Q^T`` for each hidden
        unit ``j``), instead of gathering and concatenating every (user, movie) pair's inputs."""
        first = self.tower[0] if len(self.tower) else None
        was_training = self.training
        self.eval()
        try:
            if not isinstance(first, nn.Linear):  # no tower: the head reads the inputs
                return super().score_users(users)
            k = self.config.embedding_size
            w_user, w_item = first.weight[:, :k], first.weight[:, k : 2 * k]
            w_prod = first.weight[:, 2 * k :] if self.config.inputs == "concat_product" else None
            q = self.item_embedding.weight
            hi = q @ w_item.T + first.bias  # (n_items, hidden)
            m, h = hi.shape
            bi = self.item_bias.weight.squeeze(-1)
            block = max(1, SCORE_BLOCK_FLOATS // max(1, m * h))
            out = []
            for s in range(0, users.shape[0], block):
                u = users[s : s + block]
                n = u.shape[0]
                p = self.user_embedding(u)
                z = (p @ w_user.T)[:, None, :] + hi[None, :, :]  # (n, n_items, hidden)
                if w_prod is not None:
                    scaled = (p[:, None, :] * w_prod[None, :, :]).reshape(n * h, k)
                    z += (scaled @ q.T).reshape(n, h, m).transpose(1, 2)
                raw = self.head(self.tower[1:](z.reshape(n * m, h)))
                if self.config.output != "softmax":
                    raw = raw.squeeze(-1)
                    if self.config.use_bias:
                        raw = raw + self.user_bias(u).squeeze(-1).repeat_interleave(m) + bi.repeat(n)
                out.append(self._to_rating(raw).reshape(n, m))
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, m, device=users.device)

    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, q = self.user_embedding(users), self.item_embedding(items)
        parts = [p, q, p * q] if self.config.inputs == "concat_product" else [p, q]
        x = self.embedding_dropout(torch.cat(parts, dim=-1))
        return self.tower(x), self._embedding_penalty(users, items, [p], [q])
