"""The runs layer: one way to train a run, one policy for a run's data that changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import small_frame
from reelrec.cli import main
from reelrec.runs import read_record
from reelrec.service.store import sqlite_url


@pytest.fixture(scope="module")
def leave_last(tmp_path_factory) -> tuple[Path, Path]:
    """An MF run on the leave-last split with the loo-full protocol, and its ratings file."""
    root = tmp_path_factory.mktemp("runs")
    small_frame(n=900).to_csv(root / "ratings.csv", index=False)
    run = root / "mf"
    argv = ["train", "--ratings", str(root / "ratings.csv"), "--protocol", "loo-full", "--epochs", "2"]
    assert main([*argv, "--no-refit", "--no-progress", "--json", "--out", str(run)]) == 0
    return run, root / "ratings.csv"


def test_the_record_reads_what_train_wrote(leave_last) -> None:
    run, ratings = leave_last
    record = read_record(run)
    assert record.protocol == "loo-full"
    assert record.split.spec == "leave-last"
    assert record.split.seed == 42
    assert record.dataset.source["path"] == str(ratings.resolve())
    assert record.model.name == "mf"
    assert record.train["refit"] is False
    config = json.loads((run / "config.json").read_text())
    assert list(record.meta()) == ["dataset", "split", "seed", "protocol", "data"]
    assert record.meta()["dataset"] == config["dataset"]
    # the one data spec: what reloads the run, the policy for repeated pairs, the side tables
    assert config["data"] == {"origin": config["dataset"]["source"], "duplicates": "last", "side": {}}
    assert record.data.origin["path"] == str(ratings.resolve())
    assert "side_data" not in config


def test_retrain_keeps_the_runs_protocol(leave_last, tmp_path, capsys) -> None:
    run, _ = leave_last
    out = tmp_path / "again"
    code = main(
        ["retrain", str(run), "--store", sqlite_url(tmp_path / "s.sqlite"), "--out", str(out), "--json"]
    )
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert read_record(out).protocol == "loo-full"
    old = json.loads((run / "metrics.json").read_text())
    assert printed["test_ranking"]["protocol"] == old["test_ranking"]["protocol"] == "loo-full"


def test_changed_data_is_refused_the_same_way_everywhere(leave_last, tmp_path, capsys) -> None:
    _, ratings = leave_last
    copy = tmp_path / "mf"
    data = tmp_path / "data.csv"
    data.write_text(ratings.read_text())
    argv = ["train", "--ratings", str(data), "--protocol", "loo-full", "--epochs", "1", "--no-refit"]
    assert main([*argv, "--no-progress", "--json", "--out", str(copy)]) == 0
    capsys.readouterr()
    frame = small_frame(n=900)
    frame.loc[0, "rating"] = 1 if frame.loc[0, "rating"] != 1 else 2  # one rating changed
    frame.to_csv(data, index=False)
    commands = [
        ["evaluate", str(copy)],
        ["retrain", str(copy), "--store", sqlite_url(tmp_path / "s.sqlite"), "--out", str(tmp_path / "r")],
        ["blend", str(copy), str(copy), "--out", str(tmp_path / "b")],
    ]
    errors = []
    for command in commands:
        assert main(command) == 1, command
        errors.append(capsys.readouterr().err)
    assert errors[0].count("\n") == 1
    assert str(data.resolve()) in errors[0]
    assert "changed since the run was trained" in errors[0]
    assert errors == [errors[0]] * 3  # one policy, one message
    assert not (tmp_path / "r").exists()
    assert not (tmp_path / "b").exists()


def test_a_reload_with_another_fingerprint_is_refused(leave_last) -> None:
    from reelrec.errors import DataError
    from reelrec.runs import load_run_data

    run, ratings = leave_last
    record = read_record(run)
    assert load_run_data(record).fingerprint() == record.dataset.fingerprint
    record.dataset.fingerprint = "0123456789abcdef"
    with pytest.raises(DataError, match=f"the data at {ratings.resolve()} differs from the data this run"):
        load_run_data(record)


def test_retrain_joins_the_runs_side_data_again(tmp_path, capsys) -> None:
    """A hybrid run trained with a users table retrains with it (retrain used to build an
    argparse.Namespace for the CLI's loader, without the users file's id column)."""
    import pandas as pd

    frame = small_frame(n=600)
    frame.to_csv(tmp_path / "r.csv", index=False)
    users = pd.DataFrame({"uid": range(100, 140), "age": [18 + k % 40 for k in range(40)]})
    users.to_csv(tmp_path / "users.csv", index=False)
    run = tmp_path / "hybrid"
    argv = ["train", "--ratings", str(tmp_path / "r.csv"), "--model", "hybrid", "--epochs", "1"]
    side = ["--users", str(tmp_path / "users.csv"), "--user-id-col", "uid", "--user-features", "age=numeric"]
    assert main([*argv, *side, "--no-progress", "--json", "--out", str(run)]) == 0
    assert read_record(run).side_data == {"users": str(tmp_path / "users.csv"), "user_id_col": "uid"}
    capsys.readouterr()
    out = tmp_path / "again"
    store = sqlite_url(tmp_path / "s.sqlite")
    assert main(["retrain", str(run), "--store", store, "--out", str(out), "--json"]) == 0, (
        capsys.readouterr()
    )
    assert read_record(out).side_data == read_record(run).side_data


@pytest.mark.parametrize("progress", [True, False])
def test_a_movielens_load_shows_a_bar_only_when_asked(progress, monkeypatch) -> None:
    """``--no-progress`` reaches the MovieLens loader too (it drew its bar regardless)."""
    import reelrec.data.movielens as movielens
    from reelrec.runs.source import DataSource, load_dataset

    seen: dict = {}

    def fake(name, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(movielens, "load_movielens", fake)
    with pytest.raises(RuntimeError, match="stop here"):
        load_dataset(DataSource(dataset="ml-100k"), progress=progress)
    assert seen["progress"] is progress


def test_one_recipe_completes_the_config_and_sizes_the_defaults(small) -> None:
    """``recipe``: the settings completed from the data, the model's defaults for that config,
    the caller's values over them; a recorded configuration is used as it was."""
    from reelrec.errors import ConfigError
    from reelrec.models.mf import MatrixFactorization
    from reelrec.models.mlp import MLP
    from reelrec.training import TrainConfig
    from reelrec.training.recipe import recipe

    softmax = recipe("mlp", {"output": "softmax"}, small)
    assert softmax.config.levels == [1.0, 2.0, 3.0, 4.0, 5.0]  # completed from the ratings
    assert softmax.params == {"output": "softmax"}  # as given: each fitted part completes them again
    # the defaults follow the config: a network that starts from an MF fine-tunes
    assert recipe("mlp", {}, small).defaults == MLP.finetune_train
    assert recipe("mlp", {"pretrain": "none"}, small).defaults == MLP.default_train
    assert softmax.train == TrainConfig(**MLP.default_train)
    # and the data's size: ML-1M-sized MF keeps one refit where ML-100K-sized keeps four
    assert recipe("mf", n_ratings=100_000).train.refit_models == 4
    assert recipe("mf", n_ratings=900_000).train.refit_models == 1
    assert recipe("mf", {}, small, overrides={"epochs": 3}).train.epochs == 3
    # a recorded configuration is used as it is: a field it lacks is TrainConfig's, not MF's
    recorded = recipe("mf", {}, small, recorded={"epochs": 3}).train
    assert recorded == TrainConfig(epochs=3)
    assert MatrixFactorization.default_train["refit_models"] != recorded.refit_models
    with pytest.raises(ConfigError, match=r"^epochs: Input should be greater than or equal to 1$"):
        recipe("mf", overrides={"epochs": 0})
    with pytest.raises(ConfigError, match="no setting 'embeding_size'"):
        recipe("mf", {"embeding_size": 3}, small)
    model = recipe("mf", {"embedding_size": 5}, small).build(small)
    assert model.config.embedding_size == 5
    assert (model.n_users, model.n_items) == (
        small.n_users,
        small.n_items,
    )


