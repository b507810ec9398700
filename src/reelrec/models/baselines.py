"""Closed-form baselines: global mean, regularised user/item biases, popularity.

They fit in milliseconds with vectorised ``bincount`` sums and follow the same
:class:`~reelrec.models.base.RatingModel` protocol as the neural models, so they share the
Recommender, the artifacts and the CLI.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import AliasChoices, Field

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig, RatingModel


def fit_biases(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    reg_user: float,
    reg_item: float,
    iterations: int,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Alternating least squares for ``r ≈ mu + b_u + b_i`` with L2 penalties.

    Each half-step is exact: ``b_i = Σ(r - mu - b_u) / (reg_item + n_i)``, then the same for
    ``b_u``. Returns ``(mu, b_u, b_i)``; users/items without ratings get a bias of 0.
    """
    r = ratings.astype(np.float64)
    mu = float(r.mean())
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    b_u = np.zeros(n_users)
    b_i = np.zeros(n_items)
    for _ in range(max(1, iterations)):
        b_i = np.bincount(items, r - mu - b_u[users], minlength=n_items) / (reg_item + n_i)
        b_u = np.bincount(users, r - mu - b_i[items], minlength=n_users) / (reg_user + n_u)
    return mu, b_u, b_i


class GlobalMeanConfig(ModelConfig):
    """The global-mean baseline has no hyperparameters."""


class GlobalMean(RatingModel):
    """Predicts the training mean for every pair; ranks every item equally."""

    name: ClassVar[str] = "global-mean"
    config_class: ClassVar[type[ModelConfig]] = GlobalMeanConfig
    trainable: ClassVar[bool] = False
    predicts_cold_items: ClassVar[bool] = True  # the mean needs no user or item data
    predicts_cold_users: ClassVar[bool] = True
    personalised: ClassVar[bool] = False
    fold_in_exact: ClassVar[bool] = True  # no per-user parameters: everyone scores alike

    def __init__(self, n_users: int, n_items: int, config: GlobalMeanConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or GlobalMeanConfig())

    def fit_closed_form(self, train: Dataset) -> None:
        self.prepare(train)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.global_mean.expand(users.shape[0]).to(torch.float32)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.global_mean.expand(users.shape[0], self.n_items).clone()


class BiasConfig(ModelConfig):
    """Hyperparameters of :class:`BiasBaseline` (Koren's baseline predictor)."""

    user_reg: float = Field(
        15.0,
        ge=0,
        validation_alias=AliasChoices("user_reg", "reg_user"),
        description="shrinkage of user biases (in ratings; formerly reg_user)",
    )
    item_reg: float = Field(
        10.0,
        ge=0,
        validation_alias=AliasChoices("item_reg", "reg_item"),
        description="shrinkage of item biases (in ratings; formerly reg_item)",
    )
    iterations: int = Field(10, ge=1, le=1000)


class BiasBaseline(RatingModel):
    """``r(u, i) = mu + b_u + b_i`` with regularised biases fitted by alternating least squares."""

    name: ClassVar[str] = "bias"
    config_class: ClassVar[type[ModelConfig]] = BiasConfig
    trainable: ClassVar[bool] = False
    personalised: ClassVar[bool] = False  # b_u shifts a user's scores, never their order
    #: the fold-in is the last half-step of the training's alternating least squares
    fold_in_exact: ClassVar[bool] = True
    config: BiasConfig

    def __init__(self, n_users: int, n_items: int, config: BiasConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or BiasConfig())
        self.register_buffer("user_bias", torch.zeros(n_users))
        self.register_buffer("item_bias", torch.zeros(n_items))

    def fit_closed_form(self, train: Dataset) -> None:
        cfg = self.config
        mu, b_u, b_i = fit_biases(
            train.user_index,
            train.item_index,
            train.rating,
            self.n_users,
            self.n_items,
            cfg.user_reg,
            cfg.item_reg,
            cfg.iterations,
        )
        self.global_mean.fill_(mu)
        self.user_bias.copy_(torch.from_numpy(b_u))
        self.item_bias.copy_(torch.from_numpy(b_i))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.global_mean + self.user_bias[users] + self.item_bias[items]

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.global_mean + self.user_bias[users, None] + self.item_bias[None, :]

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor, steps: int = 0) -> torch.Tensor:
        """A new user's bias in closed form (the same shrinkage as training), then every item."""
        residual = ratings.double() - float(self.global_mean) - self.item_bias[items].double()
        b_u = float(residual.sum()) / (items.shape[0] + self.config.user_reg)
        return (self.global_mean + b_u + self.item_bias).float()


class PopularityConfig(ModelConfig):
    """Hyperparameters of :class:`Popularity`."""

    damping: float = Field(5.0, ge=0, description="pseudo-ratings at the global mean added to each item")


class Popularity(RatingModel):
    """Ranks items by their number of training ratings, the same list for everyone.

    Its rating prediction is the item's damped mean, ``(Σ r + damping·mu) / (n_i + damping)``.
    """

    name: ClassVar[str] = "popularity"
    config_class: ClassVar[type[ModelConfig]] = PopularityConfig
    trainable: ClassVar[bool] = False
    scores_are_ratings: ClassVar[bool] = False  # its scores are the training counts
    personalised: ClassVar[bool] = False
    fold_in_exact: ClassVar[bool] = True  # no per-user parameters: everyone scores alike
    config: PopularityConfig

    def __init__(self, n_users: int, n_items: int, config: PopularityConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or PopularityConfig())
        self.register_buffer("item_count", torch.zeros(n_items))
        self.register_buffer("item_mean", torch.zeros(n_items))

    def fit_closed_form(self, train: Dataset) -> None:
        self.prepare(train)
        mu = float(self.global_mean)
        count = np.bincount(train.item_index, minlength=self.n_items).astype(np.float64)
        total = np.bincount(train.item_index, train.rating.astype(np.float64), minlength=self.n_items)
        d = self.config.damping
        mean = (total + d * mu) / np.maximum(count + d, 1e-12)
        self.item_count.copy_(torch.from_numpy(count))
        self.item_mean.copy_(torch.from_numpy(np.where(count + d > 0, mean, mu)))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.item_mean[items]

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        # rank by count; the damped mean breaks ties between equally popular items
        return (self.item_count + self.item_mean / 100.0).expand(users.shape[0], self.n_items).clone()
