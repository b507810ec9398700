"""Shared machinery of the neural rating models (MLP, NeuMF, hybrid).

A subclass builds its tables and tower and implements :meth:`NeuralRatingModel.encode`, which
turns a batch of (user, item) indices into a feature vector plus an L2 penalty on the
embeddings it looked up. This base class adds what every network shares:

* optional user/item biases and the global mean around the network's output (``use_bias``);
* the output head: ``linear`` (a rating), ``sigmoid`` (stretched to the rating range),
  ``softmax`` over the rating levels (trained with cross-entropy; the prediction is the
  expected rating, the class is the most probable level) or ``ordinal`` (cumulative logit,
  "proportional odds": the network's scalar score ``s``, biases included, and ``K - 1`` learned
  increasing cut points ``c`` give ``P(rating <= level k) = sigmoid(c_k - s)``; trained with the
  negative log-likelihood of the observed level; prediction and class as for softmax);
* optional standardisation of the target (mean and std fitted on the training part only).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.layers import check_activation

# the networks switch to LARGE_DATA_TRAIN past MF's threshold (ML-10M and larger; ML-1M has 0.86M)
from reelrec.models.mf import LARGE_DATA
from reelrec.models.regularisation import baseline_biases, frequency_weights

MAX_LEVELS = 20

#: floats per block of users when a network's ``score_users`` broadcasts users against the catalogue
#: (16 MB: under glibc's 32 MB mmap threshold, so the blocks reuse memory instead of faulting in
#: fresh pages; 64 MB blocks scored the MLP 1.5x slower here)
SCORE_BLOCK_FLOATS = 1 << 22

#: the networks' large-data recipe: 16,384-rating batches (the row-sparse steps cost per batch, not
#: per rating; 32,768 puts the MLP's 384-wide inputs at 50 MB a tensor, past glibc's 32 MB mmap
#: threshold, and every such tensor then costs fresh pages: 5x slower elementwise ops here), at
#: most 10 epochs with patience 2, no refit (each refit is a whole second training). The learning
#: rate grows with the square root of the batch's growth (see
#: :meth:`NeuralRatingModel.train_defaults`). Bounded to well under an hour on ML-25M-sized data.
LARGE_DATA_TRAIN: dict[str, Any] = {"batch_size": 16_384, "epochs": 10, "patience": 2, "refit": False}
#: ``TrainConfig``'s batch size and learning rate, which a recipe without its own inherits (models do
#: not import the training package; tests/test_models checks that these agree)
TRAIN_BATCH_SIZE = 4096
TRAIN_LEARNING_RATE = 3e-3
#: outputs that model a distribution over the rating levels (the class is its most probable level)
CLASS_OUTPUTS = ("softmax", "ordinal")


class NeuralConfig(ModelConfig):
    """Options every neural rating model shares."""

    embedding_size: int = Field(32, ge=1, le=4096, description="size of each user and item embedding")
    hidden: list[int] = Field(default_factory=lambda: [64, 32, 16, 8], description="MLP hidden sizes")
    activation: str = Field("relu", description="any torch.nn activation by name")
    embedding_dropout: float = Field(0.0, ge=0, lt=1)
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout between hidden layers")
    batch_norm: bool = False
    init: Literal["normal", "uniform", "xavier", "he"] = "normal"
    init_std: float = Field(0.05, gt=0, description="scale of the normal/uniform embedding initialiser")
    user_reg: float = Field(0.0, ge=0, description="L2 weight on the batch's user embeddings")
    item_reg: float = Field(0.0, ge=0, description="L2 weight on the batch's item embeddings")
    reg_alpha: float = Field(
        1.0,
        ge=0,
        le=1,
        description="as in MF: over an epoch an entity with n training ratings carries an embedding "
        "penalty proportional to n**reg_alpha (1: per occurrence; 0.5 shrinks rare users/items harder)",
    )
    bias_init: Literal["baseline", "zero"] = Field(
        "zero", description="start the user/item biases at the closed-form bias baseline, or at zero"
    )
    use_bias: bool = Field(True, description="add global mean + user/item biases to the network output")
    bias_reg: float = Field(0.0, ge=0)
    output: Literal["linear", "sigmoid", "softmax", "ordinal"] = "linear"
    levels: list[float] | None = Field(
        None, description="softmax/ordinal classes (inferred from the training ratings)"
    )
    standardize: bool = Field(False, description="train on ratings standardised with the training mean/std")
    pretrain: Literal["auto", "mf", "none"] = Field(
        "none",
        description="start the embeddings from an MF pre-trained inside the same fit (on the training "
        "part, early-stopped on the validation part): 'mf', 'none', or 'auto' (mf where the model "
        "can use it: a linear rating output with biases, not standardized); see reelrec.training.pretrained",
    )

    @field_validator("activation")
    @classmethod
    def _activation(cls, value: str) -> str:
        return check_activation(value)

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("hidden sizes must be positive")
        return value

    @property
    def mf_compatible(self) -> bool:
        """Whether an MF's factors and biases can start this model: a rating on MF's scale, with
        the global mean and biases around the network's output."""
        return self.output == "linear" and not self.standardize and self.use_bias

    @model_validator(mode="after")
    def _pretrain(self) -> NeuralConfig:
        if self.pretrain == "mf" and not self.mf_compatible:
            raise ValueError(
                "pretrain='mf' needs output='linear', use_bias and no standardize (the MF scale)"
            )
        return self

    @model_validator(mode="after")
    def _levels(self) -> NeuralConfig:
        if self.levels is not None:
            if len(self.levels) < 2 or len(self.levels) > MAX_LEVELS:
                raise ValueError(f"levels must hold 2..{MAX_LEVELS} values")
            if any(b <= a for a, b in zip(self.levels, self.levels[1:], strict=False)):
                raise ValueError("levels must be strictly increasing")
        if self.output == "ordinal" and self.standardize:
            raise ValueError("standardize applies to rating outputs; an ordinal output has its cut points")
        return self


