"""Ranking protocols (known answers, leakage) and the implicit-feedback ranking models."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from reelrec.data.dataset import Dataset
from reelrec.data.split import make_split
from reelrec.errors import ConfigError
from reelrec.evaluation.protocols import (
    check_protocol,
    evaluate_loo,
    evaluate_protocol,
    evaluate_ranking,
    protocol_split,
    sample_unrated,
)
from reelrec.models import build_model
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig


class TableConfig(ModelConfig):
    pass


class Table(RatingModel):
    """A ranking 'model' whose scores are a fixed table: known answers for the protocols."""

    name: ClassVar[str] = "table"
    config_class: ClassVar[type[ModelConfig]] = TableConfig

    def __init__(self, table: np.ndarray) -> None:
        super().__init__(table.shape[0], table.shape[1], TableConfig())
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return False

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.table[users, items]

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.table[users]


def frame_dataset(pairs: list[tuple[int, int, int]], n_items: int) -> Dataset:
    """(user, item, timestamp) triples; every item 0..n_items-1 is in the vocabulary."""
    u, i, t = map(np.asarray, zip(*pairs, strict=True))
    ds = Dataset.from_frame(pd.DataFrame({"user": u, "item": i, "rating": 4.0, "timestamp": t}), name="t")
    assert ds.n_items == n_items
    return ds


def table_recommender(train: Dataset, table: np.ndarray) -> Recommender:
    return Recommender.from_training(Table(table), train)


# the latest interaction of each user with two or more is the test item
LOO_PAIRS = [
    (0, 0, 1), (0, 1, 2), (0, 2, 9),  # u0 test: item 2
    (1, 2, 1), (1, 4, 9),  # u1 test: item 4
    (2, 0, 1), (2, 3, 2), (2, 5, 9),  # u2 test: item 5 (no training data anywhere)
    (3, 1, 1),  # u3, u4: a single interaction stays in training
    (4, 4, 1),
]  # fmt: skip
LOO_TABLE = np.array(
    [
        [9, 8, 5, 7, 1, 0],  # training items 0, 1 score highest: they must not be ranked
        [0, 0, 9, 3, 3, 1],  # test item 4 ties with item 3: pessimistic rank 2
        [0, 0, 0, 0, 0, 9],  # test item 5 is cold: scored -inf, ranked after every candidate
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
    ],
    dtype=float,
)


def test_loo_full_ranks_against_unseen_items_with_known_answers() -> None:
    ds = frame_dataset(LOO_PAIRS, 6)
    split = make_split(ds, "leave-last", valid_fraction=None)
    assert sorted(zip(split.test.user_index, split.test.item_index, strict=True)) == [(0, 2), (1, 4), (2, 5)]
    rec = table_recommender(split.train, LOO_TABLE)
    out = evaluate_loo(rec, split.test, None, ks=(1, 2))
    ranks = np.array([2, 2, 4])  # u2: candidates 1, 2, 4, 5 (0 and 3 are its training items)
    assert out["hr@1"] == 0.0
    assert out["hr@2"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx((2 / np.log2(3)) / 3)
    assert out["mrr"] == pytest.approx(np.mean(1 / ranks))
    assert out["n_cases"] == 3
    assert out["n_users"] == 3


def test_loo_sampled_negatives_are_never_rated_items() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 150
    pairs = []
    for u in range(n_users):
        items = rng.choice(n_items, 12, replace=False)
        pairs += [(u, int(it), t) for t, it in enumerate(items)]
    # two users who rated every item (so every item has training data)
    pairs += [(n_users, it, it) for it in range(n_items)] + [(n_users + 1, it, -it) for it in range(n_items)]
    ds = frame_dataset(pairs, n_items)
    split = protocol_split(ds, "loo-sampled", valid_fraction=None)
    train_keys = set((split.train.user_index * n_items + split.train.item_index).tolist())
    test_keys = set((split.test.user_index * n_items + split.test.item_index).tolist())
    assert not train_keys & test_keys
    # rated items (train and test) score highest of all, then unrated items; the test item lowest
    # of the rated: if any rated item were a negative or a candidate, the rank would exceed 1
    table = np.zeros((n_users + 2, n_items))
    table[split.train.user_index, split.train.item_index] = 10.0
    table[split.test.user_index, split.test.item_index] = 5.0
    rec = table_recommender(split.train, table)
    out = evaluate_protocol(rec, split.test, "loo-sampled", seed=3)
    assert out["hr@10"] == 1.0
    assert out["mrr"] == 1.0
    # now the test item scores lowest of all: rank 1 + 99 negatives, except for the users who
    # rated every item (no negative left: rank 1)
    rec = table_recommender(split.train, np.where(table == 5.0, -1.0, table))
    out = evaluate_loo(rec, split.test, 99, seed=3, ks=(10,))
    assert out["mrr"] == pytest.approx((n_users / 100 + 2) / (n_users + 2))
    assert out["negatives_per_case"] == pytest.approx(99 * n_users / (n_users + 2))
    again = evaluate_loo(rec, split.test, 99, seed=3, ks=(10,), batch_users=7)
    assert again == out  # the sample does not depend on the batching


def test_sample_unrated_is_uniform_distinct_and_excludes() -> None:
    rng = np.random.default_rng(1)
    rows = np.repeat(np.arange(2000), 3)
    cols = np.tile([0, 5, 9], 2000)
    items, allowed = sample_unrated(rng, 2000, 20, rows, cols, 5)
    assert allowed.all()
    assert not np.isin(items, [0, 5, 9]).any()
    assert all(len(set(r)) == 5 for r in items[:50])
    freq = np.bincount(items.ravel(), minlength=20)[[i for i in range(20) if i not in (0, 5, 9)]]
    expected = 2000 * 5 / 17
    assert np.all(np.abs(freq - expected) < 5 * np.sqrt(expected))
    few, ok = sample_unrated(np.random.default_rng(1), 1, 4, np.array([0, 0]), np.array([1, 2]), 3)
    assert set(few[0][ok[0]].tolist()) == {0, 3}


def test_temporal_full_keeps_cold_test_items_relevant() -> None:
    # u0 trains on 0..7 and tests on its latest 20%: item 8 (warm: u1 rated it) and 9 (cold)
    pairs = [(0, i, i) for i in range(10)] + [(1, 8, 0), (1, 1, 1), (1, 2, 2), (1, 3, 3), (1, 0, 4)]
    ds = frame_dataset(pairs, 10)
    split = protocol_split(ds, "temporal-full", valid_fraction=None)
    assert sorted(zip(split.test.user_index, split.test.item_index, strict=True)) == [(0, 8), (0, 9), (1, 0)]
    table = np.tile(np.arange(10, dtype=float)[::-1], (2, 1))  # item 0 best ... item 9 worst
    rec = table_recommender(split.train, table)
    out = evaluate_protocol(rec, split.test, "temporal-full")
    # u0: candidates 8, 9 (cold, never listed) -> top list [8]; u1: candidates 0, 4..7, 9 -> [0, 4, ...]
    assert out["hr@10"] == 1.0
    assert out["recall@10"] == pytest.approx((1 / 2 + 1) / 2)  # the cold item stays in the denominator
    assert out["precision@10"] == pytest.approx(0.1)
    assert out["n_relevant"] == 3
    dropped = evaluate_ranking(rec, split.test, ks=(10,))  # the older behaviour drops it
    assert dropped["recall@10"] == 1.0


def test_protocols_refuse_a_model_trained_on_another_split() -> None:
    assert check_protocol("loo-full", "leave-last") == "loo-full"
    with pytest.raises(ConfigError, match="needs a model trained on the temporal split"):
        check_protocol("temporal-full", "holdout90")
    with pytest.raises(ConfigError, match="unknown protocol"):
        check_protocol("loo")


# ---------------------------------------------------------------------------- models


def implicit_data() -> Dataset:
    """Users of 4 taste clusters, each mostly interacting with its own cluster's items."""
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 80
    uc, ic = rng.integers(0, 4, n_users), rng.integers(0, 4, n_items)
    pop = rng.random(n_items) ** 2
    p = np.where(uc[:, None] == ic[None, :], 0.35, 0.03) * (0.4 + pop[None, :])
    u, i = np.nonzero(rng.random((n_users, n_items)) < p)
    t = rng.integers(0, 10**6, u.shape[0])
    frame = pd.DataFrame({"user": u, "item": i, "rating": 4.0, "timestamp": t})
    return Dataset.from_frame(frame, name="clusters")


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_ease_matches_the_closed_form(dropout: float) -> None:
    ds = implicit_data()
    model = build_model("ease", ds.n_users, ds.n_items, {"reg": 7.0, "dropout": dropout}, train=ds)
    model.fit_closed_form(ds)
    x = np.zeros((ds.n_users, ds.n_items))
    x[ds.user_index, ds.item_index] = 1.0
    active = x.sum(0) > 0
    xa = x[:, active]
    lam = 7.0 + dropout / (1 - dropout) * np.diag(xa.T @ xa)  # DLAE: item-dependent L2 weight
    p = np.linalg.inv(xa.T @ xa + np.diag(lam))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.weights.numpy(), b, atol=1e-5)
    scores = model.score_users(torch.arange(ds.n_users)).numpy()
    np.testing.assert_allclose(scores[:, active], xa @ b, atol=1e-4)
    # stationarity of the constrained least squares: (XᵀX + λI) B - XᵀX is diagonal
    g = xa.T @ xa
    resid = (g + np.diag(lam)) @ b - g
    np.testing.assert_allclose(resid - np.diag(np.diag(resid)), 0.0, atol=1e-6)


