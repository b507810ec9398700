"""reelrec tune: validation-only search, the default as trial 0, every trial recorded."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import planted_frame
from reelrec.cli import main
from reelrec.errors import ConfigError
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig
from reelrec.training.trainer import Trainer
from reelrec.tune import load_space

pytest.importorskip("optuna", reason="reelrec tune needs optuna")


def test_tune_records_trials_starts_from_the_default_and_saves_the_best(tmp_path, capsys) -> None:
    frame, _ = planted_frame(n_users=120, n_items=80, density=0.3)
    frame.to_csv(tmp_path / "r.csv", index=False)
    space = tmp_path / "space.toml"
    space.write_text(
        "[model]\nembedding_size = {choices = [8, 128]}\nreg = {low = 0.01, high = 1.0, log = true}\n"
        "[train]\nlearning_rate = {low = 1e-3, high = 2e-2, log = true}\n"
    )
    out = tmp_path / "tuned"
    argv = [
        "tune",
        "--ratings",
        str(tmp_path / "r.csv"),
        "--model",
        "mf",
        "--trials",
        "4",
        "--max-epochs",
        "8",
    ]
    code = main([*argv, "--space", str(space), "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 4
    assert summary["trials"] == 4
    first = json.loads((out / "trials.json").read_text())[0]
    assert first["params"] == {"embedding_size": 128, "reg": 0.2}  # the hand-tuned default is trial 0
    assert first["train"] == {"learning_rate": 0.001}
    assert summary["best_valid"] <= summary["default_valid"]
    best = json.loads((out / "best.json").read_text())
    assert best["value"] == pytest.approx(summary["best_valid"])
    rec = Recommender.load(str(out / "run"))
    assert rec.model.config.embedding_size == best["params"]["embedding_size"]
    assert "test" in json.loads((out / "run" / "metrics.json").read_text())


def test_tune_refuses_bad_spaces_and_existing_output(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    for text, msg in (
        ("[model\n", "not valid TOML"),
        ("[model]\nreg = {low = 1.0, high = 0.1}\n", "low must be below high"),
        ("[model]\nreg = {low = 0.0, high = 1.0, log = true}\n", "log range needs low > 0"),
        ("[optimizer]\nx = 1\n", "unknown table"),
        ("[model]\nreg = {choices = []}\n", "non-empty list"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=msg):
            load_space(bad)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep me")
    code = main(["tune", "--dataset", "ml-100k", "--out", str(tmp_path / "out")])
    assert code == 1
    assert "already holds files" in capsys.readouterr().err
    assert (tmp_path / "out" / "x").read_text() == "keep me"


def test_on_epoch_hook_sees_every_epoch_and_can_stop_training(small) -> None:
    seen = []

    class Stop(Exception):
        pass

    def hook(epoch: int, record: dict) -> None:
        seen.append((epoch, "valid_rmse" in record))
        if epoch == 3:
            raise Stop

    from reelrec.models.registry import build_model

    model = build_model("mf", small.n_users, small.n_items, {"embedding_size": 4}, train=small)
    with pytest.raises(Stop):
        Trainer(TrainConfig(epochs=10, patience=0), on_epoch=hook).fit(model, small, small)
    assert seen == [(1, True), (2, True), (3, True)]


def test_each_trial_trains_the_recipe_of_its_own_settings(small, monkeypatch) -> None:
    """A trial's training defaults follow the trial's config (tuning used to take the default
    config's recipe for every trial): an MLP without pre-training trains from random weights
    with the model's default_train, not the fine-tuning recipe of the pre-trained default."""
    import reelrec.training.refit as refit
    from reelrec.data.split import make_split
    from reelrec.models.mlp import MLP
    from reelrec.tune import tune

    seen: list[dict] = []
    fit_model = refit.fit_model

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return fit_model(*args, **kwargs)

    monkeypatch.setattr(refit, "fit_model", spy)
    split = make_split(small, "holdout80", seed=0, valid_fraction=0.2)
    space = {"model": {"pretrain": "none", "embedding_size": {"choices": [4]}}, "train": {}}
    result = tune(
        "mlp",
        split.train,
        split.valid,
        space=space,
        n_trials=1,
        timeout=None,
        max_epochs=2,
        params={"hidden": [4], "embedding_size": 6},  # the command line's own: every trial keeps them
        train_values={"batch_size": 64},
    )
    assert result.trials[0]["state"] == "complete"
    assert result.trials[0]["params"] == {"pretrain": "none", "embedding_size": 4}  # the suggestions
    assert seen[0]["model_params"] == {"pretrain": "none", "embedding_size": 6, "hidden": [4]}
    cfg = seen[0]["train_config"]
    assert cfg.learning_rate == MLP.default_train.get("learning_rate", TrainConfig().learning_rate)
    assert cfg.learning_rate != MLP.finetune_train["learning_rate"]
    assert (cfg.epochs, cfg.refit, cfg.batch_size) == (2, False, 64)  # the search's caps, the fixed values
