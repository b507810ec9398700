"""New users without retraining: MF fold-in from a handful of ratings."""

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
    with pytest.raises(ReelrecError, match="cannot fold in"):
        Recommender.train("bias", small).recommend_for_ratings({"m1": 4.0})