def test_itemknn_keeps_the_top_shrunk_cosine_neighbours() -> None:
    ds = implicit_data()
    k, shrink = 5, 3.0
    model = build_model("itemknn", ds.n_users, ds.n_items, {"neighbours": k, "shrink": shrink}, train=ds)
    model.fit_closed_form(ds)
    x = np.zeros((ds.n_users, ds.n_items))
    x[ds.user_index, ds.item_index] = 1.0
    n = np.sqrt(x.sum(0))
    sims = (x.T @ x) / (n[:, None] * n[None, :] + shrink)
    np.fill_diagonal(sims, 0.0)
    expected = -np.sort(-sims, axis=1)[:, :k]
    np.testing.assert_allclose(model.neighbour_sims.numpy(), expected, atol=1e-5)
    pruned = np.zeros_like(sims)
    np.put_along_axis(pruned, model.neighbour_items.numpy(), model.neighbour_sims.numpy().astype(float), 1)
    scores = model.score_users(torch.arange(ds.n_users)).numpy()
    np.testing.assert_allclose(scores, x @ pruned, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ease", {"reg": 20.0}),
        ("itemknn", {"neighbours": 20}),
        ("bpr", {"embedding_size": 8}),
        ("bpr", {"embedding_size": 8, "loss": "bce"}),
        ("bpr", {"embedding_size": 8, "loss": "softmax", "negatives": 8}),
        ("seqlinear", {"set_reg": 20.0}),
    ],
)  # fmt: skip
def test_ranking_models_beat_popularity_under_temporal_full(name: str, params: dict) -> None:
    ds = implicit_data()
    split = protocol_split(ds, "temporal-full", valid_fraction=0.1)
    cfg = TrainConfig(epochs=60, batch_size=256, learning_rate=0.01, patience=5, refit=True)
    rec = Recommender.train(name, split.train, split.valid, model_params=params, train_config=cfg)
    assert not rec.model.predicts_ratings
    assert rec.train_result.valid_metric == "valid_loss"
    assert rec.user_counts.sum() == len(split.train) + len(split.valid)  # refit on train + valid
    got = evaluate_protocol(rec, split.test, "temporal-full")
    pop = evaluate_protocol(
        Recommender.train("popularity", split.train, split.valid), split.test, "temporal-full"
    )
    assert got["ndcg@10"] > 1.3 * pop["ndcg@10"], (got["ndcg@10"], pop["ndcg@10"])
    assert got["popularity_share@10"] < pop["popularity_share@10"]


