"""Row-sparse training: only the rows a batch touches move, and the result matches the rules."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from reelrec.data.split import make_split
from reelrec.models import build_model
from reelrec.models.base import coalesce_rows
from reelrec.training import TrainConfig, Trainer, seeded
from reelrec.training.rows import RowAdam, RowSGD
from reelrec.training.trainer import _as_tensors, validation_rmse


def test_coalesce_rows_sums_repeated_indices() -> None:
    rows, summed = coalesce_rows(torch.tensor([3, 1, 3, 0]), torch.tensor([[1.0], [2.0], [10.0], [5.0]]))
    assert rows.tolist() == [0, 1, 3]
    assert summed[:, 0].tolist() == [5.0, 2.0, 11.0]


def test_row_adam_matches_torch_sparse_adam() -> None:
    """RowAdam is lazy Adam: step for step the same table as torch.optim.SparseAdam."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(20, 4, generator=gen)
    a, b = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    ours, ref = RowAdam([a], lr=0.05), torch.optim.SparseAdam([b], lr=0.05)
    for _ in range(12):
        idx = torch.randint(0, 20, (6,), generator=gen)
        grad = torch.randn(6, 4, generator=gen)
        rows, summed = coalesce_rows(idx, grad)
        ours.set_rows([(a, rows, summed)])
        ours.step()
        b.grad = torch.sparse_coo_tensor(idx[None], grad, (20, 4), check_invariants=True)
        ref.step()
        ref.zero_grad()
    assert torch.allclose(a, b, atol=1e-6)


def test_row_sgd_moves_only_the_given_rows() -> None:
    p = nn.Parameter(torch.ones(5, 2))
    opt = RowSGD([p], lr=0.5)
    opt.set_rows([(p, torch.tensor([1, 3]), torch.tensor([[2.0, 2.0], [4.0, 0.0]]))])
    opt.step()
    assert p.detach().tolist() == [[1, 1], [0, 0], [1, 1], [-1, 1], [1, 1]]


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_mf_row_gradients_equal_its_dense_gradients(small, backend: str) -> None:
    """MF's one gradient interface: the compiled kernel and torch ops give the same dense
    gradient, and its rows form is that gradient on the batch's rows (zero elsewhere)."""
    from reelrec.models import mf_kernel

    with seeded(0):
        model = build_model("mf", small.n_users, small.n_items, {"embedding_size": 6}, train=small)
    model.prepare(small)
    gradient = mf_kernel.MFGradient.for_model(model)
    assert gradient.kernel is not None  # numba is a dependency: the CPU takes the kernel
    if backend == "torch":
        gradient = mf_kernel.MFGradient(model)
    u, i, r = _as_tensors(small, torch.device("cpu"))
    dense_loss = gradient.dense(u, i, r)
    dense = {id(p): p.grad.clone() for p in model.parameters() if p.grad is not None}
    loss, rows = gradient.rows(u, i, r)
    assert float(loss) == pytest.approx(float(dense_loss))
    assert len(rows) == len(dense)
    for param, index, grad in rows:
        expect = dense[id(param)]
        assert torch.allclose(expect[index], grad, atol=1e-7)
        untouched = torch.ones(param.shape[0], dtype=torch.bool)
        untouched[index] = False
        assert not expect[untouched].any()  # rows outside the batch have no gradient


