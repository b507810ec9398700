from __future__ import annotations

import itertools

import pytest
import torch

from reelrec.data.split import make_split
from reelrec.errors import ConfigError
from reelrec.models import build_model
from reelrec.training import TrainConfig, Trainer, seeded
from reelrec.training.trainer import _as_tensors, validation_rmse


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


def test_every_plan_runs_in_the_one_loop(small) -> None:
    """A closed form is fitted once and scored (no history); ALS's sweeps and MF's gradient
    epochs get the same history, validation, early stopping and on_epoch hook."""
    split = make_split(small, "holdout80", seed=0, valid_fraction=0.2)
    seen: dict[str, list[int]] = {}

    def fit(name: str, cfg: TrainConfig):
        seen[name] = []
        with seeded(0):
            model = build_model(name, split.train.n_users, split.train.n_items, {}, train=split.train)
            hook = Trainer(cfg, device="cpu", on_epoch=lambda epoch, _record: seen[name].append(epoch))
            return model, hook.fit(model, split.train, split.valid)

    bias, result = fit("bias", TrainConfig(epochs=5))
    assert result.history == []
    assert result.best_epoch is None
    assert seen["bias"] == []
    assert result.valid_metric == "valid_rmse"
    assert result.best_valid == pytest.approx(
        validation_rmse(bias, _as_tensors(split.valid, torch.device("cpu")), small.scale)
    )
    als, result = fit("als", TrainConfig(epochs=4, patience=0))
    assert [h["epoch"] for h in result.history] == seen["als"] == [1, 2, 3, 4]
    assert set(result.history[0]) == {"epoch", "train_loss", "valid_rmse", "seconds"}  # no rate
    assert result.best_valid == min(h["valid_rmse"] for h in result.history)
    mf, result = fit("mf", TrainConfig(epochs=3, batch_size=64, patience=0))
    assert seen["mf"] == [1, 2, 3]
    assert set(result.history[0]) == {"epoch", "train_loss", "valid_rmse", "lr", "seconds", "rows_per_s"}
    assert not als.training  # the loop leaves the model in eval mode
    assert not mf.training


class _Recording:
    """A BatchGradient that records which form the loop asked for, and the batch sizes."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def dense(self, users, items, ratings):
        self.calls.append(("dense", int(users.shape[0])))
        return self.inner.dense(users, items, ratings)

    def rows(self, users, items, ratings):
        self.calls.append(("rows", int(users.shape[0])))
        return self.inner.rows(users, items, ratings)


@pytest.mark.parametrize("row_sparse", ["off", "on"])
def test_the_loop_takes_the_declared_gradient_without_probing(small, monkeypatch, row_sparse) -> None:
    """The model's plan says how it trains; the loop never calls the model on a dummy batch to
    find out (every call is a real batch), and takes the closed-form gradient dense or by rows."""
    from reelrec.models.fitting import GradientSteps
    from reelrec.models.mf_kernel import MFGradient
    from reelrec.training import minibatch

    monkeypatch.setattr(minibatch, "ROW_SPARSE_MIN_ROWS", 0)
    with seeded(0):
        model = build_model("mf", small.n_users, small.n_items, {"embedding_size": 4}, train=small)
    recorder = _Recording(MFGradient(model))
    monkeypatch.setattr(model, "fit_plan", lambda train: GradientSteps(gradient=recorder))
    Trainer(TrainConfig(epochs=2, batch_size=100, row_sparse=row_sparse), device="cpu").fit(model, small)
    n = len(small)
    sizes = [min(100, n - s) for s in range(0, n, 100)] * 2
    assert recorder.calls == [("rows" if row_sparse == "on" else "dense", b) for b in sizes]


def test_a_fit_leaves_the_process_generators_alone(small) -> None:
    """The epoch permutations come from the Trainer's own generator, and seeded() restores
    torch's global state: nothing reseeds the process."""
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    with seeded(5):
        inside = torch.rand(3)
        model = build_model("mf", small.n_users, small.n_items, {"embedding_size": 4})
    assert torch.equal(torch.get_rng_state(), state)
    with seeded(5):
        assert torch.equal(torch.rand(3), inside)
    Trainer(TrainConfig(epochs=2, batch_size=64), seed=9, device="cpu").fit(model, small)
    assert torch.equal(torch.get_rng_state(), state)  # MF draws nothing while training


def test_a_plan_is_checked() -> None:
    from reelrec.models.fitting import GradientSteps

    with pytest.raises(ValueError, match="rows and rows_loss"):
        GradientSteps(rows=3)
    with pytest.raises(ValueError, match="for rating triples"):
        GradientSteps(rows=3, rows_loss=lambda rows: rows.sum(), gradient=object())  # type: ignore[arg-type]


def test_options_are_read_from_the_environment_once() -> None:
    from reelrec import options

    env = {
        "REELREC_KERNELS": "Torch",
        "REELREC_NO_CACHE": "yes",
        "REELREC_CACHE_DIR": "/tmp/c",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "REELREC_DATA_HOME": "/data",
    }
    got = options.Options.from_environ(env)
    assert got == options.Options(
        kernels="torch",
        cache=False,
        cache_dir="/tmp/c",
        world_size=4,
        local_rank=1,
        local_world_size=2,
        data_home="/data",
    )
    assert options.Options.from_environ({"REELREC_NO_CACHE": "0", "WORLD_SIZE": "x"}) == options.Options()
    with pytest.raises(AttributeError):
        got.kernels = "auto"  # type: ignore[misc]  # frozen
    first = options.get_options()
    assert options.get_options() is first  # read once
