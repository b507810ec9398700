from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reelrec.data.dataset import Dataset
from reelrec.errors import ReelrecError, UnknownIdError
from reelrec.evaluation.protocols import evaluate_ranking, evaluate_ratings
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig


def test_similar_items_by_embedding_cosine(small) -> None:
    rec = Recommender.train("mf", small, train_config=TrainConfig(epochs=3, batch_size=64), seed=0)
    sims = rec.similar_items("m3", n=4)
    assert len(sims) == 4
    assert "m3" not in [s.item_id for s in sims]
    v = rec.model.item_vectors().numpy()
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    i = int(rec.items.index("m3")[0])
    expected = np.delete(np.argsort(-(v @ v[i])), np.flatnonzero(np.argsort(-(v @ v[i])) == i))[:4]
    assert [s.item_id for s in sims] == rec.items.raw(expected).tolist()
    assert sims[0].score == pytest.approx(float(v[expected[0]] @ v[i]), abs=1e-5)
    with pytest.raises(UnknownIdError):
        rec.similar_items("nothing")
    with pytest.raises(ReelrecError, match="no item embeddings"):
        Recommender.train("bias", small).similar_items("m3")


def test_ranking_never_ranks_training_items_and_counts_hits() -> None:
    # user 1 rated items a,b in training; its test item is c; the model must rank c, not a/b
    frame = pd.DataFrame(
        {
            "user": [1, 1, 2, 2, 2, 3, 3],
            "item": ["a", "b", "a", "b", "c", "a", "c"],
            "rating": [5, 4, 5, 4, 5, 3, 4],
        }
    )
    ds = Dataset.from_frame(frame, name="tiny")
    train, test = ds.subset([0, 1, 2, 3, 4, 5]), ds.subset([6])
    rec = Recommender.train("popularity", train)
    top, _ = rec.top_n_indices(np.array([0]), 3)
    assert rec.items.raw(top[0][top[0] >= 0]).tolist() == ["c"]
    metrics = evaluate_ranking(rec, test, ks=(1,))
    # user 3 rated a in training; the only other trained items are b (2 ratings) and c (1): b ranks first
    assert metrics["hr@1"] == 0.0
    assert metrics["n_users"] == 1
    metrics = evaluate_ranking(rec, test, ks=(2,))
    assert metrics["hr@2"] == 1.0
    assert metrics["ndcg@2"] == pytest.approx(1 / np.log2(3))


def test_rating_metrics_report_fallbacks(small) -> None:
    rec = Recommender.train("bias", small.subset(np.arange(300)))
    out = evaluate_ratings(rec, small.subset(np.arange(300, len(small))))
    assert out["n"] == len(small) - 300
    assert 0 <= out["n_fallback"] <= out["n"]
    assert out["rmse"] >= out["mae"] > 0


def test_recommend_validates_n(small) -> None:
    rec = Recommender.train("popularity", small)
    with pytest.raises(ReelrecError, match="n must be at least 1"):
        rec.recommend(small.users.ids[0], n=0)
    assert len(rec.recommend(small.users.ids[0], n=1000)) <= small.n_items


def test_accuracy_is_exact_match_of_the_predicted_level(small) -> None:
    rec = Recommender.train("bias", small.subset(np.arange(300)))
    test = small.subset(np.arange(300, len(small)))
    out = evaluate_ratings(rec, test)
    pred = rec.predict(test.users.ids[test.user_index], test.items.ids[test.item_index])
    expected = np.mean(np.clip(np.floor(pred + 0.5), 1, 5) == test.rating)
    assert out["accuracy"] == pytest.approx(expected)
    softmax = Recommender.train(
        "mlp", small, model_params={"output": "softmax"}, train_config=TrainConfig(epochs=2)
    )
    u, i = test.user_index, test.item_index
    levels = softmax.predict_levels_indices(u, i)
    assert set(np.unique(levels)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert evaluate_ratings(softmax, test)["accuracy"] == pytest.approx(np.mean(levels == test.rating))


def test_novelty_knob_trades_popularity_for_novelty(planted) -> None:
    """score - novelty * z_pop: higher novelty, less popular lists; the scores shown stay the
    model's own; the batch, single-user and new-user paths agree."""
    ds, _ = planted
    rec = Recommender.train("mf", ds, model_params={"embedding_size": 8}, train_config=TrainConfig(epochs=5))
    users = np.arange(30)
    z = rec.topn.popularity
    trained = rec.item_counts > 0
    assert abs(z[trained].mean()) < 1e-5
    assert abs(z[trained].std() - 1) < 1e-5
    mean_pop = []
    for knob in (-1.0, 0.0, 1.0):
        idx, val = rec.top_n_indices(users, 10, novelty=knob)
        mean_pop.append(float(z[idx].mean()))
        raw = rec.model.score_users(torch.as_tensor(users)).numpy()
        np.testing.assert_allclose(val, np.take_along_axis(raw, idx, 1), rtol=1e-5)  # unshifted
        for u in (0, 7):
            one, one_val = rec.top_n_for_user(u, 10, novelty=knob)
            assert one.tolist() == idx[u].tolist()
            np.testing.assert_allclose(one_val, val[u], rtol=1e-5)
    assert mean_pop[0] > mean_pop[1] > mean_pop[2]
    assert rec.top_n_indices(users, 10)[0].tolist() == rec.top_n_indices(users, 10, novelty=0.0)[0].tolist()
    given = {int(ds.items.ids[i]): 5.0 for i in range(5)}
    plain = [r.item_id for r in rec.recommend_for_ratings(given, n=10, novelty=0.0)]
    niche = [r.item_id for r in rec.recommend_for_ratings(given, n=10, novelty=1.0)]
    assert z[rec.items.index(niche)].mean() < z[rec.items.index(plain)].mean()


def test_best_first_is_the_head_of_a_stable_descending_sort() -> None:
    """The reasons' "best-rated first" selection (linear time) keeps the stable sort's order
    among tied half-star ratings."""
    from reelrec.recommender import best_first

    rng = np.random.default_rng(0)
    for _ in range(500):
        size = int(rng.integers(0, 300)) if rng.random() < 0.5 else int(rng.integers(1000, 3000))
        values = rng.integers(1, 11, size) / 2.0 if rng.random() < 0.7 else rng.normal(size=size)
        k = int(rng.integers(1, 80))
        assert best_first(values, k).tolist() == np.argsort(-values, kind="stable")[:k].tolist()
