"""Explicit alternating least squares (ALS) for biased matrix factorisation.

The model is :class:`~reelrec.models.mf.MatrixFactorization`'s ``r(u, i) = mu + b_u + b_i +
p_u . q_i`` with the same parameters (so prediction, scoring, serving, similar items, retrieval
vectors, averaging and the closed-form fold-in are MF's code) and the same objective, summed
over the training ratings instead of averaged over a batch:

    sum (r - mu - b_u - b_i - p_u . q_i)^2
      + sum_u reg * n_u * (n_u / 100) ** (reg_alpha - 1) * |p_u|^2 + bias_reg * n_u * b_u^2
      + sum_i reg * item_reg_ratio * n_i * (n_i / 100) ** (reg_alpha - 1) * |q_i|^2 + bias_reg * n_i * b_i^2

(``n_u``: the user's training ratings; ``reg_alpha`` is MF's frequency weighting of the penalty,
see :mod:`reelrec.models.mf`). Only fitting differs: instead of gradient steps, each sweep solves
every user's ridge regression exactly given the item factors and biases (the bias is an extra
unknown beside a constant-1 column of the design matrix), then every item's given the users'.
Each half-sweep minimises the objective over its block exactly, so the objective never
increases from one sweep to the next.

A half-sweep is a few whole-table operations, with no loop over users or items:

* the ratings are sorted by user and by item once (two CSR matrices, built by the solver);
* every user's Gram matrix ``sum_i z_i z_i^T`` (``z_i = [q_i; 1]``) is one sparse x dense
  product: the CSR pattern times the table of the items' outer products ``z_i z_i^T`` (upper
  triangle only, ``d (d + 1) / 2`` columns), and every right-hand side ``sum_i y_ui z_i`` is
  a second one with the ratings' targets as the CSR values;
* the ``n_users`` systems of size ``d = embedding_size + 1`` are solved by one batched
  Cholesky factorisation (``torch.linalg.cholesky_ex`` + ``cholesky_solve``).

The training objective reported per sweep needs no pass over the predictions: at the exact
minimiser of a half-step, ``sum err^2 + penalty = y^T y - x^T rhs`` per entity.

:class:`reelrec.training.Trainer` runs one sweep per epoch (``--epochs`` counts sweeps) and
keeps its history, validation RMSE, early stopping and refit (see
:meth:`RatingModel.sweeper <reelrec.models.base.RatingModel.sweeper>`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig
from reelrec.models.mf import REG_REFERENCE_COUNT, MatrixFactorization, MFConfig


class ALSConfig(MFConfig):
    """Hyperparameters of :class:`ALS` (MF's fields, with defaults chosen for ALS by validation
    RMSE on ML-1M ``holdout90``'s validation part; see docs/benchmarks.md)."""

    embedding_size: int = Field(64, ge=1, le=1024, description="factors per user and item")
    reg: float = Field(
        0.1,
        ge=0,
        description="L2 weight on a user's factors, per training rating of a user with 100 ratings "
        "(see reg_alpha): a user with n ratings carries reg * n * (n / 100) ** (reg_alpha - 1)",
    )
    item_reg_ratio: float = Field(
        1.0, ge=0, description="L2 weight on the item factors, as a multiple of reg"
    )
    bias_reg: float = Field(0.05, ge=0, description="L2 weight on a bias, per training rating")
    bias_init: Literal["baseline", "zero"] = Field(
        "zero", description="start the biases at the closed-form bias baseline, or at zero"
    )
    init_std: float = Field(0.1, gt=0, description="scale of the item factors' random start")
    precision: Literal["float32", "float64"] = Field(
        "float32", description="floating-point type of the ridge solves (the tables stay float32)"
    )


@dataclass
class _Side:
    """The ratings grouped by one side's entities (users, or items): a CSR matrix."""

    crow: torch.Tensor  # (n + 1,) row pointers
    col: torch.Tensor  # (nnz,) the other side's index of each rating, grouped by row
    rating: torch.Tensor  # (nnz,) the ratings in that order
    row: torch.Tensor  # (nnz,) this side's index of each rating in that order
    n_rows: int
    n_cols: int

    @classmethod
    def build(
        cls, rows: torch.Tensor, cols: torch.Tensor, ratings: torch.Tensor, n_rows: int, n_cols: int
    ) -> _Side:
        order = torch.argsort(rows * n_cols + cols)
        crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
        torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=crow[1:])
        return cls(crow, cols[order].contiguous(), ratings[order].contiguous(), rows[order], n_rows, n_cols)

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR matrix with this side's pattern and ``values`` (aligned with :attr:`col`)."""
        with warnings.catch_warnings():  # torch flags sparse CSR as beta
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.crow, self.col, values, size=(self.n_rows, self.n_cols))