def test_history_models_never_see_the_test_interactions() -> None:
    ds = implicit_data()
    split = protocol_split(ds, "loo-full", valid_fraction=None)
    rec = Recommender.train("ease", split.train)
    model = rec.model
    keys = set(model.training_keys().tolist())
    assert len(keys) == model.config.n_history == len(split.train)
    test_keys = set((split.test.user_index * ds.n_items + split.test.item_index).tolist())
    assert not keys & test_keys


# --------------------------------------------------------------------------- seqlinear


def cycle_data(timestamps: bool = True, seed: int = 0) -> Dataset:
    """Users walk the cycle 0 -> 1 -> ... -> 11 -> 0 from random starts for 3..8 steps.

    Rows are shuffled when there are timestamps (the model must order by time), and kept in
    time order without them (file order is the only order)."""
    rng = np.random.default_rng(seed)
    m, rows = 12, []
    for u in range(60):
        start, length = rng.integers(0, m), rng.integers(3, 9)
        rows += [(u, (start + s) % m, 1000 * u + s) for s in range(length)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).assign(rating=4.0)
    frame = frame.sample(frac=1.0, random_state=seed) if timestamps else frame.drop(columns="timestamp")
    return Dataset.from_frame(frame, name="cycle")


@pytest.mark.parametrize("timestamps", [True, False])
def test_seqlinear_transition_predicts_the_next_step_of_a_cycle(timestamps: bool) -> None:
    ds = cycle_data(timestamps)
    rec = Recommender.train("seqlinear", ds, model_params={"alpha": 1.0, "reg": 1.0})
    users = np.arange(ds.n_users)
    top, _ = rec.top_n_indices(users, 1)
    item_ids = ds.items.ids.astype(int)
    frame = pd.DataFrame({"u": ds.user_index, "i": item_ids[ds.item_index]})
    if timestamps:
        frame["t"] = ds.timestamp
        frame = frame.sort_values(["u", "t"], kind="stable")
    last = frame.groupby("u")["i"].last().to_numpy()
    np.testing.assert_array_equal(item_ids[top[:, 0]], (last + 1) % 12)


