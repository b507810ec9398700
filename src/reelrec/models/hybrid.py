"""Hybrid: id embeddings plus embedded side features; a factorisation branch and an MLP tower.

For user ``u`` and movie ``i`` with side-feature vectors ``f_u`` and ``g_i``::

    r(u, i) = mu + b_u + b_i + (p_u + P f_u) . (q_i + Q g_i) + head(tower([f_u ; g_i]))

Each categorical feature has its own embedding table, each multi-hot feature (genres, tags) is
the mean of its tokens' embeddings (a bias-free ``Linear`` over the row-normalised multi-hot)
and a side's numeric features share one ``Linear`` over their standardised values and missing
flags; ``f_u`` / ``g_i`` are these vectors side by side. The dot branch (``dot``) is biased MF
whose user/item vectors are enriched with the projected features; its penalty is MF's
frequency-weighted L2 on those vectors. The tower (``mlp_tower``) models feature interactions
such as age x genre; with ``tower_ids`` it also sees ``[p_u ; q_i]``, as in the MLP model
(measured to overfit). Without features (and ``tower_ids``) there is no tower: biased MF.
``output`` (linear, sigmoid, softmax), ``standardize`` and the rest of
:class:`~reelrec.models.neural.NeuralConfig` work as for the other neural models.

The feature schemas (:mod:`reelrec.data.features`) are part of the config: :meth:`configure`
fits them on the training data, so the config alone fixes every table's shape, and the encoded
features of every user and item in the vocabularies are persistent buffers filled by
:meth:`prepare`. A saved model therefore predicts without the side files.

**Cold items.** An item (or user) with no training ratings has an untrained id embedding and
bias. Both are zeroed for such entities (a persistent mask filled by :meth:`prepare`), so their
prediction comes from the features alone; during training the same happens at random to a
fraction ``id_dropout`` of the batch's items (and ``user_id_dropout`` of its users), so the
network learns to predict from features without the id while the id embedding and bias learn
what the features miss. ``predicts_cold_items`` tells the Recommender to use the model rather
than the bias fallback for known items without training ratings.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.data.features import (
    DEFAULT_MAX_CATEGORIES,
    FeatureSchema,
    encode_features,
    infer_schema,
    parse_feature_requests,
)
from reelrec.errors import DataError
from reelrec.models.base import ModelConfig
from reelrec.models.init import init_embedding
from reelrec.models.layers import Dropout, init_linear, mlp_tower
from reelrec.models.neural import SCORE_BLOCK_FLOATS, NeuralConfig, NeuralRatingModel


class HybridConfig(NeuralConfig):
    """Hyperparameters of :class:`Hybrid` (plus everything in :class:`NeuralConfig`).

    The defaults differ from :class:`NeuralConfig` where validation RMSE on the ML-100K and
    ML-1M holdout90 training parts said so: 128-dimensional id embeddings initialised at
    N(0, 0.01²) with MF's frequency-weighted L2 (``user_reg=0.2``, ``item_reg=0.03``,
    ``reg_alpha=0.5``), biases starting at the bias baseline, and an MLP tower that sees the
    features only (feeding it the ids too overfits).
    """

    embedding_size: int = Field(128, ge=1, le=4096, description="size of each user and item id embedding")
    init_std: float = Field(0.01, gt=0, description="scale of the normal/uniform embedding initialiser")
    user_reg: float = Field(0.2, ge=0, description="L2 weight on the batch's user vectors (see reg_alpha)")
    item_reg: float = Field(0.03, ge=0, description="L2 weight on the batch's item vectors (see reg_alpha)")

    user_features: list[str] | None = Field(
        None,
        description="user_info columns to use, each optionally COLUMN=KIND (categorical, numeric, "
        "multihot[:SEP], prefix:N); None: every informative column (age, gender, occupation, zip prefix)",
    )
    item_features: list[str] | None = Field(
        None,
        description="item_info columns to use (as user_features); None: genres, year and tags when present",
    )
    feature_embedding_size: int = Field(16, ge=1, le=4096, description="size of each feature's vector")
    id_dropout: float = Field(
        0.2, ge=0, lt=1, description="fraction of training rows whose item id embedding and bias are zeroed"
    )
    user_id_dropout: float = Field(
        0.0, ge=0, lt=1, description="fraction of training rows whose user id embedding and bias are zeroed"
    )
    dot: bool = Field(
        True,
        description="factorisation branch: add (p_u + P f_u) . (q_i + Q g_i), the dot product of the id "
        "embeddings enriched with projected features (user_reg/item_reg act on it as in MF)",
    )
    reg_alpha: float = Field(0.5, ge=0, le=1, description="see NeuralConfig.reg_alpha (MF's default here)")
    tower_ids: bool = Field(
        False,
        description="feed the id embeddings to the MLP tower too (by default it sees only the features "
        "and the ids act through the dot branch; with neither, there is no tower)",
    )
    bias_init: Literal["baseline", "zero"] = Field("baseline", description="see NeuralConfig.bias_init")
    max_categories: int = Field(
        DEFAULT_MAX_CATEGORIES, ge=1, description="most frequent values kept per categorical/multihot feature"
    )
    user_schema: FeatureSchema | None = Field(None, description="fitted by configure() on the training data")
    item_schema: FeatureSchema | None = Field(None, description="fitted by configure() on the training data")

    @model_validator(mode="after")
    def _schemas(self) -> HybridConfig:
        for side in ("user", "item"):
            schema: FeatureSchema | None = getattr(self, f"{side}_schema")
            requested: list[str] | None = getattr(self, f"{side}_features")
            if schema is None:
                continue
            if schema.side != side:
                raise ValueError(f"{side}_schema describes {schema.side} features")
            if requested is not None:
                columns, _ = parse_feature_requests(requested)
                if sorted(columns) != sorted(f.source for f in schema.features):
                    raise ValueError(f"{side}_schema does not hold the requested {side}_features")
        return self


class SideFeatures(nn.Module):
    """The encoded features of every user (or item) and the tables that embed them.

    Buffers (persistent, shapes fixed by the schema, present only when the schema has features
    of that kind): ``codes`` (categorical codes, ``int64``), ``multihot_values`` (each feature's
    block row-normalised, so its ``Linear`` takes the mean of the tokens' embeddings) and
    ``numeric_values`` (standardised values, then missing flags). :meth:`forward` returns the
    concatenated feature vectors of a batch, ``(batch, n_vectors * size)``.
    """

    def __init__(self, schema: FeatureSchema, n: int, size: int, init: str, init_std: float) -> None:
        super().__init__()
        self.schema = schema
        self.size = size
        cat, multi, num = schema.categorical, schema.multihot, schema.numeric
        self.categorical = nn.ModuleList(nn.Embedding(f.width, size) for f in cat)
        self.multihot = nn.ModuleList(nn.Linear(f.width, size, bias=False) for f in multi)
        self.numeric = nn.Linear(2 * len(num), size) if num else None
        for table in self.categorical:
            init_embedding(table.weight, init, init_std)
        for lin in self.multihot:
            init_embedding(lin.weight, init, init_std)
        self.bounds = np.cumsum([0, *schema.multihot_widths]).tolist()
        if cat:
            self.register_buffer("codes", torch.zeros(n, len(cat), dtype=torch.long))
        if multi:
            self.register_buffer("multihot_values", torch.zeros(n, self.bounds[-1]))
        if num:
            self.register_buffer("numeric_values", torch.zeros(n, 2 * len(num)))
        self.n_vectors = len(cat) + len(multi) + (1 if num else 0)

    @property
    def width(self) -> int:
        return self.n_vectors * self.size

    def fill(self, info: pd.DataFrame | None, ids: np.ndarray) -> None:
        """Encode ``info`` for the raw ids ``ids`` (the vocabulary, in dense-index order)."""
        if not len(self.schema):
            return
        if info is None:
            side, names = self.schema.side, ", ".join(f.name for f in self.schema.features)
            raise DataError(f"the model uses {side} features ({names}), but the data has no {side} table")
        enc = encode_features(self.schema, info, ids)
        if self.categorical:
            self.codes.copy_(torch.from_numpy(enc["categorical"]))
        if self.multihot:
            m = enc["multihot"]
            starts = np.asarray(self.bounds[:-1])
            counts = np.add.reduceat(m, starts, axis=1)  # tokens per feature (>= 1: column 0 = none)
            m = m / np.repeat(np.maximum(counts, 1.0), np.diff(self.bounds), axis=1)
            self.multihot_values.copy_(torch.from_numpy(m.astype(np.float32)))
        if self.numeric is not None:
            self.numeric_values.copy_(torch.from_numpy(enc["numeric"]))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        vecs: list[torch.Tensor] = []
        if self.categorical:
            codes = self.codes[idx]
            vecs += [table(codes[:, j]) for j, table in enumerate(self.categorical)]
        if self.multihot:
            m = self.multihot_values[idx]
            vecs += [
                lin(m[:, a:b]) for lin, a, b in zip(self.multihot, self.bounds, self.bounds[1:], strict=False)
            ]
        if self.numeric is not None:
            vecs.append(self.numeric(self.numeric_values[idx]))
        if not vecs:
            return torch.zeros(idx.shape[0], 0, device=idx.device)
        return torch.cat(vecs, dim=-1)


class Hybrid(NeuralRatingModel):
    """Id embeddings + side-feature embeddings through an MLP; predicts cold items from features."""

    name: ClassVar[str] = "hybrid"
    config_class: ClassVar[type[ModelConfig]] = HybridConfig
    predicts_cold_items: ClassVar[bool] = True
    predicts_cold_users: ClassVar[bool] = True
    #: chosen on the ML-100K and ML-1M holdout90 validation parts (4096 is slightly better on
    #: ML-1M, but too few steps per epoch on ML-100K for the biases to make room for the features)
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 40,
        "batch_size": 2048,
        "learning_rate": 1e-3,
        "refit": True,
    }
    config: HybridConfig

    def __init__(self, n_users: int, n_items: int, config: HybridConfig | None = None) -> None:
        config = config or HybridConfig()
        k, d = config.embedding_size, config.feature_embedding_size
        user_side = SideFeatures(
            config.user_schema or FeatureSchema(side="user"), n_users, d, config.init, config.init_std
        )
        item_side = SideFeatures(
            config.item_schema or FeatureSchema(side="item"), n_items, d, config.init, config.init_std
        )
        cfg = config
        self.tower_ids = cfg.tower_ids
        in_width = (2 * k if self.tower_ids else 0) + user_side.width + item_side.width
        if in_width:
            tower, width = mlp_tower(in_width, cfg.hidden, cfg.activation, cfg.dropout, cfg.batch_norm)
        else:  # no features and no ids for a tower: biased MF (the head is just a constant)
            tower, width = nn.Sequential(), 0
        with warnings.catch_warnings():  # a head over zero inputs has nothing to initialise
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            super().__init__(n_users, n_items, config, width)
        self.user_embedding = nn.Embedding(n_users, k)
        self.item_embedding = nn.Embedding(n_items, k)
        for emb in (self.user_embedding, self.item_embedding):
            init_embedding(emb.weight, config.init, config.init_std)
        self.user_side = user_side
        self.item_side = item_side
        # the dot branch adds each side's features, projected to the id embedding's size
        self.user_project = nn.Linear(user_side.width, k, bias=False) if cfg.dot and user_side.width else None
        self.item_project = nn.Linear(item_side.width, k, bias=False) if cfg.dot and item_side.width else None
        # a softmax head gets the dot product as a shift of each level's logit by its centred value
        levels = torch.tensor(cfg.levels or [0.0], dtype=torch.float32)
        self.register_buffer("dot_scale", levels - levels.mean(), persistent=False)
        self.tower = tower
        self.embedding_dropout = Dropout(config.embedding_dropout)
        init_linear(self.tower, "he" if config.init == "he" else "xavier")
        # which users/items have training ratings (the others get no id embedding or bias)
        self.register_buffer("user_trained", torch.ones(n_users, dtype=torch.bool))
        self.register_buffer("item_trained", torch.ones(n_items, dtype=torch.bool))
        # per-occurrence weights of the id-embedding penalty; a training-time detail, not saved

    # ------------------------------------------------------------------ data-dependent set-up
    @classmethod
    def configure(cls, values: dict[str, Any], train: Dataset) -> dict[str, Any]:
        """Fit the user and item feature schemas on ``train`` unless the values already hold them."""
        values = super().configure(values, train)
        max_categories = int(values.get("max_categories") or DEFAULT_MAX_CATEGORIES)
        for side in ("user", "item"):
            if values.get(f"{side}_schema") is not None:
                continue
            requested = values.get(f"{side}_features")
            columns, kinds = (None, None) if requested is None else parse_feature_requests(list(requested))
            schema = infer_schema(train, side, columns, kinds, max_categories=max_categories)
            values[f"{side}_schema"] = schema.to_json()
        return values

    def prepare(self, train: Dataset) -> None:
        """Global mean and output set-up, the encoded feature tables and the trained-entity masks."""
        super().prepare(train)
        if (train.n_users, train.n_items) != (self.n_users, self.n_items):
            raise DataError(
                f"the model was built for {self.n_users} users x {self.n_items} items, "
                f"the data has {train.n_users} x {train.n_items}"
            )
        self.user_side.fill(train.user_info, train.users.ids)
        self.item_side.fill(train.item_info, train.items.ids)
        self.user_trained.copy_(torch.from_numpy(train.user_counts() > 0))
        self.item_trained.copy_(torch.from_numpy(train.item_counts() > 0))

    # ------------------------------------------------------------------ the network
    def _keep(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """1.0 where the id embedding and bias are used, 0.0 where they are zeroed."""
        keep_u, keep_i = self.user_trained[users], self.item_trained[items]
        if self.training:
            cfg = self.config
            if cfg.user_id_dropout:
                keep_u = keep_u & (torch.rand(users.shape, device=users.device) >= cfg.user_id_dropout)
            if cfg.id_dropout:
                keep_i = keep_i & (torch.rand(items.shape, device=items.device) >= cfg.id_dropout)
        return keep_u.to(torch.float32), keep_i.to(torch.float32)

    def _side_input(
        self, side: str, idx: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(id embedding [masked] ; feature vectors)``, the masked id embedding, the dot vector."""
        emb: nn.Embedding = getattr(self, f"{side}_embedding")
        features: SideFeatures = getattr(self, f"{side}_side")
        project: nn.Linear | None = getattr(self, f"{side}_project")
        e = emb(idx) * keep[:, None]
        f = features(idx)
        dot = None
        if self.config.dot:
            dot = e if project is None else e + project(f)
        return torch.cat([e, f], dim=-1), e, dot

    def _arrange(self, xu: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """The tower's input: ``[p ; q ; user features ; item features]`` or just the features."""
        k = self.config.embedding_size
        ids = [xu[:, :k], xi[:, :k]] if self.tower_ids else []
        return torch.cat([*ids, xu[:, k:], xi[:, k:]], dim=-1)

    def _encode(
        self, users: torch.Tensor, items: torch.Tensor, keep_u: torch.Tensor, keep_i: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(tower output, dot product or None, L2 penalty of the batch's user and item vectors)."""
        xu, p, du = self._side_input("user", users, keep_u)
        xi, q, di = self._side_input("item", items, keep_i)
        h = self.tower(self.embedding_dropout(self._arrange(xu, xi)))
        if du is None or di is None:
            return h, None, self._embedding_penalty(users, items, [p], [q])
        # the penalty acts on the vectors the dot product uses: the id embeddings and features
        return h, (du * di).sum(-1), self._embedding_penalty(users, items, [du], [di])

    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tower's output and the embedding penalty (the dot branch is added in the head)."""
        keep_u, keep_i = self._keep(users, items)
        h, _, penalty = self._encode(users, items, keep_u, keep_i)
        return h, penalty

    def _head(
        self,
        h: torch.Tensor,
        dot: torch.Tensor | None,
        bu: torch.Tensor,
        bi: torch.Tensor,
        penalty: torch.Tensor,
        head_applied: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs (logits for softmax) from the tower's output, the dot product and the biases."""
        out = h if head_applied else self.head(h)
        if self.config.output == "softmax":
            return (out if dot is None else out + dot[:, None] * self.dot_scale), penalty
        raw = out.squeeze(-1)
        if dot is not None:
            raw = raw + dot
        if self.config.use_bias:
            raw = raw + bu + bi
            if self.config.bias_reg:
                penalty = penalty + self.config.bias_reg * (bu * bu + bi * bi).mean()
        return raw, penalty

    def _outputs(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # like the base class, but an entity whose id embedding is zeroed loses its bias too
        keep_u, keep_i = self._keep(users, items)
        h, dot, penalty = self._encode(users, items, keep_u, keep_i)
        bu = self.user_bias(users).squeeze(-1) * keep_u
        bi = self.item_bias(items).squeeze(-1) * keep_i
        return self._head(h, dot, bu, bi, penalty)

    # ------------------------------------------------------------------ whole-catalogue views
    def _split_first(self) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
        """The network's first linear map (the tower's first layer, or the head when there is no
        tower) and its weight columns acting on the user input ``[p ; f_u]`` and the item input
        ``[q ; g_i]``."""
        first = self.tower[0] if len(self.tower) else self.head
        k, wu = self.config.embedding_size, self.user_side.width
        w = first.weight
        if not self.tower_ids:  # the ids' columns are zero: the same maths for both layouts
            w = torch.cat([torch.zeros(w.shape[0], 2 * k, dtype=w.dtype, device=w.device), w], dim=1)
        w_user = torch.cat([w[:, :k], w[:, 2 * k : 2 * k + wu]], dim=1)
        w_item = torch.cat([w[:, k : 2 * k], w[:, 2 * k + wu :]], dim=1)
        return first, w_user, w_item

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every item for each user (equal to :meth:`forward`).

        The network's first layer is linear, so its item part is computed once for the whole
        catalogue and broadcast against blocks of users (of bounded memory).
        """
        first, w_user, w_item = self._split_first()
        head_first = not len(self.tower)
        was_training = self.training
        self.eval()
        try:
            items = torch.arange(self.n_items, device=users.device)
            keep_i = self.item_trained.to(torch.float32)
            xi, _, di = self._side_input("item", items, keep_i)
            hi = xi @ w_item.T + first.bias  # (n_items, width of the first layer)
            bi = self.item_bias.weight.squeeze(-1) * keep_i
            block = max(1, SCORE_BLOCK_FLOATS // max(1, self.n_items * hi.shape[1]))
            out = []
            for s in range(0, users.shape[0], block):
                u = users[s : s + block]
                n = u.shape[0]
                keep_u = self.user_trained[u].to(torch.float32)
                xu, _, du = self._side_input("user", u, keep_u)
                h = ((xu @ w_user.T)[:, None, :] + hi[None, :, :]).reshape(n * self.n_items, -1)
                if not head_first:
                    h = self.tower[1:](h)
                dot = None if du is None or di is None else (du @ di.T).reshape(-1)
                bu = (self.user_bias(u).squeeze(-1) * keep_u).repeat_interleave(self.n_items)
                zero = torch.zeros((), device=u.device)
                raw, _ = self._head(h, dot, bu, bi.repeat(n), zero, head_applied=head_first)
                out.append(self._to_rating(raw).reshape(n, self.n_items))
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.n_items, device=users.device)

    @torch.no_grad()
    def item_vectors(self) -> torch.Tensor:
        """One vector per item for similar-items search: what the item brings to the network.

        The first half is the item's contribution to the tower's first layer (two items with
        equal contributions get equal tower outputs for every user), or the raw item input
        ``[q_i ; g_i]`` without a tower; the second half, with the dot branch, is the enriched
        vector ``q_i + Q g_i``. Both halves are unit vectors, so a cosine similarity is the mean
        of the halves' cosines. Items without training ratings are described by their features
        alone.
        """
        items = torch.arange(self.n_items, device=self.item_trained.device)
        xi, _, di = self._side_input("item", items, self.item_trained.to(torch.float32))
        vec = xi @ self._split_first()[2].T if len(self.tower) else xi
        if di is None:
            return vec
        unit = nn.functional.normalize
        return torch.cat([unit(vec, dim=1), unit(di, dim=1)], dim=1) / math.sqrt(2.0)