class NeuralRatingModel(RatingModel):
    """Base of the embedding + network models; subclasses implement :meth:`encode`."""

    name: ClassVar[str] = "neural"
    config_class: ClassVar[type[ModelConfig]] = NeuralConfig
    config: NeuralConfig
    #: TrainConfig values for a network that starts from pre-trained weights (fine-tuning); they
    #: replace :attr:`default_train` when the config pre-trains (the default config included)
    finetune_train: ClassVar[dict[str, Any]] = {}

    @classmethod
    def train_defaults(
        cls, n_ratings: int | None = None, config: ModelConfig | None = None
    ) -> dict[str, Any]:
        """:attr:`finetune_train` when ``config`` (``None``: the defaults) starts from
        pre-trained weights, else :attr:`default_train` (training from random weights); past
        :data:`LARGE_DATA` training ratings that recipe with :data:`LARGE_DATA_TRAIN`'s batches,
        epochs and no refit, its learning rate times ``sqrt(new batch / old batch)``."""
        config = config if config is not None else cls.config_class()
        starts = cls.pretraining(config) or cls.pretrained_runs(config)
        values = dict(cls.finetune_train) if starts and cls.finetune_train else dict(cls.default_train)
        if n_ratings is not None and n_ratings > LARGE_DATA:
            batch = values.get("batch_size", TRAIN_BATCH_SIZE)
            lr = values.get("learning_rate", TRAIN_LEARNING_RATE)
            epochs = min(values.get("epochs", LARGE_DATA_TRAIN["epochs"]), LARGE_DATA_TRAIN["epochs"])
            values.update(LARGE_DATA_TRAIN, epochs=epochs)
            values["learning_rate"] = lr * math.sqrt(LARGE_DATA_TRAIN["batch_size"] / batch)
        return values

    def __init__(self, n_users: int, n_items: int, config: NeuralConfig, out_width: int) -> None:
        super().__init__(n_users, n_items, config)
        if config.output in CLASS_OUTPUTS and config.levels is None:
            raise ConfigError(
                f"a {config.output} output needs its rating levels (inferred when trained through reelrec)"
            )
        n_out = len(config.levels) if config.output == "softmax" else 1
        self.head = nn.Linear(out_width, n_out)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        for table in (self.user_bias, self.item_bias):
            table.weight.requires_grad_(config.use_bias and config.output != "softmax")
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.register_buffer("rating_low", torch.zeros(()))
        self.register_buffer("rating_high", torch.ones(()))
        self.register_buffer(
            "levels", torch.tensor(config.levels if config.levels is not None else [0.0], dtype=torch.float32)
        )
        if config.output == "ordinal":  # the first cut point, then log-softplus gaps (cuts increase)
            self.ordinal_cuts = nn.Parameter(torch.zeros(len(config.levels) - 1))
        # per-entity weights of the embedding penalty (see reg_alpha), filled in prepare()
        self.register_buffer("user_reg_weight", torch.ones(n_users), persistent=False)
        self.register_buffer("item_reg_weight", torch.ones(n_items), persistent=False)

    # ------------------------------------------------------------------ data-dependent set-up
    @classmethod
    def configure(cls, values: dict[str, Any], train: Dataset) -> dict[str, Any]:
        """Fill in the softmax levels from the training ratings when they are not given."""
        values = dict(values)
        if values.get("output") in CLASS_OUTPUTS and not values.get("levels"):
            levels = np.unique(train.rating)
            if levels.size > MAX_LEVELS:
                kind = values["output"]
                msg = f"a {kind} output takes at most {MAX_LEVELS} levels; the data has {levels.size}"
                raise ConfigError(msg)
            values["levels"] = [float(v) for v in levels]
        return values

    def prepare(self, train: Dataset) -> None:
        super().prepare(train)
        r = train.rating.astype(np.float64)
        self.rating_low.fill_(float(train.scale.low))
        self.rating_high.fill_(float(train.scale.high))
        if self.config.standardize:
            self.target_mean.fill_(float(r.mean()))
            self.target_std.fill_(float(max(r.std(), 1e-6)))
        cfg = self.config
        for counts, weight in (
            (train.user_counts(), self.user_reg_weight),
            (train.item_counts(), self.item_reg_weight),
        ):
            weight.copy_(frequency_weights(counts, cfg.reg_alpha))
        if cfg.use_bias and cfg.output == "linear" and cfg.bias_init == "baseline" and len(train):
            mu, b_u, b_i = baseline_biases(train, self.n_users, self.n_items)
            with torch.no_grad():
                if not cfg.standardize:
                    self.global_mean.fill_(mu)
                scale = float(self.target_std) if cfg.standardize else 1.0
                self.user_bias.weight.copy_(torch.as_tensor(b_u / scale, dtype=torch.float32)[:, None])
                self.item_bias.weight.copy_(torch.as_tensor(b_i / scale, dtype=torch.float32)[:, None])
        if cfg.output == "ordinal" and len(train):  # start at the training levels' frequencies
            lv = np.asarray(cfg.levels)
            share = np.bincount(np.searchsorted((lv[1:] + lv[:-1]) / 2, r), minlength=lv.size)
            cdf = np.clip(np.cumsum(share)[:-1] / len(train), 1e-3, 1 - 1e-3)
            cuts = np.maximum.accumulate(np.log(cdf / (1 - cdf)))
            gaps = np.maximum(np.diff(cuts), 1e-2)
            raw = np.concatenate([cuts[:1], np.log(np.expm1(gaps))])
            with torch.no_grad():
                self.ordinal_cuts.copy_(torch.as_tensor(raw, dtype=torch.float32))
        if self.config.output == "sigmoid":  # start the sigmoid at the mean rating
            low, high = float(train.scale.low), float(train.scale.high)
            margin = 0.05 * (high - low)
            p = (r.mean() - low + margin) / (high - low + 2 * margin)
            with torch.no_grad():
                self.head.bias.fill_(math.log(p / (1 - p)))

    # ------------------------------------------------------------------ the network
    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch feature vectors, L2 penalty of the looked-up embeddings)."""
        raise NotImplementedError

    def _embedding_penalty(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        user_vecs: list[torch.Tensor],
        item_vecs: list[torch.Tensor],
    ) -> torch.Tensor:
        """Frequency-weighted L2 (see ``reg_alpha``) on the batch's user and item vectors; zero
        without autograd (scoring, validation): a training term costs as much as the lookups."""
        cfg = self.config
        pen = torch.zeros((), device=self.global_mean.device)
        if not torch.is_grad_enabled():
            return pen
        if cfg.user_reg:
            w = self.user_reg_weight[users]
            pen = pen + cfg.user_reg * sum((w * (v * v).sum(-1)).mean() for v in user_vecs)
        if cfg.item_reg:
            w = self.item_reg_weight[items]
            pen = pen + cfg.item_reg * sum((w * (v * v).sum(-1)).mean() for v in item_vecs)
        return pen

    def _outputs(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, penalty = self.encode(users, items)
        out = self.head(h)
        if self.config.output == "softmax":
            return out, penalty  # logits over the levels
        raw = out.squeeze(-1)
        if self.config.use_bias:
            bu, bi = self.user_bias(users).squeeze(-1), self.item_bias(items).squeeze(-1)
            raw = raw + bu + bi
            if self.config.bias_reg:
                penalty = penalty + self.config.bias_reg * (bu * bu + bi * bi).mean()
        return raw, penalty

    def cut_points(self) -> torch.Tensor:
        """The ordinal output's ``K - 1`` increasing cut points (on the score's logit scale)."""
        p = self.ordinal_cuts
        return torch.cumsum(torch.cat([p[:1], nn.functional.softplus(p[1:])]), 0)

    def level_probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        """``(batch, K)`` probabilities of the levels from raw outputs (softmax or ordinal)."""
        if self.config.output == "softmax":
            return torch.softmax(raw, dim=-1)
        cdf = torch.sigmoid(self.cut_points()[None, :] - raw[:, None])
        ones = torch.ones_like(cdf[:, :1])
        return torch.diff(cdf, dim=1, prepend=torch.zeros_like(ones), append=ones)

    def _to_rating(self, raw: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.output in CLASS_OUTPUTS:
            return self.level_probabilities(raw) @ self.levels
        if cfg.output == "sigmoid":
            low, high = float(self.rating_low), float(self.rating_high)
            margin = 0.05 * (high - low)
            return (low - margin) + (high - low + 2 * margin) * torch.sigmoid(raw)
        if cfg.standardize:
            return self.target_mean + self.target_std * raw
        return self.global_mean + raw if cfg.use_bias else raw

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        raw, _ = self._outputs(users, items)
        return self._to_rating(raw)

    def training_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        raw, penalty = self._outputs(users, items)
        if self.config.output == "softmax":
            labels = self.level_index(ratings)
            return nn.functional.cross_entropy(raw, labels) + penalty
        if self.config.output == "ordinal":
            probs = self.level_probabilities(raw).gather(1, self.level_index(ratings)[:, None])
            return -torch.log(probs.clamp_min(1e-12)).mean() + penalty
        pred = self._to_rating(raw)
        if self.config.standardize:  # the loss of the notebooks: MSE on standardised ratings
            return torch.mean(((pred - ratings) / self.target_std) ** 2) + penalty
        return torch.mean((pred - ratings) ** 2) + penalty

    def level_index(self, ratings: torch.Tensor) -> torch.Tensor:
        """Class index of each rating: its nearest level (exact for ratings on the scale)."""
        return torch.argmin((ratings[:, None] - self.levels[None, :]).abs(), dim=1)

    @property
    def predicts_levels(self) -> bool:  # type: ignore[override]
        return self.config.output in CLASS_OUTPUTS

    @torch.no_grad()
    def predict_level(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The most probable rating level (softmax/ordinal output), else the predicted rating."""
        raw, _ = self._outputs(users, items)
        if self.config.output in CLASS_OUTPUTS:
            return self.levels[self.level_probabilities(raw).argmax(-1)]
        return self._to_rating(raw)

    def fold_in_penalty(self, n: int) -> tuple[float, float]:
        """The training penalty of a user with ``n`` ratings over one epoch (floored, so a new
        user with a handful of ratings stays near the average user even when ``user_reg`` is 0)."""
        cfg = self.config
        weight = float(frequency_weights(np.array([n]), cfg.reg_alpha)[0])
        return max(cfg.user_reg * weight, 0.01) * n, max(cfg.bias_reg, 0.01) * n

    def item_vectors(self) -> torch.Tensor | None:
        tables = [m for n, m in self.named_children() if n.startswith("item_") and n != "item_bias"]
        if not tables:
            return None
        return torch.cat([t.weight.detach() for t in tables if isinstance(t, nn.Embedding)], dim=1)