def test_seqlinear_transition_is_the_ridge_solution() -> None:
    ds = cycle_data(seed=3)
    params = {"reg": 2.0, "window": 3, "targets": 2, "tau": 1.5}
    model = build_model("seqlinear", ds.n_users, ds.n_items, params, train=ds)
    model.fit_closed_form(ds)
    # reference: one row per interaction with a predecessor, built with plain loops
    p_rows, q_rows = [], []
    order = np.lexsort((ds.timestamp, ds.user_index))
    for u in range(ds.n_users):
        seq = ds.item_index[order][ds.user_index[order] == u]
        for t in range(1, len(seq)):
            p, q = np.zeros(ds.n_items), np.zeros(ds.n_items)
            for lag in range(1, min(3, t) + 1):
                p[seq[t - lag]] += np.exp(-(lag - 1) / 1.5)
            for d in range(2):
                if t + d < len(seq):
                    q[seq[t + d]] += np.exp(-d / 1.5)
            p_rows.append(p)
            q_rows.append(q)
    p, q = np.array(p_rows), np.array(q_rows)
    expected = np.linalg.solve(p.T @ p + 2.0 * np.eye(ds.n_items), p.T @ q)
    assert (model.item_pos.numpy() == np.arange(ds.n_items)).all()  # every item has training data
    np.testing.assert_allclose(model.transition.numpy(), expected, atol=1e-5)


def test_seqlinear_set_part_is_ease_on_equal_weights() -> None:
    ds = implicit_data()
    params = {"alpha": 0.0, "set_reg": 9.0, "set_tau": 1e12, "set_base": 0.0}
    seq = build_model("seqlinear", ds.n_users, ds.n_items, params, train=ds)
    seq.fit_closed_form(ds)
    ease = build_model("ease", ds.n_users, ds.n_items, {"reg": 9.0}, train=ds)
    ease.fit_closed_form(ds)
    np.testing.assert_allclose(seq.set_weights.numpy(), ease.weights.numpy(), atol=1e-6)
    users = torch.arange(ds.n_users)
    active = (ease.item_pos >= 0).numpy()
    e = ease.score_users(users).numpy()[:, active]
    z = (e - e.mean(1, keepdims=True)) / e.std(1, keepdims=True)
    np.testing.assert_allclose(seq.score_users(users).numpy()[:, active], z, atol=1e-4)
    # items without training data rank below every item with some
    got = seq.score_users(users).numpy()
    if (~active).any():
        assert (got[:, ~active].max(1) < got[:, active].min(1)).all()


def test_seqlinear_fold_in_of_a_known_history_gives_the_users_own_scores() -> None:
    ds = cycle_data(seed=5)
    rec = Recommender.train("seqlinear", ds)
    model = rec.model
    order = np.lexsort((ds.timestamp, ds.user_index))
    for u in range(0, ds.n_users, 7):
        seq = ds.item_index[order][ds.user_index[order] == u]
        own = model.score_users(torch.tensor([u]))[0]
        items = torch.as_tensor(seq)
        got = model.fold_in(items, torch.full((len(seq),), 4.0))
        torch.testing.assert_close(got, own, atol=1e-5, rtol=0)
        # an item rated again counts once, at its latest position
        again = torch.cat([items[-1:], items])
        got = model.fold_in(again, torch.full((len(seq) + 1,), 4.0))
        torch.testing.assert_close(got, own, atol=1e-5, rtol=0)
    # the order matters: the same items in reverse give other scores
    seq = ds.item_index[order][ds.user_index[order] == 0]
    fwd = model.fold_in(torch.as_tensor(seq), torch.ones(len(seq)))
    rev = model.fold_in(torch.as_tensor(seq[::-1].copy()), torch.ones(len(seq)))
    assert not torch.allclose(fwd, rev)
