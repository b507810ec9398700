"""Protocols: run a :class:`~reelrec.recommender.Recommender` over a test set.

* :func:`evaluate_ratings`: RMSE/MAE over every test pair (predictions clipped to the rating
  scale; pairs with a user or item unseen in training get the Recommender's fallback, and how
  many did is reported as ``n_fallback``).
* :func:`evaluate_ranking`: full ranking. For each test user, every item with training
  ratings that the user did not rate in training is a candidate; the user's test items are the
  relevant ones. Training items are never ranked and test items never enter the filter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.evaluation.metrics import accuracy, mae, popularity_share, ranking_metrics, rmse
from reelrec.recommender import Recommender


def _indices_in(rec: Recommender, test: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Test rows' dense indices in the recommender's vocabularies (-1 where unknown)."""
    if test.users is rec.users or np.array_equal(test.users.ids, rec.users.ids):
        u = test.user_index
    else:
        u = rec.users.index(test.users.ids[test.user_index], missing="negative")
    if test.items is rec.items or np.array_equal(test.items.ids, rec.items.ids):
        i = test.item_index
    else:
        i = rec.items.index(test.items.ids[test.item_index], missing="negative")
    return u, i


def evaluate_ratings(rec: Recommender, test: Dataset) -> dict[str, Any]:
    """RMSE and MAE of ``rec`` on every rating of ``test``."""
    if not rec.model.predicts_ratings:
        raise ConfigError(
            f"model {rec.name} is trained for ranking and predicts no ratings; use ranking metrics"
        )
    u, i = _indices_in(rec, test)
    pred = rec.predict_indices(u, i)
    known_u = u >= 0
    known_i = i >= 0
    warm = known_u & known_i
    item_ok = True if rec.model.predicts_cold_items else rec.item_counts[i[warm]] > 0
    user_ok = True if rec.model.predicts_cold_users else rec.user_counts[u[warm]] > 0
    warm[warm] = user_ok & item_ok
    scale = (rec.scale.low, rec.scale.high)
    out: dict[str, Any] = {
        "rmse": rmse(pred, test.rating, scale),
        "mae": mae(pred, test.rating, scale),
    }
    levels = rec.scale.levels()
    if levels is not None:  # exact-match accuracy of the predicted rating level
        out["accuracy"] = accuracy(rec.predict_levels_indices(u, i), test.rating, levels)
    out["n"] = len(test)
    out["n_fallback"] = int((~warm).sum())
    return out


def evaluate_ranking(
    rec: Recommender, test: Dataset, ks: tuple[int, ...] = (10, 20), batch_users: int | None = None
) -> dict[str, Any]:
    """Full-ranking HR/Precision/Recall/NDCG/MAP@k, MRR, coverage and popularity share."""
    u, i = _indices_in(rec, test)
    ok = (u >= 0) & (i >= 0)
    ok[ok] = rec.item_counts[i[ok]] > 0  # an item with no training data can never be ranked
    u, i = u[ok], i[ok]
    # drop test pairs the user also has in training (repeat ratings): they are filtered from ranking
    keys = np.unique(u * rec.items.ids.shape[0] + i)
    seen_keys = (
        np.repeat(np.arange(len(rec.users)), np.diff(rec.seen_indptr)) * rec.items.ids.shape[0]
        + rec.seen_indices
    )
    keys = keys[~np.isin(keys, seen_keys)]
    n_items = rec.items.ids.shape[0]
    tu, ti = keys // n_items, keys % n_items
    users = np.unique(tu)
    users = users[rec.user_counts[users] > 0]
    if users.size == 0:
        raise ValueError("no test user has both training data and a rankable test item")
    kmax = max(ks)
    if batch_users is None:  # keep each score block near 32M floats, whatever the catalogue size
        batch_users = max(1, min(4096, (1 << 25) // n_items))
    topk = np.concatenate(
        [rec.top_n_indices(users[s : s + batch_users], kmax)[0] for s in range(0, users.size, batch_users)]
    )
    pos = np.searchsorted(users, tu)
    keep = (pos < users.size) & (users[np.minimum(pos, users.size - 1)] == tu)
    rel_user = pos[keep]
    rel_items = ti[keep]
    indptr = np.zeros(users.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(rel_user, minlength=users.size), out=indptr[1:])
    out: dict[str, Any] = ranking_metrics(topk, indptr, rel_items, n_items, ks=ks)
    out["popularity_share@10"] = popularity_share(topk, rec.item_counts, min(10, kmax))
    out["n_users"] = int(users.size)
    return out
