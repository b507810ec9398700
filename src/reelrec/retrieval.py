"""Exact top-n over a large catalogue from an int8 copy of the item vectors.

Serving a known user scores the whole catalogue: for an inner-product model (MF, ALS, BPR, GMF:
:meth:`~reelrec.models.base.RatingModel.retrieval_vectors`) one float32 matrix-vector product
that reads every item vector, 32 MB per request on ML-25M (62k movies x 129 floats). That read,
not the arithmetic, is the cost: about 3-4 ms a request here, and two workers share the memory
bandwidth. :class:`QuantizedItems` keeps the item vectors as int8 with one scale per item (a
quarter of the bytes) and computes, per request,

* the approximate score ``a_i = s_i (q8_i . u)`` of every item (one compiled pass, four items
  at a time, about 0.7-1 ms on ML-25M here) and its error bound ``e_i = s_i ||u||_1 / 2`` (each
  int8 entry is off by at most half a step ``s_i``), so ``|a_i - u . v_i| <= e_i``;
* the candidates: every item whose upper bound ``a_i + e_i`` reaches the ``n``-th largest lower
  bound ``a_j - e_j``. Every item of the exact top-``n`` is among them (its score is at least
  the ``n``-th largest score, which is at least the ``n``-th largest lower bound), and there are
  few of them, because the bounds are tight next to the spread of the scores. A second
  compiled pass bans the user's seen movies, keeps the ``n`` best lower bounds in a small sorted
  buffer and collects the candidates (about 0.2-0.3 ms), in per-thread buffers reused across
  requests: fresh catalogue-sized arrays on every request cost more than the pass.

**Fewer bytes: the leading directions.** The item vectors are first rotated onto their
principal directions (eigenvectors of ``V^T V``, largest first: inner products unchanged), and
the int8 pass reads only the first ``d`` of them; the rest of each score is bounded by
Cauchy-Schwarz, ``|u_tail . v_tail| <= ||u_tail|| ||v_tail||``, and added to the error bound.
Learned item vectors put most of their energy in few directions, so a short pass with a few
more candidates costs less than the whole pass: :func:`choose_dims` picks ``d`` when the run is
loaded, from the bytes streamed plus the candidates a sample of users would get (12 of 129 on
the 25M synthetic MF run: about 60 candidates instead of 12, the whole top-n a seventh of
the exact float32 pass's time), and keeps every direction, unrotated, when that does not save
a fifth.

The caller then scores the candidates exactly with the model, so the list is the exact path's
list (the ``int8`` scorer of :mod:`reelrec.topn`; tests compare both). Without numba,
or with ``REELREC_KERNELS=torch``, there is no compiled pass and the exact path is used.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NamedTuple

import numpy as np

from reelrec.kernels import Kernel

log = logging.getLogger(__name__)

#: catalogues from this many items are served from the int8 copy (ML-1M's 3.7k stay exact float32,
#: where the whole item table sits in the cache anyway)
MIN_ITEMS = 20_000
#: relative and absolute slack on the error bound, for the float32 rounding of the sums
SLACK_REL = 1e-3
SLACK_ABS = 1e-5
#: leading-direction counts :func:`choose_dims` weighs (and all of them)
DIMS_OPTIONS = (8, 12, 16, 24, 32, 48, 64, 96)
#: users whose top-10 :func:`choose_dims` estimates from
DIMS_SAMPLE = 32
#: an exactly scored candidate's cost in bytes of the int8 pass (a row gathered and scored)
CANDIDATE_COST = 2_000
#: longer lists than this select their candidates with numpy (a partition) instead
SELECT_MAX_N = 256


class _Kernels(NamedTuple):
    bound_pass: Any
    select: Any


def _build(numba: Any) -> _Kernels:
    """The compiled passes: the bounds of every item, then the candidates (see the module)."""

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def bound_pass(
        q8: np.ndarray,
        scale: np.ndarray,
        u: np.ndarray,
        shift: np.ndarray,
        novelty: float,
        approx: np.ndarray,
    ) -> None:
        """``approx[i] = scale[i] (q8[i] . u) - novelty shift[i]``, four rows at a time (each
        ``u[j]`` loaded once for four items: a third faster than row by row here)."""
        m, k = q8.shape
        nv = np.float32(novelty)
        i = 0
        while i + 4 <= m:
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            for j in range(k):
                uj = u[j]
                a0 += np.float32(q8[i, j]) * uj
                a1 += np.float32(q8[i + 1, j]) * uj
                a2 += np.float32(q8[i + 2, j]) * uj
                a3 += np.float32(q8[i + 3, j]) * uj
            approx[i] = a0 * scale[i] - nv * shift[i]
            approx[i + 1] = a1 * scale[i + 1] - nv * shift[i + 1]
            approx[i + 2] = a2 * scale[i + 2] - nv * shift[i + 2]
            approx[i + 3] = a3 * scale[i + 3] - nv * shift[i + 3]
            i += 4
        while i < m:
            acc = np.float32(0.0)
            for j in range(k):
                acc += np.float32(q8[i, j]) * u[j]
            approx[i] = acc * scale[i] - nv * shift[i]
            i += 1

    @numba.njit(cache=True, nogil=True)
    def select(
        approx: np.ndarray,
        scale: np.ndarray,
        half_l1: float,
        tails: np.ndarray,
        tail: float,
        shift: np.ndarray,
        novelty: float,
        banned: np.ndarray,
        also: np.ndarray,
        n: int,
        out: np.ndarray,
        err: np.ndarray,
    ) -> int:
        """Ban two index lists (``-inf``), write every item's error bound to ``err``
        (``scale[i] half_l1 + tails[i] tail + |raw score| SLACK_REL``: the int8 steps, the skipped
        directions, float32 sums), then write to ``out`` every item whose upper bound reaches the
        ``n``-th largest lower bound among the others (``n`` at least 1); returns how many."""
        for b in banned:
            approx[b] = -np.inf
        for b in also:
            approx[b] = -np.inf
        nv = np.float32(novelty)
        h = np.float32(half_l1)
        g = np.float32(tail)
        rel = np.float32(SLACK_REL)
        # the n largest lower bounds, ascending; -inf (banned) items never enter, and the
        # common case (below the n-th best so far) is one predictable compare per item
        best = np.full(n, -np.inf, dtype=np.float32)
        finite = 0
        for i in range(approx.shape[0]):
            a = approx[i]
            finite += a > -np.inf
            e = scale[i] * h + tails[i] * g + abs(a + nv * shift[i]) * rel
            err[i] = e
            lo = a - e
            if lo > best[0]:
                pos = 0  # drop the smallest, then insert lo in order
                while pos + 1 < n and best[pos + 1] < lo:
                    best[pos] = best[pos + 1]
                    pos += 1
                best[pos] = lo
        if finite == 0:
            return 0
        tau = best[n - min(n, finite)]
        found = 0
        for i in range(approx.shape[0]):
            out[found] = i
            found += approx[i] + err[i] >= tau
        return found

    return _Kernels(bound_pass, select)


#: the compiled passes, or ``None`` without numba (or ``REELREC_KERNELS=torch``)
compiled = Kernel(_build)


def principal_directions(items: np.ndarray) -> np.ndarray:
    """An orthonormal ``k x k`` basis of the item space, the directions of largest
    ``sum_i (v_i . r)^2`` first (eigenvectors of ``V^T V``): rotated item vectors keep the
    inner products, and their leading entries carry most of every score."""
    gram = items.T @ items
    values, vectors = np.linalg.eigh(gram)
    return np.ascontiguousarray(vectors[:, np.argsort(-values, kind="stable")])


def choose_dims(users: np.ndarray, rotated: np.ndarray, rotation: np.ndarray, n: int = 10) -> int:
    """How many leading directions the int8 pass reads: the fewest bytes streamed plus
    candidates to score exactly (:data:`CANDIDATE_COST` each), estimated on a fixed sample of
    :data:`DIMS_SAMPLE` users' top-``n``; all of them unless that saves a fifth."""
    m, k = rotated.shape
    if m <= n or not len(users):
        return k
    rng = np.random.default_rng(0)
    sample = users[rng.choice(len(users), min(DIMS_SAMPLE, len(users)), replace=False)].astype(np.float64)
    sample = (sample @ rotation).astype(np.float32)  # (s, k); an estimate needs no float64
    items = rotated.astype(np.float32)
    sq = items * items
    item_tail = np.sqrt(np.maximum(sq.sum(axis=1, keepdims=True) - np.cumsum(sq, axis=1), 0))  # [:, d-1]
    del sq
    user_tail = np.sqrt(np.maximum((sample**2).sum(axis=1, keepdims=True) - np.cumsum(sample**2, axis=1), 0))
    peaks = np.maximum.accumulate(np.abs(items), axis=1) / np.float32(127.0)  # [:, d-1]: step of the first d
    half_l1 = np.cumsum(np.abs(sample), axis=1) / 2
    partial = np.zeros((m, len(sample)), dtype=np.float32)
    done, costs = 0, {}
    for d in sorted({*(d for d in DIMS_OPTIONS if d < k), k}):
        partial += items[:, done:d] @ sample[:, done:d].T
        done = d
        err = (
            peaks[:, d - 1, None] * half_l1[None, :, d - 1]
            + item_tail[:, d - 1, None] * user_tail[None, :, d - 1]
        )
        tau = np.partition(partial - err, m - n, axis=0)[m - n]
        costs[d] = d * m + CANDIDATE_COST * float((partial + err >= tau).sum(axis=0).mean())
    best = min(costs, key=costs.__getitem__)
    return best if costs[best] < 0.8 * costs[k] else k


