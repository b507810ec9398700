"""I-AutoRec: planted low-rank recovery, persistence, determinism, Trainer row hook, fold-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelrec.data.split import make_split
from reelrec.evaluation.protocols import evaluate_ratings
from reelrec.models import build_model
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig, Trainer, seeded

PARAMS = {"hidden": 32, "reg": 1.0, "input_dropout": 0.0}
CFG = TrainConfig(epochs=60, batch_size=16, learning_rate=0.01, patience=5)


@pytest.fixture(scope="module")
def planted_split(planted):
    ds, floor = planted
    return make_split(ds, "holdout90", seed=0, valid_fraction=0.05), floor


@pytest.fixture(scope="module")
def autorec(planted_split) -> Recommender:
    split, _ = planted_split
    return Recommender.train(
        "autorec", split.train, split.valid, model_params=PARAMS, train_config=CFG, seed=0
    )


def test_learns_a_planted_low_rank_matrix_better_than_the_bias_baseline(autorec, planted_split) -> None:
    split, floor = planted_split
    got = evaluate_ratings(autorec, split.test)["rmse"]
    bias_only = evaluate_ratings(Recommender.train("bias", split.train), split.test)["rmse"]
    assert got < 0.7 * bias_only, (got, bias_only)
    assert got < 4 * floor, (got, floor)
    hist = autorec.train_result.history
    assert hist[0]["train_loss"] > hist[-1]["train_loss"]
    assert autorec.train_result.best_epoch is not None


def test_save_load_round_trip_needs_no_training_matrix(autorec, planted_split, tmp_path) -> None:
    split, _ = planted_split
    autorec.save(tmp_path / "run")
    again = Recommender.load(tmp_path / "run")
    assert again.model.ratings_matrix.numel() == 0  # the training matrix is not part of the run
    users = split.test.users.ids[split.test.user_index]
    items = split.test.items.ids[split.test.item_index]
    np.testing.assert_array_equal(autorec.predict(users, items), again.predict(users, items))
    u = users[0]
    assert [r.item_id for r in autorec.recommend(u, 5)] == [r.item_id for r in again.recommend(u, 5)]
    m = autorec.items.ids[0]
    assert [r.item_id for r in autorec.similar_items(m, 5)] == [r.item_id for r in again.similar_items(m, 5)]


def test_codes_are_the_encoder_of_the_training_rows(autorec) -> None:
    model = autorec.model
    with torch.no_grad():
        expect = torch.sigmoid(model.encoder(model.ratings_matrix))
    torch.testing.assert_close(model.codes, expect)
    users = torch.arange(3)
    torch.testing.assert_close(
        model.score_users(users), model.decoder(model.codes).T[:3], rtol=1e-5, atol=1e-5
    )


def test_same_seed_same_model(small) -> None:
    def fit(seed: int):
        with seeded(seed):
            model = build_model("autorec", small.n_users, small.n_items, {"hidden": 8})
            Trainer(TrainConfig(epochs=3, batch_size=8), seed=seed, device="cpu").fit(model, small)
        return model

    a, b, c = fit(3), fit(3), fit(4)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.codes, c.codes)


def test_triple_models_are_untouched_by_the_row_hook(small) -> None:
    """AutoRec's plan walks its item rows; MF's walks the rating triples."""
    mf = build_model("mf", small.n_users, small.n_items)
    mf.prepare(small)
    assert mf.fit_plan(small).rows is None
    model = build_model("autorec", small.n_users, small.n_items, {"hidden": 8})
    model.prepare(small)
    plan = model.fit_plan(small)
    assert plan.rows == small.n_items
    assert plan.gradient is None  # autograd on rows_loss


def test_fold_in_recovers_a_known_users_scores(autorec, planted_split) -> None:
    split, _ = planted_split
    train = split.train
    model = autorec.model
    corrs, overlaps = [], []
    for u in range(0, 60, 3):
        rows = train.user_index == u
        items = torch.as_tensor(train.item_index[rows])
        folded = model.fold_in(items, torch.as_tensor(train.rating[rows]))
        own = model.score_users(torch.tensor([u]))[0]
        corrs.append(float(np.corrcoef(folded.numpy(), own.numpy())[0, 1]))
        ratings = dict(
            zip(train.items.ids[train.item_index[rows]].tolist(), train.rating[rows].tolist(), strict=True)
        )
        new = autorec.recommend_for_ratings(ratings, n=10)
        known = autorec.recommend(train.users.ids[u], n=10)
        overlaps.append(len({r.item_id for r in new} & {r.item_id for r in known}) / 10)
        assert not {r.item_id for r in new} & set(ratings)
    assert np.mean(corrs) > 0.95, corrs
    assert np.mean(overlaps) >= 0.6, overlaps


def test_default_reg_is_filled_in_from_the_training_size(small) -> None:
    from reelrec.models.autorec import default_reg

    model = build_model("autorec", small.n_users, small.n_items, train=small)
    assert model.config.reg == default_reg(len(small))  # the saved config holds the number
    assert default_reg(100_000) == 100.0
    assert default_reg(900_000) == 300.0
    bare = build_model("autorec", small.n_users, small.n_items, {"hidden": 4})
    bare.prepare(small)
    assert bare.reg == default_reg(len(small))
