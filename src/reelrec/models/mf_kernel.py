"""MF's batch gradient: one interface (:class:`MFGradient`), a compiled kernel or torch ops behind it.

The Trainer takes MF's exact gradient of
:meth:`~reelrec.models.mf.MatrixFactorization.training_loss` from :class:`MFGradient` (MF's
:class:`~reelrec.models.fitting.BatchGradient`), in two forms: ``dense`` (written into the tables'
``.grad``, for the dense optimisers) and ``rows`` (``(table, unique rows, their gradient)``, for
the row-sparse optimisers of :mod:`reelrec.training.rows`). The backend is chosen once, when the
object is built for a fit:

* the **compiled kernel** (:func:`_build`, numba, ``cache=True``: compiled once per machine, then
  loaded from ``__pycache__``) for the dense form on the CPU with float32 tables. Written with
  torch ops the gradient makes about a dozen passes over ``(batch, embedding_size)`` arrays per
  batch (two gathers, the dot products, the penalty's norms, two scaled sums, two scatters): on
  ML-1M that is 0.25 s of a 0.33 s epoch on two threads, bound by memory traffic, not
  arithmetic; the kernel does the same arithmetic rating by rating, each factor row read once and
  its gradient row accumulated in place;
* **torch ops** (:func:`torch_terms`) everywhere else: the ``rows`` form, GPUs, and without the
  kernel (numba missing, or ``kernels="torch"`` in :class:`reelrec.options.Options`:
  ``REELREC_KERNELS=torch``).

The two equal autograd's loss and gradients up to float32 rounding (the dot products are summed in
another order; ``tests/test_models.py`` checks both against autograd).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reelrec.kernels import Kernel
from reelrec.models.base import coalesce_rows
from reelrec.models.fitting import RowGrad

if TYPE_CHECKING:
    from reelrec.models.mf import MatrixFactorization

log = logging.getLogger(__name__)

#: let LLVM reorder float sums (vectorised dot products); results move by float32 rounding
FASTMATH = True


def _build(numba: Any) -> Any:
    """The kernel compiled with ``numba``. It is called with the four tables, the batch (users,
    items, ratings), the per-entity penalty weights, ``mu``, ``reg``, ``item_reg_ratio``,
    ``bias_reg``, ``use_bias`` and the four gradient tables (zeroed by the caller, accumulated in
    place); returns the batch's mean squared error and mean penalty, whose sum is
    ``MatrixFactorization.training_loss``."""

    @numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
    def kernel(
        p_table: np.ndarray,
        q_table: np.ndarray,
        bu_table: np.ndarray,
        bi_table: np.ndarray,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        w_user: np.ndarray,
        w_item: np.ndarray,
        mu: float,
        reg: float,
        item_reg_ratio: float,
        bias_reg: float,
        use_bias: bool,
        g_p: np.ndarray,
        g_q: np.ndarray,
        g_bu: np.ndarray,
        g_bi: np.ndarray,
    ) -> tuple[float, float]:
        n = users.shape[0]
        k = p_table.shape[1]
        scale = np.float32(2.0 / n)
        sq_err = 0.0
        penalty = 0.0
        for j in range(n):
            u = users[j]
            i = items[j]
            dot = np.float32(0.0)
            p_sq = np.float32(0.0)
            q_sq = np.float32(0.0)
            for f in range(k):
                p = p_table[u, f]
                q = q_table[i, f]
                dot += p * q
                p_sq += p * p
                q_sq += q * q
            bu = bu_table[u, 0] if use_bias else np.float32(0.0)
            bi = bi_table[i, 0] if use_bias else np.float32(0.0)
            err = dot + bu + bi + np.float32(mu) - ratings[j]
            sq_err += err * err
            d = err * scale
            c_u = np.float32(w_user[u] * reg) * scale
            c_i = np.float32(w_item[i] * reg * item_reg_ratio) * scale
            penalty += reg * (w_user[u] * p_sq + item_reg_ratio * w_item[i] * q_sq)
            for f in range(k):
                p = p_table[u, f]
                q = q_table[i, f]
                g_p[u, f] += p * c_u + q * d
                g_q[i, f] += q * c_i + p * d
            if use_bias:
                penalty += bias_reg * (bu * bu + bi * bi)
                g_bu[u, 0] += d + bu * np.float32(bias_reg) * scale
                g_bi[i, 0] += d + bi * np.float32(bias_reg) * scale
        return sq_err / n, penalty / n

    return kernel


#: the numba kernel, or ``None`` without numba (or with the ``torch`` kernels option); see :func:`_build`
compiled = Kernel(_build)


def available() -> bool:
    """Whether the compiled kernel is in use (numba installed, not turned off)."""
    return compiled() is not None


#: (table, the batch's row of each rating, one gradient row per rating)
_Terms = list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]]


def torch_terms(
    model: MatrixFactorization, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
) -> tuple[torch.Tensor, _Terms]:
    """``training_loss`` and its exact gradient with torch ops, one row per rating: with
    ``e = pred - r`` over a batch of ``B``, ``dL/dp_u`` gets ``2 e q_i / B + 2 reg w_u p_u / B``
    from each of the user's rows, and likewise for items and biases."""
    cfg = model.config
    n = users.shape[0]
    p = model.user_factors.weight.index_select(0, users)
    q = model.item_factors.weight.index_select(0, items)
    bu = model.user_bias.weight.index_select(0, users)[:, 0]
    bi = model.item_bias.weight.index_select(0, items)[:, 0]
    # fused reductions and in-place updates: each (B, k) pass costs memory bandwidth
    err = torch.einsum("bk,bk->b", p, q).add_(bu).add_(bi).add_(model.global_mean).sub_(ratings)
    loss = (err * err).mean()
    d_pred = err.mul_(2.0 / n)
    if cfg.reg:
        w_u = model.user_reg_weight.index_select(0, users)
        w_i = model.item_reg_weight.index_select(0, items)
        p_sq = torch.linalg.vector_norm(p, dim=-1).square_()
        q_sq = torch.linalg.vector_norm(q, dim=-1).square_()
        loss = loss + cfg.reg * (w_u * p_sq + cfg.item_reg_ratio * w_i * q_sq).mean()
        g_p = torch.mul(p, (w_u * (2.0 * cfg.reg / n))[:, None]).addcmul_(q, d_pred[:, None])
        g_q = torch.mul(q, (w_i * (2.0 * cfg.reg * cfg.item_reg_ratio / n))[:, None])
        g_q.addcmul_(p, d_pred[:, None])
    else:
        g_p, g_q = q * d_pred[:, None], p * d_pred[:, None]
    grads = [(model.user_factors.weight, users, g_p), (model.item_factors.weight, items, g_q)]
    if cfg.use_bias:
        g_bu, g_bi = d_pred, d_pred
        if cfg.bias_reg:
            loss = loss + cfg.bias_reg * (bu * bu + bi * bi).mean()
            g_bu = d_pred + bu * (2.0 * cfg.bias_reg / n)
            g_bi = d_pred + bi * (2.0 * cfg.bias_reg / n)
        grads += [
            (model.user_bias.weight, users, g_bu[:, None]),
            (model.item_bias.weight, items, g_bi[:, None]),
        ]
    return loss, grads


