"""MF's batch gradient in one compiled pass (numba), the CPU hot loop of ``reelrec train --model mf``.

:meth:`MatrixFactorization.batch_gradients <reelrec.models.mf.MatrixFactorization.batch_gradients>`
written with torch ops makes about a dozen passes over ``(batch, embedding_size)`` arrays per
batch (two gathers, the dot products, the penalty's norms, two scaled sums, two scatters): on
ML-1M that is 0.25 s of a 0.33 s epoch on two threads, bound by memory traffic, not arithmetic.
The kernel of :func:`compiled` does the same arithmetic rating by rating, each factor row read once and
its gradient row accumulated in place, in one loop compiled by numba (``cache=True``: compiled
once per machine, then loaded from ``__pycache__``).

The result equals the torch path's up to float32 rounding (the dot products are summed in
another order; ``tests/test_models.py`` checks loss and gradients against autograd). It is used
on the CPU when numba is installed; ``REELREC_KERNELS=torch`` turns it off.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from reelrec.kernels import Kernel

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


#: the numba kernel, or ``None`` without numba (or with ``REELREC_KERNELS=torch``); see :func:`_build`
compiled = Kernel(_build)


def available() -> bool:
    """Whether the compiled kernel is in use (numba installed, not turned off)."""
    return compiled() is not None
