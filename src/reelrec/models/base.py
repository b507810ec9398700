"""The protocol every reelrec model follows.

A model is an ``nn.Module`` that maps batches of dense (user, item) indices to predicted
ratings. It holds no training loop and does no I/O: neural models are fitted by
:class:`reelrec.training.Trainer`; closed-form models (``trainable = False``) fit themselves in
:meth:`RatingModel.fit_closed_form`. Everything a model needs at prediction time lives in its
parameters and buffers, so ``state_dict`` + config is a complete, safetensors-friendly artifact.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from reelrec.data.dataset import Dataset


class ModelConfig(BaseModel):
    """Base of every model's typed configuration (unknown fields are an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RatingModel(nn.Module):
    """Base class: ``forward(users, items) -> predicted ratings``.

    Subclasses set ``name`` and ``config_class``, and implement :meth:`forward`. They may
    override :meth:`penalty` (a regulariser computed on the batch), :meth:`score_users`
    (a faster full-catalogue scorer), :meth:`item_vectors` (for similar items) and, for
    closed-form models, :meth:`fit_closed_form` with ``trainable = False``.
    """

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    trainable: ClassVar[bool] = True
    #: True when the model predicts items without training ratings from their features
    predicts_cold_items: ClassVar[bool] = False
    #: True when the model predicts users without training ratings itself (e.g. from features)
    predicts_cold_users: ClassVar[bool] = False
    #: TrainConfig values this model trains best with (chosen on validation data); a user's
    #: explicit settings override them
    default_train: ClassVar[dict[str, Any]] = {}

    def __init__(self, n_users: int, n_items: int, config: ModelConfig) -> None:
        super().__init__()
        if n_users < 1 or n_items < 1:
            raise ValueError("a model needs at least one user and one item")
        self.n_users = n_users
        self.n_items = n_items
        self.config = config
        self.register_buffer("global_mean", torch.zeros(()))

    # ------------------------------------------------------------------ data hooks
    @classmethod
    def configure(cls, values: dict[str, Any], train: Dataset) -> dict[str, Any]:
        """Complete config values that depend on the training data (e.g. softmax levels)."""
        return values

    def prepare(self, train: Dataset) -> None:
        """Set data-dependent buffers (the global mean) before training."""
        self.global_mean.fill_(float(train.rating.mean()))

    def fit_closed_form(self, train: Dataset) -> None:
        """Fit without gradient descent (only for ``trainable = False`` models)."""
        raise NotImplementedError(f"{self.name} is trained by the Trainer")

    @property
    def predicts_ratings(self) -> bool:
        """False for ranking models whose output is an interaction score, not a rating."""
        return True

    def validation_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> float | None:
        """A model-specific early-stopping criterion (lower is better); ``None``: validation RMSE."""
        return None

    # ------------------------------------------------------------------ prediction
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Regularisation term added to the batch loss (default: none)."""
        return torch.zeros((), device=users.device)

    def training_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """The objective the Trainer minimises: mean squared error plus :meth:`penalty`."""
        pred = self(users, items)
        return torch.mean((pred - ratings) ** 2) + self.penalty(users, items)

    def training_rows(self) -> int | None:
        """How the Trainer walks the data: ``None`` (default) for (user, item, rating) triples.

        A model that trains on rows of its own (e.g. AutoRec's item rating vectors, built in
        :meth:`prepare`) returns their number; the Trainer then permutes ``range(rows)`` each
        epoch and minimises :meth:`rows_loss` on slices of ``batch_size`` rows.
        """
        return None

    def rows_loss(self, rows: torch.Tensor) -> torch.Tensor:
        """The objective on a batch of the model's own training rows (see :meth:`training_rows`)."""
        raise NotImplementedError(f"{self.name} trains on (user, item, rating) triples")

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user in ``users``: shape ``(len(users), n_items)``.

        For rating models the score is the predicted rating. The default evaluates
        :meth:`forward` on the cartesian product; factorisation models override it with a
        single matrix product.
        """
        n = users.shape[0]
        items = torch.arange(self.n_items, device=users.device)
        u = users.repeat_interleave(self.n_items)
        i = items.repeat(n)
        return self(u, i).reshape(n, self.n_items)

    def item_vectors(self) -> torch.Tensor | None:
        """One vector per item for similarity search, or ``None`` when the model has none."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config.model_dump(),
            "parameters": int(sum(p.numel() for p in self.parameters())),
        }