class QuantizedItems:
    """int8 item vectors (one scale per item) and the user vectors they are ranked against.

    ``dims``: how many leading principal directions of the item vectors the int8 pass reads
    (``None``: chosen by :func:`choose_dims`; the item vector length: all of them, unrotated)."""

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray, dims: int | None = None) -> None:
        items = np.asarray(item_vectors, dtype=np.float64)
        self.users = np.ascontiguousarray(user_vectors, dtype=np.float32)
        k = items.shape[1]
        rotation = principal_directions(items)
        rotated = items @ rotation
        if dims is None:
            dims = choose_dims(self.users, rotated, rotation)
        self.dims = int(min(max(dims, 1), k))
        if self.dims == k:  # no tail: the vectors as they are
            rotation, rotated = None, items
        self.rotation = rotation
        head = rotated[:, : self.dims]
        peak = np.abs(head).max(axis=1)
        self.scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        steps = np.clip(np.rint(head / self.scale[:, None]), -127, 127)
        self.q8 = np.ascontiguousarray(steps, dtype=np.int8)
        # each item's tail norm, rounded up (the bound on the directions the pass skips)
        tail = np.linalg.norm(rotated[:, self.dims :], axis=1) * (1 + SLACK_REL)
        self.tail = tail.astype(np.float32)
        self._zeros: np.ndarray | None = None
        self._local = threading.local()
        self._kernel = compiled()
        if self._kernel is not None and len(self.users):
            # numba compiles (or loads its cache) on the first call: not on a request
            self.top_candidates(0, 1, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

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
        fast = cls(*vectors)
        log.info(
            "serving top-n from int8 item vectors (%d items, %d of %d directions)",
            n_items,
            fast.dims,
            vectors[1].shape[1],
        )
        return fast

    def _user(self, user: int | np.ndarray) -> tuple[np.ndarray, float, float]:
        """A user's head (float32, what the pass reads), the error bound per unit of item scale
        (half a step per entry, with slack for float32 sums) and the tail norm; ``user``: an
        index into the user vectors, or a user vector itself (a new user's)."""
        u = self.users[user] if np.ndim(user) == 0 else np.asarray(user, dtype=np.float32)
        if self.rotation is None:
            head, tail = u, 0.0
        else:
            rotated = u.astype(np.float64) @ self.rotation
            head = rotated[: self.dims].astype(np.float32)
            tail = float(np.linalg.norm(rotated[self.dims :])) * (1 + SLACK_REL)
        half_l1 = 0.5 * float(np.abs(head).sum()) * (1 + SLACK_REL) + SLACK_ABS
        return np.ascontiguousarray(head), half_l1, tail

    def bounds(
        self, user: int | np.ndarray, shift: np.ndarray | None = None, novelty: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(approximate scores, error bounds)`` of every item for ``user`` (an index into the
        user vectors, or a user vector): the exact inner product (minus ``novelty * shift``, when
        given) lies within ``approximate +- bound``."""
        m = self.q8.shape[0]
        approx, err = np.empty(m, np.float32), np.empty(m, np.float32)
        none = np.zeros(0, dtype=np.int64)
        self._passes(user, shift, novelty, none, none, 1, approx, err, np.empty(m, np.int64))
        return approx, err

    def _passes(
        self,
        user: int | np.ndarray,
        shift: np.ndarray | None,
        novelty: float,
        banned: np.ndarray,
        also: np.ndarray,
        n: int,
        approx: np.ndarray,
        err: np.ndarray,
        out: np.ndarray,
    ) -> int:
        """The two compiled passes into the given arrays: approximate scores, then the bans, the
        error bounds and the ``n`` candidates; returns how many candidates ``out`` starts with."""
        head, half_l1, tail = self._user(user)
        if shift is None:
            shift, novelty = self._no_shift(), 0.0
        nv = float(novelty)
        self._kernel.bound_pass(self.q8, self.scale, head, shift, nv, approx)
        return self._kernel.select(
            approx, self.scale, half_l1, self.tail, tail, shift, nv, banned, also, n, out, err
        )

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This thread's scratch arrays (approximate scores, bounds, candidates): a request
        allocates nothing the size of the catalogue (fresh pages cost more than the pass)."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            m = self.q8.shape[0]
            buffers = (np.empty(m, np.float32), np.empty(m, np.float32), np.empty(m, np.int64))
            self._local.buffers = buffers
        return buffers

    def _no_shift(self) -> np.ndarray:
        if self._zeros is None:
            self._zeros = np.zeros(self.q8.shape[0], dtype=np.float32)
        return self._zeros

    def top_candidates(
        self,
        user: int | np.ndarray,
        n: int,
        banned: np.ndarray,
        also: np.ndarray,
        shift: np.ndarray | None = None,
        novelty: float = 0.0,
    ) -> np.ndarray:
        """The items that may be in the exact top-``n`` of ``user`` (an index into the user
        vectors, or a user vector) once the items in ``banned`` and ``also`` are left out, ranked
        by the inner product minus ``novelty * shift`` (``shift`` float32, one per item):
        :meth:`bounds` then :meth:`candidates`, as two compiled passes over reused buffers."""
        if n < 1:
            return np.zeros(0, dtype=np.int64)
        if n > SELECT_MAX_N:  # the compiled selection's insertion costs up to n per item
            approx, err = self.bounds(user, shift, novelty)
            approx[banned] = -np.inf
            approx[also] = -np.inf
            return self.candidates(approx, err, n)
        approx, err, out = self._buffers()
        found = self._passes(user, shift, novelty, banned, also, int(n), approx, err, out)
        return out[:found].copy()

    @staticmethod
    def candidates(approx: np.ndarray, err: np.ndarray, n: int) -> np.ndarray:
        """Indices that may be in the top-``n`` of the exact scores (``-inf`` entries are out):
        every item whose upper bound reaches the ``n``-th largest lower bound (the numpy
        statement of :meth:`top_candidates`' selection)."""
        lower = approx - err
        finite = np.isfinite(lower)
        k = min(n, int(finite.sum()))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        tau = np.partition(lower[finite], -k)[-k]
        return np.flatnonzero(approx + err >= tau)
