"""Biased matrix factorisation: ``r(u, i) = mu + b_u + b_i + p_u . q_i``.

The notebooks' ``CFModel`` (a Keras dot product of two embeddings), done right: global mean
and per-user/per-item biases, small-normal initialisation and L2 on the embeddings *of the
batch*.

Two details matter for accuracy (measured on the ML-100K and ML-1M validation parts):

* **Frequency-weighted L2.** Each occurrence of user ``u`` in a batch is penalised with weight
  ``(n_u / 100) ** (reg_alpha - 1)``, so over an epoch user ``u`` carries a total penalty
  proportional to ``n_u ** reg_alpha`` (and likewise for items). ``reg_alpha = 1`` is Funk's
  per-occurrence SGD penalty (weighted-lambda); ``0`` penalises every user equally. The
  default ``0.5`` shrinks rarely-seen users and items relatively harder. The reference count
  of 100 only fixes the scale of ``reg`` (``reg`` is the per-occurrence weight of an entity
  with 100 training ratings), so the same value suits datasets of different density.
* **Biases start at the bias baseline.** :meth:`MatrixFactorization.prepare` solves the
  regularised ``mu + b_u + b_i`` least-squares problem in closed form, so gradient descent
  only has to learn the interaction term and the biases' refinements.

With the default ``refit_models = 4`` (:class:`reelrec.training.TrainConfig`; past
:data:`MID_DATA` training ratings one, averaged with the early-stopped model; none past
:data:`LARGE_DATA`),
:meth:`Recommender.train <reelrec.recommender.Recommender.train>` refits four independently
seeded MFs on train + validation and :meth:`MatrixFactorization.average` merges the mean of
their predictions into one MF of the same size (the best ``embedding_size``-rank approximation
of the averaged interaction term; ``members = 4``; lower variance than any one member).
Training takes the gradient in closed form (:class:`~reelrec.models.mf_kernel.MFGradient`, MF's
:meth:`~MatrixFactorization.fit_plan`), a third faster than autograd.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig, RatingModel, biased_retrieval_vectors
from reelrec.models.fitting import FitPlan, GradientSteps, RowGrad
from reelrec.models.init import init_embedding
from reelrec.models.mf_kernel import MFGradient
from reelrec.models.regularisation import REG_REFERENCE_COUNT, baseline_biases, frequency_weights

#: training ratings past which MF refits one model, not four, and averages it with the model
#: early-stopped on the training part (ML-1M's 0.86M): each refit costs a whole training. ML-1M
#: holdout90 test RMSE (2026-12-02): four refits 0.8335 (78 epochs of work), two 0.8342 (48), one
#: 0.8353 (33), one + the validated model 0.8348 (33); ML-100K keeps four
MID_DATA = 500_000
MID_DATA_TRAIN: dict[str, Any] = {"refit_models": 1, "average_validated": True}
#: training ratings past which MF trains with :data:`LARGE_DATA_TRAIN` (ML-10M and larger; ML-1M has 0.86M)
LARGE_DATA = 2_000_000
LARGE_DATA_TRAIN: dict[str, Any] = {
    "batch_size": 32_768,
    "refit": False,
    "refit_models": 1,
    "average_validated": False,
}


def _truncated_product(p: torch.Tensor, q: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``(P', Q')`` with ``rank`` columns whose product is the best rank-``rank``
    approximation of ``P Q^T`` (Eckart-Young), split evenly as ``U sqrt(S)`` and ``V sqrt(S)``.

    From thin QR factorisations ``P = Q_p R_p`` and ``Q = Q_q R_q``, ``P Q^T = Q_p (R_p R_q^T)
    Q_q^T``, so one SVD of the small ``R_p R_q^T`` gives the singular triplets; float64 throughout.
    """
    if rank >= p.shape[1]:
        return p, q
    dtype = p.dtype
    q_p, r_p = torch.linalg.qr(p.double())
    q_q, r_q = torch.linalg.qr(q.double())
    u, s, vt = torch.linalg.svd(r_p @ r_q.T)
    root = s[:rank].sqrt()  # fewer than rank when there are fewer users or items than that
    p_r, q_r = q_p @ u[:, : len(root)] * root, q_q @ vt[: len(root)].T * root
    if len(root) < rank:  # zero columns keep the width (and change no product)
        p_r = torch.nn.functional.pad(p_r, (0, rank - len(root)))
        q_r = torch.nn.functional.pad(q_r, (0, rank - len(root)))
    # the product fixes P' and Q' only up to a scale c (c P', Q' / c); keep the items' overall
    # scale, which the penalties (training, fold-in) are calibrated to
    c = float(q.double().norm() / q_r.norm().clamp_min(1e-30))
    return (p_r / c).to(dtype), (q_r * c).to(dtype)


