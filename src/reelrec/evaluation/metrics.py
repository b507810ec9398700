"""Rating-error and top-K ranking metrics, as pure vectorised numpy functions.

Rating metrics (:func:`rmse`, :func:`mae`, :func:`accuracy`) compare predicted with true ratings.

Ranking metrics work on a batch of users at once:

* ``topk`` is an ``int64`` array of shape ``(n_users, K)`` of recommended item indices, best first,
  with no item repeated in a row. Rows may be padded on the right with ``-1`` when fewer than ``K``
  candidates exist; ``-1`` is never relevant.
* The relevant (held-out test) items of user ``u`` are
  ``rel_indices[rel_indptr[u]:rel_indptr[u + 1]]`` (a CSR pair; each user's items distinct, in any
  order), so ``n_relevant = np.diff(rel_indptr)``.

:func:`hits_matrix` turns these into a boolean ``(n_users, K)`` matrix; the per-user metrics
(:func:`hit_rate_at_k`, :func:`precision_at_k`, :func:`recall_at_k`, :func:`ndcg_at_k`,
:func:`average_precision_at_k`, :func:`reciprocal_rank`) are functions of ``(hits, n_relevant, k)``
and return one float per user. A metric is undefined for a user with no relevant item: such users
get ``NaN`` and must be excluded by the caller before averaging (:func:`ranking_metrics` does so).
A list shorter than ``k`` is treated as padded with misses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reelrec.sparse import csr_keys

__all__ = [
    "accuracy",
    "average_precision_at_k",
    "catalogue_coverage",
    "hit_rate_at_k",
    "hits_matrix",
    "mae",
    "ndcg_at_k",
    "popularity_share",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "reciprocal_rank",
    "rmse",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


# --------------------------------------------------------------------------- rating metrics


def _errors(pred: ArrayLike, truth: ArrayLike, scale: tuple[float, float] | None) -> FloatArray:
    """Return ``clip(pred, *scale) - truth`` after validating shapes and the scale."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and truth shapes differ: {p.shape} vs {t.shape}")
    if p.size == 0:
        raise ValueError("cannot compute an error over empty input")
    if scale is not None:
        low, high = scale
        if not low <= high:
            raise ValueError(f"scale must be (low, high) with low <= high, got {scale}")
        p = np.clip(p, low, high)
    return p - t


def rmse(pred: ArrayLike, truth: ArrayLike, scale: tuple[float, float] | None = None) -> float:
    """Root mean squared error.

    Args:
        pred: Predicted ratings.
        truth: True ratings, same shape as ``pred``.
        scale: Optional ``(low, high)``; predictions are clipped to it first.

    Raises:
        ValueError: On empty input, mismatched shapes or an inverted scale.
    """
    err = _errors(pred, truth, scale)
    return float(np.sqrt(np.mean(np.square(err))))


def mae(pred: ArrayLike, truth: ArrayLike, scale: tuple[float, float] | None = None) -> float:
    """Mean absolute error; arguments and errors as for :func:`rmse`."""
    err = _errors(pred, truth, scale)
    return float(np.mean(np.abs(err)))


