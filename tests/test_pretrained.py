"""Pre-training inside the same fit: MLP and NeuMF start from an MF trained first."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reelrec.data.split import make_split
from reelrec.errors import ConfigError
from reelrec.models import build_model
from reelrec.models.layers import mlp_tower, pass_through
from reelrec.models.registry import make_config
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig, pretrained

FAST = TrainConfig(epochs=2, batch_size=128, learning_rate=1e-3)


@pytest.fixture
def split(small):
    return make_split(small, "holdout80", seed=0, valid_fraction=0.1)


def _started(name: str, values: dict, split) -> tuple[torch.nn.Module, pretrained.Pretraining]:
    pre = pretrained.resolve(name, make_config(name, values), split.train, split.valid, seed=0, device="cpu")
    model = build_model(name, split.train.n_users, split.train.n_items, values, train=split.train)
    model.prepare(split.train)
    model.init_from(pre.sources)
    model.eval()
    return model, pre


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("mlp", {"embedding_size": 8, "hidden": [6, 4], "inputs": "concat_product", "dropout": 0.1}),
        ("neumf", {"gmf_size": 8, "embedding_size": 4, "hidden": [6, 4]}),
    ],
)
def test_networks_start_at_the_pretrained_mf(name, values, split) -> None:
    """Before its first step the network predicts exactly what the MF it starts from predicts."""
    model, pre = _started(name, values, split)
    mf = pre.sources["mf"]
    assert pre.record["mf"]["model"] == "mf"
    assert pre.record["mf"]["embedding_size"] == 8
    assert pre.record["mf"]["valid_rmse"] > 0
    assert pre.record["mf"]["epochs"] >= 1
    u = torch.as_tensor(split.test.user_index, dtype=torch.long)
    i = torch.as_tensor(split.test.item_index, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(model(u, i), mf(u, i), atol=1e-5, rtol=1e-5)


def test_pass_through_needs_a_relu_tower_and_gives_the_sum() -> None:
    tower, width = mlp_tower(9, [5, 3], "relu", 0.0, False)
    head = torch.nn.Linear(width, 1)
    assert pass_through(tower, head, slice(6, 9))
    x = torch.randn(50, 9)
    torch.testing.assert_close(head(tower(x))[:, 0], x[:, 6:9].sum(-1), atol=1e-5, rtol=1e-5)
    tanh, width = mlp_tower(9, [5], "tanh", 0.0, False)
    assert not pass_through(tanh, torch.nn.Linear(width, 1), slice(6, 9))
    narrow, width = mlp_tower(9, [1], "relu", 0.0, False)
    assert not pass_through(narrow, torch.nn.Linear(width, 1), slice(6, 9))


def test_default_mlp_pretrains_inside_train_and_the_run_records_it(split, tmp_path) -> None:
    rec = Recommender.train("mlp", split.train, split.valid, train_config=FAST, seed=0)
    record = rec.train_result.pretraining
    assert record is not None
    assert record["mf"]["model"] == "mf"
    assert rec.train_result.seconds >= record["mf"]["seconds"]  # the MF's time is part of the fit
    rec.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert saved["pretraining"]["mf"]["best_epoch"] == record["mf"]["best_epoch"]
    # same seed, same run
    again = Recommender.train("mlp", split.train, split.valid, train_config=FAST, seed=0)
    users, items = split.test.users.ids[split.test.user_index], split.test.items.ids[split.test.item_index]
    np.testing.assert_allclose(rec.predict(users, items), again.predict(users, items), rtol=1e-6)


def test_pretraining_is_skipped_where_it_cannot_apply_and_refused_when_forced(split) -> None:
    none = Recommender.train(
        "mlp", split.train, split.valid, model_params={"pretrain": "none"}, train_config=FAST
    )
    assert none.train_result.pretraining is None
    softmax = Recommender.train(
        "mlp", split.train, split.valid, model_params={"output": "softmax"}, train_config=FAST
    )
    assert softmax.train_result.pretraining is None  # auto: an MF does not start a softmax head
    gmf = Recommender.train("gmf", split.train, split.valid, train_config=FAST)
    assert gmf.train_result.pretraining is None
    with pytest.raises(ConfigError, match="pretrain='mf' needs output='linear'"):
        make_config("mlp", {"pretrain": "mf", "output": "softmax"})
    with pytest.raises(ConfigError, match="cannot start from pre-trained models"):
        build_model("bias", 3, 3).init_from({"mf": build_model("mf", 3, 3)})


@pytest.mark.parametrize("name", ["mlp", "neumf"])
def test_fine_tuning_that_only_loses_keeps_the_pretrained_start(name, split) -> None:
    """The pre-trained start is epoch 0 of early stopping: when every epoch of fine-tuning is worse
    on the validation part (here a learning rate far too high), the network ends exactly where it
    started, at the MF's predictions (best_epoch 0, no refit of zero epochs)."""
    from reelrec.training.epochs import _as_tensors, validation_rmse

    wild = TrainConfig(epochs=3, batch_size=64, learning_rate=3.0, patience=2, refit=True)
    rec = Recommender.train(name, split.train, split.valid, train_config=wild, seed=0)
    result = rec.train_result
    assert result.best_epoch == 0
    assert result.refit_epochs is None
    assert result.best_valid == pytest.approx(result.pretraining["mf"]["valid_rmse"], abs=1e-5)
    assert all(e["valid_rmse"] > result.best_valid for e in result.history)
    kept = validation_rmse(rec.model, _as_tensors(split.valid, torch.device("cpu")), split.train.scale)
    assert kept == pytest.approx(result.best_valid, abs=1e-6)