class MFConfig(ModelConfig):
    """Hyperparameters of :class:`MatrixFactorization`.

    The defaults were chosen by validation RMSE (5% of the training part) on ML-100K and
    ML-1M ``holdout90`` with ``TrainConfig(epochs=40, batch_size=4096, learning_rate=1e-3,
    optimizer="adam", lr_schedule="constant", patience=3)``. ``init_std`` (0.01 before) was
    lowered to 0.003 later: from a smaller start gradient descent picks up the leading factors
    first and the early-stopped model is effectively of lower rank (the implicit regularisation of
    factorised gradient descent). Nested validation (the refit scored on a validation part it
    never saw), with two averaged refits: ML-100K u1 0.9013 -> 0.9003 (5 carves), ML-1M
    holdout90 0.8379 -> 0.8376, ML-100K holdout90 0.9040 -> 0.9042 (3 carves, within noise).
    """

    embedding_size: int = Field(128, ge=1, le=4096, description="factors per user and item")
    reg: float = Field(0.2, ge=0, description="L2 weight on the batch's user factors (see reg_alpha)")
    item_reg_ratio: float = Field(
        0.15, ge=0, description="L2 weight on the item factors, as a multiple of reg"
    )
    reg_alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a user/item with n training ratings is penalised in proportion to n**reg_alpha "
        "over an epoch (1: per occurrence, as in Funk's SGD; 0: uniformly)",
    )
    bias_reg: float = Field(0.004, ge=0, description="L2 weight on the batch's biases")
    bias_init: Literal["baseline", "zero"] = Field(
        "baseline", description="start the biases at the closed-form bias baseline, or at zero"
    )
    init: Literal["normal", "uniform", "xavier", "he"] = "normal"
    init_std: float = Field(0.003, gt=0, description="scale of the normal/uniform initialiser")
    use_bias: bool = True
    members: int = Field(
        1,
        ge=1,
        le=64,
        description="how many independently trained MFs were averaged into this one (set by "
        "MatrixFactorization.average; provenance only, the tables have embedding_size columns)",
    )


