"""Real-data tests on the MovieLens copies under REELREC_DATA_HOME (CI: ../shared/data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reelrec import Recommender, load_movielens, load_ratings, make_split
from reelrec.cli import main
from reelrec.evaluation.protocols import evaluate_ratings

pytestmark = pytest.mark.realdata


def test_ml100k_mf_cli_end_to_end(data_home, tmp_path, capsys) -> None:
    run_dir = tmp_path / "ml100k-mf"
    assert (
        main(
            [
                "train",
                "--dataset",
                "ml-100k",
                "--data-home",
                str(data_home),
                "--model",
                "mf",
                "--out",
                str(run_dir),
                "--json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test"]["rmse"] < 0.91  # bias baseline: ~0.935
    assert metrics["test"]["n"] == 10_000
    assert main(["evaluate", str(run_dir), "--data-home", str(data_home), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rmse"] == pytest.approx(metrics["test"]["rmse"])
    assert main(["recommend", str(run_dir), "--user", "196", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert len(items) == 10
    assert all(it["title"] and it["year"] for it in items)
    ds = load_movielens("ml-100k", data_home=data_home)
    seen = set(ds.items.ids[ds.item_index[ds.user_index == ds.users.index(196)[0]]].tolist())
    split = make_split(ds, "holdout90", seed=42)
    test_items = set(
        split.test.items.ids[split.test.item_index[split.test.user_index == ds.users.index(196)[0]]]
    )
    assert not ({it["item_id"] for it in items} & (seen - test_items))
    assert main(["similar", str(run_dir), "--movie", "50", "-n", "5", "--json"]) == 0  # Star Wars
    sims = json.loads(capsys.readouterr().out)["items"]
    assert len(sims) == 5
    assert all(s["item_id"] != 50 for s in sims)


def test_ml100k_u1_split_uses_the_shipped_files(data_home) -> None:
    ds = load_movielens("ml-100k", data_home=data_home)
    split = make_split(ds, "u1", valid_fraction=None)
    assert (len(split.train), len(split.test)) == (80_000, 20_000)
    rec = Recommender.train("bias", split.train)
    assert 0.93 < evaluate_ratings(rec, split.test)["rmse"] < 0.96


@pytest.mark.slow
def test_ml1m_ratings_file_mf_beats_the_bias_baseline(data_home) -> None:
    ds = load_ratings(data_home / "ml-1m-ratings" / "ratings.csv")
    assert (len(ds), ds.n_users, ds.n_items) == (1_000_209, 6040, 3706)
    split = make_split(ds, "holdout90", seed=42)
    bias = evaluate_ratings(Recommender.train("bias", split.train), split.test)["rmse"]
    rec = Recommender.train("mf", split.train, split.valid, seed=42)
    mf = evaluate_ratings(rec, split.test)["rmse"]
    assert bias == pytest.approx(0.9077, abs=0.003)
    assert mf < 0.85
    assert np.isfinite(rec.train_result.best_valid)


def test_ml100k_als_defaults_beat_the_bias_baseline_in_seconds(data_home) -> None:
    ds = load_movielens("ml-100k", data_home=data_home)
    split = make_split(ds, "holdout90", seed=42)
    rec = Recommender.train("als", split.train, split.valid, seed=42, device="cpu")
    assert rec.train_result.seconds < 60  # a few seconds on 2 cores
    assert 1 <= rec.train_result.best_epoch <= 20
    assert rec.model.config.members == 4  # four refits merged
    assert evaluate_ratings(rec, split.test)["rmse"] < 0.91  # bias baseline: ~0.935