@pytest.mark.parametrize("model_name", ["mf", "mlp", "neumf"])
def test_row_sparse_training_leaves_unseen_rows_alone_and_learns(planted, model_name: str) -> None:
    """With ``row_sparse="on"`` a table row no training rating touches keeps its initial value,
    and the model still learns (validation RMSE well under the first epoch's)."""
    ds, _ = planted
    split = make_split(ds, "holdout90", seed=0, valid_fraction=0.1)
    unseen = [0, 1, 2]  # users whose ratings are all dropped from training (vocabulary kept)
    train = split.train.subset(
        torch.isin(torch.as_tensor(split.train.user_index), torch.tensor(unseen))
        .logical_not()
        .numpy()
        .nonzero()[0]
    )
    params: dict = {"mf": {"embedding_size": 8}, "neumf": {}}.get(model_name, {})
    if model_name == "mlp":  # a network from random weights (not the pre-trained default recipe)
        params = {
            "embedding_size": 8,
            "inputs": "concat",
            "hidden": [16, 8],
            "user_reg": 0.0,
            "item_reg": 0.0,
        }
    # 6 epochs: at 4 the MLP from random weights had gained under 0.01 for some seeds (dropout's
    # draws), at 6 every seed tried (0-5, both dropout masks) had gained 0.069 or more
    cfg = TrainConfig(epochs=6, batch_size=512, learning_rate=1e-2, row_sparse="on", patience=0)
    with seeded(0):  # the initialisation and the dropout masks
        model = build_model(model_name, train.n_users, train.n_items, params, train=train)
        tables = [
            m
            for m in model.modules()
            if isinstance(m, nn.Embedding) and m.num_embeddings == train.n_users and m.embedding_dim > 1
        ]
        assert tables
        before = [t.weight.detach()[unseen].clone() for t in tables]
        result = Trainer(cfg, seed=0, device="cpu").fit(model, train, split.valid)
    for table, old in zip(tables, before, strict=True):
        assert torch.equal(table.weight.detach()[unseen], old)  # never in a batch: never moved
        assert not table.sparse  # the saved model is an ordinary module
    hist = [h["valid_rmse"] for h in result.history]
    assert min(hist) < hist[0] - 0.01


def test_auto_steps_dense_for_small_tables_and_by_rows_for_large(planted, monkeypatch) -> None:
    """The stepping mode follows from the config, the data's size and the model's declared plan
    (its closed-form gradient or autograd), without calling the model."""
    from reelrec.training import minibatch

    ds, _ = planted
    model = build_model("mf", ds.n_users, ds.n_items, {"embedding_size": 4}, train=ds)
    model.prepare(ds)
    plan = model.fit_plan(ds)

    def mode(model, plan, **cfg) -> str:
        return minibatch.row_mode(TrainConfig(**cfg), plan, model, ds)

    # small catalogues (ML-1M and below) keep the dense steps their figures were measured with
    assert mode(model, plan, batch_size=8) == "dense"
    monkeypatch.setattr(minibatch, "ROW_SPARSE_MIN_ROWS", 0)
    assert mode(model, plan, batch_size=ds.n_users + ds.n_items) == "dense"
    assert mode(model, plan, batch_size=8) == "model"
    assert mode(model, plan, batch_size=8, row_sparse="off") == "dense"
    assert mode(model, plan, batch_size=8, optimizer="adamw") == "dense"
    mlp = build_model("mlp", ds.n_users, ds.n_items, {"embedding_size": 4}, train=ds)
    mlp.prepare(ds)
    assert mode(mlp, mlp.fit_plan(ds), batch_size=8) == "autograd"
    autorec = build_model("autorec", ds.n_users, ds.n_items, {"hidden": 4}, train=ds)
    autorec.prepare(ds)
    assert mode(autorec, autorec.fit_plan(ds), batch_size=8) == "dense"  # its own rows: dense steps


def test_row_sparse_mf_reaches_the_dense_accuracy(planted) -> None:
    ds, _ = planted
    split = make_split(ds, "holdout90", seed=0, valid_fraction=0.1)
    scores = {}
    for mode in ("off", "on"):
        cfg = TrainConfig(epochs=12, batch_size=1024, learning_rate=2e-2, row_sparse=mode)
        with seeded(0):
            model = build_model("mf", ds.n_users, ds.n_items, {"embedding_size": 16}, train=split.train)
            Trainer(cfg, seed=0, device="cpu").fit(model, split.train, split.valid)
        scores[mode] = validation_rmse(model, _as_tensors(split.test, torch.device("cpu")), ds.scale)
    assert scores["on"] == pytest.approx(scores["off"], abs=0.02)