def _zeroed_grad(weight: torch.nn.Parameter) -> torch.Tensor:
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    else:
        weight.grad.zero_()
    return weight.grad


class MFGradient:
    """MF's batch gradient (a :class:`~reelrec.models.fitting.BatchGradient`); see the module.
    ``kernel``: the compiled kernel for the dense form, or ``None`` for torch ops
    (:meth:`for_model` chooses)."""

    def __init__(self, model: MatrixFactorization, kernel: Any = None) -> None:
        self.model = model
        self.kernel = kernel

    @classmethod
    def for_model(cls, model: MatrixFactorization) -> MFGradient:
        """The gradient of ``model`` as its tables are now: the compiled kernel on the CPU with
        float32 tables where it is available, else torch ops."""
        tables = (model.user_factors, model.item_factors, model.user_bias, model.item_bias)
        cpu32 = all(t.weight.device.type == "cpu" and t.weight.dtype == torch.float32 for t in tables)
        return cls(model, compiled() if cpu32 else None)

    @torch.no_grad()
    def dense(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """The batch's loss, its gradient written into the four tables' ``.grad``."""
        m = self.model
        tables = (m.user_factors.weight, m.item_factors.weight, m.user_bias.weight, m.item_bias.weight)
        if self.kernel is None:
            loss, terms = torch_terms(m, users, items, ratings)
            for weight, index, grad in terms:
                _zeroed_grad(weight).index_add_(0, index, grad)
            return loss
        cfg = m.config
        grads = [_zeroed_grad(t).numpy() for t in tables]
        sq_err, penalty = self.kernel(
            *(t.detach().numpy() for t in tables),
            users.numpy(),
            items.numpy(),
            ratings.numpy(),
            m.user_reg_weight.numpy(),
            m.item_reg_weight.numpy(),
            float(m.global_mean),
            cfg.reg,
            cfg.item_reg_ratio,
            cfg.bias_reg,
            cfg.use_bias,
            *grads,
        )
        return torch.tensor(sq_err + penalty, dtype=torch.float32)

    @torch.no_grad()
    def rows(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> tuple[torch.Tensor, list[RowGrad]]:
        """The batch's loss and its gradient by rows (torch ops, coalesced)."""
        loss, terms = torch_terms(self.model, users, items, ratings)
        return loss, [(weight, *coalesce_rows(index, grad)) for weight, index, grad in terms]
