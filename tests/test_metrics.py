"""Known-answer and property tests for reelrec.evaluation.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrec.evaluation import (
    accuracy,
    average_precision_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    hits_matrix,
    mae,
    ndcg_at_k,
    popularity_share,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
    rmse,
)

PER_USER = (hit_rate_at_k, precision_at_k, recall_at_k, ndcg_at_k, average_precision_at_k)
L2, L3 = math.log2(3), math.log2(5)  # discounts of ranks 2 and 4 are 1/log2(3), 1/log2(5)

# ----------------------------------------------------------------------------- rating metrics


def test_rmse_mae_known_answer() -> None:
    pred, truth = [0.0, 6.0, 3.0], [1.0, 5.0, 3.0]
    assert rmse(pred, truth) == pytest.approx(math.sqrt(2 / 3))
    assert mae(pred, truth) == pytest.approx(2 / 3)


def test_rmse_mae_clip_to_scale() -> None:
    pred, truth = [0.0, 6.0, 3.0], [1.0, 5.0, 3.0]
    # clipped to (1, 5): predictions become [1, 5, 3] -> perfect
    assert rmse(pred, truth, scale=(1.0, 5.0)) == 0.0
    assert mae(pred, truth, scale=(1.0, 5.0)) == 0.0
    # clipped to (2, 4): [2, 4, 3] -> errors 1, -1, 0
    assert rmse(pred, truth, scale=(2.0, 4.0)) == pytest.approx(math.sqrt(2 / 3))
    assert mae(pred, truth, scale=(2.0, 4.0)) == pytest.approx(2 / 3)


@pytest.mark.parametrize("fn", [rmse, mae])
def test_rating_metric_errors(fn) -> None:
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="shapes"):
        fn([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="scale"):
        fn([1.0], [1.0], scale=(5.0, 1.0))


def test_accuracy_rounds_to_nearest_level() -> None:
    levels = [1, 2, 3, 4, 5]
    # rounded: [1, 3 (tie goes up), 5, 5 (above range), 1 (below range)]
    assert accuracy([1.4, 2.5, 4.6, 7.0, -3.0], [1, 3, 5, 5, 2], levels) == pytest.approx(0.8)
    half_stars = np.arange(0.5, 5.01, 0.5)
    assert accuracy([3.3, 3.2, 0.1], [3.5, 3.0, 1.0], half_stars) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [], levels)
    with pytest.raises(ValueError, match="shapes"):
        accuracy([1.0], [1.0, 2.0], levels)


# ----------------------------------------------------------------------------- ranking: known answers

N_ITEMS = 10
TOPK = np.array(
    [
        [3, 1, 7, 5],  # relevant {1, 5, 9}: hits at ranks 2 and 4
        [0, 2, -1, -1],  # relevant {2}: hit at rank 2, padded
        [4, 6, 8, -1],  # no relevant items -> NaN
        [0, 1, 2, 3],  # relevant {8, 9}: no hits
    ],
    dtype=np.int64,
)
INDPTR = np.array([0, 3, 4, 4, 6])
INDICES = np.array([9, 1, 5, 2, 8, 9])  # deliberately unsorted within user 0
N_REL = np.diff(INDPTR)
NAN = float("nan")


def test_hits_matrix_known_answer() -> None:
    expected = np.array(
        [[0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        dtype=bool,
    )
    np.testing.assert_array_equal(hits_matrix(TOPK, INDPTR, INDICES, N_ITEMS), expected)


def test_padding_is_never_relevant() -> None:
    # keys would collide if -1 were encoded naively: user 1, item -1 == user 0, item n_items-1
    topk = np.array([[-1, -1], [-1, 0]])
    hits = hits_matrix(topk, np.array([0, 1, 2]), np.array([N_ITEMS - 1, 0]), N_ITEMS)
    np.testing.assert_array_equal(hits, [[False, False], [False, True]])


def test_per_user_metrics_known_answer_k4() -> None:
    hits = hits_matrix(TOPK, INDPTR, INDICES, N_ITEMS)
    np.testing.assert_allclose(hit_rate_at_k(hits, N_REL, 4), [1, 1, NAN, 0])
    np.testing.assert_allclose(precision_at_k(hits, N_REL, 4), [2 / 4, 1 / 4, NAN, 0])
    np.testing.assert_allclose(recall_at_k(hits, N_REL, 4), [2 / 3, 1, NAN, 0])
    # user 0: DCG = 1/log2(3) + 1/log2(5); ideal has 3 hits at ranks 1..3: 1 + 1/log2(3) + 1/2
    # user 1: DCG = 1/log2(3); ideal = 1
    ndcg0 = (1 / L2 + 1 / L3) / (1 + 1 / L2 + 1 / 2)
    np.testing.assert_allclose(ndcg_at_k(hits, N_REL, 4), [ndcg0, 1 / L2, NAN, 0])
    # user 0: AP = (P@2 + P@4) / min(3, 4) = (1/2 + 2/4) / 3; user 1: P@2 / 1
    np.testing.assert_allclose(average_precision_at_k(hits, N_REL, 4), [1 / 3, 1 / 2, NAN, 0])
    np.testing.assert_allclose(reciprocal_rank(hits, N_REL), [1 / 2, 1 / 2, NAN, 0])


def test_per_user_metrics_known_answer_k2() -> None:
    hits = hits_matrix(TOPK, INDPTR, INDICES, N_ITEMS)
    np.testing.assert_allclose(precision_at_k(hits, N_REL, 2), [1 / 2, 1 / 2, NAN, 0])
    np.testing.assert_allclose(recall_at_k(hits, N_REL, 2), [1 / 3, 1, NAN, 0])
    np.testing.assert_allclose(ndcg_at_k(hits, N_REL, 2), [(1 / L2) / (1 + 1 / L2), 1 / L2, NAN, 0])
    # user 0: AP@2 = P@2 / min(3, 2) = (1/2) / 2
    np.testing.assert_allclose(average_precision_at_k(hits, N_REL, 2), [1 / 4, 1 / 2, NAN, 0])
    np.testing.assert_allclose(reciprocal_rank(hits, N_REL, k=1), [0, 0, NAN, 0])


def test_k_longer_than_list_counts_as_misses() -> None:
    hits = np.array([[True, True]])
    n_rel = np.array([2])
    assert precision_at_k(hits, n_rel, 4)[0] == pytest.approx(0.5)
    assert recall_at_k(hits, n_rel, 4)[0] == pytest.approx(1.0)
    assert ndcg_at_k(hits, n_rel, 4)[0] == pytest.approx(1.0)
    assert average_precision_at_k(hits, n_rel, 4)[0] == pytest.approx(1.0)


def test_perfect_ranking_scores_one() -> None:
    topk = np.array([[5, 2, 0, 1], [7, 3, 4, 6]])
    indptr, indices = np.array([0, 2, 6]), np.array([2, 5, 7, 3, 4, 6])
    hits = hits_matrix(topk, indptr, indices, 8)
    n_rel = np.diff(indptr)
    for fn in (hit_rate_at_k, recall_at_k, ndcg_at_k, average_precision_at_k):
        np.testing.assert_allclose(fn(hits, n_rel, 4), 1.0)
    np.testing.assert_allclose(reciprocal_rank(hits, n_rel), 1.0)
    # n_rel > k: recall uses n_rel, the others still reach 1
    np.testing.assert_allclose(recall_at_k(hits, n_rel, 2), [1.0, 0.5])
    np.testing.assert_allclose(ndcg_at_k(hits, n_rel, 2), 1.0)
    np.testing.assert_allclose(average_precision_at_k(hits, n_rel, 2), 1.0)


def test_no_hits_scores_zero() -> None:
    hits = np.zeros((3, 5), dtype=bool)
    n_rel = np.array([1, 2, 7])
    for fn in PER_USER:
        np.testing.assert_array_equal(fn(hits, n_rel, 5), 0.0)
    np.testing.assert_array_equal(reciprocal_rank(hits, n_rel), 0.0)


def test_catalogue_coverage() -> None:
    assert catalogue_coverage(TOPK, N_ITEMS, 2) == pytest.approx(0.6)  # {0, 1, 2, 3, 4, 6}
    assert catalogue_coverage(TOPK, N_ITEMS, 4) == pytest.approx(0.9)  # all but 9
    assert catalogue_coverage(np.full((2, 3), -1), N_ITEMS, 3) == 0.0


def test_popularity_share() -> None:
    popularity = np.arange(10)  # item 9 is the top 10%, items 8-9 the top 20%
    topk = np.array([[9, 1, -1], [2, 9, 8]])
    assert popularity_share(topk, popularity, 3) == pytest.approx(2 / 5)
    assert popularity_share(topk, popularity, 1) == pytest.approx(1 / 2)
    assert popularity_share(topk, popularity, 3, top_fraction=0.2) == pytest.approx(3 / 5)
    assert math.isnan(popularity_share(np.full((1, 2), -1), popularity, 2))


def test_ranking_metrics_excludes_users_without_relevant_items() -> None:
    out = ranking_metrics(TOPK, INDPTR, INDICES, N_ITEMS, ks=(2, 4))
    ndcg0 = (1 / L2 + 1 / L3) / (1 + 1 / L2 + 1 / 2)
    expected = {
        "hr@2": 2 / 3,
        "precision@2": 1 / 3,
        "recall@2": (1 / 3 + 1) / 3,
        "ndcg@2": ((1 / L2) / (1 + 1 / L2) + 1 / L2) / 3,
        "map@2": (1 / 4 + 1 / 2) / 3,
        "coverage@2": 0.4,  # users 0, 1, 3: {3, 1, 0, 2}
        "hr@4": 2 / 3,
        "precision@4": (1 / 2 + 1 / 4) / 3,
        "recall@4": (2 / 3 + 1) / 3,
        "ndcg@4": (ndcg0 + 1 / L2) / 3,
        "map@4": (1 / 3 + 1 / 2) / 3,
        "coverage@4": 0.6,  # {3, 1, 7, 5, 0, 2}
        "mrr": 1 / 3,
    }
    assert out.keys() == expected.keys()
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key


def test_ranking_metrics_default_keys() -> None:
    out = ranking_metrics(TOPK, INDPTR, INDICES, N_ITEMS)
    assert {"hr@10", "precision@20", "recall@10", "ndcg@20", "map@10", "coverage@20", "mrr"} <= set(out)


def test_ranking_input_validation() -> None:
    with pytest.raises(ValueError, match="no user"):
        ranking_metrics(TOPK, np.zeros(5, dtype=np.int64), np.array([], dtype=np.int64), N_ITEMS)
    with pytest.raises(ValueError, match="rel_indptr"):
        hits_matrix(TOPK, INDPTR[:-1], INDICES, N_ITEMS)
    with pytest.raises(ValueError, match="topk"):
        hits_matrix(np.array([[10]]), np.array([0, 1]), np.array([0]), N_ITEMS)
    with pytest.raises(ValueError, match="rel_indices"):
        hits_matrix(TOPK, INDPTR, INDICES, 9)  # relevant item 9 out of range, topk fine
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(np.zeros((1, 2), dtype=bool), np.array([1]), 0)


# ----------------------------------------------------------------------------- properties


@st.composite
def ranking_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Random (topk, rel_indptr, rel_indices, n_items): unique items per row, -1 padding."""
    n_items = draw(st.integers(1, 15))
    n_users = draw(st.integers(1, 6))
    width = draw(st.integers(1, 8))
    rows, rels = [], []
    for _ in range(n_users):
        length = draw(st.integers(0, min(width, n_items)))
        ranked = draw(st.permutations(range(n_items)))[:length]
        rows.append(list(ranked) + [-1] * (width - length))
        rels.append(sorted(draw(st.sets(st.integers(0, n_items - 1)))))
    indptr = np.concatenate(([0], np.cumsum([len(r) for r in rels]))).astype(np.int64)
    indices = np.array([i for r in rels for i in r], dtype=np.int64)
    return np.array(rows, dtype=np.int64), indptr, indices, n_items


