"""Item-based k-nearest-neighbours for implicit feedback (Sarwar et al. 2001; Deshpande & Karypis 2004).

With ``n_i`` the number of training users of item ``i`` and ``c_ij`` the number of users of
both ``i`` and ``j``, the shrunk cosine similarity is

    s_ij = c_ij / (sqrt(n_i) · sqrt(n_j) + shrink),

and each item keeps its ``neighbours`` most similar items (``s_ii = 0``). A user's score of item
``j`` is the sum of ``s_hj`` over the items ``h`` in their history for which ``j`` is one of
``h``'s neighbours: ``score = x_u S`` with ``S`` the pruned similarity matrix.

Fitting is vectorised: the co-occurrence counts come from one sparse x dense product per block
of items, and ``topk`` prunes each block. The neighbour lists are stored as two dense
``(n_items, k)`` buffers (indices, similarities; padding has similarity 0).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig
from reelrec.models.ranking import HistoryConfig, HistoryRankingModel

#: the most co-occurrence work (ratings x items multiply-adds) itemknn takes on: ML-1M is 3.7e9
MAX_KNN_WORK = 1e11


class ItemKNNConfig(HistoryConfig):
    """Hyperparameters of :class:`ItemKNN` (defaults chosen on validation data)."""

    neighbours: int = Field(50, ge=1, le=10_000, description="similar items kept per item")
    shrink: float = Field(10.0, ge=0, description="added to the cosine denominator (damps rare pairs)")


class ItemKNN(HistoryRankingModel):
    """Item-kNN on shrunk cosine similarity; see the module docs."""

    name: ClassVar[str] = "itemknn"
    config_class: ClassVar[type[ModelConfig]] = ItemKNNConfig
    default_train: ClassVar[dict[str, Any]] = {"refit": True}
    config: ItemKNNConfig

    @classmethod
    def check_limits(cls, n_users: int, n_items: int, n_ratings: int, config: ModelConfig) -> None:
        """The co-occurrence counts cost about ``ratings x items`` multiply-adds (one sparse x dense
        product per block of items): refuse past :data:`MAX_KNN_WORK`."""
        work = n_ratings * n_items
        if work > MAX_KNN_WORK:
            raise ConfigError(
                f"itemknn counts co-occurrences in about ratings x items = {work:.1e} multiply-adds, over "
                f"its limit of {MAX_KNN_WORK:.0e} (hours on a CPU). Use bpr or mf (--protocol "
                "temporal-full) for data of this size."
            )

    def __init__(self, n_users: int, n_items: int, config: ItemKNNConfig | None = None) -> None:
        config = config or ItemKNNConfig()
        super().__init__(n_users, n_items, config)
        k = max(1, min(config.neighbours, n_items - 1))
        self.register_buffer("neighbour_items", torch.zeros(n_items, k, dtype=torch.long))
        self.register_buffer("neighbour_sims", torch.zeros(n_items, k))
        self._lookup: tuple[torch.Tensor, torch.Tensor] | None = None

    def fit_weights(self, train: Dataset) -> None:
        n, k = self.n_items, self.neighbour_items.shape[1]
        device = self.neighbour_items.device
        users = self.training_keys() // n
        items = self.history_items
        ones = torch.ones(items.shape[0], device=device)
        # X^T as a sparse (items x users) matrix; column blocks of X as dense (users x block)
        xt = torch.sparse_coo_tensor(
            torch.stack([items, users]), ones, (n, self.n_users), check_invariants=True
        ).coalesce()
        norms = torch.sqrt(torch.bincount(items, minlength=n).double()).float()
        block = max(1, min(n, (1 << 24) // max(n, 1)))
        order = torch.argsort(items, stable=True)
        item_sorted, user_sorted = items[order], users[order]
        bounds = torch.searchsorted(
            item_sorted, torch.arange(0, n + block, block, device=device).clamp(max=n)
        )
        for b, s in enumerate(range(0, n, block)):
            e = min(n, s + block)
            lo, hi = int(bounds[b]), int(bounds[b + 1])
            dense = torch.zeros(self.n_users, e - s, device=device)
            dense[user_sorted[lo:hi], item_sorted[lo:hi] - s] = 1.0
            co = torch.sparse.mm(xt, dense).T  # (block, n_items): c_ij for i in the block
            sims = co / (norms[s:e, None] * norms[None, :] + self.config.shrink).clamp(min=1e-12)
            sims[torch.arange(e - s, device=device), torch.arange(s, e, device=device)] = 0.0
            top = torch.topk(sims, k, dim=1)
            self.neighbour_items[s:e] = top.indices
            self.neighbour_sims[s:e] = top.values
        self._lookup = None

    def _sorted_lookup(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted ``h * n_items + j`` keys of the neighbour lists and their similarities."""
        if self._lookup is None or self._lookup[0].device != self.neighbour_items.device:
            n, k = self.neighbour_items.shape
            src = torch.arange(n, device=self.neighbour_items.device).repeat_interleave(k)
            keys = src * self.n_items + self.neighbour_items.reshape(-1)
            order = torch.argsort(keys)
            self._lookup = (keys[order], self.neighbour_sims.reshape(-1)[order])
        return self._lookup

    def load_state_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._lookup = None
        return super().load_state_dict(*args, **kwargs)

    def score_history(self, dense: torch.Tensor) -> torch.Tensor:
        rows, hist = torch.nonzero(dense, as_tuple=True)
        k = self.neighbour_items.shape[1]
        out = torch.zeros_like(dense)
        out.index_put_(
            (rows.repeat_interleave(k), self.neighbour_items[hist].reshape(-1)),
            (self.neighbour_sims[hist] * dense[rows, hist][:, None]).reshape(-1),
            accumulate=True,
        )
        return out

    def pair_weights(self, hist: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys, sims = self._sorted_lookup()
        query = hist * self.n_items + items
        pos = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
        return torch.where(keys[pos] == query, sims[pos], 0.0)

    def item_vectors(self) -> torch.Tensor | None:
        """Each item's row of the pruned similarity matrix (dense; for similar items)."""
        out = torch.zeros(self.n_items, self.n_items, device=self.neighbour_items.device)
        out.scatter_(1, self.neighbour_items, self.neighbour_sims)
        return out
