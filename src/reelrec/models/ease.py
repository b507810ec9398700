"""EASE^R (Steck, 2019): a closed-form item-to-item linear autoencoder for implicit feedback.

With ``X`` the binary user x item matrix of training interactions, EASE solves

    min_B ||X - X B||_F^2 + λ ||B||_F^2   subject to diag(B) = 0,

whose solution is ``P = (XᵀX + λI)⁻¹``, ``B = I - P · diag(1 / diag(P))`` (so
``B_ij = -P_ij / P_jj`` off the diagonal and 0 on it). A user's scores are ``x_u B``.

``dropout = p > 0`` adds the item-dependent L2 weight of a linear autoencoder trained with
dropout on its input (Steck 2020, "Autoencoders that don't overfit towards the identity",
DLAE): ``λI`` becomes ``λI + p / (1 - p) · diag(XᵀX)``, which shrinks popular items' weights
harder. ``dropout = 0`` is plain EASE^R.

Only items with training interactions enter the Gram matrix (the others would get all-zero
weights anyway); ``B`` is stored over those ``n_active`` items, with ``item_pos`` mapping a
catalogue index to its row (``-1`` for an item without training data). The inverse is one
float64 Cholesky factorisation: about 15 s for 8,500 items on one CPU core.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig
from reelrec.models.ranking import HistoryConfig, HistoryRankingModel

#: the largest item-item matrix EASE builds (n_active² float32 = 3.6 GB at this size)
MAX_EASE_ITEMS = 30_000


def ease_weights(x: torch.Tensor, reg: float, dropout: float = 0.0) -> torch.Tensor:
    """The EASE^R (DLAE when ``dropout > 0``) item-item matrix ``B`` (float64, zero diagonal)
    of the float64 user x item matrix ``x``."""
    gram = x.T @ x
    gram.diagonal().add_(reg + dropout / (1.0 - dropout) * gram.diagonal())
    p = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    del gram
    b = -p / p.diagonal()[None, :]
    b.diagonal().zero_()
    return b


class ItemMatrixConfig(HistoryConfig):
    """Options of a model with item x item matrices over the items that have training data."""

    n_active: int = Field(
        0, ge=0, description="(filled in from the training data) items with at least one training interaction"
    )


class ItemMatrixModel(HistoryRankingModel):
    """Base of the models that keep item x item matrices over the ``n_active`` items with
    training data; ``item_pos`` maps a catalogue index to its row (-1: no training data)."""

    config: ItemMatrixConfig
    #: float64 item x item matrices alive at once while fitting (EASE: Gram, inverse, weights)
    item_matrices: ClassVar[int] = 3
    scale_note: ClassVar[str] = "float64 item x item matrices over the items with training data"
    scale_alternative: ClassVar[str] = "Use bpr or mf (--protocol temporal-full) for catalogues this large."

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_ratings: int, config: ModelConfig) -> int:
        n = getattr(config, "n_active", 0) or n_items
        return cls.item_matrices * 8 * n * n

    def __init__(self, n_users: int, n_items: int, config: ItemMatrixConfig) -> None:
        super().__init__(n_users, n_items, config)
        if config.n_active > MAX_EASE_ITEMS:
            raise ConfigError(
                f"{self.name} builds item x item matrices; {config.n_active} items exceed its limit of "
                f"{MAX_EASE_ITEMS} (use itemknn or bpr)"
            )
        self.register_buffer("item_pos", torch.full((n_items,), -1, dtype=torch.long))

    @classmethod
    def configure(cls, values: dict[str, Any], train: Dataset) -> dict[str, Any]:
        values = super().configure(values, train)
        values["n_active"] = int((train.item_counts() > 0).sum())
        return values

    def active_positions(self, train: Dataset) -> np.ndarray:
        """Each catalogue item's row in the item matrices (-1: no training data) for ``train``."""
        active = np.flatnonzero(np.bincount(train.item_index, minlength=self.n_items) > 0)
        if active.shape[0] != self.config.n_active:
            raise ValueError(
                f"{self.name} was configured for {self.config.n_active} active items, got {active.shape[0]}"
            )
        pos = np.full(self.n_items, -1, dtype=np.int64)
        pos[active] = np.arange(active.shape[0])
        return pos

    def columns_per_item(self, matrix: torch.Tensor) -> torch.Tensor:
        """``matrix``'s columns as one row per catalogue item (zeros for items without training data)."""
        out = torch.zeros(self.n_items, matrix.shape[0], device=matrix.device)
        out[self.item_pos >= 0] = matrix.T
        return out


class EASEConfig(ItemMatrixConfig):
    """Hyperparameters of :class:`EASE`."""

    reg: float = Field(
        200.0,
        gt=0,
        description="λ, the L2 weight on B (the median of the values benchmarks/ranking.py chose on the "
        "validation parts of ML-100K and ml-latest-small: 50..300)",
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="DLAE input dropout: adds p/(1-p)·diag(XᵀX) to the L2 weight (0: EASE)"
    )


class EASE(ItemMatrixModel):
    """EASE^R; see the module docs."""

    name: ClassVar[str] = "ease"
    config_class: ClassVar[type[ModelConfig]] = EASEConfig
    default_train: ClassVar[dict[str, Any]] = {"refit": True}
    config: EASEConfig

    def __init__(self, n_users: int, n_items: int, config: EASEConfig | None = None) -> None:
        config = config or EASEConfig()
        super().__init__(n_users, n_items, config)
        self.register_buffer("weights", torch.zeros(config.n_active, config.n_active))

    def fit_weights(self, train: Dataset) -> None:
        pos = self.active_positions(train)
        device = self.weights.device
        rows, cols = self.training_keys() // self.n_items, self.history_items
        x = torch.zeros(self.n_users, self.config.n_active, dtype=torch.float64, device=device)
        x[rows, torch.as_tensor(pos, device=device)[cols]] = 1.0
        b = ease_weights(x, self.config.reg, self.config.dropout)
        self.weights.copy_(b.float())
        self.item_pos.copy_(torch.as_tensor(pos))

    def score_history(self, dense: torch.Tensor) -> torch.Tensor:
        active = self.item_pos >= 0
        out = torch.zeros_like(dense)
        out[:, active] = dense[:, active] @ self.weights
        return out

    def pair_weights(self, hist: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h, i = self.item_pos[hist], self.item_pos[items]
        ok = (h >= 0) & (i >= 0)
        return torch.where(ok, self.weights[h.clamp(min=0), i.clamp(min=0)], 0.0)

    def item_vectors(self) -> torch.Tensor | None:
        """Each item's column of B (its weights from every other item), zeros for inactive items."""
        return self.columns_per_item(self.weights)
