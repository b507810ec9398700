"""The ordinal (cumulative-logit) output of the neural models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reelrec.data.dataset import Dataset
from reelrec.data.split import make_split
from reelrec.errors import ConfigError
from reelrec.evaluation.protocols import evaluate_ratings
from reelrec.models.registry import build_model
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def test_level_probabilities_are_the_cumulative_logit_model(small) -> None:
    model = build_model("mlp", small.n_users, small.n_items, {"output": "ordinal"}, train=small)
    assert model.config.levels == [1.0, 2.0, 3.0, 4.0, 5.0]
    cuts = np.array([-1.0, 0.0, 0.5, 2.0])
    with torch.no_grad():  # first cut, then the gaps through the inverse softplus
        model.ordinal_cuts.copy_(torch.tensor([-1.0, *np.log(np.expm1(np.diff(cuts)))]))
    torch.testing.assert_close(model.cut_points(), torch.tensor(cuts, dtype=torch.float32))
    s = 0.3
    cdf = [_sigmoid(c - s) for c in cuts]
    expected = np.diff([0.0, *cdf, 1.0])
    probs = model.level_probabilities(torch.tensor([s]))[0]
    torch.testing.assert_close(probs, torch.tensor(expected, dtype=torch.float32))
    expected_rating = float(expected @ np.arange(1, 6))
    assert float(model._to_rating(torch.tensor([s])).detach()[0]) == pytest.approx(expected_rating, abs=1e-5)


def test_cut_points_start_at_the_training_level_frequencies(small) -> None:
    model = build_model("mlp", small.n_users, small.n_items, {"output": "ordinal"}, train=small)
    model.prepare(small)
    share = np.bincount(small.rating.astype(int), minlength=6)[1:] / len(small)
    probs = model.level_probabilities(torch.zeros(1))[0].detach().numpy()
    np.testing.assert_allclose(probs, share, atol=2e-3)
    assert torch.all(torch.diff(model.cut_points()) > 0)


def _item_levels(n_users: int = 30, n_items: int = 20) -> Dataset:
    """Every user gives item ``j`` the level ``j % 5 + 1``: the level is a function of the item."""
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    frame = pd.DataFrame({"user": u.ravel(), "item": i.ravel(), "rating": (i.ravel() % 5 + 1).astype(float)})
    return Dataset.from_frame(frame, name="item-levels")


def test_ordinal_output_learns_levels_and_round_trips(tmp_path) -> None:
    ds = _item_levels()
    split = make_split(ds, "holdout80", seed=0, valid_fraction=None)
    params = {"output": "ordinal", "embedding_size": 4, "hidden": [8]}
    rec = Recommender.train(
        "mlp",
        split.train,
        model_params=params,
        train_config=TrainConfig(epochs=30, batch_size=32, learning_rate=0.01),
        seed=0,
    )
    out = evaluate_ratings(rec, split.test)
    assert out["accuracy"] == 1.0  # the most probable level is each item's level
    assert out["rmse"] < 0.5  # the expected rating is close to it
    rec.save(tmp_path / "run")
    again = Recommender.load(tmp_path / "run")
    u, i = split.test.user_index, split.test.item_index
    np.testing.assert_array_equal(again.predict_levels_indices(u, i), rec.predict_levels_indices(u, i))
    np.testing.assert_allclose(again.predict_indices(u, i), rec.predict_indices(u, i), rtol=1e-6)


def test_hybrid_ordinal_scores_the_catalogue_like_forward(small) -> None:
    params = {"output": "ordinal", "embedding_size": 4, "feature_embedding_size": 4, "hidden": [8]}
    rec = Recommender.train("hybrid", small, model_params=params, train_config=TrainConfig(epochs=2), seed=0)
    model = rec.model
    users = torch.arange(5)
    u = users.repeat_interleave(model.n_items)
    i = torch.arange(model.n_items).repeat(users.shape[0])
    torch.testing.assert_close(model.score_users(users), model(u, i).reshape(5, -1), rtol=1e-5, atol=1e-5)
    assert model.user_bias.weight.requires_grad  # the score has biases, unlike a softmax head


def test_ordinal_refuses_standardize(small) -> None:
    with pytest.raises(ConfigError, match="standardize"):
        build_model(
            "mlp", small.n_users, small.n_items, {"output": "ordinal", "standardize": True}, train=small
        )
