"""Exact top-n over a large catalogue from an int8 copy of the item vectors.

Serving a known user scores the whole catalogue: for an inner-product model (MF, ALS, BPR, GMF:
:meth:`~reelrec.models.base.RatingModel.retrieval_vectors`) one float32 matrix-vector product
that reads every item vector, 32 MB per request on ML-25M (62k movies x 129 floats). That read,
not the arithmetic, is the cost: about 3-4 ms a request here, and two workers share the memory
bandwidth. :class:`QuantizedItems` keeps the item vectors as int8 with one scale per item (a
quarter of the bytes) and computes, per request,

* the approximate score ``a_i = s_i (q8_i . u)`` of every item (one compiled pass, about 0.9 ms
  on ML-25M here) and its error bound ``e_i = s_i ||u||_1 / 2`` (each int8 entry is off by at
  most half a step ``s_i``), so ``|a_i - u . v_i| <= e_i``;
* the candidates: every item whose upper bound ``a_i + e_i`` reaches the ``n``-th largest lower
  bound ``a_j - e_j``. Every item of the exact top-``n`` is among them (its score is at least
  the ``n``-th largest score, which is at least the ``n``-th largest lower bound), and there are
  few of them, because the bounds are tight next to the spread of the scores.

The caller then scores the candidates exactly with the model, so the list is the exact path's
list (:meth:`reelrec.recommender.Recommender.top_n_for_user`; tests compare both). Without numba,
or with ``REELREC_KERNELS=torch``, there is no compiled pass and the exact path is used.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from reelrec.kernels import Kernel

log = logging.getLogger(__name__)

#: catalogues from this many items are served from the int8 copy (ML-1M's 3.7k stay exact float32,
#: where the whole item table sits in the cache anyway)
MIN_ITEMS = 20_000
#: relative and absolute slack on the error bound, for the float32 rounding of the sums
SLACK_REL = 1e-3
SLACK_ABS = 1e-5


def _build(numba: Any) -> Any:
    """The approximate-score pass: ``out[i] = scale[i] * (q8[i] . u)``."""

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def approximate(q8: np.ndarray, scale: np.ndarray, u: np.ndarray, out: np.ndarray) -> None:
        m, k = q8.shape
        for i in range(m):
            acc = np.float32(0.0)
            for j in range(k):
                acc += np.float32(q8[i, j]) * u[j]
            out[i] = acc * scale[i]

    return approximate


#: the compiled approximate-score pass, or ``None`` without numba (or ``REELREC_KERNELS=torch``)
compiled = Kernel(_build)


class QuantizedItems:
    """int8 item vectors (one scale per item) and the user vectors they are ranked against."""

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        items = np.asarray(item_vectors, dtype=np.float32)
        peak = np.abs(items).max(axis=1)
        self.scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        steps = np.clip(np.rint(items / self.scale[:, None]), -127, 127)
        self.q8 = np.ascontiguousarray(steps, dtype=np.int8)
        self.users = np.ascontiguousarray(user_vectors, dtype=np.float32)
        self._kernel = compiled()
        if self._kernel is not None and len(self.users):
            self.bounds(0)  # numba compiles (or loads its cache) on the first call: not on a request

    @classmethod
    def for_model(cls, model: Any, n_items: int) -> QuantizedItems | None:
        """The int8 copy of ``model``'s retrieval vectors when the catalogue is large enough and the
        model has them (on the CPU, with the compiled pass); else ``None``."""
        if n_items < MIN_ITEMS or compiled() is None:
            return None
        if any(t.device.type != "cpu" for t in model.parameters()):
            return None
        vectors = model.retrieval_vectors()
        if vectors is None:
            return None
        log.info("serving top-n from int8 item vectors (%d items)", n_items)
        return cls(*vectors)

    def bounds(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """``(approximate scores, error bounds)`` of every item for user index ``user``: the exact
        inner product lies within ``approximate +- bound``."""
        u = self.users[user]
        approx = np.empty(self.q8.shape[0], dtype=np.float32)
        self._kernel(self.q8, self.scale, u, approx)
        # float32 throughout (the slack covers its rounding): a request touches few bytes
        err = self.scale * np.float32(0.5 * float(np.abs(u).sum()) * (1 + SLACK_REL) + SLACK_ABS)
        err += np.abs(approx) * np.float32(SLACK_REL)
        return approx, err

    @staticmethod
    def candidates(approx: np.ndarray, err: np.ndarray, n: int) -> np.ndarray:
        """Indices that may be in the top-``n`` of the exact scores (``-inf`` entries are out):
        every item whose upper bound reaches the ``n``-th largest lower bound."""
        lower = approx - err
        finite = np.isfinite(lower)
        k = min(n, int(finite.sum()))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        tau = np.partition(lower[finite], -k)[-k]
        return np.flatnonzero(approx + err >= tau)
