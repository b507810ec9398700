"""A sequence-aware linear item model: what a user watches next, in closed form.

MovieLens users rate in sessions, and the next movie a user rates is best predicted by the
last few they rated. ``seqlinear`` follows SLIST (Choi et al., "Session-aware Linear
Item-Similarity/Transition Model", WWW 2021) and mixes two closed-form item x item models:

* **Set part** ``B``: EASE^R (:func:`reelrec.models.ease.ease_weights`) on the 0/1 user x item
  matrix, applied to a *recency-weighted* history: the item a user rated ``r`` interactions
  before their latest one has weight ``set_base + exp(-r / set_tau)``.
* **Transition part** ``T``: ridge regression from what came before to what comes next. For
  every training interaction ``t`` of every user (in time order, ties in file order) the input
  row holds the ``window`` previous items with weights ``exp(-(lag - 1) / tau)`` and the target
  row holds the next ``targets`` items (``t, t+1, ...``) with weights ``exp(-d / tau)``;
  ``T = (PᵀP + reg·I)⁻¹ PᵀQ``. At scoring time the input is the user's latest ``window``
  items weighted the same way.

The score of a user is ``alpha · z(x_T T) + (1 - alpha) · z(x_S B)``, where ``z`` standardises
a score row over the items with training data (mean 0, standard deviation 1), so ``alpha`` is a
true mixing weight whatever the two parts' scales. Items without training interactions score
below every other item. The ratings' values are ignored (every rating is an interaction).

Both matrices live over the ``n_active`` items with training data. ``PᵀP`` and ``PᵀQ`` are
sparse products (scipy); each part costs one float64 Cholesky inverse (``T = G⁻¹·PᵀQ`` is
then a sparse x dense product). A saved run keeps
each user's training items with their recency rank (``history_rank``, 0 = latest), so scores
of known users need nothing but the run. A new user's ratings are taken in the order given
(oldest first): the service passes a profile's ratings in the order they were made.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig
from reelrec.models.ease import ItemMatrixConfig, ItemMatrixModel, ease_weights
from reelrec.sparse import expand_rows


class SeqLinearConfig(ItemMatrixConfig):
    """Hyperparameters of :class:`SeqLinear` (defaults: the values benchmarks/ranking.py chose
    most often on the validation parts of ML-100K and ml-latest-small)."""

    reg: float = Field(200.0, gt=0, description="L2 weight of the transition part T")
    set_reg: float = Field(200.0, gt=0, description="L2 weight (λ) of the EASE set part B")
    alpha: float = Field(
        0.3, ge=0, le=1, description="weight of the transition part in the mix (0: set part only)"
    )
    tau: float = Field(
        3.0, gt=0, description="recency decay of the transition inputs and targets, in interactions"
    )
    window: int = Field(20, ge=1, le=500, description="how many of the latest items feed the transition part")
    targets: int = Field(1, ge=1, le=50, description="how many following items each transition row predicts")
    set_tau: float = Field(5.0, gt=0, description="recency decay of the set part's input, in interactions")
    set_base: float = Field(0.2, ge=0, description="weight every history item keeps in the set part's input")


def chronological(train: Dataset) -> np.ndarray:
    """Row order of ``train`` by user, then timestamp (file order without timestamps), then file order."""
    rows = np.arange(len(train))
    ts = train.timestamp if train.timestamp is not None else np.zeros(len(train), dtype=np.int64)
    return np.lexsort((rows, ts, train.user_index))


class SeqLinear(ItemMatrixModel):
    """Set (EASE) + transition (ridge) linear item model; see the module docs."""

    name: ClassVar[str] = "seqlinear"
    #: the set part's and the transition part's matrices and their inverses
    item_matrices: ClassVar[int] = 5
    config_class: ClassVar[type[ModelConfig]] = SeqLinearConfig
    default_train: ClassVar[dict[str, Any]] = {"refit": True}
    config: SeqLinearConfig

    def __init__(self, n_users: int, n_items: int, config: SeqLinearConfig | None = None) -> None:
        config = config or SeqLinearConfig()
        super().__init__(n_users, n_items, config)
        k = config.n_active
        self.register_buffer("history_rank", torch.zeros(config.n_history))
        self.register_buffer("set_weights", torch.zeros(k, k))
        self.register_buffer("transition", torch.zeros(k, k))

    # ------------------------------------------------------------------ fitting
    def fit_weights(self, train: Dataset) -> None:
        cfg = self.config
        n = self.n_items
        k = cfg.n_active
        pos = self.active_positions(train)

        order = chronological(train)
        users = train.user_index[order].astype(np.int64)
        items = train.item_index[order].astype(np.int64)
        per_user = np.bincount(users, minlength=self.n_users)
        ends = np.cumsum(per_user)
        step = np.arange(users.shape[0]) - (ends - per_user)[users]  # position in the user's sequence
        rank = (per_user[users] - 1) - step  # 0 = the user's latest interaction

        # recency rank of every stored (user, item) pair: its latest occurrence
        keys = users * n + items
        latest = np.full(self.history_items.shape[0], np.iinfo(np.int64).max)
        np.minimum.at(latest, np.searchsorted(self.training_keys().cpu().numpy(), keys), rank)
        self.history_rank.copy_(torch.from_numpy(latest.astype(np.float32)))

        device = self.set_weights.device
        x = torch.zeros(self.n_users, k, dtype=torch.float64, device=device)
        hist_users = self.training_keys() // n
        x[hist_users, torch.as_tensor(pos, device=device)[self.history_items]] = 1.0
        self.set_weights.copy_(ease_weights(x, cfg.set_reg).float())
        del x

        self.transition.copy_(self._fit_transition(users, pos[items], step, per_user).to(device).float())
        self.item_pos.copy_(torch.as_tensor(pos))

    def _fit_transition(
        self, users: np.ndarray, cols: np.ndarray, step: np.ndarray, per_user: np.ndarray
    ) -> torch.Tensor:
        """``T = (PᵀP + reg·I)⁻¹ PᵀQ`` over the chronological interactions (see the module docs)."""
        cfg = self.config
        k = self.set_weights.shape[0]
        target = np.flatnonzero(step >= 1)  # interactions with at least one predecessor
        small = np.int32 if max(target.shape[0], k) < 2**31 else np.int64  # index width of the COO pieces
        row_of = np.arange(target.shape[0], dtype=small)
        cols = cols.astype(small)
        p_rows, p_cols, p_vals = [], [], []
        for lag in range(1, cfg.window + 1):  # one vectorised pass per lag, not per interaction
            ok = step[target] >= lag
            p_rows.append(row_of[ok])
            p_cols.append(cols[target[ok] - lag])
            p_vals.append(np.full(int(ok.sum()), np.exp(-(lag - 1) / cfg.tau)))
        q_rows, q_cols, q_vals = [], [], []
        left = per_user[users[target]] - step[target]  # interactions from t to the user's last
        for d in range(cfg.targets):
            ok = left > d
            q_rows.append(row_of[ok])
            q_cols.append(cols[target[ok] + d])
            q_vals.append(np.full(int(ok.sum()), np.exp(-d / cfg.tau)))
        shape = (target.shape[0], k)
        p = _csr(p_rows, p_cols, p_vals, shape)
        q = _csr(q_rows, q_cols, q_vals, shape)
        pt = p.T.tocsr()
        gram = torch.from_numpy((pt @ p).toarray())
        rhs_t = (q.T @ p).tocsr()  # (PᵀQ)ᵀ, sparse: each row of Q has at most `targets` entries
        del p, q, pt
        gram.diagonal().add_(cfg.reg)
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(gram)).numpy()
        del gram
        # T = G⁻¹ PᵀQ = ((PᵀQ)ᵀ G⁻¹)ᵀ as G⁻¹ is symmetric: a sparse x dense product
        return torch.from_numpy(np.ascontiguousarray((rhs_t @ inverse).T))

    # ------------------------------------------------------------------ scoring
    def _score_entries(
        self, rows: torch.Tensor, items: torch.Tensor, rank: torch.Tensor, n_rows: int
    ) -> torch.Tensor:
        """Scores ``(n_rows, n_items)`` of users given as entries (row, item, recency rank)."""
        cfg = self.config
        k = self.set_weights.shape[0]
        device = self.set_weights.device
        col = self.item_pos[items]
        ok = col >= 0
        rows, col, rank = rows[ok], col[ok], rank[ok].float()
        xt = torch.zeros(n_rows, k, device=device)
        xs = torch.zeros(n_rows, k, device=device)
        recent = rank < cfg.window
        xt[rows[recent], col[recent]] = torch.exp(-rank[recent] / cfg.tau)
        xs[rows, col] = cfg.set_base + torch.exp(-rank / cfg.set_tau)
        mixed = cfg.alpha * _standardise(xt @ self.transition) + (1.0 - cfg.alpha) * _standardise(
            xs @ self.set_weights
        )
        out = torch.empty(n_rows, self.n_items, device=device)
        active = self.item_pos >= 0
        floor = mixed.min(dim=1).values - 1.0 if k else torch.zeros(n_rows, device=device)
        out[:] = floor[:, None]
        out[:, active] = mixed
        return out

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        order = torch.arange(self.history_items.shape[0], device=users.device)
        rows, entry = expand_rows(self.history_indptr, order, users)
        return self._score_entries(rows, self.history_items[entry], self.history_rank[entry], users.shape[0])

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor, steps: int = 0) -> torch.Tensor:
        """A new user's scores from the items they rated, oldest first (values are ignored)."""
        items = items.to(self.item_pos.device).long()
        n = items.shape[0]
        rank = torch.arange(n - 1, -1, -1, device=items.device, dtype=torch.float32)
        # an item rated twice counts once, at its latest position
        uniq, inverse = torch.unique(items, return_inverse=True)
        latest = torch.full((uniq.shape[0],), float(n), device=items.device).scatter_reduce(
            0, inverse, rank, reduce="amin"
        )
        rows = torch.zeros(uniq.shape[0], dtype=torch.long, device=items.device)
        return self._score_entries(rows, uniq, latest, 1)[0]

    @torch.no_grad()
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Per-pair scores (each distinct user's row is scored once)."""
        uniq, inverse = torch.unique(users, return_inverse=True)
        return self.score_users(uniq)[inverse, items]

    def item_vectors(self) -> torch.Tensor | None:
        """Each item's column of the set part ``B`` (zeros for items without training data)."""
        return self.columns_per_item(self.set_weights)


def _standardise(scores: torch.Tensor) -> torch.Tensor:
    """Each row shifted and scaled to mean 0 and standard deviation 1 (all-equal rows: zeros)."""
    mean = scores.mean(dim=1, keepdim=True)
    std = scores.std(dim=1, keepdim=True, correction=0)
    return (scores - mean) / torch.where(std > 0, std, torch.ones_like(std))


def _csr(
    rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray], shape: tuple[int, int]
) -> sp.csr_matrix:
    """A scipy CSR matrix from lists of COO pieces (duplicate entries are summed)."""
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