def accuracy(pred: ArrayLike, truth: ArrayLike, levels: ArrayLike) -> float:
    """Exact-match accuracy after rounding each prediction to the nearest rating level.

    Args:
        pred: Predicted (continuous) ratings.
        truth: True ratings, same shape as ``pred``; expected to be among ``levels``.
        levels: The admissible rating values (any order, duplicates ignored).

    A prediction exactly halfway between two levels rounds to the higher one. Values outside the
    levels' range round to the nearest end.

    Raises:
        ValueError: On empty input or levels, or mismatched shapes.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and truth shapes differ: {p.shape} vs {t.shape}")
    if p.size == 0:
        raise ValueError("cannot compute accuracy over empty input")
    lv = np.unique(np.asarray(levels, dtype=np.float64))
    if lv.size == 0:
        raise ValueError("levels must not be empty")
    midpoints = (lv[1:] + lv[:-1]) / 2.0
    rounded = lv[np.searchsorted(midpoints, p, side="right")]
    return float(np.mean(np.isclose(rounded, t)))


# --------------------------------------------------------------------------- ranking metrics


def hits_matrix(topk: ArrayLike, rel_indptr: ArrayLike, rel_indices: ArrayLike, n_items: int) -> BoolArray:
    """Mark which recommended items are relevant.

    Each ``(user, item)`` pair is encoded as the ``int64`` key ``user * n_items + item``; the
    recommended keys are looked up in the sorted relevant keys with ``searchsorted``.

    Args:
        topk: ``(n_users, K)`` recommended item indices, best first; ``-1`` pads short lists.
        rel_indptr: ``(n_users + 1,)`` CSR row pointer of the relevant items.
        rel_indices: Relevant item indices, in ``[0, n_items)``.
        n_items: Catalogue size.

    Returns:
        Boolean ``(n_users, K)``; ``True`` where ``topk[u, j]`` is relevant to user ``u``.

    Raises:
        ValueError: On inconsistent shapes or out-of-range indices.
    """
    top = np.asarray(topk, dtype=np.int64)
    indptr = np.asarray(rel_indptr, dtype=np.int64)
    indices = np.asarray(rel_indices, dtype=np.int64)
    if top.ndim != 2:
        raise ValueError(f"topk must be 2-D (n_users, K), got shape {top.shape}")
    n_users = top.shape[0]
    if n_items < 1:
        raise ValueError(f"n_items must be positive, got {n_items}")
    if indptr.shape != (n_users + 1,):
        raise ValueError(f"rel_indptr must have shape ({n_users + 1},), got {indptr.shape}")
    if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
        raise ValueError("rel_indptr must start at 0, be non-decreasing and end at len(rel_indices)")
    if indices.size and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError("rel_indices must lie in [0, n_items)")
    if top.size and (top.min() < -1 or top.max() >= n_items):
        raise ValueError("topk entries must lie in [0, n_items) or be -1 padding")

    rel_keys = np.sort(csr_keys(indptr, indices, n_items))
    if rel_keys.size == 0:
        return np.zeros(top.shape, dtype=np.bool_)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + top
    pos = np.minimum(np.searchsorted(rel_keys, query), rel_keys.size - 1)
    return (rel_keys[pos] == query) & (top >= 0)


def _prepare(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Validate inputs; return the first ``k`` columns as floats (padded with misses), n_rel, valid."""
    h = np.asarray(hits, dtype=np.bool_)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"hits must be 2-D (n_users, K), got shape {h.shape}")
    if n_rel.shape != (h.shape[0],):
        raise ValueError(f"n_relevant must have shape ({h.shape[0]},), got {n_rel.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    h = h[:, :k].astype(np.float64)
    if h.shape[1] < k:
        h = np.pad(h, ((0, 0), (0, k - h.shape[1])))
    return h, n_rel, n_rel > 0


def _masked(values: FloatArray, valid: BoolArray) -> FloatArray:
    """Set entries of users with no relevant item to NaN."""
    return np.where(valid, values, np.nan)


def hit_rate_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> FloatArray:
    """Per-user HR@k: 1.0 if any of the first ``k`` items is relevant, else 0.0 (NaN if n_rel == 0)."""
    h, _, valid = _prepare(hits, n_relevant, k)
    return _masked(h.max(axis=1), valid)


def precision_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> FloatArray:
    """Per-user precision@k: hits in the first ``k`` divided by ``k`` (NaN if n_rel == 0)."""
    h, _, valid = _prepare(hits, n_relevant, k)
    return _masked(h.sum(axis=1) / k, valid)


def recall_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> FloatArray:
    """Per-user recall@k: hits in the first ``k`` divided by ``n_relevant`` (NaN if n_rel == 0).

    The standard denominator ``n_relevant`` is used (not ``min(n_relevant, k)``), so recall@k
    cannot reach 1 for a user with more than ``k`` relevant items.
    """
    h, n_rel, valid = _prepare(hits, n_relevant, k)
    return _masked(h.sum(axis=1) / np.where(valid, n_rel, 1.0), valid)


def ndcg_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> FloatArray:
    """Per-user NDCG@k with binary relevance (NaN if n_rel == 0).

    ``DCG = sum_i hit_i / log2(i + 1)`` over ranks ``i = 1..k``; the ideal DCG places
    ``min(n_relevant, k)`` hits at the top.
    """
    h, n_rel, valid = _prepare(hits, n_relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = h @ discounts
    ideal_cum = np.concatenate(([0.0], np.cumsum(discounts)))
    idcg = ideal_cum[np.minimum(n_rel, k).astype(np.int64)]
    return _masked(dcg / np.where(valid, idcg, 1.0), valid)


def average_precision_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> FloatArray:
    """Per-user AP@k (averaged over users: MAP@k); NaN if n_rel == 0.

    ``AP@k = sum over hit ranks i <= k of precision@i, divided by min(n_relevant, k)``.
    """
    h, n_rel, valid = _prepare(hits, n_relevant, k)
    prec_at_i = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    denom = np.where(valid, np.minimum(n_rel, k), 1.0)
    return _masked((prec_at_i * h).sum(axis=1) / denom, valid)


def reciprocal_rank(hits: ArrayLike, n_relevant: ArrayLike, k: int | None = None) -> FloatArray:
    """Per-user reciprocal rank of the first hit (averaged over users: MRR); NaN if n_rel == 0.

    Args:
        hits: Boolean ``(n_users, K)`` from :func:`hits_matrix`.
        n_relevant: Relevant-item count per user.
        k: Only the first ``k`` positions count; ``None`` uses the whole list.

    Returns:
        ``1 / rank`` of the first relevant item (ranks start at 1), ``0.0`` if none is found.
    """
    h_arr = np.asarray(hits, dtype=np.bool_)
    h, _, valid = _prepare(h_arr, n_relevant, k if k is not None else max(h_arr.shape[-1], 1))
    any_hit = h.max(axis=1) > 0
    first = np.argmax(h, axis=1).astype(np.float64)
    return _masked(np.where(any_hit, 1.0 / (first + 1.0), 0.0), valid)


def catalogue_coverage(topk: ArrayLike, n_items: int, k: int) -> float:
    """Fraction of the ``n_items`` catalogue that appears in at least one user's top ``k``.

    ``-1`` padding is ignored.
    """
    top = np.asarray(topk, dtype=np.int64)
    if top.ndim != 2:
        raise ValueError(f"topk must be 2-D (n_users, K), got shape {top.shape}")
    if n_items < 1 or k < 1:
        raise ValueError(f"n_items and k must be positive, got {n_items}, {k}")
    items = top[:, :k]
    items = items[items >= 0]
    if items.size and items.max() >= n_items:
        raise ValueError("topk entries must lie in [0, n_items) or be -1 padding")
    seen = np.zeros(n_items, dtype=np.bool_)
    seen[items] = True
    return float(seen.mean())


def popularity_share(topk: ArrayLike, item_popularity: ArrayLike, k: int, top_fraction: float = 0.1) -> float:
    """Share of filled top-``k`` slots taken by the most popular items.

    The "most popular" set is the ``ceil(top_fraction * n_items)`` items with the highest
    ``item_popularity`` (e.g. training interaction counts; ties broken by lower index), where
    ``n_items = len(item_popularity)``. ``-1`` padding slots are not counted.

    Returns:
        A value in ``[0, 1]``, or NaN when no slot is filled.
    """
    top = np.asarray(topk, dtype=np.int64)
    pop = np.asarray(item_popularity, dtype=np.float64)
    if top.ndim != 2 or pop.ndim != 1 or pop.size == 0:
        raise ValueError("topk must be 2-D and item_popularity a non-empty 1-D array")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    items = top[:, :k]
    items = items[items >= 0]
    if items.size == 0:
        return float("nan")
    if items.max() >= pop.size:
        raise ValueError("topk entries must lie in [0, len(item_popularity)) or be -1 padding")
    n_popular = int(np.ceil(top_fraction * pop.size))
    popular = np.zeros(pop.size, dtype=np.bool_)
    popular[np.argsort(-pop, kind="stable")[:n_popular]] = True
    return float(popular[items].mean())


def ranking_metrics(
    topk: ArrayLike,
    rel_indptr: ArrayLike,
    rel_indices: ArrayLike,
    n_items: int,
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """Mean ranking metrics over the users that have at least one relevant item.

    Returns:
        For each ``k`` in ``ks``: ``hr@k``, ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k`` and
        ``coverage@k`` (catalogue coverage of those users' top ``k``); plus ``mrr`` once, over the
        full list length.

    Raises:
        ValueError: If no user has a relevant item, or on invalid inputs (see :func:`hits_matrix`).
    """
    top = np.asarray(topk, dtype=np.int64)
    indptr = np.asarray(rel_indptr, dtype=np.int64)
    hits = hits_matrix(top, indptr, rel_indices, n_items)
    n_rel = np.diff(indptr)
    valid = n_rel > 0
    if not valid.any():
        raise ValueError("no user has a relevant item; ranking metrics are undefined")
    hits, n_rel, top = hits[valid], n_rel[valid], top[valid]

    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = float(hit_rate_at_k(hits, n_rel, k).mean())
        out[f"precision@{k}"] = float(precision_at_k(hits, n_rel, k).mean())
        out[f"recall@{k}"] = float(recall_at_k(hits, n_rel, k).mean())
        out[f"ndcg@{k}"] = float(ndcg_at_k(hits, n_rel, k).mean())
        out[f"map@{k}"] = float(average_precision_at_k(hits, n_rel, k).mean())
        out[f"coverage@{k}"] = catalogue_coverage(top, n_items, k)
    out["mrr"] = float(reciprocal_rank(hits, n_rel).mean())
    return out
