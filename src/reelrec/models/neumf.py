"""Neural matrix factorisation (He et al., 2017): a GMF branch and an MLP branch, fused.

``GMF``: ``p_u ⊙ q_i`` (element-wise product of one pair of embeddings).
``MLP``: ``[p'_u ; q'_i]`` through a tower (separate embeddings).
``NeuMF``: the two outputs concatenated and fed to the final layer (the head).

Two objectives:

* ``mse`` (explicit ratings): the head predicts a rating, as every rating model here.
* ``bce`` (implicit feedback): every rating is a positive interaction; each positive in a
  batch is paired with ``negatives`` items drawn uniformly from the catalogue (vectorised:
  one ``randint`` per batch; draws that hit one of the user's training items are redrawn once
  against a sorted key array). The output is the probability of an interaction, used for
  ranking; such a model does not predict ratings.

Pre-training as in the paper: ``pretrained_gmf`` / ``pretrained_mlp`` name saved runs of a
``gmf`` and an ``mlp`` model (same data and embedding sizes); their embeddings and towers
initialise the branches and the fused head is ``alpha * gmf_head ⊕ (1 - alpha) * mlp_head``.
Without them, ``pretrain`` (``auto`` by default for NeuMF) starts the GMF branch from an MF trained
inside the same fit (:mod:`reelrec.training.pretrained`): the network begins at the MF's
predictions and its MLP branch learns what the dot product misses.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, Pretrain, RatingModel
from reelrec.models.init import init_embedding
from reelrec.models.layers import Dropout, init_linear, mlp_tower
from reelrec.models.neural import NeuralConfig, NeuralRatingModel
from reelrec.models.ranking import sample_negatives


class NeuMFConfig(NeuralConfig):
    """Hyperparameters of :class:`NeuMF` (plus everything in :class:`NeuralConfig`).

    The rating defaults are the best recipe measured on ML-1M holdout90 (2026-12-02): a 128-wide
    GMF branch started from an MF trained first in the same fit (``pretrain``), an MLP branch
    ``[64, 32]`` over 32-dimensional embeddings, light L2, fine-tuned at a low learning rate
    (:attr:`NeuMF.finetune_train`). He et al.'s set-up is ``objective="bce"`` with
    ``gmf_size=32`` (no MF pre-training for that objective).
    """

    branches: Literal["both", "gmf", "mlp"] = "both"
    gmf_size: int = Field(128, ge=1, le=4096, description="embedding size of the GMF branch")
    hidden: list[int] = Field(default_factory=lambda: [64, 32], description="MLP-branch hidden sizes")
    user_reg: float = Field(0.05, ge=0, description="L2 weight on the batch's user embeddings")
    item_reg: float = Field(0.01, ge=0, description="L2 weight on the batch's item embeddings")
    objective: Literal["mse", "bce"] = "mse"
    negatives: int = Field(4, ge=1, le=1000, description="sampled negatives per positive (bce)")
    pretrained_gmf: str | None = Field(None, description="run directory of a trained gmf model")
    pretrained_mlp: str | None = Field(None, description="run directory of a trained mlp model")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the GMF head when fusing pre-trained heads")
    pretrain: Literal["auto", "mf", "none"] = Field(
        "auto", description="start the GMF branch from an MF trained first in the same fit (see NeuralConfig)"
    )

    @model_validator(mode="after")
    def _objective(self) -> NeuMFConfig:
        if self.objective == "bce" and self.output == "softmax":
            raise ValueError("the bce objective has its own sigmoid output; use output=linear")
        return self


class NeuMF(NeuralRatingModel):
    """GMF + MLP with a fused head; see the module docs."""

    name: ClassVar[str] = "neumf"
    config_class: ClassVar[type[ModelConfig]] = NeuMFConfig
    config: NeuMFConfig
    #: fine-tuning from the pre-trained MF (the default for the rating objective); ML-1M holdout90
    #: 2026-12-02: GMF 128 from the MF + MLP branch [64, 32] over 32-d embeddings, valid 0.8373,
    #: test 0.8367 (the MF alone: 0.8379 / 0.8375; NeuMF from random weights: 0.8515)
    finetune_train: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 4096,
        "learning_rate": 1e-4,
        "refit": True,
    }

    def __init__(self, n_users: int, n_items: int, config: NeuMFConfig | None = None) -> None:
        config = config or self.config_class()
        width = 0
        tower: nn.Module | None = None
        if config.branches in ("both", "mlp"):
            tower, mlp_width = mlp_tower(
                2 * config.embedding_size, config.hidden, config.activation, config.dropout, config.batch_norm
            )
            width += mlp_width
        if config.branches in ("both", "gmf"):
            width += config.gmf_size
        if config.objective == "bce":  # a ranking model: no rating biases or standardisation
            config = config.model_copy(update={"use_bias": False, "standardize": False, "output": "linear"})
        super().__init__(n_users, n_items, config, width)
        if config.branches in ("both", "gmf"):
            self.user_gmf = nn.Embedding(n_users, config.gmf_size)
            self.item_gmf = nn.Embedding(n_items, config.gmf_size)
            for emb in (self.user_gmf, self.item_gmf):
                init_embedding(emb.weight, config.init, config.init_std)
        if tower is not None:
            self.user_mlp = nn.Embedding(n_users, config.embedding_size)
            self.item_mlp = nn.Embedding(n_items, config.embedding_size)
            for emb in (self.user_mlp, self.item_mlp):
                init_embedding(emb.weight, config.init, config.init_std)
            self.tower = tower
            init_linear(self.tower, "he" if config.init == "he" else "xavier")
        self.embedding_dropout = Dropout(config.embedding_dropout)
        # positives of the training data (sorted user*n_items+item keys), for negative sampling
        self.register_buffer("positive_keys", torch.zeros(0, dtype=torch.long), persistent=False)

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return self.config.objective == "mse"

    # ------------------------------------------------------------------ set-up
    def prepare(self, train: Dataset) -> None:
        super().prepare(train)
        if self.config.objective == "bce":
            keys = np.unique(train.user_index.astype(np.int64) * self.n_items + train.item_index)
            self.positive_keys = torch.as_tensor(keys, device=self.global_mean.device)

    @classmethod
    def pretrained_runs(cls, config: ModelConfig) -> dict[str, str]:
        assert isinstance(config, NeuMFConfig)
        runs = {"gmf": config.pretrained_gmf, "mlp": config.pretrained_mlp}
        return {role: path for role, path in runs.items() if path}

    @classmethod
    def pretraining(cls, config: ModelConfig) -> dict[str, Pretrain]:
        """An MF for the GMF branch (``pretrain``), unless saved runs are named."""
        assert isinstance(config, NeuMFConfig)
        if (
            config.pretrain == "none"
            or cls.pretrained_runs(config)
            or config.branches == "mlp"
            or config.objective != "mse"
            or not config.mf_compatible
        ):
            return {}
        return {"mf": Pretrain("mf", {"embedding_size": config.gmf_size})}

    def init_from(self, sources: dict[str, RatingModel]) -> None:
        """Start from pre-trained models: ``gmf`` / ``mlp`` runs (the paper's pre-training: each
        branch from its own model, heads fused with ``alpha``), or an ``mf``, whose factors and
        biases start the GMF branch with a head that reproduces the MF's prediction (weights 1
        on the GMF branch, 0 on the MLP branch, which then learns what the dot product misses)."""
        unknown = set(sources) - {"gmf", "mlp", "mf"}
        if unknown:
            super().init_from({k: sources[k] for k in unknown})
        for role, other in sources.items():
            if (other.n_users, other.n_items) != (self.n_users, self.n_items):
                raise ConfigError(f"pre-trained {role} model was trained on different users or movies")
        if "mf" in sources:
            self._init_from_mf(sources["mf"])
        cfg = self.config
        heads: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for kind in ("gmf", "mlp"):
            if kind not in sources:
                continue
            state = sources[kind].state_dict()
            own = self.state_dict()
            with torch.no_grad():
                if kind == "gmf":
                    if "user_gmf.weight" not in own or "user_gmf.weight" not in state:
                        raise ConfigError("pretrained_gmf is not a gmf run that fits this model's GMF branch")
                    self._copy(
                        state, {"user_gmf.weight": "user_gmf.weight", "item_gmf.weight": "item_gmf.weight"}
                    )
                else:
                    src = "user_embedding" if "user_embedding.weight" in state else "user_mlp"
                    if "user_mlp.weight" not in own or f"{src}.weight" not in state:
                        raise ConfigError(
                            "pretrained_mlp is not an mlp run that fits this model's MLP branch"
                        )
                    names = {
                        "user_mlp.weight": f"{src}.weight",
                        "item_mlp.weight": f"{src.replace('user', 'item')}.weight",
                    }
                    names.update({k: k for k in state if k.startswith("tower.")})
                    self._copy(state, names)
            heads[kind] = (state["head.weight"], state["head.bias"])
        if len(heads) == 2:  # fuse the two heads: alpha * GMF head ⊕ (1 - alpha) * MLP head
            (wg, bg), (wm, bm) = heads["gmf"], heads["mlp"]
            with torch.no_grad():
                self.head.weight.copy_(torch.cat([cfg.alpha * wg, (1 - cfg.alpha) * wm], dim=1))
                self.head.bias.copy_(cfg.alpha * bg + (1 - cfg.alpha) * bm)

    def _init_from_mf(self, mf: RatingModel) -> None:
        factors = getattr(mf, "user_factors", None)
        if not isinstance(factors, nn.Embedding):
            raise ConfigError(f"pretrain: a {mf.name!r} model, not an mf model")
        if not hasattr(self, "user_gmf") or factors.weight.shape[1] != self.config.gmf_size:
            raise ConfigError(
                f"pretrain: the MF's {factors.weight.shape[1]} factors do not fit the GMF branch"
            )
        k = self.config.gmf_size
        with torch.no_grad():
            self.user_gmf.weight.copy_(factors.weight)
            self.item_gmf.weight.copy_(mf.item_factors.weight)
            self.head.weight.zero_()
            self.head.weight[:, :k] = 1.0  # the GMF branch comes first in encode()
            self.head.bias.zero_()
            if self.config.use_bias:
                self.user_bias.weight.copy_(mf.user_bias.weight)
                self.item_bias.weight.copy_(mf.item_bias.weight)
                self.global_mean.copy_(mf.global_mean)

    def _copy(self, state: dict[str, torch.Tensor], names: dict[str, str]) -> None:
        """Copy ``state[src]`` into this model's ``dst`` for each ``dst: src``, checking shapes."""
        own = self.state_dict()
        for dst, src in names.items():
            if dst not in own or own[dst].shape != state[src].shape:
                raise ConfigError(f"pre-trained {src} does not fit this model's {dst} (sizes differ)")
            own[dst].copy_(state[src])

    # ------------------------------------------------------------------ network
    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts, user_vecs, item_vecs = [], [], []
        if hasattr(self, "user_gmf"):
            p, q = self.user_gmf(users), self.item_gmf(items)
            parts.append(self.embedding_dropout(p * q))
            user_vecs.append(p)
            item_vecs.append(q)
        if hasattr(self, "user_mlp"):
            p, q = self.user_mlp(users), self.item_mlp(items)
            parts.append(self.tower(self.embedding_dropout(torch.cat([p, q], dim=-1))))
            user_vecs.append(p)
            item_vecs.append(q)
        h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return h, self._embedding_penalty(users, items, user_vecs, item_vecs)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.config.objective == "bce":
            h, _ = self.encode(users, items)
            return torch.sigmoid(self.head(h).squeeze(-1))
        return super().forward(users, items)

    def sample_negatives(self, users: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` uniformly drawn items per user; draws that are training positives are redrawn once."""
        return sample_negatives(self.positive_keys, users, k, self.n_items)

    def training_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        if self.config.objective == "mse":
            return super().training_loss(users, items, ratings)
        k = self.config.negatives
        neg = self.sample_negatives(users, k)
        all_users = torch.cat([users, users.repeat_interleave(k)])
        all_items = torch.cat([items, neg.reshape(-1)])
        labels = torch.cat(
            [torch.ones_like(items, dtype=torch.float32), torch.zeros(neg.numel(), device=users.device)]
        )
        h, penalty = self.encode(all_users, all_items)
        logits = self.head(h).squeeze(-1)
        return nn.functional.binary_cross_entropy_with_logits(logits, labels) + penalty

    def validation_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> float | None:
        """For bce: the loss on validation positives with negatives from a fixed generator."""
        if self.config.objective == "mse":
            return None
        gen = torch.Generator(device="cpu").manual_seed(0)
        k = self.config.negatives
        neg = torch.randint(0, self.n_items, (users.shape[0], k), generator=gen).to(users.device)
        with torch.no_grad():
            pos = self.head(self.encode(users, items)[0]).squeeze(-1)
            negs = self.head(self.encode(users.repeat_interleave(k), neg.reshape(-1))[0]).squeeze(-1)
            logits = torch.cat([pos, negs])
            labels = torch.cat([torch.ones_like(pos), torch.zeros_like(negs)])
            return float(nn.functional.binary_cross_entropy_with_logits(logits, labels))

    # ------------------------------------------------------------------ GMF as a matrix product
    def _scores_by_product(self) -> bool:
        """Whether every score is a function of one inner product: the GMF branch alone (its
        feature is ``p_u ⊙ q_i``, so the head's output is ``(p_u ⊙ w) . q_i``) with a scalar
        rating output (linear or sigmoid), in evaluation mode (no dropout)."""
        cfg = self.config
        return cfg.branches == "gmf" and cfg.output in ("linear", "sigmoid") and not self.training

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """For the GMF branch alone one matrix product ``(P ⊙ w) Q^T`` plus the biases, through
        the same output as :meth:`forward` (instead of every (user, movie) pair through the
        head); otherwise the default pairwise scoring."""
        if not self._scores_by_product():
            return super().score_users(users)
        p = self.user_gmf(users) * self.head.weight[0]
        raw = p @ self.item_gmf.weight.T + self.head.bias[0]
        if self.config.objective == "bce":
            return torch.sigmoid(raw)
        if self.config.use_bias:
            raw = raw + self.user_bias(users) + self.item_bias.weight[:, 0][None, :]
        return self._to_rating(raw.reshape(-1)).reshape(raw.shape)

    def retrieval_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For the GMF branch alone with a scalar output: ``[p_u ⊙ w ; 1]`` and ``[q_i ; b_i]``
        (their inner product is the head's output minus a per-user constant, and every scalar
        output is increasing in it); ``None`` for the MLP branch or a softmax head."""
        if self.config.branches != "gmf" or self.config.output == "softmax":
            return None
        with torch.no_grad():
            p = (self.user_gmf.weight * self.head.weight[0]).cpu().numpy()
            q = self.item_gmf.weight.cpu().numpy()
            if self.config.use_bias and self.config.objective == "mse":
                b_i = self.item_bias.weight.cpu().numpy()
                p = np.concatenate([p, np.ones((p.shape[0], 1), dtype=p.dtype)], axis=1)
                q = np.concatenate([q, b_i.astype(q.dtype)], axis=1)
        return p, q

    def item_vectors(self) -> torch.Tensor | None:
        tables = [
            t.weight.detach() for t in (getattr(self, "item_gmf", None), getattr(self, "item_mlp", None)) if t
        ]
        return torch.cat(tables, dim=1) if tables else None


class GMFConfig(NeuMFConfig):
    """Generalised matrix factorisation: NeuMF with only the GMF branch."""

    branches: Literal["both", "gmf", "mlp"] = "gmf"
    gmf_size: int = Field(32, ge=1, le=4096, description="embedding size of the GMF branch")
    user_reg: float = Field(0.0, ge=0, description="L2 weight on the batch's user embeddings")
    item_reg: float = Field(0.0, ge=0, description="L2 weight on the batch's item embeddings")
    pretrain: Literal["auto", "mf", "none"] = Field("none", description="see NeuralConfig.pretrain")


class GMF(NeuMF):
    """NeuMF's GMF branch alone (``p_u ⊙ q_i`` then a linear head)."""

    name: ClassVar[str] = "gmf"
    config_class: ClassVar[type[ModelConfig]] = GMFConfig