class MatrixFactorization(RatingModel):
    """Biased MF in PyTorch; see :class:`MFConfig`."""

    name: ClassVar[str] = "mf"
    averageable: ClassVar[bool] = True
    config_class: ClassVar[type[ModelConfig]] = MFConfig
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 40,
        "batch_size": 4096,
        "learning_rate": 1e-3,
        "refit": True,
        # refits from different seeds, merged into one MF (benchmarks/mf_validation.py, nested
        # validation, paired carves): 1 -> 2 members -0.0005 (u1, random carves) and -0.0007
        # (u1-shaped carves: half the users lose 40%); 2 -> 4 a further -0.0003 (u1-shaped,
        # 7 of 8 carves), -0.0002 (ML-100K holdout90), -0.0001 (u1 random). Past MID_DATA
        # training ratings two (see train_defaults)
        "refit_models": 4,
    }
    config: MFConfig

    @classmethod
    def train_defaults(
        cls, n_ratings: int | None = None, config: ModelConfig | None = None
    ) -> dict[str, Any]:
        """:attr:`default_train`; past :data:`MID_DATA` training ratings one refit (averaged with the
        early-stopped model) instead of four;
        past :data:`LARGE_DATA` the large-data recipe:
        no refits (the 5% validation part adds little to millions of ratings, and each refit costs
        a whole training) and 32,768-rating batches (the row-sparse steps cost per batch more than
        per rating; a user still moves once per batch it appears in)."""
        values = dict(cls.default_train)
        if n_ratings is not None and n_ratings > MID_DATA:
            values.update(MID_DATA_TRAIN)
        if n_ratings is not None and n_ratings > LARGE_DATA:
            values.update(LARGE_DATA_TRAIN)
        return values

    def __init__(self, n_users: int, n_items: int, config: MFConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or MFConfig())
        k = self.config.embedding_size
        self.user_factors = nn.Embedding(n_users, k)
        self.item_factors = nn.Embedding(n_items, k)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        for emb in (self.user_factors, self.item_factors):
            init_embedding(emb.weight, self.config.init, self.config.init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        # per-occurrence penalty weights; a training-time detail, so not saved with the model
        self.register_buffer("user_reg_weight", torch.ones(n_users), persistent=False)
        self.register_buffer("item_reg_weight", torch.ones(n_items), persistent=False)
        if not self.config.use_bias:
            self.user_bias.weight.requires_grad_(False)
            self.item_bias.weight.requires_grad_(False)

    def prepare(self, train: Dataset) -> None:
        """Global mean, the penalty's frequency weights and (optionally) baseline biases."""
        super().prepare(train)
        cfg = self.config
        for counts, buf in (
            (train.user_counts(), self.user_reg_weight),
            (train.item_counts(), self.item_reg_weight),
        ):
            buf.copy_(frequency_weights(counts, cfg.reg_alpha))
        if cfg.use_bias and cfg.bias_init == "baseline":
            mu, b_u, b_i = baseline_biases(train, self.n_users, self.n_items)
            with torch.no_grad():
                self.global_mean.fill_(mu)
                self.user_bias.weight.copy_(torch.as_tensor(b_u, dtype=torch.float32).unsqueeze(-1))
                self.item_bias.weight.copy_(torch.as_tensor(b_i, dtype=torch.float32).unsqueeze(-1))

    @classmethod
    def average(cls, models: list[RatingModel], *, exact: bool = False) -> MatrixFactorization:
        """One MF that predicts the mean of ``K`` fitted MFs.

        ``mean_k(mu_k + b_u^k + b_i^k + p_u^k . q_i^k)`` is exactly the prediction of an MF whose
        biases are the mean biases and whose factors are ``[p_u^1, ..., p_u^K] / sqrt(K)`` and
        ``[q_i^1, ..., q_i^K] / sqrt(K)``. With ``exact=True`` that wide MF (``K x
        embedding_size`` columns) is returned. By default its interaction term ``P Q^T`` is
        replaced by its best approximation of the members' rank (``embedding_size``; truncated
        SVD, computed from the QR factors of ``P`` and ``Q`` without forming ``P Q^T``), so the
        merged model costs what one member costs to store, serve and fold in. The members agree
        closely, so little is lost: on ML-100K u1 four 128-factor refits -> 128 factors moves
        the predictions by 0.0005 RMS. ``members`` in the config records how many MFs were
        averaged.
        """
        if not models or not all(isinstance(m, MatrixFactorization) for m in models):
            raise TypeError("MatrixFactorization.average needs a list of MatrixFactorization models")
        mfs: list[MatrixFactorization] = [m for m in models if isinstance(m, MatrixFactorization)]
        first = mfs[0]
        if any((m.n_users, m.n_items) != (first.n_users, first.n_items) for m in mfs):
            raise ValueError("the models to average must share their users and items")
        width = first.config.embedding_size
        if any(m.config.embedding_size != width for m in mfs):
            raise ValueError("the models to average must share their embedding_size")
        scale = 1.0 / math.sqrt(len(mfs))
        with torch.no_grad():
            p = torch.cat([m.user_factors.weight.detach() for m in mfs], dim=1) * scale
            q = torch.cat([m.item_factors.weight.detach() for m in mfs], dim=1) * scale
            if not exact and len(mfs) > 1:
                p, q = _truncated_product(p, q, width)
        update = {"embedding_size": int(p.shape[1]), "members": sum(m.config.members for m in mfs)}
        merged = cls(first.n_users, first.n_items, first.config.model_copy(update=update))
        merged.to(first.global_mean.device)
        with torch.no_grad():
            merged.user_factors.weight.copy_(p)
            merged.item_factors.weight.copy_(q)
            for name in ("user_bias", "item_bias"):
                mean = torch.stack([getattr(m, name).weight for m in mfs]).mean(0)
                getattr(merged, name).weight.copy_(mean)
            merged.global_mean.copy_(torch.stack([m.global_mean for m in mfs]).mean())
            merged.user_reg_weight.copy_(first.user_reg_weight)
            merged.item_reg_weight.copy_(first.item_reg_weight)
        merged.train(first.training)
        return merged

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_factors(users) * self.item_factors(items)).sum(-1)
        return self.global_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + dot

    def training_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        # one lookup per table serves both the prediction and the penalty
        cfg = self.config
        p, q = self.user_factors(users), self.item_factors(items)
        bu, bi = self.user_bias(users).squeeze(-1), self.item_bias(items).squeeze(-1)
        pred = self.global_mean + bu + bi + (p * q).sum(-1)
        loss = torch.mean((pred - ratings) ** 2)
        if cfg.reg:
            penalty = self.user_reg_weight[users] * (p * p).sum(-1)
            penalty = penalty + cfg.item_reg_ratio * self.item_reg_weight[items] * (q * q).sum(-1)
            loss = loss + cfg.reg * penalty.mean()
        if cfg.use_bias and cfg.bias_reg:
            loss = loss + cfg.bias_reg * (bu * bu + bi * bi).mean()
        return loss

    def fit_plan(self, train: Dataset) -> FitPlan:
        """Gradient steps with MF's closed-form gradient (:class:`~reelrec.models.mf_kernel.MFGradient`:
        the compiled kernel or torch ops, dense or by rows), a third faster than autograd. A
        subclass with another objective overrides this (ALS: its sweeps)."""
        return GradientSteps(gradient=MFGradient.for_model(self))

    def batch_gradients(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> torch.Tensor | None:
        """:meth:`training_loss` with its gradient written into the tables' ``.grad``
        (:meth:`MFGradient.dense <reelrec.models.mf_kernel.MFGradient.dense>`); ``None`` while the
        tables give sparse gradients. Kept for callers of the former Trainer hook."""
        if any(t.sparse for t in (self.user_factors, self.item_factors, self.user_bias, self.item_bias)):
            return None
        return MFGradient.for_model(self).dense(users, items, ratings)

    def row_gradients(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> tuple[torch.Tensor, list[RowGrad]]:
        """:meth:`training_loss` and its gradient by rows
        (:meth:`MFGradient.rows <reelrec.models.mf_kernel.MFGradient.rows>`). Kept for callers of
        the former Trainer hook."""
        return MFGradient(self).rows(users, items, ratings)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        scores = self.user_factors(users) @ self.item_factors.weight.T
        return scores + self.global_mean + self.user_bias(users) + self.item_bias.weight.T

    def score_user(self, user: int) -> np.ndarray:
        """One user's scores with numpy on CPU weights (shared memory, no copy): ``Q p + b``."""
        if self.item_factors.weight.device.type != "cpu":
            return super().score_user(user)
        q = self.item_factors.weight.detach().numpy()
        p = self.user_factors.weight.detach().numpy()[int(user)]
        b_i = self.item_bias.weight.detach().numpy()[:, 0]
        b_u = float(self.user_bias.weight.detach().numpy()[int(user), 0])
        return (q @ p + b_i).astype(np.float64) + (float(self.global_mean) + b_u)

    def score_items(self, user: int, items: np.ndarray) -> np.ndarray:
        """:meth:`score_user`'s arithmetic on some items only (no torch call per request)."""
        p = self.user_factors.weight.detach().cpu().numpy()[int(user)]
        b_u = float(self.user_bias.weight.detach().cpu().numpy()[int(user), 0])
        return self.score_items_for_vector(
            np.append(p, np.float32(1.0)), float(self.global_mean) + b_u, items
        )

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor, steps: int = 0) -> torch.Tensor:
        """Scores of every item for a *new* user described only by ``ratings`` of ``items``.

        The trained model stays frozen: the user's factors and bias are the exact minimiser of
        the training objective restricted to that user (a ridge regression on the item factors,
        with the penalty a user with ``n`` ratings carries over an epoch:
        ``reg * n * (n / 100) ** (reg_alpha - 1)`` on the factors, ``bias_reg * n`` on the bias).
        """
        weight = self.item_factors.weight.detach()
        bias = self.item_bias.weight.detach()[:, 0]
        p, b_u = self._fold_in_solution(items, ratings)
        # the catalogue pass stays float32 (no copy of the table)
        return weight @ p.to(weight.dtype) + bias + (float(self.global_mean) + b_u)

    @torch.no_grad()
    def fold_in_vector(self, items: torch.Tensor, ratings: torch.Tensor) -> tuple[np.ndarray, float]:
        """``[p ; 1]`` of the folded-in user and ``mu + b_u``: :meth:`fold_in`'s scores are their
        inner products with ``[q_i ; b_i]`` plus that constant."""
        p, b_u = self._fold_in_solution(items, ratings)
        vector = np.append(p.float().cpu().numpy(), np.float32(1.0)).astype(np.float32)
        return vector, float(self.global_mean) + b_u

    def score_items_for_vector(self, vector: np.ndarray, offset: float, items: np.ndarray) -> np.ndarray:
        """``q_i . p + b_i + offset`` for some items, as :meth:`fold_in`'s float32 catalogue pass."""
        items = np.asarray(items, dtype=np.int64)
        q = self.item_factors.weight.detach().cpu().numpy()[items]  # on the CPU: views, no copy
        b_i = self.item_bias.weight.detach().cpu().numpy()[items, 0]
        return (q @ np.asarray(vector[:-1], dtype=np.float32) + b_i).astype(np.float64) + offset

    def _fold_in_solution(self, items: torch.Tensor, ratings: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The new user's factors (float64) and bias: the closed form :meth:`fold_in` describes."""
        cfg = self.config
        weight = self.item_factors.weight.detach()
        bias = self.item_bias.weight.detach()[:, 0]
        n = int(items.shape[0])
        # small dense algebra in torch float64: torch runs tiny ops on one thread, where a
        # multi-threaded BLAS behind numpy spends far longer waking threads than solving
        q = weight[items].double()
        target = ratings.double().to(q.device) - float(self.global_mean) - bias[items].double()
        x = torch.cat([q, torch.ones(n, 1, dtype=q.dtype, device=q.device)], dim=1) if cfg.use_bias else q
        lam = cfg.reg * n * (max(n, 1) / REG_REFERENCE_COUNT) ** (cfg.reg_alpha - 1.0)
        diag = torch.full((x.shape[1],), lam + 1e-9, dtype=q.dtype, device=q.device)
        if cfg.use_bias:
            diag[-1] = cfg.bias_reg * n + 1e-9
        if n < x.shape[1] and float(diag.min()) > 1e-6:
            # fewer ratings than unknowns: the same minimiser from the n x n dual system
            # w = D^-1 X^T (X D^-1 X^T + I)^-1 y  (Woodbury), far cheaper than the k x k one
            xd = x / diag
            eye = torch.eye(n, dtype=q.dtype, device=q.device)
            w = xd.T @ torch.linalg.solve(xd @ x.T + eye, target)
        else:
            w = torch.linalg.solve(x.T @ x + torch.diag(diag), x.T @ target)
        return (w[:-1], float(w[-1])) if cfg.use_bias else (w, 0.0)

    def item_vectors(self) -> torch.Tensor:
        return self.item_factors.weight.detach()

    def retrieval_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``[p_u ; 1]`` and ``[q_i ; b_i]``: their inner product is the score minus ``mu + b_u``."""
        return biased_retrieval_vectors(
            self.user_factors.weight, self.item_factors.weight, self.item_bias.weight
        )
