from __future__ import annotations

import itertools

import pytest
import torch

from reelrec.data.split import make_split
from reelrec.errors import ConfigError
from reelrec.models import build_model
from reelrec.training import TrainConfig, Trainer, seeded


def _fit(ds, cfg: TrainConfig, seed: int = 7, valid=None):
    with seeded(seed):
        model = build_model("mf", ds.n_users, ds.n_items, {"embedding_size": 8})
        result = Trainer(cfg, seed=seed, device="cpu").fit(model, ds, valid)
    return model, result


def test_same_seed_same_weights_on_cpu(small) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64)
    a, _ = _fit(small, cfg)
    b, _ = _fit(small, cfg)
    for (ka, va), (_kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    c, _ = _fit(small, cfg, seed=8)
    assert not torch.equal(a.user_factors.weight, c.user_factors.weight)


def test_history_and_early_stopping_restore_the_best_epoch(planted) -> None:
    ds, _ = planted
    split = make_split(ds, "holdout90", seed=0, valid_fraction=0.1)
    # a large learning rate and no regularisation overfit quickly: validation RMSE turns up
    cfg = TrainConfig(epochs=60, batch_size=512, learning_rate=0.05, patience=2)
    with seeded(0):
        model = build_model("mf", ds.n_users, ds.n_items, {"embedding_size": 64, "reg": 0.0, "bias_reg": 0.0})
        result = Trainer(cfg, seed=0, device="cpu").fit(model, split.train, split.valid)
    hist = result.history
    assert {"epoch", "train_loss", "valid_rmse", "seconds", "lr"} <= set(hist[0])
    assert result.stopped_early
    assert len(hist) < 60
    best = min(h["valid_rmse"] for h in hist)
    assert result.best_valid == pytest.approx(best)
    assert hist[-1]["valid_rmse"] > best  # it stopped because validation got worse
    from reelrec.training.trainer import _as_tensors, validation_rmse

    restored = validation_rmse(model, _as_tensors(split.valid, torch.device("cpu")), split.train.scale)
    assert restored == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "adamax", "sgd", "adagrad", "sparse_adam"])
def test_every_optimizer_lowers_the_loss(small, optimizer: str) -> None:
    lr = 0.05 if optimizer in ("sgd", "adagrad") else 0.01
    wd = 0.0 if optimizer == "sparse_adam" else 1e-5
    _, result = _fit(
        small, TrainConfig(epochs=8, batch_size=64, optimizer=optimizer, learning_rate=lr, weight_decay=wd)
    )
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("schedule", ["cosine", "step", "plateau"])
def test_schedules_change_the_learning_rate(small, schedule: str) -> None:
    split = make_split(small, "holdout80", valid_fraction=None)
    cfg = TrainConfig(epochs=6, batch_size=64, lr_schedule=schedule, lr_step=2, patience=0, learning_rate=0.1)
    _, result = _fit(split.train, cfg, valid=split.test)
    lrs = [h["lr"] for h in result.history]
    if schedule != "plateau":
        assert lrs[-1] < lrs[0]
    assert all(b <= a for a, b in itertools.pairwise(lrs))


def test_divergence_is_a_clear_error(small) -> None:
    with pytest.raises(ConfigError, match="diverged"):
        _fit(small, TrainConfig(epochs=5, batch_size=16, optimizer="sgd", learning_rate=10.0, momentum=0.99))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="sparse_adam"):
        TrainConfig(optimizer="sparse_adam", weight_decay=0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=-1)
    with pytest.raises(ConfigError, match="no CUDA"):
        Trainer(device="cuda") if not torch.cuda.is_available() else (_ for _ in ()).throw(
            ConfigError("no CUDA")
        )
