"""Exact top-n from int8 item vectors (reelrec.retrieval): the bounds hold and the lists are the
exact path's."""

from __future__ import annotations

import numpy as np
import pytest

from reelrec import retrieval
from reelrec.recommender import Recommender
from reelrec.retrieval import QuantizedItems
from reelrec.training import TrainConfig

FAST = TrainConfig(epochs=4, batch_size=128, learning_rate=0.01)


def test_the_bounds_hold_for_every_item() -> None:
    rng = np.random.default_rng(0)
    users = rng.normal(0, 1, (50, 33)).astype(np.float32)
    items = rng.normal(0, 1, (400, 33)).astype(np.float32) * rng.uniform(0.01, 3, (400, 1)).astype(np.float32)
    items[7] = 0.0  # an all-zero vector has a scale too
    q = QuantizedItems(users, items)
    exact = users.astype(np.float64) @ items.T.astype(np.float64)
    for u in range(len(users)):
        approx, err = q.bounds(u)
        assert np.all(np.abs(approx - exact[u]) <= err)
        assert np.median(err) < 0.05 * exact[u].std()  # tight next to the spread of the scores


def test_the_candidates_hold_the_exact_top_n_even_among_near_ties() -> None:
    rng = np.random.default_rng(1)
    users = rng.normal(0, 1, (20, 16)).astype(np.float32)
    base = rng.normal(0, 1, (1, 16)).astype(np.float32)
    items = base + rng.normal(0, 1e-3, (300, 16)).astype(np.float32)  # every score nearly equal
    q = QuantizedItems(users, items)
    exact = users.astype(np.float64) @ items.T.astype(np.float64)
    for u in range(len(users)):
        approx, err = q.bounds(u)
        approx[::7] = -np.inf  # excluded items stay out
        cand = q.candidates(approx, err, 10)
        allowed = np.flatnonzero(np.isfinite(approx))
        top = allowed[np.argsort(-exact[u, allowed])[:10]]
        assert set(top) <= set(cand)
        assert not np.isin(np.arange(0, 300, 7), cand).any()
    assert len(QuantizedItems.candidates(np.full(5, -np.inf), np.zeros(5), 3)) == 0
    # an item whose approximate score is below the threshold but whose bound reaches it may be
    # the best: it stays a candidate; one whose bound falls short does not
    approx, err = np.array([1.0, 0.9, 0.95, 0.5]), np.array([0.0, 0.2, 0.0, 0.1])
    assert QuantizedItems.candidates(approx, err, 1).tolist() == [0, 1]


@pytest.mark.parametrize("name", ["mf", "bpr", "als", "gmf"])
def test_large_catalogues_serve_the_exact_lists_from_int8(small, name, monkeypatch) -> None:
    """With the catalogue threshold lowered to this small dataset, every user's top-n (seen movies
    excluded or not, with and without the novelty knob) equals the exact float32 path's."""
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 1)
    rec = Recommender.train(name, small, train_config=FAST, seed=0)
    assert rec.quantized_items() is not None
    exact = Recommender.train(name, small, train_config=FAST, seed=0)
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 10**9)
    assert exact.quantized_items() is None
    novelties = (0.0, 0.4) if rec.model.ranks_by_rating else (0.0,)
    for user in np.flatnonzero(rec.user_counts > 0):
        for exclude in (True, False):
            for novelty in novelties:
                a_idx, a_val = rec.top_n_for_user(int(user), 5, exclude, novelty)
                b_idx, b_val = exact.top_n_for_user(int(user), 5, exclude, novelty)
                assert len(a_idx) == len(b_idx)
                np.testing.assert_allclose(a_val, b_val, rtol=1e-5, atol=1e-5)
                # the same movies, up to the order of float32 near-ties
                assert ((a_idx == b_idx) | np.isclose(a_val, b_val, atol=1e-5)).all()


def test_small_catalogues_and_other_models_keep_the_exact_path(small, monkeypatch) -> None:
    rec = Recommender.train("mf", small, train_config=FAST, seed=0)
    assert rec.quantized_items() is None  # 30 movies: under MIN_ITEMS
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 1)
    mlp = Recommender.train("mlp", small, model_params={"pretrain": "none"}, train_config=FAST, seed=0)
    assert mlp.quantized_items() is None  # no inner-product form
    monkeypatch.setattr(retrieval.compiled, "tried", True)
    monkeypatch.setattr(retrieval.compiled, "kernel", None)  # REELREC_KERNELS=torch, or no numba
    again = Recommender.train("mf", small, train_config=FAST, seed=0)
    assert again.quantized_items() is None
    assert len(again.top_n_for_user(0, 3)[0]) == 3


def test_the_compiled_selection_equals_the_numpy_statement() -> None:
    """top_candidates (two compiled passes, reused buffers) returns exactly bounds + candidates
    with the banned items at -inf: near-ties, a novelty shift, everything banned, n past the
    catalogue, and buffers reused across users and n."""
    rng = np.random.default_rng(3)
    users = rng.normal(0, 1, (30, 17)).astype(np.float32)
    base = rng.normal(0, 1, (1, 17)).astype(np.float32)
    items = np.concatenate(
        [rng.normal(0, 1, (500, 17)), base + rng.normal(0, 1e-3, (200, 17))]  # a block of near-ties
    ).astype(np.float32)
    q = QuantizedItems(users, items)
    shift = rng.normal(0, 1, len(items)).astype(np.float32)
    for u in range(len(users)):
        banned = rng.choice(len(items), int(rng.integers(0, 400)), replace=False).astype(np.int64)
        also = np.arange(0, len(items), 11, dtype=np.int64)
        for n, novelty in ((1, 0.0), (10, 0.7), (100, -1.5), (256, 0.2), (257, 0.2), (10_000, 0.0)):
            approx, err = q.bounds(u, shift, novelty)
            approx[banned] = -np.inf
            approx[also] = -np.inf
            want = QuantizedItems.candidates(approx, err, n)
            got = q.top_candidates(u, n, banned, also, shift, novelty)
            assert got.tolist() == want.tolist()
    everything = np.arange(len(items), dtype=np.int64)
    assert len(q.top_candidates(0, 5, everything, everything[:0])) == 0
    assert len(q.top_candidates(0, 0, everything[:0], everything[:0])) == 0
