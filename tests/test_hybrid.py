"""Hybrid model: side features through the network, cold items predicted from their features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reelrec.data.dataset import Dataset
from reelrec.data.features import FeatureSchema, infer_schema
from reelrec.data.split import make_split
from reelrec.errors import ConfigError, DataError
from reelrec.models.hybrid import Hybrid, HybridConfig
from reelrec.models.registry import MODELS, build_model, make_config
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig
from reelrec.training.trainer import predict_indices

GENRES = np.array(["Action", "Comedy", "Drama", "Horror", "Romance", "Western"])
GENRE_EFFECT = np.array([-0.9, 0.5, 1.0, -1.4, 0.3, -0.5])
SMALL_NET = {"embedding_size": 8, "feature_embedding_size": 8, "hidden": [32, 16]}
FAST = TrainConfig(epochs=25, batch_size=256, learning_rate=0.01, patience=0)


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "hybrid", Hybrid)


def genre_data(n_users: int = 150, n_items: int = 120, density: float = 0.35, seed: int = 0) -> Dataset:
    """Ratings driven by the movies' genres (plus user biases and noise), with user/item tables."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(GENRES), n_items)
    second = rng.integers(0, len(GENRES), n_items)
    pair = (rng.random(n_items) < 0.4) & (second != first)
    effect = np.where(pair, (GENRE_EFFECT[first] + GENRE_EFFECT[second]) / 2, GENRE_EFFECT[first])
    effect = effect + rng.normal(0, 0.1, n_items)
    genres = np.where(pair, np.char.add(np.char.add(GENRES[first], "|"), GENRES[second]), GENRES[first])
    user_bias = rng.normal(0, 0.3, n_users)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    rating = np.clip(3.3 + user_bias[u] + effect[i] + rng.normal(0, 0.3, u.shape[0]), 1, 5)
    item_info = pd.DataFrame(
        {
            "title": [f"Movie {k}" for k in range(n_items)],
            "year": pd.array(rng.integers(1950, 2020, n_items), dtype="Int64"),
            "genres": genres,
        },
        index=pd.Index(np.arange(n_items) + 1, name="item"),
    )
    user_info = pd.DataFrame(
        {"gender": rng.choice(["F", "M"], n_users), "age": rng.integers(18, 70, n_users)},
        index=pd.Index(np.arange(n_users) + 1, name="user"),
    )
    frame = pd.DataFrame({"user": u + 1, "item": i + 1, "rating": rating})
    return Dataset.from_frame(frame, name="genres", item_info=item_info, user_info=user_info)