def test_train_run_without_a_config_trains_the_models_recipe(small, tmp_path) -> None:
    from reelrec.data.split import make_split
    from reelrec.runs.record import RunRecord
    from reelrec.runs.train import train_run
    from reelrec.training.recipe import recipe

    split = make_split(small, "holdout80", seed=0, valid_fraction=0.1)
    params = {"embedding_size": 4, "pretrain": "none", "output": "softmax", "hidden": [4]}
    rec, _ = train_run("mlp", split, RunRecord.new(small), params=params, out=tmp_path / "run")
    assert rec.train_config == recipe("mlp", params, split.train).train
    saved = read_record(tmp_path / "run")
    assert saved.train == rec.train_config.model_dump()
    assert saved.data.origin == small.source
    assert not saved.data.side


def test_the_data_spec_is_one_type_for_every_way_in(tmp_path, monkeypatch) -> None:
    """The command line's options, an experiment's [data] table and a saved run's record are one
    spec (``DataSource``) loaded by one function: the same file gives the same data every way."""
    import argparse

    import pandas as pd

    from reelrec.cli_args import data_source
    from reelrec.errors import DataError
    from reelrec.experiment import DataSpec
    from reelrec.runs.source import DataSource, SideData, load_dataset

    small_frame(n=300).to_csv(tmp_path / "r.csv", index=False)
    users = pd.DataFrame({"uid": range(100, 140), "age": [20 + k for k in range(40)]})
    users.to_csv(tmp_path / "u.csv", index=False)
    args = argparse.Namespace(
        ratings=str(tmp_path / "r.csv"), users=str(tmp_path / "u.csv"), user_id_col="uid"
    )
    from_cli = data_source(args)
    assert from_cli == DataSource(
        ratings=str(tmp_path / "r.csv"), side=SideData(users=str(tmp_path / "u.csv"), user_id_col="uid")
    )
    monkeypatch.setenv("HERE", str(tmp_path))
    from_file = DataSpec(ratings="${HERE}/r.csv", duplicates="mean").source()
    assert from_file.ratings == str(tmp_path / "r.csv")
    assert from_file.duplicates == "mean"
    loaded = load_dataset(from_cli, progress=False)
    again = load_dataset(DataSource.of(loaded, from_cli.side), progress=False)  # a run's record
    assert again.fingerprint() == loaded.fingerprint() == load_dataset(from_file).fingerprint()
    assert again.user_info is not None
    assert list(again.user_info.columns) == list(loaded.user_info.columns)
    with pytest.raises(ValueError, match="give one of dataset, ratings or a recorded origin"):
        DataSource(dataset="ml-100k", ratings="r.csv")
    with pytest.raises(DataError, match="no data given"):
        load_dataset(DataSource())
