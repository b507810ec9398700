"""Protocols: run a :class:`~reelrec.recommender.Recommender` over a test set.

* :func:`evaluate_ratings`: RMSE/MAE over every test pair (predictions clipped to the rating
  scale; pairs with a user or item unseen in training get the Recommender's fallback, and how
  many did is reported as ``n_fallback``).
* :func:`evaluate_ranking`: full ranking. For each test user, every item with training
  ratings that the user did not rate in training is a candidate; the user's test items are the
  relevant ones. Training items are never ranked and test items never enter the filter.
* :func:`evaluate_protocol`: the named top-N protocols of the benchmark guide
  (``docs/benchmarks.md``), each with the split it needs (:func:`protocol_split`):

  - ``loo-sampled`` (NCF, He et al. 2017): each user's latest interaction is the test item,
    ranked among itself plus 99 items the user never rated (training or test), drawn
    uniformly without replacement from the whole catalogue with a fixed seed; HR@10, NDCG@10.
  - ``loo-full``: the same test item ranked against every catalogue item the user did not
    interact with in training; HR@10, NDCG@10, MRR (+ HR/NDCG@20, coverage, popularity share).
  - ``temporal-full``: per user the latest 20% of interactions are the test set; full ranking
    as :func:`evaluate_ranking` with ``unrankable="miss"``: Recall@20, NDCG@20, Precision@10,
    MAP@10, coverage@10 (+ every other @10/@20 metric).

  "Training" is the whole training part (train + validation: the recommender's seen index).
  A test item without training data stays relevant (a miss for every model that cannot score
  it) instead of being dropped. In the leave-one-out protocols the rank is pessimistic: the
  test item is placed after every candidate with an equal score.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.evaluation.metrics import (
    accuracy,
    catalogue_coverage,
    mae,
    popularity_share,
    ranking_metrics,
    rmse,
)
from reelrec.recommender import Recommender
from reelrec.sparse import csr_from_keys, csr_keys, expand_rows, in_sorted, indptr_of_rows

#: the top-N protocols of the benchmark guide -> the split each one needs
PROTOCOL_SPLITS: dict[str, str] = {
    "loo-sampled": "leave-last",
    "loo-full": "leave-last",
    "temporal-full": "temporal",
}
#: sampled negatives per test item in ``loo-sampled``
LOO_NEGATIVES = 99
#: the split names (as :func:`reelrec.data.split.make_split` reports them) of each protocol
_SPLIT_NAMES = {"leave-last": "leave-last", "temporal": "temporal20"}


def _indices_in(rec: Recommender, test: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Test rows' dense ``int64`` indices in the recommender's vocabularies (-1 where unknown);
    ``int64`` because callers form ``user * n_items + item`` keys, which overflow ``int32``."""
    if test.users is rec.users or np.array_equal(test.users.ids, rec.users.ids):
        u = test.user_index.astype(np.int64)
    else:
        u = rec.users.index(test.users.ids[test.user_index], missing="negative")
    if test.items is rec.items or np.array_equal(test.items.ids, rec.items.ids):
        i = test.item_index.astype(np.int64)
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
    rec: Recommender,
    test: Dataset,
    ks: tuple[int, ...] = (10, 20),
    batch_users: int | None = None,
    unrankable: Literal["drop", "miss"] = "drop",
) -> dict[str, Any]:
    """Full-ranking HR/Precision/Recall/NDCG/MAP@k, MRR, coverage and popularity share.

    ``unrankable`` says what happens to a test item without training data (which no model
    without side features can rank) and to a test user without training data: ``"drop"``
    leaves them out; ``"miss"`` keeps the item relevant (it is never recommended, so it counts
    as a miss) and keeps the user (ranked by whatever the model scores for them).
    """
    u, i = _indices_in(rec, test)
    ok = (u >= 0) & (i >= 0)
    if unrankable == "drop":
        ok[ok] = rec.item_counts[i[ok]] > 0  # an item with no training data can never be ranked
    u, i = u[ok], i[ok]
    # drop test pairs the user also has in training (repeat ratings): they are filtered from ranking
    keys = np.unique(u * rec.items.ids.shape[0] + i)
    keys = keys[~in_sorted(keys, _seen_keys(rec))]
    n_items = rec.items.ids.shape[0]
    tu, ti = keys // n_items, keys % n_items
    users = np.unique(tu)
    if unrankable == "drop":
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
    indptr = indptr_of_rows(rel_user, users.size)
    out: dict[str, Any] = ranking_metrics(topk, indptr, rel_items, n_items, ks=ks)
    out["popularity_share@10"] = popularity_share(topk, rec.item_counts, min(10, kmax))
    out["n_users"] = int(users.size)
    out["n_relevant"] = int(rel_items.size)
    return out