def test_fine_tuning_that_improves_keeps_its_best_epoch(split, tmp_path) -> None:
    """From a poor start (a saved MF trained one short epoch) fine-tuning improves on the
    validation part, and the best epoch of fine-tuning is kept, not the start."""
    poor = Recommender.train(
        "mf", split.train, split.valid, train_config=TrainConfig(epochs=1, learning_rate=1e-4), seed=0
    )
    poor.save(tmp_path / "poor")
    gentle = TrainConfig(epochs=4, batch_size=64, learning_rate=1e-2, patience=0)
    rec = Recommender.train(
        "mlp",
        split.train,
        split.valid,
        model_params={"pretrained_mf": str(tmp_path / "poor")},
        train_config=gentle,
        seed=0,
    )
    result = rec.train_result
    assert result.best_epoch >= 1
    assert result.best_valid == pytest.approx(min(e["valid_rmse"] for e in result.history))


def test_the_model_to_pretrain_is_what_the_config_declares(split) -> None:
    """Pre-training trains the model a :class:`Pretrain` names with that model's own recipe (no
    model is built in): an ALS here, as an MLP's start, which its init_from refuses."""
    from reelrec.models.als import ALS
    from reelrec.models.base import Pretrain

    model, record = pretrained.pretrain(
        Pretrain("als", {"embedding_size": 4}), split.train, split.valid, seed=0, device="cpu"
    )
    assert isinstance(model, ALS)
    assert model.config.embedding_size == 4
    assert record["model"] == "als"
    assert record["embedding_size"] == 4
    assert 1 <= record["epochs"] <= ALS.train_defaults(len(split.train))["epochs"]
    declared = build_model("mlp", 3, 3).pretraining(make_config("mlp", {"embedding_size": 6}))
    assert declared == {"mf": Pretrain("mf", {"embedding_size": 6})}


def test_saved_runs_are_read_by_the_loader_handed_down(split, tmp_path) -> None:
    """training/ does no I/O: a config naming a saved run needs the caller's loader, and the run
    it reads must hold the training data's users and movies."""
    from conftest import small_frame
    from reelrec.artifacts import load_state
    from reelrec.data.dataset import Dataset

    mf = Recommender.train("mf", split.train, split.valid, train_config=FAST, seed=0)
    mf.save(tmp_path / "mf")
    values = {"embedding_size": 128, "pretrained_mf": str(tmp_path / "mf")}
    config = make_config("mlp", values)
    with pytest.raises(ConfigError, match="no loader was given"):
        pretrained.resolve("mlp", config, split.train, split.valid, seed=0, device="cpu")
    read: list[str] = []

    def load(path: str):
        read.append(path)
        return load_state(path)

    pre = pretrained.resolve("mlp", config, split.train, split.valid, seed=0, device="cpu", load_run=load)
    assert read == [str(tmp_path / "mf")]
    assert pre.record == {"mf": {"run": str(tmp_path / "mf")}}
    torch.testing.assert_close(pre.sources["mf"].user_factors.weight, mf.model.user_factors.weight)
    other = Dataset.from_frame(small_frame(n_users=30), name="other")  # other users
    with pytest.raises(ConfigError, match="trained on different users or movies"):
        pretrained.resolve("mlp", config, other, None, seed=0, device="cpu", load_run=load_state)
