"""Shared machinery of the implicit-feedback ranking models (EASE, item-kNN, BPR).

Every rating is one interaction (its value is ignored). A ranking model's score orders the
catalogue for a user; it is not a rating (``predicts_ratings`` is False), so there is no
clipping, no RMSE and no rating fallback.

* :func:`sample_negatives`: uniform negatives for a batch of users in one ``randint``; draws
  that hit one of the user's training items (looked up in sorted ``user * n_items + item``
  keys) are redrawn once.
* :func:`ranking_validation_loss`: ``1 - Recall@k`` of validation interactions over the full
  catalogue with each user's training items masked: the early-stopping and model-selection
  criterion of the ranking models.
* :class:`HistoryRankingModel`: base of the neighbourhood models, which score a user from
  the items they interacted with. The training interactions are kept as CSR buffers
  (``history_indptr``, ``history_items``) so a saved run is self-contained.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.sparse import csr_from_keys, csr_keys, expand_ranges, expand_rows

#: cut-off of the validation criterion of the ranking models
VALIDATION_K = 20


def interaction_keys(train: Dataset, n_items: int) -> np.ndarray:
    """Sorted unique ``user * n_items + item`` keys of the training interactions."""
    return np.unique(train.user_index.astype(np.int64) * n_items + train.item_index)


def sample_negatives(
    positive_keys: torch.Tensor, users: torch.Tensor, k: int, n_items: int, generator: Any = None
) -> torch.Tensor:
    """``k`` uniformly drawn items per user; draws that are training positives are redrawn once."""
    items = torch.randint(0, n_items, (users.shape[0], k), device=users.device, generator=generator)
    if positive_keys.numel():
        keys = users[:, None] * n_items + items
        pos = torch.searchsorted(positive_keys, keys).clamp(max=positive_keys.numel() - 1)
        hit = positive_keys[pos] == keys
        if hit.any():
            if generator is None:
                again = torch.randint_like(items, 0, n_items)
            else:
                again = torch.randint(0, n_items, items.shape, device=users.device, generator=generator)
            items = torch.where(hit, again, items)
    return items


def mask_keys(scores: torch.Tensor, users: torch.Tensor, keys: torch.Tensor, n_items: int) -> torch.Tensor:
    """``scores`` (one row per user of ``users``) with each user's items among the sorted
    ``user * n_items + item`` ``keys`` set to ``-inf``, in place."""
    if keys.numel():
        lo = torch.searchsorted(keys, users * n_items)  # each user's keys: keys[lo:hi]
        hi = torch.searchsorted(keys, (users + 1) * n_items)
        rows, found = expand_ranges(lo, hi, keys)
        scores[rows, found % n_items] = -torch.inf
    return scores


@torch.no_grad()
def ranking_validation_loss(
    model: RatingModel,
    users: torch.Tensor,
    items: torch.Tensor,
    train_keys: torch.Tensor,
    k: int = VALIDATION_K,
) -> float:
    """``1 - mean Recall@k`` of the validation pairs ``(users, items)`` (lower is better).

    Every item is a candidate except the user's training items (``train_keys``: sorted
    ``user * n_items + item``); validation pairs that are also training pairs are ignored.
    """
    n = model.n_items
    vkeys = torch.unique(users.long() * n + items.long())
    if train_keys.numel():
        pos = torch.searchsorted(train_keys, vkeys).clamp(max=train_keys.numel() - 1)
        vkeys = vkeys[train_keys[pos] != vkeys]
    if vkeys.numel() == 0:
        return 1.0
    vusers, counts = torch.unique_consecutive(vkeys // n, return_counts=True)
    batch = max(1, min(4096, (1 << 24) // n))
    k = min(k, n)
    hits = torch.zeros(vusers.shape[0], device=vkeys.device)
    for s in range(0, vusers.shape[0], batch):
        ub = vusers[s : s + batch]
        scores = mask_keys(model.score_users(ub).float().clone(), ub, train_keys, n)
        top = torch.topk(scores, k, dim=1).indices
        query = ub[:, None] * n + top
        pos = torch.searchsorted(vkeys, query).clamp(max=vkeys.numel() - 1)
        hits[s : s + batch] = (vkeys[pos] == query).sum(1).float()
    return float(1.0 - (hits / counts.float()).mean())


class HistoryConfig(ModelConfig):
    """Options every history-based ranking model shares."""

    n_history: int = Field(
        0, ge=0, description="(filled in from the training data) number of distinct training interactions"
    )


class HistoryRankingModel(RatingModel):
    """A model that scores a user from the items in their training history.

    Subclasses implement :meth:`fit_weights` (called by :meth:`fit_closed_form` once the
    history is stored), :meth:`score_history` (dense history rows -> scores) and
    :meth:`pair_weights` (the item-to-item weights ``W[h, i]`` that :meth:`forward` sums over
    the user's history items ``h``). ``score(u, i) = Σ_{h ∈ history(u)} W[h, i]``.
    """

    trainable: ClassVar[bool] = False
    fold_in_exact: ClassVar[bool] = True  # a new user is their history, as a trained one is
    config: HistoryConfig

    def __init__(self, n_users: int, n_items: int, config: HistoryConfig) -> None:
        super().__init__(n_users, n_items, config)
        self.register_buffer("history_indptr", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("history_items", torch.zeros(config.n_history, dtype=torch.long))

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return False

    @property
    def folds_in(self) -> bool:  # type: ignore[override]
        return True  # a new user is their history

    @classmethod
    def configure(cls, values: dict[str, Any], train: Dataset) -> dict[str, Any]:
        values = dict(values)
        values["n_history"] = int(interaction_keys(train, max(train.n_items, 1)).shape[0])
        return values

    def fit_closed_form(self, train: Dataset) -> None:
        self.prepare(train)
        keys = interaction_keys(train, self.n_items)
        if keys.shape[0] != self.history_items.shape[0]:
            raise ValueError(
                f"{self.name} was configured for {self.history_items.shape[0]} interactions, "
                f"the training data has {keys.shape[0]} (build it with the training data)"
            )
        indptr, items = csr_from_keys(keys, self.n_users, self.n_items)
        self.history_indptr.copy_(torch.from_numpy(indptr))
        self.history_items.copy_(torch.from_numpy(items))
        self.fit_weights(train)

    def fit_weights(self, train: Dataset) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    def training_keys(self) -> torch.Tensor:
        """Sorted ``user * n_items + item`` keys of the stored history."""
        return csr_keys(self.history_indptr, self.history_items, self.n_items)

    def history_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense 0/1 history rows ``(len(users), n_items)``."""
        dense = torch.zeros(users.shape[0], self.n_items, device=users.device)
        rows, cols = expand_rows(self.history_indptr, self.history_items, users)
        dense[rows, cols] = 1.0
        return dense

    def score_history(self, dense: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pair_weights(self, hist: torch.Tensor, items: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.score_history(self.history_rows(users))

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor, steps: int = 0) -> torch.Tensor:
        """A new user is their history: every movie they rated, whatever the rating, exactly as
        the training interactions were (so a known user's own history gives their own scores)."""
        dense = torch.zeros(1, self.n_items, device=self.history_indptr.device)
        dense[0, items.to(dense.device)] = 1.0
        return self.score_history(dense)[0]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``Σ_{h ∈ history(u)} W[h, i]`` per pair, without scoring the whole catalogue."""
        pair, hist = expand_rows(self.history_indptr, self.history_items, users)
        out = torch.zeros(users.shape[0], device=users.device)
        if pair.numel():
            out.index_add_(0, pair, self.pair_weights(hist, items[pair]).float())
        return out

    def validation_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> float | None:
        """``1 - Recall@20`` of the validation interactions (training items masked)."""
        return ranking_validation_loss(self, users, items, self.training_keys())
