"""NeuMF: explicit and implicit objectives, negative sampling, pre-training from saved runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reelrec.artifacts import load_state
from reelrec.data.dataset import Dataset
from reelrec.data.split import make_split
from reelrec.errors import ConfigError
from reelrec.evaluation.protocols import evaluate_ranking, evaluate_ratings
from reelrec.models import build_model
from reelrec.models.registry import make_config
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig, pretrained


def test_negative_sampling_avoids_training_positives(small) -> None:
    model = build_model("neumf", small.n_users, small.n_items, {"objective": "bce"}, train=small)
    model.prepare(small)
    torch.manual_seed(0)
    users = torch.as_tensor(small.user_index[:200])
    neg = model.sample_negatives(users, 8)
    assert neg.shape == (200, 8)
    assert int(neg.min()) >= 0
    assert int(neg.max()) < small.n_items
    keys = set((small.user_index * small.n_items + small.item_index).tolist())
    hits = np.isin((users[:, None] * small.n_items + neg).numpy(), list(keys)).mean()
    density = len(keys) / (small.n_users * small.n_items)
    assert hits < density / 2  # one redraw makes a positive draw rare (density² instead of density)


def clustered() -> Dataset:
    """Users of 5 taste clusters, each mostly interacting with its own cluster's items."""
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 150
    uc, ic = rng.integers(0, 5, n_users), rng.integers(0, 5, n_items)
    p = np.where(uc[:, None] == ic[None, :], 0.3, 0.02)
    u, i = np.nonzero(rng.random((n_users, n_items)) < p)
    frame = pd.DataFrame({"user": u, "item": i, "rating": rng.integers(1, 6, u.shape[0])})
    return Dataset.from_frame(frame.sample(frac=1, random_state=0), name="clustered")


def test_bce_neumf_learns_to_rank_and_predicts_no_ratings() -> None:
    ds = clustered()
    split = make_split(ds, "holdout90", seed=0, valid_fraction=0.05)
    cfg = TrainConfig(epochs=15, batch_size=256, learning_rate=0.01, patience=3)
    rec = Recommender.train(
        "neumf", split.train, split.valid, model_params={"objective": "bce"}, train_config=cfg
    )
    assert rec.train_result.valid_metric == "valid_loss"
    losses = [h["train_loss"] for h in rec.train_result.history]
    assert losses[-1] < losses[0]
    scores = rec.predict(ds.users.ids[:5], ds.items.ids[:5])
    assert np.all((scores >= 0) & (scores <= 1))  # probabilities, not clipped to the rating scale
    with pytest.raises(ConfigError, match="trained for ranking"):
        evaluate_ratings(rec, split.test)
    ranked = evaluate_ranking(rec, split.test, ks=(10,))
    random = Recommender.train("global-mean", split.train)
    assert ranked["recall@10"] > 2 * evaluate_ranking(random, split.test, ks=(10,))["recall@10"]


def test_pretraining_copies_gmf_and_mlp_into_neumf(small, tmp_path) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64)
    gmf = Recommender.train("gmf", small, model_params={"gmf_size": 8}, train_config=cfg)
    mlp = Recommender.train(
        "mlp",
        small,
        model_params={"embedding_size": 6, "hidden": [8, 4], "inputs": "concat"},
        train_config=cfg,
    )
    gmf.save(tmp_path / "gmf")
    mlp.save(tmp_path / "mlp")
    params = {
        "gmf_size": 8,
        "embedding_size": 6,
        "hidden": [8, 4],
        "alpha": 0.3,
        "pretrained_gmf": str(tmp_path / "gmf"),
        "pretrained_mlp": str(tmp_path / "mlp"),
    }

    def started(values: dict) -> torch.nn.Module:
        pre = pretrained.resolve(
            "neumf", make_config("neumf", values), small, None, seed=0, device="cpu", load_run=load_state
        )
        assert set(pre.sources) == {"gmf", "mlp"}  # saved runs replace the MF pre-training
        model = build_model("neumf", small.n_users, small.n_items, values, train=small)
        model.prepare(small)
        model.init_from(pre.sources)
        return model

    model = started(params)
    torch.testing.assert_close(model.item_gmf.weight, gmf.model.item_gmf.weight)
    torch.testing.assert_close(model.user_mlp.weight, mlp.model.user_embedding.weight)
    torch.testing.assert_close(model.tower[0].weight, mlp.model.tower[0].weight)
    torch.testing.assert_close(model.head.weight[:, :8], 0.3 * gmf.model.head.weight)
    bad = dict(params, embedding_size=5)
    with pytest.raises(ConfigError, match="does not fit"):
        started(bad)


def test_softmax_head_predicts_expected_rating_and_levels(small) -> None:
    rec = Recommender.train(
        "mlp", small, model_params={"output": "softmax"}, train_config=TrainConfig(epochs=3)
    )
    assert rec.model.config.levels == [1.0, 2.0, 3.0, 4.0, 5.0]
    u = torch.as_tensor(small.user_index[:50])
    i = torch.as_tensor(small.item_index[:50])
    expected = rec.model(u, i)
    assert torch.all((expected >= 1) & (expected <= 5))
    levels = rec.model.predict_level(u, i)
    assert set(levels.tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    labels = rec.model.level_index(torch.tensor([1.0, 3.0, 5.0]))
    assert labels.tolist() == [0, 2, 4]