def cold_item_split(ds: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, test) where the test set is every rating of a random ``fraction`` of the items."""
    rng = np.random.default_rng(seed)
    cold = rng.choice(ds.n_items, round(fraction * ds.n_items), replace=False)
    is_test = np.isin(ds.item_index, cold)
    return ds.subset(np.flatnonzero(~is_test)), ds.subset(np.flatnonzero(is_test))


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


@pytest.fixture(scope="module")
def cold_case() -> tuple[Recommender, Dataset, Dataset]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(MODELS, "hybrid", Hybrid)
        train, test = cold_item_split(genre_data())
        rec = Recommender.train("hybrid", train, model_params=SMALL_NET, train_config=FAST, seed=0)
    return rec, train, test


def test_cold_items_are_predicted_from_their_genres(cold_case) -> None:
    rec, train, test = cold_case
    assert (rec.item_counts[test.item_index] == 0).all()
    assert Hybrid.predicts_cold_items
    users = torch.as_tensor(test.user_index)
    items = torch.as_tensor(test.item_index)
    pred = predict_indices(rec.model, users, items).numpy()
    got = _rmse(np.clip(pred, 1, 5), test.rating)
    global_mean = _rmse(np.full(len(test), train.rating.mean()), test.rating)
    fb = rec.fallback  # what a model without features can offer: mu + b_u
    bias_only = _rmse(np.clip(fb.mean + fb.user_bias[test.user_index], 1, 5), test.rating)
    assert got < 0.6 * global_mean, (got, global_mean)
    assert got < 0.7 * bias_only, (got, bias_only)


def test_cold_items_ignore_their_untrained_id_embedding_and_bias(cold_case) -> None:
    rec, _, test = cold_case
    model = rec.model
    cold = int(test.item_index[0])
    warm = int(np.flatnonzero(rec.item_counts > 0)[0])
    users = torch.arange(5)
    before_cold = model(users, torch.full((5,), cold))
    before_warm = model(users, torch.full((5,), warm))
    with torch.no_grad():
        saved = model.item_embedding.weight.clone(), model.item_bias.weight.clone()
        model.item_embedding.weight.add_(1.0)
        model.item_bias.weight.add_(1.0)
        try:
            torch.testing.assert_close(model(users, torch.full((5,), cold)), before_cold)
            assert not torch.allclose(model(users, torch.full((5,), warm)), before_warm)
        finally:
            model.item_embedding.weight.copy_(saved[0])
            model.item_bias.weight.copy_(saved[1])


def test_save_load_gives_identical_predictions(cold_case, tmp_path) -> None:
    rec, train, test = cold_case
    rec.save(tmp_path / "run")
    again = Recommender.load(tmp_path / "run")
    assert isinstance(again.model, Hybrid)
    assert again.model.config.item_schema == rec.model.config.item_schema
    assert again.model.config.user_schema == rec.model.config.user_schema
    both = train.concat(test)
    users = torch.as_tensor(both.user_index)
    items = torch.as_tensor(both.item_index)
    torch.testing.assert_close(
        predict_indices(again.model, users, items), predict_indices(rec.model, users, items), rtol=0, atol=0
    )
    raw_u, raw_i = both.users.ids[both.user_index], both.items.ids[both.item_index]
    np.testing.assert_array_equal(again.predict(raw_u, raw_i), rec.predict(raw_u, raw_i))
    torch.testing.assert_close(again.model.item_vectors(), rec.model.item_vectors(), rtol=0, atol=0)


def test_config_holds_the_fitted_schemas(cold_case) -> None:
    rec, train, _ = cold_case
    cfg = rec.model.config
    assert [f.name for f in cfg.item_schema.features] == ["year", "genres"]
    assert [f.name for f in cfg.user_schema.features] == ["gender", "age"]
    # the schema was fitted on the training items only, and the JSON config rebuilds it exactly
    assert cfg.item_schema == infer_schema(train, "item")
    dumped = cfg.model_dump(mode="json")
    assert make_config("hybrid", dumped) == cfg


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"dot": False},
        {"hidden": []},
        {"output": "softmax"},
        {"output": "sigmoid", "batch_norm": True, "user_features": []},
        {"standardize": True, "bias_init": "zero", "item_features": ["genres"]},
        {"tower_ids": True, "reg_alpha": 1.0},
        {"item_features": [], "dropout": 0.1},  # no features at all: the tower sees the ids
    ],
    ids=["default", "no-dot", "no-hidden", "softmax", "sigmoid-bn", "standardized", "tower-ids", "ids-only"],
)
def test_score_users_agrees_with_forward(small, params) -> None:
    split = make_split(small, "holdout80", seed=0, valid_fraction=None)
    rec = Recommender.train(
        "hybrid",
        split.train,
        model_params={**SMALL_NET, **params},
        train_config=TrainConfig(epochs=2),
        seed=0,
    )
    model = rec.model
    users = torch.arange(6)
    full = model.score_users(users)
    u = users.repeat_interleave(model.n_items)
    i = torch.arange(model.n_items).repeat(users.shape[0])
    torch.testing.assert_close(full, model(u, i).reshape(6, -1), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(model.item_vectors()).all()
    assert model.item_vectors().shape[0] == model.n_items


def test_data_without_user_information_uses_item_features_only(small) -> None:
    model = build_model("hybrid", small.n_users, small.n_items, SMALL_NET, train=small)
    assert len(model.config.user_schema) == 0
    assert [f.name for f in model.config.item_schema.features] == ["year", "genres"]
    model.prepare(small)
    out = model(torch.as_tensor(small.user_index[:7]), torch.as_tensor(small.item_index[:7]))
    assert out.shape == (7,)
    with pytest.raises(DataError, match="small has no user information"):
        build_model("hybrid", small.n_users, small.n_items, {"user_features": ["age"]}, train=small)


def test_missing_side_table_at_prepare_is_a_data_error() -> None:
    ds = genre_data(n_users=20, n_items=15)
    model = build_model("hybrid", ds.n_users, ds.n_items, SMALL_NET, train=ds)
    bare = Dataset.from_frame(ds.to_frame(), name="bare", item_info=ds.item_info)
    with pytest.raises(
        DataError, match=r"uses user features \(gender, age\), but the data has no user table"
    ):
        model.prepare(bare)


def test_items_without_ratings_and_equal_features_get_equal_vectors() -> None:
    ds = genre_data(n_users=40, n_items=30)
    genres = ds.item_info["genres"]
    twins = genres[genres.duplicated(keep=False)].index[:1]
    pair = np.flatnonzero(genres.to_numpy() == genres[twins[0]])[:2]
    train = ds.subset(np.flatnonzero(~np.isin(ds.item_index, pair)))
    model = build_model(
        "hybrid", ds.n_users, ds.n_items, {**SMALL_NET, "item_features": ["genres"]}, train=train
    )
    model.prepare(train)
    vec = model.item_vectors()
    torch.testing.assert_close(vec[pair[0]], vec[pair[1]])
    assert not torch.allclose(vec[pair[0]], vec[int(np.flatnonzero(train.item_counts() > 0)[0])])


def test_feature_requests_and_schema_must_agree() -> None:
    ds = genre_data(n_users=20, n_items=15)
    schema = infer_schema(ds, "user", ["gender"])
    with pytest.raises(ConfigError, match="user_schema does not hold the requested user_features"):
        make_config("hybrid", {"user_features": ["age"], "user_schema": schema.to_json()})
    cfg = make_config("hybrid", {"user_features": ["gender"], "user_schema": schema.to_json()})
    assert isinstance(cfg, HybridConfig)
    assert cfg.user_schema == schema
    values = Hybrid.configure({"user_features": ["age=categorical"], "item_features": []}, ds)
    assert FeatureSchema.from_json(values["user_schema"]).features[0].kind == "categorical"
    assert len(FeatureSchema.from_json(values["item_schema"])) == 0
