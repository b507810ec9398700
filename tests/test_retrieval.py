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


@pytest.mark.parametrize("dims", [None, 1, 4, 12, 33])
def test_the_bounds_hold_for_every_item(dims) -> None:
    """Whatever the number of leading directions the int8 pass reads (the rest bounded by their
    norms), every item's exact score lies within its bound; reading them all, the bound is
    tight next to the spread of the scores."""
    rng = np.random.default_rng(0)
    users = rng.normal(0, 1, (50, 33)).astype(np.float32)
    items = rng.normal(0, 1, (400, 33)).astype(np.float32) * rng.uniform(0.01, 3, (400, 1)).astype(np.float32)
    items[:200] = items[:200, :3] @ rng.normal(0, 1, (3, 33)).astype(np.float32)  # half near rank 3
    items[7] = 0.0  # an all-zero vector has a scale too
    q = QuantizedItems(users, items, dims=dims)
    exact = users.astype(np.float64) @ items.T.astype(np.float64)
    for u in range(len(users)):
        approx, err = q.bounds(u)
        assert np.all(np.abs(approx - exact[u]) <= err)
        if q.dims == 33:
            assert np.median(err) < 0.1 * exact[u].std()


def test_low_rank_catalogues_stream_fewer_directions() -> None:
    """choose_dims reads a few leading directions of near-low-rank item vectors (with fewer bytes
    and few candidates) and every direction of isotropic ones."""
    rng = np.random.default_rng(5)
    k, m = 64, 20_000
    signal = rng.normal(0, 1, (m, 6)) @ rng.normal(0, 1, (6, k))
    items = (signal + rng.normal(0, 0.01, (m, k))).astype(np.float32)
    users = (rng.normal(0, 1, (300, 6)) @ rng.normal(0, 1, (6, k))).astype(np.float32)
    low = QuantizedItems(users, items)
    assert low.dims < 24
    flat = QuantizedItems(users, rng.normal(0, 1, (m, k)).astype(np.float32))
    assert flat.dims == k
    assert flat.rotation is None


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


@pytest.mark.parametrize(
    ("name", "dims"), [("mf", None), ("mf", 3), ("bpr", None), ("als", 2), ("gmf", None)]
)
def test_large_catalogues_serve_the_exact_lists_from_int8(small, name, dims, monkeypatch) -> None:
    """With the catalogue threshold lowered to this small dataset, every user's top-n (seen movies
    excluded or not, with and without the novelty knob) equals the exact float32 path's, whether
    the int8 pass reads every direction or a few leading ones."""
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 1)
    if dims is not None:
        monkeypatch.setattr(retrieval, "choose_dims", lambda *args, **kwargs: dims)
    rec = Recommender.train(name, small, train_config=FAST, seed=0)
    assert rec.quantized_items() is not None
    assert dims is None or rec.quantized_items().dims == dims
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


@pytest.mark.parametrize("dims", [None, 5])
def test_the_compiled_selection_equals_the_numpy_statement(dims) -> None:
    """top_candidates (two compiled passes, reused buffers) returns exactly bounds + candidates
    with the banned items at -inf: near-ties, a novelty shift, everything banned, n past the
    catalogue, and buffers reused across users and n."""
    rng = np.random.default_rng(3)
    users = rng.normal(0, 1, (30, 17)).astype(np.float32)
    base = rng.normal(0, 1, (1, 17)).astype(np.float32)
    items = np.concatenate(
        [rng.normal(0, 1, (500, 17)), base + rng.normal(0, 1e-3, (200, 17))]  # a block of near-ties
    ).astype(np.float32)
    q = QuantizedItems(users, items, dims=dims)
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


@pytest.mark.parametrize("dims", [None, 3])
def test_new_users_lists_from_int8_are_the_exact_ones(small, dims, monkeypatch) -> None:
    """A new user's list (fold-in) from the int8 copy equals the exact pass's: random rating sets,
    with the novelty knob or not, rated movies excluded."""
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 1)
    if dims is not None:
        monkeypatch.setattr(retrieval, "choose_dims", lambda *args, **kwargs: dims)
    rec = Recommender.train("mf", small, train_config=FAST, seed=0)
    assert rec.quantized_items() is not None
    exact = Recommender.train("mf", small, train_config=FAST, seed=0)
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 10**9)
    assert exact.quantized_items() is None
    rng = np.random.default_rng(2)
    for _ in range(40):
        items = rng.choice(small.n_items, int(rng.integers(1, 12)), replace=False)
        values = rng.integers(1, 6, items.size).astype(np.float64)
        for novelty in (0.0, 0.4):
            a_idx, a_val, a_personal = rec.new_user_top_n(items, values, 5, novelty)
            b_idx, b_val, b_personal = exact.new_user_top_n(items, values, 5, novelty)
            assert a_personal == b_personal
            assert not set(a_idx.tolist()) & set(items.tolist())
            np.testing.assert_allclose(a_val, b_val, rtol=1e-5, atol=1e-5)
            assert ((a_idx == b_idx) | np.isclose(a_val, b_val, atol=1e-5)).all()
