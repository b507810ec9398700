"""The top-n core (reelrec.topn): the candidate mask, the novelty shift, the scorers (exact, int8,
ANN candidates) and how a list says it was ranked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelrec import retrieval
from reelrec.data.dataset import RatingScale, Vocabulary
from reelrec.errors import ConfigError
from reelrec.models.registry import make_config, model_class
from reelrec.prediction import Fallback
from reelrec.recommender import Recommender
from reelrec.topn import Ann, Exact, Int8, check_novelty, ranking_label, shift, topk

N_USERS, N_ITEMS = 60, 400


def synthetic(seed: int = 0, untrained: int = 25) -> Recommender:
    """An MF recommender with random weights on a synthetic catalogue: each user has 30 seen
    items, ``untrained`` items have no training ratings."""
    rng = np.random.default_rng(seed)
    model = model_class("mf")(N_USERS, N_ITEMS, make_config("mf", {"embedding_size": 16}))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.as_tensor(rng.normal(0, 0.4, tuple(p.shape)), dtype=p.dtype))
    counts = rng.integers(1, 200, N_ITEMS)
    counts[rng.choice(N_ITEMS, untrained, replace=False)] = 0
    seen = np.sort(np.stack([rng.choice(N_ITEMS, 30, replace=False) for _ in range(N_USERS)]), axis=1)
    return Recommender(
        model,
        users=Vocabulary(np.arange(N_USERS) + 1),
        items=Vocabulary(np.arange(N_ITEMS) + 1),
        seen_indptr=np.arange(0, 30 * (N_USERS + 1), 30),
        seen_indices=seen.ravel(),
        user_counts=np.full(N_USERS, 30),
        item_counts=counts,
        fallback=Fallback(3.0, np.zeros(N_USERS, np.float32), np.zeros(N_ITEMS, np.float32)),
        scale=RatingScale(1.0, 5.0, 1.0),
    )


@pytest.fixture(scope="module")
def rec() -> Recommender:
    return synthetic()


def test_the_mask_leaves_out_seen_untrained_and_filtered_items(rec: Recommender) -> None:
    core = rec.topn
    untrained = set(np.flatnonzero(rec.item_counts == 0).tolist())
    assert set(core.untrained.tolist()) == untrained
    banned = np.array([3, 5, 8])
    batch = core.recommend(np.arange(N_USERS), 50).items
    for u in range(N_USERS):
        seen = set(rec.seen_items(u).tolist())
        one = core.recommend(u, 50, filter_items=banned)
        assert len(one.items) == 50
        assert not set(one.items.tolist()) & (seen | untrained | set(banned.tolist()))
        assert not set(batch[u].tolist()) & (seen | untrained)
        # kept in, the seen items compete again; untrained ones never do
        kept = core.recommend(u, N_ITEMS, exclude_rated=False).items
        assert seen - untrained <= set(kept.tolist())
        assert not set(kept.tolist()) & untrained
    # a new user: the rated movies and the untrained ones stay out
    items, values = np.array([0, 1, 2, 9]), np.array([5.0, 4.0, 1.0, 3.0])
    new = core.recommend(None, N_ITEMS, rated=(items, values))
    assert new.personalised
    assert not set(new.items.tolist()) & (untrained | {0, 1, 2, 9})
    assert len(new.items) == N_ITEMS - len(untrained | {0, 1, 2, 9})


def test_a_short_catalogue_pads_batches_and_shortens_rows(rec: Recommender) -> None:
    core = rec.topn
    idx, val = rec.top_n_indices(np.array([0, 1]), N_ITEMS + 5)
    assert idx.shape == val.shape == (2, N_ITEMS + 5)
    for u in (0, 1):
        left = N_ITEMS - len(set(core.untrained.tolist()) | set(rec.seen_items(u).tolist()))
        assert (idx[u, left:] == -1).all()
        assert np.isneginf(val[u, left:]).all()
        assert (idx[u, :left] >= 0).all()
        assert core.recommend(u, N_ITEMS).items.tolist() == idx[u, :left].tolist()


def test_topk_is_the_head_of_a_descending_sort() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=500)
    scores[::9] = -np.inf
    top, val = topk(scores.copy(), 20)
    assert top.tolist() == np.argsort(-scores)[:20].tolist()
    assert val.tolist() == np.sort(scores)[::-1][:20].tolist()
    raw = scores + 1.0
    assert topk(scores, 5, raw)[1].tolist() == raw[top[:5]].tolist()
    assert len(topk(np.full(4, -np.inf), 3)[0]) == 0
    batch = torch.as_tensor(np.stack([scores, -scores]), dtype=torch.float32)
    idx, _ = topk(batch, 20)
    assert idx[0].tolist() == top.tolist()


def test_the_novelty_shift_is_one_rating_per_popularity_sd() -> None:
    z = np.array([-1.0, 0.0, 2.0, 0.5], dtype=np.float32)
    row = np.array([4.0, 3.5, 3.9, -np.inf])
    shifted = shift(row, z, -0.25, True)
    assert shifted.tolist() == (row - (np.float32(-0.25) * z).astype(np.float64)).tolist()
    assert shifted[2] > shifted[0]  # the popular movie overtakes with a popularity prior
    assert np.isneginf(shifted[3])
    assert shift(row, z, 0.0, True) is row
    # a row and a batch shift by the same float32 vector for a rating ranker
    batch = shift(torch.zeros(2, 3), z[:3], 0.7, True)
    assert np.array_equal(batch[1].numpy().astype(np.float64), shift(np.zeros(3), z[:3], 0.7, True))
    # a ranker's unit is the spread of its finite scores
    ranker = shift(row, z, 1.0, False)
    finite = row[:3]
    np.testing.assert_allclose(ranker[:3], finite - finite.std() * z[:3], rtol=1e-6)
    assert np.isneginf(ranker[3])
    for bad in (float("nan"), 101.0, -1e9):
        with pytest.raises(ConfigError, match="novelty"):
            check_novelty(bad)


def test_novelty_reorders_by_the_shift_and_shows_the_raw_scores(rec: Recommender) -> None:
    core = rec.topn
    raw = rec.model.score_user(4)
    seen, untrained = core.banned(4)
    expected = raw - (np.float32(0.6) * core.popularity).astype(np.float64)
    expected[seen] = -np.inf
    expected[untrained] = -np.inf
    ranked = core.recommend(4, 10, novelty=0.6)
    assert ranked.items.tolist() == np.argsort(-expected, kind="stable")[:10].tolist()
    assert ranked.scores.tolist() == raw[ranked.items].tolist()  # the model's own, unshifted


@pytest.mark.skipif(retrieval.compiled() is None, reason="the int8 pass needs numba")
def test_exact_and_int8_scorers_give_the_same_lists(monkeypatch) -> None:
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 1)
    fast = synthetic(seed=4)
    assert isinstance(fast.topn.scorer, Int8)
    monkeypatch.setattr(retrieval, "MIN_ITEMS", 10**9)
    exact = synthetic(seed=4)
    assert isinstance(exact.topn.scorer, Exact)
    rng = np.random.default_rng(5)
    for u in range(N_USERS):
        for novelty in (0.0, -0.25, 0.5):
            a = fast.topn.recommend(u, 10, novelty=novelty, filter_items=np.array([u, u + 1]))
            b = exact.topn.recommend(u, 10, novelty=novelty, filter_items=np.array([u, u + 1]))
            assert (a.scorer, b.scorer) == ("int8", "exact")
            assert a.items.tolist() == b.items.tolist()
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-6)
            assert a.ranked_by == b.ranked_by
        items = rng.choice(N_ITEMS, 6, replace=False)
        values = rng.integers(1, 6, 6).astype(np.float64)
        a = fast.topn.recommend(None, 10, novelty=-0.25, rated=(items, values))
        b = exact.topn.recommend(None, 10, novelty=-0.25, rated=(items, values))
        assert a.items.tolist() == b.items.tolist()


class FakeIndex:
    """An ANN index that always finds the same movies, in a fixed order."""

    user_index = "built"

    def __init__(self, found: np.ndarray) -> None:
        self.found = found
        self.asked: list[tuple[int, int, list[int]]] = []

    def candidates(self, user: int, n: int, seen: np.ndarray, novelty: float = 0.0) -> np.ndarray:
        self.asked.append((user, n, seen.tolist()))
        return self.found[~np.isin(self.found, seen)][:n]


def test_the_ann_scorer_ranks_only_its_candidates_by_exact_scores(monkeypatch) -> None:
    rec = synthetic(seed=6)
    found = np.array([7, 100, 3, 250, 41, 399, 12])
    index = FakeIndex(found)
    rec.topn.use(Ann(index, fallback=Exact()))

    def no_full_pass(user: int) -> np.ndarray:
        raise AssertionError("the ANN path must not score the whole catalogue")

    monkeypatch.setattr(rec.model, "score_user", no_full_pass)
    for novelty in (0.0, -0.25):
        ranked = rec.topn.recommend(2, 5, novelty=novelty)
        assert ranked.scorer == "ann"
        cand = index.candidates(2, 5, rec.seen_items(2))
        assert set(ranked.items.tolist()) <= set(found.tolist())
        exact = rec.model.score_items(2, cand)
        order = np.argsort(-(exact - (np.float32(novelty) * rec.topn.popularity[cand]).astype(np.float64)))
        assert ranked.items.tolist() == cand[order].tolist()
        assert ranked.scores.tolist() == exact[order].tolist()
    assert index.asked[0] == (2, 5, rec.seen_items(2).tolist())
    # a new user is not in the index: the fallback scorer ranks them
    monkeypatch.undo()
    new = rec.topn.recommend(None, 5, rated=(np.array([1, 2]), np.array([5.0, 2.0])))
    assert new.scorer == "exact"
    assert len(new.items) == 5


def test_every_list_says_how_it_was_ranked(rec: Recommender, tmp_path) -> None:
    model = rec.model
    assert ranking_label(model) == "predicted rating"
    assert ranking_label(model, -0.25) == "predicted rating + popularity prior (novelty -0.25)"
    assert ranking_label(model, 0.5) == "predicted rating - popularity penalty (novelty 0.5)"
    assert ranking_label(model, personalised=False).startswith("training count")
    plain = rec.recommend(1, n=5, novelty=0.0)
    prior = rec.recommend(1, n=5, novelty=-0.25)
    assert plain.ranked_by == "predicted rating"
    assert [x.score for x in plain] == sorted((x.score for x in plain), reverse=True)
    assert prior.ranked_by == "predicted rating + popularity prior (novelty -0.25)"
    assert rec.recommend_for_ratings({1: 5.0, 2: 4.0}, n=3, novelty=-0.25).ranked_by == prior.ranked_by
    popular = rec.recommend_for_ratings({}, n=3)
    assert not popular.personalised
    assert popular.ranked_by.startswith("training count")
    # the service's bodies carry it too
    from reelrec.service.state import Served

    rec.save(str(tmp_path / "run"))
    served = Served.load(tmp_path / "run")
    body = served.known_user_list(0, 5, True, -0.25)
    assert body["ranked_by"] == prior.ranked_by
    assert [x["movie_id"] for x in body["items"]] == [x.item_id for x in prior]
    new = served.new_user_list(np.array([0, 1]), np.array([5.0, 4.0]), 3, -0.25)
    assert new["ranked_by"] == prior.ranked_by
    assert served.new_user_list(np.zeros(0, np.int64), np.zeros(0), 3, -0.25)["personalised"] is False
