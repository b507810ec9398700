"""Item embeddings as shown to people: similar movies and the reason a movie is recommended.

Both work on the L2-normalised item vectors of a model (:func:`unit_vectors`): the movies
nearest to a movie by cosine, and, for each recommended movie, the liked movie of the user it
is nearest to ("because you rated ...").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reelrec.errors import ReelrecError
from reelrec.topn import topk

#: how many of a user's best-rated movies a recommendation's reason is chosen from
EXPLAIN_LIKED = 50


def best_first(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``values``, largest first, ties in position order: the
    first ``k`` of a stable descending sort, in time linear in ``len(values)`` (a user with
    26,000 ratings is explained on every request)."""
    values = np.asarray(values)
    if values.size <= max(k, 1024):  # a sort of a short list is cheaper than the selection
        return np.argsort(-values, kind="stable")[:k]
    kth = np.partition(values, values.size - k)[values.size - k]  # the k-th largest value
    above = np.flatnonzero(values > kth)
    tied = np.flatnonzero(values == kth)[: k - above.size]
    keep = np.union1d(above, tied)  # position order
    return keep[np.argsort(-values[keep], kind="stable")]


def unit_vectors(model: Any) -> np.ndarray | None:
    """``model``'s item embeddings L2-normalised (float32), or ``None`` without embeddings."""
    with torch.no_grad():
        vectors = model.item_vectors()
    if vectors is None:
        return None
    v = vectors.float().cpu().numpy()
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def explain(
    vectors: np.ndarray | None,
    scale: Any,
    rated: np.ndarray,
    ratings: np.ndarray | None,
    recommended: np.ndarray,
) -> list[int]:
    """For each recommended item, the dense index of the user's liked movie it is most similar
    to (cosine of the unit ``vectors``), or ``-1`` when there is none.

    "Liked" is a rating at or above both the user's mean and the ``scale``'s midpoint (all
    rated movies when ratings are unknown), capped at the :data:`EXPLAIN_LIKED` best-rated."""
    recommended = np.asarray(recommended, dtype=np.int64)
    none = [-1] * recommended.shape[0]
    rated = np.asarray(rated, dtype=np.int64)
    if vectors is None or rated.size == 0 or recommended.size == 0:
        return none
    liked = rated
    if ratings is not None:
        ratings = np.asarray(ratings, dtype=np.float64)
        mid = (scale.low + scale.high) / 2
        keep = ratings >= max(float(ratings.mean()), mid)
        liked, ratings = rated[keep], ratings[keep]
        if liked.size == 0:
            return none
        liked = liked[best_first(ratings, EXPLAIN_LIKED)]
    else:
        liked = liked[:EXPLAIN_LIKED]
    sims = vectors[recommended] @ vectors[liked].T
    return liked[np.argmax(sims, axis=1)].tolist()


def nearest(
    vectors: np.ndarray | None, item: int, n: int, untrained: np.ndarray, model: str = "model"
) -> tuple[np.ndarray, np.ndarray]:
    """Dense indices and cosines of the ``n`` items nearest to ``item`` (itself and the
    ``untrained`` items excluded): one product with the unit vectors, one partial sort;
    ReelrecError when the ``model`` has no item vectors."""
    if vectors is None:
        raise ReelrecError(f"model {model!r} has no item embeddings; train an mf model for similar items")
    sims = (vectors @ vectors[item]).astype(np.float64)
    sims[item] = -np.inf
    sims[untrained] = -np.inf
    return topk(sims, n)