def test_models_refuse_data_they_cannot_train_on_in_one_line(planted, monkeypatch) -> None:
    """A model whose estimate exceeds the memory available (or its own limit) refuses before any
    allocation, naming the limit and the way around it."""
    from reelrec.errors import ConfigError
    from reelrec.models import itemknn, registry

    ds, _ = planted
    monkeypatch.setattr(registry, "available_memory", lambda: 1 << 10)  # 1 KiB left
    for name in ("ease", "seqlinear", "autorec"):
        with pytest.raises(ConfigError, match=r"needs about .* GiB .* is available\. Use ") as err:
            build_model(name, ds.n_users, ds.n_items, {}, train=ds)
        assert "\n" not in str(err.value)
    build_model("mf", ds.n_users, ds.n_items, {}, train=ds)  # a few small tables: no refusal
    monkeypatch.setattr(itemknn, "MAX_KNN_WORK", 1000)
    with pytest.raises(ConfigError, match=r"itemknn counts co-occurrences .* Use bpr or mf"):
        build_model("itemknn", ds.n_users, ds.n_items, {}, train=ds)


def test_mf_defaults_switch_to_the_large_data_recipe() -> None:
    from reelrec.models.mf import LARGE_DATA, MID_DATA, MatrixFactorization

    assert MatrixFactorization.train_defaults(100_000) == MatrixFactorization.default_train  # ML-100K
    assert MatrixFactorization.default_train["refit_models"] == 4
    small = MatrixFactorization.train_defaults(900_000)  # ML-1M: one refit + the validated model
    assert MID_DATA < 900_000
    assert small == {**MatrixFactorization.default_train, "refit_models": 1, "average_validated": True}
    from reelrec.models.als import ALS
    from reelrec.models.bpr import BPR

    assert ALS.train_defaults(900_000)["refit_models"] == 4  # sweeps are cheap: ALS keeps four
    assert BPR.train_defaults(900_000) == BPR.default_train
    bpr_large = BPR.train_defaults(LARGE_DATA + 1)
    assert bpr_large["refit"] is False
    assert bpr_large["epochs"] <= 20
    assert bpr_large["batch_size"] > BPR.default_train["batch_size"]
    large = MatrixFactorization.train_defaults(LARGE_DATA + 1)
    assert large["refit"] is False
    assert large["refit_models"] == 1
    assert large["batch_size"] > small["batch_size"]
    assert TrainConfig(**large).row_sparse == "auto"


@pytest.mark.parametrize("name", ["mlp", "neumf", "gmf", "hybrid"])
def test_the_networks_switch_to_the_large_data_recipe(name) -> None:
    """Past 2M training ratings a network trains at most 10 epochs of 16,384-rating batches with no
    refit (its small-data recipe, 20-40 epochs of small batches plus a refit, takes hours on ML-25M),
    its learning rate scaled by the square root of the batch's growth."""
    import math

    from reelrec.models import neural
    from reelrec.models.registry import model_class

    cls = model_class(name)
    small = cls.train_defaults(900_000)
    assert small == cls.train_defaults(None)  # ML-1M keeps the recipe its figures were measured with
    large = cls.train_defaults(neural.LARGE_DATA + 1)
    assert large["refit"] is False
    assert large["batch_size"] == 16_384
    assert large["epochs"] <= 10
    assert large["patience"] == 2
    old_batch = small.get("batch_size", TrainConfig().batch_size)
    old_lr = small.get("learning_rate", TrainConfig().learning_rate)
    assert large["learning_rate"] == pytest.approx(old_lr * math.sqrt(16_384 / old_batch))
    TrainConfig(**large)  # a valid training configuration


def test_the_networks_know_the_trainers_defaults() -> None:
    """models/ does not import the training package, so the networks restate two TrainConfig
    defaults for their large-data recipe: they must agree."""
    from reelrec.models import neural

    assert TrainConfig().batch_size == neural.TRAIN_BATCH_SIZE
    assert TrainConfig().learning_rate == neural.TRAIN_LEARNING_RATE


def test_auto_threads_takes_the_idle_cores(monkeypatch) -> None:
    from reelrec import threads

    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_now", lambda: 3.0)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (6.0, 0.0, 0.0))  # lags: not used
    assert threads.auto_threads() == 5
    monkeypatch.setattr(threads, "busy_now", lambda: 30.0)
    assert threads.auto_threads() == 1
    monkeypatch.setattr(threads, "busy_now", lambda: None)  # no run queue: the load average
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert threads.auto_threads() == 5


