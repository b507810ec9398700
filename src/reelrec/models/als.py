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

The item factors start from a randomised truncated SVD of the residual ratings (after a
one-pass bias estimate), so the first sweep already fits the leading interaction directions:
on ML-1M holdout90 the default model passes cornac MF's test RMSE at its second sweep. On the
CPU the sparse products are scipy's (row blocks on plain threads) and the small batched ops run
on one torch thread (see :func:`one_torch_thread`).

:class:`reelrec.training.Trainer` runs one sweep per epoch (``--epochs`` counts sweeps: the
:class:`~reelrec.models.fitting.Sweeps` plan of :meth:`ALS.fit_plan`) in its one loop, with the
history, validation RMSE, early stopping and refit of gradient training. The defaults'
``refit_models = 4`` merges four refits from different random starts exactly
(:meth:`ALS.average`): the exact mean of four local optima is better than any one of them.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.fitting import FitPlan, Sweeps
from reelrec.models.mf import LARGE_DATA, LARGE_DATA_TRAIN, MatrixFactorization, MFConfig
from reelrec.models.regularisation import REG_REFERENCE_COUNT
from reelrec.sparse import indptr_of_rows

#: power iterations of the randomised SVD start (ML-1M validation, 12 sweeps: 1 -> 0.8446,
#: 3 -> 0.8445, 6 -> 0.8442; 3 reaches 0.8489 one sweep sooner than 1)
SVD_POWER_ITERATIONS = 3


@contextmanager
def one_torch_thread(device: torch.device) -> Iterator[None]:
    """Run torch's CPU ops on one thread inside the block (the thread count is restored after).

    An ALS sweep on the CPU is a few dozen small batched ops around scipy's single-threaded
    sparse products; with two or more OpenMP threads each small op waits at a barrier for the
    slowest thread, and on a loaded machine that wait dominates (ML-1M sweeps were several times
    slower with two threads than with one beside other jobs on two cores)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ALSConfig(MFConfig):
    """Hyperparameters of :class:`ALS` (MF's fields, with defaults chosen for ALS by validation
    RMSE on ML-1M ``holdout90``'s validation part; see docs/benchmarks.md)."""

    embedding_size: int = Field(16, ge=1, le=4096, description="factors per user and item")
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
    factor_init: Literal["svd", "random"] = Field(
        "svd",
        description="start the item factors at a randomised truncated SVD of the residual ratings (and "
        "the biases at a shrunk one-pass estimate), or at random (init, init_std; biases: bias_init)",
    )
    precision: Literal["float32", "float64"] = Field(
        "float32", description="floating-point type of the ridge solves (the tables stay float32)"
    )


def group_order(rows: np.ndarray) -> np.ndarray:
    """The stable permutation that groups ``rows`` (non-negative integers) in ascending order: an
    LSD radix sort of two 16-bit passes (numpy's stable sort of 16-bit keys is a radix sort),
    O(n) where a comparison sort of 900,000 keys takes ten times longer."""
    order = np.argsort((rows & 0xFFFF).astype(np.uint16), kind="stable")
    high = rows >> 16
    if high.any():
        order = order[np.argsort(high[order].astype(np.uint16), kind="stable")]
    return order


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of ``workers`` threads for the blocks of a CPU sparse product."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reelrec-als")