def slow_hits(topk: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    out = np.zeros(topk.shape, dtype=bool)
    for u in range(topk.shape[0]):
        rel = set(indices[indptr[u] : indptr[u + 1]].tolist())
        for j, item in enumerate(topk[u]):
            out[u, j] = item != -1 and int(item) in rel
    return out


@settings(max_examples=200, deadline=None)
@given(ranking_cases())
def test_hits_matrix_matches_reference(case) -> None:
    topk, indptr, indices, n_items = case
    np.testing.assert_array_equal(
        hits_matrix(topk, indptr, indices, n_items), slow_hits(topk, indptr, indices)
    )


@settings(max_examples=200, deadline=None)
@given(ranking_cases(), st.integers(1, 10))
def test_metrics_in_unit_interval_and_nan_iff_no_relevant(case, k) -> None:
    topk, indptr, indices, n_items = case
    hits = hits_matrix(topk, indptr, indices, n_items)
    n_rel = np.diff(indptr)
    for values in [fn(hits, n_rel, k) for fn in PER_USER] + [reciprocal_rank(hits, n_rel)]:
        np.testing.assert_array_equal(np.isnan(values), n_rel == 0)
        ok = values[n_rel > 0]
        assert np.all((ok >= 0) & (ok <= 1 + 1e-12))
    assert 0.0 <= catalogue_coverage(topk, n_items, k) <= 1.0
    if (n_rel > 0).any():
        for key, value in ranking_metrics(topk, indptr, indices, n_items, ks=(k,)).items():
            assert 0.0 <= value <= 1.0 + 1e-12, key


@settings(max_examples=200, deadline=None)
@given(ranking_cases(), st.data())
def test_ideal_ordering_scores_one(case, data) -> None:
    _, indptr, indices, n_items = case
    width = data.draw(st.integers(1, n_items))
    rows = []
    for u in range(len(indptr) - 1):
        rel = indices[indptr[u] : indptr[u + 1]]
        rest = np.setdiff1d(np.arange(n_items), rel)
        rows.append(np.concatenate((rel, rest))[:width])
    topk = np.array(rows, dtype=np.int64)
    hits = hits_matrix(topk, indptr, indices, n_items)
    n_rel = np.diff(indptr)
    has = n_rel > 0
    k = data.draw(st.integers(1, width))
    for fn in (ndcg_at_k, average_precision_at_k, hit_rate_at_k):
        np.testing.assert_allclose(fn(hits, n_rel, k)[has], 1.0)
    np.testing.assert_allclose(reciprocal_rank(hits, n_rel)[has], 1.0)


@settings(max_examples=200, deadline=None)
@given(ranking_cases(), st.randoms(use_true_random=False), st.integers(1, 10))
def test_shuffling_non_relevant_items_keeps_metrics(case, rnd, k) -> None:
    topk, indptr, indices, n_items = case
    hits = hits_matrix(topk, indptr, indices, n_items)
    n_rel = np.diff(indptr)
    shuffled = topk.copy()
    for u in range(topk.shape[0]):
        slots = np.flatnonzero(~hits[u] & (topk[u] >= 0))
        items = shuffled[u, slots].tolist()
        rnd.shuffle(items)
        shuffled[u, slots] = items
    hits2 = hits_matrix(shuffled, indptr, indices, n_items)
    np.testing.assert_array_equal(recall_at_k(hits2, n_rel, k), recall_at_k(hits, n_rel, k))
    np.testing.assert_array_equal(ndcg_at_k(hits2, n_rel, k), ndcg_at_k(hits, n_rel, k))