def test_busy_now_counts_a_spinning_process_and_not_itself() -> None:
    import subprocess
    import sys

    from reelrec import threads

    idle = threads.busy_now()
    assert idle is not None
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert threads.busy_now() >= 1.0  # the spinning process is running now
    finally:
        spin.kill()
        spin.wait()
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(3) == 3
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_train_refuses_before_the_split_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    """`reelrec train` checks the model against the whole dataset's shape before splitting, so a
    model that cannot train at this size refuses at once; the split is never made."""
    from conftest import small_frame
    from reelrec import cli
    from reelrec.models import registry

    path = tmp_path / "ratings.csv"
    small_frame().to_csv(path, index=False)
    monkeypatch.setattr(registry, "available_memory", lambda: 1 << 10)

    def no_split(*_args, **_kwargs):
        raise AssertionError("the split must not be made")

    monkeypatch.setattr("reelrec.data.split.make_split", no_split)
    code = cli.main(["train", "--ratings", str(path), "--model", "ease", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "ease needs about" in err
    assert not (tmp_path / "run").exists()


def test_default_catalogue_scoring_works_in_bounded_pieces(planted, monkeypatch) -> None:
    """The cartesian-product scorer feeds forward at most SCORE_PAIRS pairs at a time and gives
    the same scores as one whole pass (an ML-25M evaluation of an MLP was killed for memory)."""
    from reelrec.models import base

    ds, _ = planted
    # NeuMF with its MLP branch scores pairs through forward (the MLP splits its first layer)
    values = {"embedding_size": 4, "gmf_size": 4, "branches": "both"}
    with seeded(0):
        model = build_model("neumf", ds.n_users, ds.n_items, values, train=ds).eval()
    users = torch.arange(7)
    whole = model.score_users(users)
    seen: list[int] = []
    forward = type(model).forward

    def counting(self, u, i):
        seen.append(int(u.shape[0]))
        return forward(self, u, i)

    monkeypatch.setattr(base, "SCORE_PAIRS", 50)  # fewer pairs than one user's catalogue
    monkeypatch.setattr(type(model), "forward", counting)
    pieces = model.score_users(users)
    assert max(seen) <= 50
    assert torch.allclose(pieces, whole, atol=1e-6)


def test_rating_runs_of_networks_skip_full_ranking_past_the_pair_limit(tmp_path, monkeypatch) -> None:
    import json as _json

    from conftest import small_frame
    from reelrec import cli

    path = tmp_path / "ratings.csv"
    small_frame().to_csv(path, index=False)
    monkeypatch.setattr("reelrec.runs.train.AUTO_RANKING_PAIRS", 10)
    for model, ranked in (("mlp", False), ("mf", True)):
        out = tmp_path / model
        args = ["train", "--ratings", str(path), "--model", model, "--epochs", "2", "--no-refit"]
        assert cli.main([*args, "--out", str(out)]) == 0
        metrics = _json.loads((out / "metrics.json").read_text())
        assert ("test_ranking" in metrics) is ranked  # MF ranks by one matrix product: kept
        assert "rmse" in metrics["test"]


def test_fused_adam_matches_torch() -> None:
    """FusedAdam's updates are bit-for-bit torch.optim.Adam(fused=True)'s, a parameter without a
    gradient in a step keeping its state (as torch's does), and weight decay included."""
    from reelrec.training.fused import FusedAdam

    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (7, 1), (3,)]
    ours = [nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    mine = FusedAdam(ours, lr=0.01, weight_decay=0.1)
    torch_adam = torch.optim.Adam(theirs, lr=0.01, weight_decay=0.1, fused=True)
    for step in range(6):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            skip = k == 2 and step % 2 == 1  # no gradient this step
            a.grad = None if skip else grads[k].clone()
            b.grad = None if skip else grads[k].clone()
        mine.step()
        torch_adam.step()
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
    mine.zero_grad()
    assert all(p.grad is None for p in ours)
    assert mine.param_groups[0]["lr"] == 0.01