@dataclass
class _Side:
    """The ratings grouped by one side's entities (users, or items): a CSR matrix."""

    crow: torch.Tensor  # (n + 1,) row pointers
    col: torch.Tensor  # (nnz,) the other side's index of each rating, grouped by row
    rating: torch.Tensor  # (nnz,) the ratings in that order
    row: torch.Tensor  # (nnz,) this side's index of each rating in that order
    n_rows: int
    n_cols: int
    #: threads for the CPU sparse products (blocks of rows with equal numbers of ratings)
    workers: int = 1

    def row_blocks(self) -> list[tuple[int, int]]:
        """``workers`` contiguous row ranges holding about equal numbers of ratings."""
        if self.workers <= 1 or self.n_rows < 2 * self.workers:
            return [(0, self.n_rows)]
        targets = np.linspace(0, int(self.crow[-1]), self.workers + 1)[1:-1]
        cuts = np.searchsorted(self.crow.numpy(), targets).tolist()
        edges = sorted({0, *cuts, self.n_rows})
        return list(itertools.pairwise(edges))

    @classmethod
    def build(
        cls,
        rows: np.ndarray,
        cols: np.ndarray,
        ratings: np.ndarray,
        n_rows: int,
        n_cols: int,
        device: torch.device,
    ) -> _Side:
        order = group_order(rows)
        crow = indptr_of_rows(rows, n_rows)

        def put(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(x, dtype=dtype).to(device)

        return cls(
            put(crow, torch.long),
            put(cols[order], torch.long),
            put(ratings[order], torch.float32),
            put(rows[order], torch.long),
            n_rows,
            n_cols,
        )

    def product(
        self, dense: torch.Tensor, values: torch.Tensor | None = None, scipy: bool | None = None
    ) -> torch.Tensor:
        """``M @ dense`` for the CSR matrix ``M`` of this side's pattern with ``values``
        (aligned with :attr:`col`; ``None``: ones), in ``dense``'s dtype. On the CPU this is
        scipy's CSR kernel (several times faster than torch's sparse CSR product there, which
        copies its operands), on a GPU torch's (``scipy`` forces one or the other on the CPU)."""
        if dense.device.type == "cpu" and scipy is not False:
            np_dtype = torch.empty(0, dtype=dense.dtype).numpy().dtype
            data = (
                np.ones(self.col.shape[0], dtype=np_dtype)
                if values is None
                else values.to(dense.dtype).numpy()
            )
            indices, indptr, x = self.col.numpy(), self.crow.numpy(), dense.contiguous().numpy()
            bounds = self.row_blocks()
            out = np.empty((self.n_rows, x.shape[1]), dtype=np.result_type(np_dtype, x.dtype))

            def block(rows: tuple[int, int]) -> None:
                r0, r1 = rows
                a, b = indptr[r0], indptr[r1]
                part = sp.csr_matrix(
                    (data[a:b], indices[a:b], indptr[r0 : r1 + 1] - a),
                    shape=(r1 - r0, self.n_cols),
                    copy=False,
                )
                out[r0:r1] = part @ x

            if len(bounds) == 1:
                block(bounds[0])
            else:  # scipy releases the GIL in its kernels: one block per thread
                list(_pool(len(bounds)).map(block, bounds))
            return torch.from_numpy(out)
        vals = torch.ones_like(self.rating, dtype=dense.dtype) if values is None else values.to(dense.dtype)
        with warnings.catch_warnings():  # torch flags sparse CSR as beta
            warnings.simplefilter("ignore", UserWarning)
            mat = torch.sparse_csr_tensor(self.crow, self.col, vals, size=(self.n_rows, self.n_cols))
        return mat @ dense


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
    over ``x_e = [w_e; b_e]`` with ``z_j = [other_j; 1]`` (no bias when ``lam_bias`` is None);
    ``target`` is aligned with ``side.col``. Returns ``(w, b, objective)`` where ``objective``
    is that minimum summed over entities.
    """
    n, k = side.n_rows, other.shape[1]
    dev = other.device
    z = other.to(dtype)
    if lam_bias is not None:
        z = torch.cat([z, torch.ones(z.shape[0], 1, dtype=dtype, device=dev)], 1)
    d = z.shape[1]
    # the Gram matrices' upper triangles (d (d + 1) / 2 columns) from one sparse x dense product
    upper = torch.triu_indices(d, d, device=dev)
    half = torch.zeros(d, d, dtype=torch.long, device=dev)
    half[upper[0], upper[1]] = torch.arange(upper.shape[1], device=dev)
    half = torch.maximum(half, half.T).flatten()  # (r, c) -> its column in the upper triangle
    t = target.to(dtype)
    gram_half = side.product(z[:, upper[0]] * z[:, upper[1]])
    rhs = side.product(z, t)
    a = gram_half[:, half]  # (n, d * d): the full symmetric matrices
    reg = lam.to(dtype)[:, None].expand(n, d).clone()
    if lam_bias is not None:
        reg[:, -1] = lam_bias.to(dtype)
    # a tiny jitter keeps the system of an entity without ratings (and reg = 0) positive definite
    a[:, :: d + 1] += reg + 1e-6
    a = a.view(n, d, d)
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info != 0).any()):  # numerically singular: more jitter for those entities only
        bad = info != 0
        a[bad] += torch.eye(d, dtype=dtype, device=a.device) * 1e-3 * a[bad].diagonal(dim1=1, dim2=2).mean()
        chol[bad] = torch.linalg.cholesky(a[bad])
    x = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
    # at the minimiser, sum err^2 + penalty = y^T y - x^T rhs for every entity
    objective = float(torch.dot(t, t)) - float((x * rhs).sum())
    w, b = (x[:, :k], x[:, k]) if lam_bias is not None else (x, None)
    return w.float().contiguous(), None if b is None else b.float().contiguous(), objective


class ALS(MatrixFactorization):
    """Biased MF fitted by alternating least squares; see the module docs."""

    name: ClassVar[str] = "als"
    config_class: ClassVar[type[ModelConfig]] = ALSConfig
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "patience": 2,
        "refit": True,
        # four refits from different random starts, averaged exactly (ALS.average): ML-1M validation
        # RMSE 0.8449 (one) -> 0.8412 (mean of four), at four times the (small) fitting cost
        "refit_models": 4,
    }
    config: ALSConfig

    @classmethod
    def train_defaults(
        cls, n_ratings: int | None = None, config: ModelConfig | None = None
    ) -> dict[str, Any]:
        """:attr:`default_train`, and MF's large-data recipe past :data:`~reelrec.models.mf.LARGE_DATA`
        training ratings (no refits); a sweep costs little next to an epoch of MF, so ALS keeps its
        four merged refits below that, where MF's recipe drops to one."""
        values = dict(cls.default_train)
        if n_ratings is not None and n_ratings > LARGE_DATA:
            values.update(LARGE_DATA_TRAIN)
        return values

    def __init__(self, n_users: int, n_items: int, config: ALSConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or ALSConfig())

    @classmethod
    def average(cls, models: list[RatingModel], *, exact: bool = True) -> MatrixFactorization:
        """MF's merge of several fits into one model predicting their mean; exact by default (the
        members' factors side by side: four 16-factor ALS fits make one 64-factor model). The
        members are different local optima of the same objective, and their exact mean is what
        gains accuracy (ML-1M validation: 0.8412 exact, 0.8425 truncated to 16 factors)."""
        return super().average(models, exact=exact)

    def penalties(self, counts: np.ndarray, ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-entity L2 weights ``(on the factors, on the bias)`` of entities with ``counts``
        training ratings (the sums of MF's per-occurrence penalties over an epoch)."""
        cfg = self.config
        n = torch.as_tensor(np.maximum(counts, 1), dtype=torch.float64)
        lam = cfg.reg * ratio * n * (n / REG_REFERENCE_COUNT) ** (cfg.reg_alpha - 1.0)
        return lam, cfg.bias_reg * n

    @torch.no_grad()
    def _svd_start(self, by_user: _Side, by_item: _Side) -> None:
        """Biases from one shrunk pass (``b_i``, then ``b_u``; shrinkage 10 ratings) and item
        factors ``V sqrt(S)`` from a rank-``embedding_size`` randomised SVD of the residual
        matrix (:data:`SVD_POWER_ITERATIONS` power iterations, each two sparse products of
        ``embedding_size`` columns), so the first sweep starts from the leading interaction
        directions instead of noise."""
        k = self.config.embedding_size
        if k > min(self.n_users, self.n_items):
            return  # more factors than users or items: keep the random start
        mu = self.global_mean
        b_u, b_i = self.user_bias.weight[:, 0], self.item_bias.weight[:, 0]
        for side, bias, other_bias in ((by_item, b_i, b_u), (by_user, b_u, b_i)):
            sums = torch.zeros(side.n_rows, device=mu.device).index_add_(
                0, side.row, side.rating - mu - other_bias[side.col]
            )
            counts = (side.crow[1:] - side.crow[:-1]).float()
            bias.copy_(sums / (counts + 10.0))
        res_u = by_user.rating - mu - b_u[by_user.row] - b_i[by_user.col]
        res_i = by_item.rating - mu - b_i[by_item.row] - b_u[by_item.col]
        omega = torch.randn(self.n_items, k, device=mu.device)
        basis = torch.linalg.qr(by_user.product(omega, res_u)).Q  # an orthonormal basis of R omega
        for _ in range(SVD_POWER_ITERATIONS):  # (R R^T) basis: sharpens the leading directions
            basis = torch.linalg.qr(by_user.product(by_item.product(basis, res_i), res_u)).Q
        left, sing, _ = torch.linalg.svd(by_item.product(basis, res_i), full_matrices=False)  # R^T basis
        self.item_factors.weight.copy_(left * sing.sqrt())

    def fit_plan(self, train: Dataset) -> FitPlan:
        """One sweep per epoch (:meth:`sweeper`) instead of MF's gradient steps."""
        return Sweeps(self.sweeper(train))

    def sweeper(self, train: Dataset) -> Callable[[], float]:
        """One ALS sweep per call (users given items, then items given users); returns the
        training objective divided by the number of ratings (MF's ``train_loss`` scale)."""
        device = self.global_mean.device
        users, items, ratings = train.user_index, train.item_index, train.rating
        cfg = self.config
        threads = torch.get_num_threads()
        with one_torch_thread(device):
            by_user = _Side.build(users, items, ratings, self.n_users, self.n_items, device)
            by_item = _Side.build(items, users, ratings, self.n_items, self.n_users, device)
            by_user.workers = by_item.workers = threads
            if cfg.factor_init == "svd":
                self._svd_start(by_user, by_item)
        dtype = torch.float64 if cfg.precision == "float64" else torch.float32
        lam_u, lam_bu = (t.to(device) for t in self.penalties(train.user_counts()))
        lam_i, lam_bi = (t.to(device) for t in self.penalties(train.item_counts(), cfg.item_reg_ratio))
        n_ratings = max(len(train), 1)
        p, q = self.user_factors.weight, self.item_factors.weight
        b_u, b_i = self.user_bias.weight[:, 0], self.item_bias.weight[:, 0]
        # the ratings minus the global mean, in each side's order
        centred = (by_user.rating - self.global_mean, by_item.rating - self.global_mean)

        def penalty(f: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, lam_b: torch.Tensor) -> float:
            out = (lam * (f.double() ** 2).sum(1)).sum()
            if cfg.use_bias:
                out = out + (lam_b * b.double() ** 2).sum()
            return float(out)

        def half(
            side: _Side,
            r0: torch.Tensor,
            other: tuple[torch.Tensor, torch.Tensor],
            own: tuple[torch.Tensor, torch.Tensor],
            lam: torch.Tensor,
            lam_b: torch.Tensor,
        ) -> float:
            """Solve one side's factors (and biases) in place; returns the half-step's objective."""
            target = r0 - other[1][side.col]
            if not cfg.use_bias:  # fixed biases (zeros, or the baseline's) stay in the target
                target = target - own[1][side.row]
            w, b, objective = ridge_half_step(
                side, other[0], target, lam, lam_b if cfg.use_bias else None, dtype
            )
            own[0].copy_(w)
            if b is not None:
                own[1].copy_(b)
            return objective

        @torch.no_grad()
        def sweep() -> float:
            with one_torch_thread(device):
                return _sweep()

        def _sweep() -> float:
            half(by_user, centred[0], (q, b_i), (p, b_u), lam_u, lam_bu)
            objective = half(by_item, centred[1], (p, b_u), (q, b_i), lam_i, lam_bi)
            return (objective + penalty(p, b_u, lam_u, lam_bu)) / n_ratings

        return sweep