# --------------------------------------------------------------------------- named protocols


def protocol_split(ds: Dataset, protocol: str, *, seed: int = 42, valid_fraction: float | None = 0.05):
    """The split protocol ``protocol`` evaluates on (validation carved from its training part)."""
    from reelrec.data.split import make_split

    return make_split(ds, PROTOCOL_SPLITS[check_protocol(protocol)], seed=seed, valid_fraction=valid_fraction)


def check_protocol(protocol: str, split_name: str | None = None) -> str:
    """``protocol`` if it is known (and fits a model trained on split ``split_name``), else ConfigError."""
    if protocol not in PROTOCOL_SPLITS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOL_SPLITS)}")
    needed = _SPLIT_NAMES[PROTOCOL_SPLITS[protocol]]
    if split_name is not None and split_name != needed:
        raise ConfigError(
            f"protocol {protocol} needs a model trained on the {PROTOCOL_SPLITS[protocol]} split, "
            f"not {split_name} (its test interactions would be in the training data)"
        )
    return protocol


def protocol_for_split(split_name: str) -> str | None:
    """The full-ranking protocol that a split belongs to (``None`` for other splits)."""
    return {"leave-last": "loo-full", "temporal20": "temporal-full"}.get(split_name)


def evaluate_protocol(rec: Recommender, test: Dataset, protocol: str, *, seed: int = 42) -> dict[str, Any]:
    """Run top-N protocol ``protocol`` (see the module docs) on ``test``."""
    check_protocol(protocol)
    if protocol == "temporal-full":
        out = evaluate_ranking(rec, test, ks=(10, 20), unrankable="miss")
    elif protocol == "loo-full":
        out = evaluate_loo(rec, test, negatives=None, ks=(10, 20))
    else:
        out = evaluate_loo(rec, test, negatives=LOO_NEGATIVES, seed=seed, ks=(10,))
    return {"protocol": protocol, **out}


def _seen_keys(rec: Recommender) -> np.ndarray:
    """Sorted ``user * n_items + item`` keys of the recommender's seen (training) interactions."""
    return csr_keys(rec.seen_indptr, rec.seen_indices, rec.items.ids.shape[0])


