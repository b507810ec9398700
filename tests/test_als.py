"""ALS: exact ridge half-steps, a monotone objective, recovery of a planted matrix, and the whole
run life cycle (save/load, fold-in, CLI) through MF's shared code."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from conftest import planted_frame, small_frame
from reelrec.cli import main
from reelrec.data.dataset import Dataset
from reelrec.models.als import ALS, ALSConfig, _Side, group_order, ridge_half_step
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig, Trainer


def objective(model: ALS, ds: Dataset) -> float:
    """ALS's training objective computed from its parameters (the module docs' formula) / n."""
    u = torch.as_tensor(ds.user_index)
    i = torch.as_tensor(ds.item_index)
    with torch.no_grad():
        err = model(u, i).double() - torch.as_tensor(ds.rating).double()
        total = float((err**2).sum())
        for table, bias, counts, ratio in (
            (model.user_factors, model.user_bias, ds.user_counts(), 1.0),
            (model.item_factors, model.item_bias, ds.item_counts(), model.config.item_reg_ratio),
        ):
            lam, lam_b = model.penalties(counts, ratio)
            total += float((lam * (table.weight.double() ** 2).sum(1)).sum())
            total += float((lam_b * bias.weight[:, 0].double() ** 2).sum())
    return total / len(ds)


def test_a_half_step_is_every_users_own_ridge_regression() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, k = 7, 9, 3
    pairs = np.array([(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.5])
    pairs = np.vstack([pairs, [[n_users, 0]]])  # one user with a single rating
    users, items = pairs[:, 0], pairs[:, 1]
    n_users += 1
    target = rng.normal(size=len(users))
    q = rng.normal(size=(n_items, k))
    lam = rng.uniform(0.1, 2.0, n_users)
    lam_b = rng.uniform(0.1, 2.0, n_users)
    side = _Side.build(users, items, np.zeros(len(users)), n_users, n_items, torch.device("cpu"))
    order = group_order(users)  # the side's rating order
    w, b, obj = ridge_half_step(
        side,
        torch.as_tensor(q),
        torch.as_tensor(target[order]),
        torch.as_tensor(lam),
        torch.as_tensor(lam_b),
        torch.float64,
    )
    expected_obj = 0.0
    for u in range(n_users):  # the numpy reference: one explicit ridge solve per user
        rows = users == u
        z = np.hstack([q[items[rows]], np.ones((rows.sum(), 1))])
        y = target[rows]
        penalty = np.diag(np.r_[np.full(k, lam[u]), lam_b[u]])
        x = np.linalg.solve(z.T @ z + penalty + 1e-6 * np.eye(k + 1), z.T @ y)
        np.testing.assert_allclose(w[u].numpy(), x[:k], rtol=1e-5, atol=1e-6)
        assert float(b[u]) == pytest.approx(x[k], rel=1e-5, abs=1e-6)
        expected_obj += ((y - z @ x) ** 2).sum() + x @ penalty @ x
    assert obj == pytest.approx(expected_obj, rel=1e-6)


def test_als_recovers_a_planted_low_rank_matrix() -> None:
    frame, floor = planted_frame(n_users=200, n_items=150, rank=4, density=0.4, noise=0.05, seed=3)
    ds = Dataset.from_frame(frame, name="planted")
    train, test = ds.subset(np.arange(len(ds)) % 10 != 0), ds.subset(np.arange(len(ds)) % 10 == 0)
    cfg = {"embedding_size": 4, "reg": 1e-3, "bias_reg": 1e-4, "precision": "float64"}
    model = ALS(ds.n_users, ds.n_items, ALSConfig(**cfg))
    Trainer(TrainConfig(epochs=30), device="cpu").fit(model, train)
    u, i = torch.as_tensor(test.user_index), torch.as_tensor(test.item_index)
    with torch.no_grad():
        rmse = float(torch.sqrt(((model(u, i) - torch.as_tensor(test.rating)) ** 2).mean()))
    # the noise floor is ~0.05: unseen entries come back to within noise
    assert rmse < 1.5 * floor


@pytest.mark.parametrize("start", ["svd", "random"])
def test_more_sweeps_never_increase_the_objective(planted, start) -> None:
    ds, _ = planted
    model = ALS(ds.n_users, ds.n_items, ALSConfig(embedding_size=6, precision="float64", factor_init=start))
    result = Trainer(TrainConfig(epochs=12), device="cpu").fit(model, ds)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 12
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(losses))
    assert losses[-1] < losses[0]
    # the reported objective is the objective of the parameters the sweep left
    assert losses[-1] == pytest.approx(objective(model, ds), rel=1e-6)


def test_early_stopping_and_history_per_sweep(planted) -> None:
    ds, _ = planted
    train, valid = ds.subset(np.arange(len(ds)) % 20 != 0), ds.subset(np.arange(len(ds)) % 20 == 0)
    model = ALS(ds.n_users, ds.n_items, ALSConfig(embedding_size=4))
    cfg = TrainConfig(epochs=30, patience=2, min_delta=0.01)
    result = Trainer(cfg, device="cpu").fit(model, train, valid)
    # sweeps stop improving by 0.01 long before 30: stopped after `patience` stale sweeps
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 30
    assert all({"epoch", "train_loss", "valid_rmse", "seconds"} <= set(h) for h in result.history)
    assert result.best_valid == result.history[result.best_epoch - 1]["valid_rmse"]
    # the best sweep's parameters are restored
    u, i = torch.as_tensor(valid.user_index), torch.as_tensor(valid.item_index)
    with torch.no_grad():
        pred = model(u, i).clamp(ds.scale.low, ds.scale.high)
    rmse = float(torch.sqrt(((pred - torch.as_tensor(valid.rating)) ** 2).mean()))
    assert rmse == pytest.approx(result.best_valid, abs=1e-6)


@pytest.fixture(scope="module")
def als(planted) -> Recommender:
    ds, _ = planted
    return Recommender.train(
        "als", ds, model_params={"embedding_size": 8}, train_config=TrainConfig(epochs=40), seed=0
    )


def test_save_load_round_trip_predicts_identically(als, tmp_path) -> None:
    als.save(str(tmp_path / "run"))
    back = Recommender.load(str(tmp_path / "run"))
    assert type(back.model) is ALS
    assert back.model.config == als.model.config
    users = torch.arange(20)
    assert torch.equal(back.model.score_users(users), als.model.score_users(users))


def test_fold_in_of_a_training_users_ratings_is_their_own_row(als, planted) -> None:
    ds, _ = planted
    for u in (0, 7, 42):
        rows = ds.user_index == u
        folded = als.model.fold_in(torch.as_tensor(ds.item_index[rows]), torch.as_tensor(ds.rating[rows]))
        own = als.model.score_users(torch.tensor([u]))[0]
        # the user's row is the same ridge solve against the item factors of the sweep before
        # the last; after 40 sweeps those have converged
        np.testing.assert_allclose(folded.numpy(), own.numpy(), atol=2e-3)


def test_cli_trains_and_recommends_with_als(tmp_path, capsys) -> None:
    frame = small_frame(n=900).rename(columns={"user": "userId", "item": "movieId"})
    ratings = tmp_path / "ratings.csv"
    frame.to_csv(ratings, index=False)
    run_dir = tmp_path / "run"
    argv = ["train", "--ratings", str(ratings), "--model", "als", "--epochs", "5", "--no-progress"]
    assert main([*argv, "--embedding-size", "4", "--out", str(run_dir), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"] == "als"
    assert 1 <= metrics["epochs"] <= 5
    assert 0 < metrics["test"]["rmse"] < 1.5
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["history"]) == metrics["epochs"]
    assert main(["recommend", str(run_dir), "--user", "100", "-n", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)["items"]
    assert len({r["item_id"] for r in recs}) == 3


def test_group_order_is_a_stable_sort_beyond_16_bits() -> None:
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 200_000, 5000)
    np.testing.assert_array_equal(group_order(rows), np.argsort(rows, kind="stable"))


def test_average_of_fits_predicts_their_exact_mean(planted) -> None:
    ds, _ = planted
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = ALS(ds.n_users, ds.n_items, ALSConfig(embedding_size=4))
        Trainer(TrainConfig(epochs=3), device="cpu").fit(model, ds)
        members.append(model)
    merged = ALS.average(members)
    assert type(merged) is ALS
    assert merged.config.embedding_size == 8
    assert merged.config.members == 2
    u, i = torch.as_tensor(ds.user_index[:500]), torch.as_tensor(ds.item_index[:500])
    with torch.no_grad():
        mean = (members[0](u, i) + members[1](u, i)) / 2
        torch.testing.assert_close(merged(u, i), mean, atol=1e-5, rtol=0)


def test_more_factors_than_movies_falls_back_to_a_random_start(small) -> None:
    model = ALS(small.n_users, small.n_items, ALSConfig(embedding_size=small.n_items + 5))
    result = Trainer(TrainConfig(epochs=3), device="cpu").fit(model, small)
    losses = [h["train_loss"] for h in result.history]
    assert all(np.isfinite(losses))
    assert losses[-1] <= losses[0]


def test_torch_sparse_product_matches_scipy() -> None:
    """The GPU path (torch sparse CSR) computes what the CPU path (scipy) computes."""
    rng = np.random.default_rng(2)
    rows, cols = rng.integers(0, 20, 300), rng.integers(0, 15, 300)
    side = _Side.build(rows, cols, rng.normal(size=300), 20, 15, torch.device("cpu"))
    dense = torch.as_tensor(rng.normal(size=(15, 6)), dtype=torch.float32)
    values = torch.as_tensor(rng.normal(size=300), dtype=torch.float32)
    for vals in (None, values):
        torch.testing.assert_close(side.product(dense, vals, scipy=False), side.product(dense, vals))
    expected = np.zeros((20, 6), dtype=np.float32)
    np.add.at(expected, side.row.numpy(), values.numpy()[:, None] * dense.numpy()[side.col.numpy()])
    np.testing.assert_allclose(side.product(dense, values).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_threaded_blocks_compute_the_same_product() -> None:
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 50, 2000), rng.integers(0, 40, 2000)
    side = _Side.build(rows, cols, rng.normal(size=2000), 50, 40, torch.device("cpu"))
    dense = torch.as_tensor(rng.normal(size=(40, 7)), dtype=torch.float32)
    values = torch.as_tensor(rng.normal(size=2000), dtype=torch.float32)
    single = side.product(dense, values)
    side.workers = 3
    blocks = side.row_blocks()
    assert len(blocks) == 3
    assert blocks[0][0] == 0
    assert blocks[-1][1] == 50
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    torch.testing.assert_close(side.product(dense, values), single)


def test_the_service_serves_an_als_run(als, planted, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from reelrec.service.app import create_app
    from reelrec.service.store import sqlite_url

    ds, _ = planted
    als.save(str(tmp_path / "run"))
    client = TestClient(create_app(str(tmp_path / "run"), sqlite_url(tmp_path / "ratings.sqlite")))
    user = int(ds.users.ids[0])
    got = client.get(f"/users/{user}/recommendations", params={"n": 5})
    assert got.status_code == 200, got.text
    assert got.json()["model"] == "als"
    assert len(got.json()["items"]) == 5
    rows = ds.user_index == 0
    ratings = {
        str(m): float(r) for m, r in zip(ds.items.ids[ds.item_index[rows]], ds.rating[rows], strict=True)
    }
    new = client.post("/recommendations", json={"ratings": ratings, "n": 5})
    assert new.status_code == 200, new.text
    assert new.json()["personalised"]
    # a new user with a known user's ratings is folded in to (nearly) that user's own list
    assert {i["movie_id"] for i in new.json()["items"]} & {i["movie_id"] for i in got.json()["items"]}
    similar = client.get(f"/movies/{int(ds.items.ids[0])}/similar", params={"n": 3})
    assert similar.status_code == 200, similar.text
    assert len(similar.json()) == 3