def ridge_half_step(
    side: _Side,
    other: torch.Tensor,
    target: torch.Tensor,
    lam: torch.Tensor,
    lam_bias: torch.Tensor | None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Every row entity's exact ridge solution given the other side's vectors.

    Entity ``e`` minimises ``sum_j (target_ej - z_j . x_e)^2 + lam_e |w_e|^2 + lam_bias_e b_e^2``
    over ``x_e = [w_e; b_e]`` with ``z_j = [other_j; 1]`` (no bias when ``lam_bias`` is None).
    Returns ``(w, b, objective)`` where ``objective`` is that minimum summed over entities.
    """
    n, k = side.n_rows, other.shape[1]
    work = other.to(dtype)
    z = (
        torch.cat([work, torch.ones(work.shape[0], 1, dtype=dtype, device=work.device)], 1)
        if lam_bias is not None
        else work
    )
    d = z.shape[1]
    upper = torch.triu_indices(d, d, device=z.device)
    outer = z[:, upper[0]] * z[:, upper[1]]  # (m, d (d + 1) / 2): each entity's z z^T, upper half
    t = target.to(dtype)
    gram_half = side.matrix(torch.ones_like(t)) @ outer
    rhs = side.matrix(t) @ z
    a = torch.zeros(n, d * d, dtype=dtype, device=z.device)
    a[:, upper[0] * d + upper[1]] = gram_half  # the upper triangle ...
    a[:, upper[1] * d + upper[0]] = gram_half  # ... mirrored
    a = a.view(n, d, d)
    diag = lam.to(dtype)[:, None].expand(n, d).clone()
    if lam_bias is not None:
        diag[:, -1] = lam_bias.to(dtype)
    # a tiny jitter keeps the system of an entity without ratings (and reg = 0) positive definite
    a.diagonal(dim1=1, dim2=2).add_(diag + 1e-6)
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info != 0).any()):  # numerically singular: more jitter for those entities only
        bad = info != 0
        a[bad] += torch.eye(d, dtype=dtype, device=a.device) * 1e-3 * a[bad].diagonal(dim1=1, dim2=2).mean()
        chol[bad] = torch.linalg.cholesky(a[bad])
    x = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
    # at the minimiser, sum err^2 + penalty = y^T y - x^T rhs for every entity
    objective = float((t.double() ** 2).sum() - (x.double() * rhs.double()).sum())
    w, b = (x[:, :k], x[:, k]) if lam_bias is not None else (x, None)
    return w.float().contiguous(), None if b is None else b.float().contiguous(), objective


class ALS(MatrixFactorization):
    """Biased MF fitted by alternating least squares; see the module docs."""

    name: ClassVar[str] = "als"
    config_class: ClassVar[type[ModelConfig]] = ALSConfig
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 15,
        "patience": 2,
        "refit": True,
        "refit_models": 1,
    }
    config: ALSConfig

    def __init__(self, n_users: int, n_items: int, config: ALSConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or ALSConfig())

    def penalties(self, counts: np.ndarray, ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-entity L2 weights ``(on the factors, on the bias)`` of entities with ``counts``
        training ratings (the sums of MF's per-occurrence penalties over an epoch)."""
        cfg = self.config
        n = torch.as_tensor(np.maximum(counts, 1), dtype=torch.float64)
        lam = cfg.reg * ratio * n * (n / REG_REFERENCE_COUNT) ** (cfg.reg_alpha - 1.0)
        return lam, cfg.bias_reg * n

    def sweeper(self, train: Dataset) -> Callable[[], float]:
        """One ALS sweep per call (users given items, then items given users); returns the
        training objective divided by the number of ratings (MF's ``train_loss`` scale)."""
        device = self.global_mean.device
        users = torch.as_tensor(train.user_index, dtype=torch.long, device=device)
        items = torch.as_tensor(train.item_index, dtype=torch.long, device=device)
        ratings = torch.as_tensor(train.rating, dtype=torch.float32, device=device)
        by_user = _Side.build(users, items, ratings, self.n_users, self.n_items)
        by_item = _Side.build(items, users, ratings, self.n_items, self.n_users)
        del users, items, ratings
        cfg = self.config
        dtype = torch.float64 if cfg.precision == "float64" else torch.float32
        lam_u, lam_bu = (t.to(device) for t in self.penalties(train.user_counts()))
        lam_i, lam_bi = (t.to(device) for t in self.penalties(train.item_counts(), cfg.item_reg_ratio))
        n_ratings = max(len(train), 1)
        p, q = self.user_factors.weight, self.item_factors.weight
        b_u, b_i = self.user_bias.weight[:, 0], self.item_bias.weight[:, 0]

        def penalty(f: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, lam_b: torch.Tensor) -> float:
            out = (lam * (f.double() ** 2).sum(1)).sum()
            if cfg.use_bias:
                out = out + (lam_b * b.double() ** 2).sum()
            return float(out)

        @torch.no_grad()
        def sweep() -> float:
            mu = self.global_mean
            target = (
                by_user.rating - mu - b_i[by_user.col]
                if cfg.use_bias
                else by_user.rating - mu - b_u[by_user.row] - b_i[by_user.col]
            )
            w, b, _ = ridge_half_step(by_user, q, target, lam_u, lam_bu if cfg.use_bias else None, dtype)
            p.copy_(w)
            if b is not None:
                b_u.copy_(b)
            target = (
                by_item.rating - mu - b_u[by_item.col]
                if cfg.use_bias
                else by_item.rating - mu - b_u[by_item.col] - b_i[by_item.row]
            )
            w, b, objective = ridge_half_step(
                by_item, p, target, lam_i, lam_bi if cfg.use_bias else None, dtype
            )
            q.copy_(w)
            if b is not None:
                b_i.copy_(b)
            return (objective + penalty(p, b_u, lam_u, lam_bu)) / n_ratings

        return sweep