def sample_unrated(
    rng: np.random.Generator, n_rows: int, n_items: int, rows: np.ndarray, cols: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` distinct items per row drawn uniformly from the items not excluded for that row.

    ``(rows, cols)`` are the excluded (row, item) pairs. One row of ``n_items`` uniforms is drawn
    per row (so consecutive calls continue one stream, whatever the batch size); the ``m``
    allowed items with the smallest draws are the sample. Returns ``(items, allowed)`` of shape
    ``(n_rows, min(m, n_items))``; ``allowed`` is False where a row has fewer than ``m`` allowed
    items (those entries are excluded items and must be ignored).
    """
    draw = rng.random((n_rows, n_items))
    draw[rows, cols] = np.inf
    m = min(m, n_items)
    items = (
        np.argpartition(draw, m - 1, axis=1)[:, :m]
        if m < n_items
        else np.tile(np.arange(n_items), (n_rows, 1))
    )
    allowed = np.isfinite(np.take_along_axis(draw, items, axis=1))
    return items, allowed


def evaluate_loo(
    rec: Recommender,
    test: Dataset,
    negatives: int | None = None,
    *,
    seed: int = 42,
    ks: tuple[int, ...] = (10, 20),
    batch_users: int | None = None,
) -> dict[str, Any]:
    """Leave-one-out ranking: each test interaction is ranked on its own.

    ``negatives=None`` (``loo-full``): against every catalogue item the user has no training
    interaction with. ``negatives=m`` (``loo-sampled``): against ``m`` items the user never
    rated (neither in training nor in ``test``), drawn uniformly without replacement from the
    catalogue by ``numpy.random.default_rng(seed)`` (one row of uniforms per test
    interaction, in user order; the ``m`` smallest among the allowed items are the sample).

    The rank is ``1 + #candidates scoring >= the test item`` (pessimistic about ties); items
    without training data score ``-inf`` (unless the model scores cold items). A test
    interaction that repeats a training one is skipped (it is not a candidate).

    Returns ``hr@k``, ``ndcg@k``, ``recall@k`` (= HR with one relevant item) for each ``k``,
    ``mrr``, ``n_cases``, ``n_users``; for full ranking also ``coverage@10`` and
    ``popularity_share@10`` of the users' top-10 lists.
    """
    n_items = rec.items.ids.shape[0]
    n_users = len(rec.users)
    u, i = _indices_in(rec, test)
    ok = (u >= 0) & (i >= 0)
    test_keys = np.unique(u[ok] * n_items + i[ok])
    seen = _seen_keys(rec)
    keys = test_keys[~in_sorted(test_keys, seen)]
    if keys.size == 0:
        raise ValueError("no test interaction is left to rank (all unknown or seen in training)")
    tu, ti = keys // n_items, keys % n_items
    core = rec.topn  # scored and masked as every served list is
    test_indptr, test_items = csr_from_keys(test_keys, n_users, n_items)
    if batch_users is None:
        batch_users = max(1, min(4096, (1 << 22) // n_items))
    rng = np.random.default_rng(seed) if negatives else None
    ranks = np.empty(keys.size, dtype=np.int64)
    n_drawn = np.empty(keys.size, dtype=np.int64)
    for s in range(0, keys.size, batch_users):
        ub, ib = tu[s : s + batch_users], ti[s : s + batch_users]
        b = ub.shape[0]
        scores = torch.nan_to_num(core.score_batch(ub), nan=-torch.inf)
        # untrained items -inf; training items are not candidates (NaN >= x is False)
        core.mask(scores, ub, exclude_rated=negatives is None, fill=np.nan)
        scores = scores.cpu().numpy()
        target = scores[np.arange(b), ib]  # never a training item (those keys were dropped)
        if negatives is None:
            ranks[s : s + b] = (scores >= target[:, None]).sum(axis=1)  # counts the test item itself
        else:
            assert rng is not None
            rows, cols = core.seen_pairs(ub)
            trow, tcol = expand_rows(test_indptr, test_items, ub)  # every item the user rated in test too
            neg, allowed = sample_unrated(
                rng, b, n_items, np.concatenate([rows, trow]), np.concatenate([cols, tcol]), negatives
            )
            neg_scores = np.take_along_axis(scores, neg, axis=1)
            ranks[s : s + b] = 1 + ((neg_scores >= target[:, None]) & allowed).sum(axis=1)
            n_drawn[s : s + b] = allowed.sum(axis=1)
    out: dict[str, Any] = {}
    for k in ks:
        hit = ranks <= k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
        out[f"recall@{k}"] = out[f"hr@{k}"]
    out["mrr"] = float((1.0 / ranks).mean())
    if negatives is None:
        users = np.unique(tu)
        topk = np.concatenate(
            [rec.top_n_indices(users[s : s + batch_users], 10)[0] for s in range(0, users.size, batch_users)]
        )
        out["coverage@10"] = catalogue_coverage(topk, n_items, 10)
        out["popularity_share@10"] = popularity_share(topk, rec.item_counts, 10)
    else:
        out["negatives_per_case"] = float(n_drawn.mean())
    out["n_cases"] = int(keys.size)
    out["n_users"] = int(np.unique(tu).size)
    out["n_skipped"] = int(test_keys.size - keys.size)
    return out
