"""New users without retraining: fold-in from a handful of ratings (MF closed form, bias closed
form, L-BFGS on a neural model's own user parameters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelrec.errors import ReelrecError, UnknownIdError
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig


@pytest.fixture(scope="module")
def mf(planted) -> Recommender:
    ds, _ = planted
    cfg = TrainConfig(epochs=60, batch_size=1024, learning_rate=0.01, patience=0)
    return Recommender.train(
        "mf", ds, model_params={"embedding_size": 8, "reg": 0.01}, train_config=cfg, seed=0
    )


def test_folding_in_a_users_own_ratings_recovers_their_scores(mf, planted) -> None:
    ds, _ = planted
    overlaps, corrs = [], []
    for u in range(0, 60, 3):
        rows = ds.user_index == u
        ratings = dict(zip(ds.items.ids[ds.item_index[rows]].tolist(), ds.rating[rows].tolist(), strict=True))
        new = mf.recommend_for_ratings(ratings, n=10)
        known = mf.recommend(ds.users.ids[u], n=10)
        overlaps.append(len({r.item_id for r in new} & {r.item_id for r in known}) / 10)
        folded = mf.model.fold_in(torch.as_tensor(ds.item_index[rows]), torch.as_tensor(ds.rating[rows]))
        own = mf.model.score_users(torch.tensor([u]))[0]
        corrs.append(float(np.corrcoef(folded.numpy(), own.numpy())[0, 1]))
        assert not {r.item_id for r in new} & set(ratings)  # rated movies never come back
    assert np.mean(corrs) > 0.99
    assert np.mean(overlaps) >= 0.8


def test_fold_in_inputs_and_fallbacks(mf, planted, small) -> None:
    ds, _ = planted
    popular = mf.recommend_for_ratings({}, n=3)
    counts = ds.item_counts()
    assert [r.item_id for r in popular] == ds.items.ids[np.argsort(-counts, kind="stable")[:3]].tolist()
    with pytest.raises(UnknownIdError, match="unknown item id 999999"):
        mf.recommend_for_ratings({999999: 4.0})
    with pytest.raises(ReelrecError, match="ratings must lie in"):
        mf.recommend_for_ratings({int(ds.items.ids[0]): 50.0})
    bce = Recommender.train(
        "gmf", small, model_params={"objective": "bce"}, train_config=TrainConfig(epochs=1), seed=0
    )
    with pytest.raises(ReelrecError, match="cannot fold in"):
        bce.recommend_for_ratings({"m1": 4.0})


def test_bias_fold_in_is_the_closed_form_user_bias(small) -> None:
    rec = Recommender.train("bias", small)
    model = rec.model
    items = rec.items.index(["m1", "m2", "m3"])
    ratings = np.array([5.0, 5.0, 4.0])
    scores = rec.topn.fold_in_scores(items, ratings)
    mu, b_i = float(model.global_mean), model.item_bias.numpy().astype(np.float64)
    b_u = (ratings - mu - b_i[items]).sum() / (3 + model.config.user_reg)
    trained = (rec.item_counts > 0) & ~np.isin(np.arange(len(rec.items)), items)
    np.testing.assert_allclose(scores[trained], (mu + b_u + b_i)[trained], rtol=1e-5)
    assert np.all(np.isneginf(scores[items]))


def test_neural_fold_in_fits_the_users_own_parameters(planted) -> None:
    """L-BFGS on a new user's embedding and bias (the rest frozen) recovers a known user's
    score profile from their ratings, and a higher-rated movie set moves the scores up."""
    ds, _ = planted
    cfg = TrainConfig(epochs=15, batch_size=1024, learning_rate=0.01, patience=0)
    rec = Recommender.train(
        "mlp", ds, model_params={"embedding_size": 8, "hidden": [16], "user_reg": 0.001}, train_config=cfg
    )
    before = {k: v.clone() for k, v in rec.model.state_dict().items()}
    corrs = []
    for u in range(0, 40, 4):
        rows = ds.user_index == u
        folded = rec.model.fold_in(torch.as_tensor(ds.item_index[rows]), torch.as_tensor(ds.rating[rows]))
        own = rec.model.score_users(torch.tensor([u]))[0]
        corrs.append(float(np.corrcoef(folded.numpy(), own.numpy())[0, 1]))
    assert np.mean(corrs) > 0.9
    after = rec.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the trained model is untouched
    items = torch.arange(20)
    high = rec.model.fold_in(items, torch.full((20,), float(ds.rating.max())))
    low = rec.model.fold_in(items, torch.full((20,), float(ds.rating.min())))
    assert float(high.mean()) > float(low.mean()) + 0.5
