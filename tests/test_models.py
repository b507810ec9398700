"""Each model's known answers (what every model passes is the conformance suite,
test_conformance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelrec.data.split import make_split
from reelrec.errors import ConfigError
from reelrec.evaluation.protocols import evaluate_ratings
from reelrec.models import build_model
from reelrec.models.baselines import fit_biases
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig

FAST = TrainConfig(epochs=5, batch_size=128, learning_rate=0.01)


def test_mf_reaches_the_noise_floor_of_a_planted_low_rank_matrix(planted) -> None:
    ds, floor = planted
    split = make_split(ds, "holdout90", seed=0, valid_fraction=0.05)
    rec = Recommender.train(
        "mf",
        split.train,
        split.valid,
        model_params={"embedding_size": 8, "reg": 0.001, "bias_reg": 0.0},
        train_config=TrainConfig(epochs=200, batch_size=1024, learning_rate=0.02, patience=5),
        seed=0,
    )
    got = evaluate_ratings(rec, split.test)["rmse"]
    bias_only = evaluate_ratings(Recommender.train("bias", split.train), split.test)["rmse"]
    assert got < 1.3 * floor, (got, floor)
    assert got < 0.5 * bias_only


def test_bias_baseline_solves_its_least_squares_problem() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 20, 400), rng.integers(0, 15, 400)
    ratings = rng.integers(1, 6, 400).astype(float)
    mu, bu, bi = fit_biases(users, items, ratings, 20, 15, 2.0, 3.0, iterations=200)
    resid = ratings - mu - bu[users] - bi[items]
    # stationarity: gradient of the penalised objective is zero for every bias
    np.testing.assert_allclose(np.bincount(items, resid, minlength=15), 3.0 * bi, atol=1e-8)
    np.testing.assert_allclose(np.bincount(users, resid, minlength=20), 2.0 * bu, atol=1e-8)


def test_popularity_ranks_by_training_count(small) -> None:
    rec = Recommender.train("popularity", small)
    counts = small.item_counts()
    u = small.users.ids[0]
    recs = rec.recommend(u, n=3)
    got = counts[rec.items.index([r.item_id for r in recs])]
    assert list(got) == sorted(got, reverse=True)
    seen = set(rec.seen_items(0).tolist())
    best_unseen = max(counts[j] for j in range(small.n_items) if j not in seen)
    assert got[0] == best_unseen


def test_invalid_model_config_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="embedding_size"):
        build_model("mf", 3, 3, {"embedding_size": 0})
    with pytest.raises(ConfigError, match="model bias has no setting 'embedding_size'"):
        build_model("bias", 3, 3, {"embedding_size": 4})
    with pytest.raises(ConfigError, match="unknown model 'svd'"):
        build_model("svd", 3, 3)


def test_refit_retrains_on_train_plus_validation(small) -> None:
    split = make_split(small, "holdout80", seed=0, valid_fraction=0.2)
    cfg = TrainConfig(epochs=6, batch_size=64, learning_rate=0.01, refit=True)
    rec = Recommender.train("mf", split.train, split.valid, train_config=cfg, seed=0)
    result = rec.train_result
    assert result.refit_epochs == result.best_epoch
    assert rec.user_counts.sum() == len(split.train) + len(split.valid)  # the model learned from both
    again = Recommender.train("mf", split.train, split.valid, train_config=cfg, seed=0)
    users = small.users.ids[small.user_index]
    items = small.items.ids[small.item_index]
    np.testing.assert_array_equal(rec.predict(users, items), again.predict(users, items))


def test_mf_average_is_the_mean_of_the_members_predictions(small) -> None:
    from reelrec.models.mf import MatrixFactorization

    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = build_model(
            "mf", small.n_users, small.n_items, {"embedding_size": 4, "init_std": 0.5}, train=small
        )
        model.prepare(small)
        with torch.no_grad():  # distinct biases and global means, as after training
            model.user_bias.weight.normal_(std=0.3)
            model.item_bias.weight.normal_(std=0.3)
            model.global_mean.add_(0.1 * seed)
        members.append(model.eval())
    users = torch.as_tensor(small.user_index, dtype=torch.long)
    items = torch.as_tensor(small.item_index, dtype=torch.long)
    with torch.no_grad():
        expected = torch.stack([m(users, items) for m in members]).mean(0)
        # exact: the factor tables side by side, 3 x 4 columns
        wide = MatrixFactorization.average(members, exact=True)
        assert (wide.config.embedding_size, wide.config.members) == (12, 3)
        assert wide.user_factors.weight.shape == (small.n_users, 12)
        torch.testing.assert_close(wide(users, items), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            wide.score_users(users[:5]),
            wide(users[:5].repeat_interleave(small.n_items), torch.arange(small.n_items).repeat(5)).reshape(
                5, -1
            ),
            rtol=1e-5,
            atol=1e-5,
        )
        # default: the best rank-4 approximation of the mean interaction (Eckart-Young)
        merged = MatrixFactorization.average(members)
        assert (merged.config.embedding_size, merged.config.members) == (4, 3)
        interaction = (wide.user_factors.weight @ wide.item_factors.weight.T).double()
        u, s, vt = torch.linalg.svd(interaction)
        best = (u[:, :4] * s[:4]) @ vt[:4]
        got = (merged.user_factors.weight @ merged.item_factors.weight.T).double()
        torch.testing.assert_close(got, best, rtol=1e-4, atol=1e-5)
        assert float((interaction - best).abs().max()) > 1e-2  # the truncation did something
        # the free scale of the split keeps the items' overall scale (the penalties' calibration)
        torch.testing.assert_close(merged.item_factors.weight.norm(), wide.item_factors.weight.norm())
        torch.testing.assert_close(merged.user_bias.weight, wide.user_bias.weight)
        torch.testing.assert_close(merged.global_mean, wide.global_mean)
    # more factors than movies: the approximation is exact and zero columns keep the width
    big = [build_model("mf", small.n_users, small.n_items, {"embedding_size": 32}) for _ in range(2)]
    assert small.n_items < 32
    with torch.no_grad():
        for m in big:
            m.user_factors.weight.normal_()
            m.item_factors.weight.normal_()
        narrow = MatrixFactorization.average(big)
        assert narrow.user_factors.weight.shape == (small.n_users, 32)
        torch.testing.assert_close(
            narrow(users, items),
            MatrixFactorization.average(big, exact=True)(users, items),
            rtol=1e-4,
            atol=1e-4,
        )
    with pytest.raises(TypeError):
        MatrixFactorization.average([build_model("bias", small.n_users, small.n_items)])
    other = build_model("mf", small.n_users, small.n_items, {"embedding_size": 3}, train=small)
    with pytest.raises(ValueError, match="embedding_size"):
        MatrixFactorization.average([members[0], other])


def test_refit_models_averages_independently_seeded_refits(small, tmp_path) -> None:
    split = make_split(small, "holdout80", seed=0, valid_fraction=0.2)
    base = {"epochs": 6, "batch_size": 64, "learning_rate": 0.01, "refit": True}
    params = {"embedding_size": 4}
    one = Recommender.train(
        "mf", split.train, split.valid, model_params=params, train_config=TrainConfig(**base)
    )
    cfg = TrainConfig(**base, refit_models=3)
    avg = Recommender.train("mf", split.train, split.valid, model_params=params, train_config=cfg)
    assert one.train_result.refit_models is None
    assert avg.train_result.refit_models == 3
    assert avg.train_result.refit_epochs == one.train_result.refit_epochs
    assert avg.model.config.embedding_size == 4  # same size as one member
    assert avg.model.config.members == 3
    assert avg.model.user_factors.weight.shape[1] == 4
    users = small.users.ids[small.user_index]
    items = small.items.ids[small.item_index]
    single, averaged = one.predict(users, items), avg.predict(users, items)
    assert np.all(np.isfinite(averaged))
    assert not np.allclose(single, averaged)  # other members took part
    avg.save(str(tmp_path / "avg"))  # the saved config rebuilds the merged tables
    np.testing.assert_allclose(Recommender.load(str(tmp_path / "avg")).predict(users, items), averaged)
    # a model that cannot merge keeps its single refit
    bias = Recommender.train("bias", split.train, split.valid, train_config=cfg)
    assert bias.train_result.refit_models is None


def test_mf_trains_by_default_with_four_averaged_refits() -> None:
    from reelrec.models.mf import MatrixFactorization

    cfg = TrainConfig(**MatrixFactorization.default_train)
    assert cfg.refit
    assert cfg.refit_models == 4
    assert TrainConfig().refit_models == 1


def test_average_validated_adds_the_early_stopped_model_as_a_member(small) -> None:
    """With ``average_validated`` the refit MF is averaged with the model early-stopped on the
    training part: exactly ``MatrixFactorization.average`` of the two fits done by hand."""
    from reelrec.models.mf import MatrixFactorization
    from reelrec.training import Trainer
    from reelrec.training.seeding import seeded

    split = make_split(small, "holdout80", seed=0, valid_fraction=0.2)
    cfg = TrainConfig(epochs=6, batch_size=64, learning_rate=0.01, refit=True, patience=0)
    plain = Recommender.train("mf", split.train, split.valid, train_config=cfg, seed=3)
    both = Recommender.train(
        "mf",
        split.train,
        split.valid,
        train_config=cfg.model_copy(update={"average_validated": True}),
        seed=3,
    )
    assert plain.model.config.members == 1
    assert both.model.config.members == 2

    def fit(part, check, epochs):
        with seeded(3):
            model = build_model("mf", part.n_users, part.n_items, {}, train=part)
            Trainer(cfg.model_copy(update={"epochs": epochs}), seed=3, device="cpu").fit(model, part, check)
        return model

    validated = fit(split.train, split.valid, 6)
    best = both.train_result.best_epoch
    refit = fit(split.train.concat(split.valid), None, best)
    merged = MatrixFactorization.average([refit, validated])
    u = torch.as_tensor(split.test.user_index, dtype=torch.long)
    i = torch.as_tensor(split.test.item_index, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(both.model(u, i), merged(u, i))
        torch.testing.assert_close(plain.model(u, i), refit(u, i))


def test_mlp_starts_from_a_trained_mf_run(small, tmp_path) -> None:
    from reelrec.artifacts import load_state
    from reelrec.errors import ConfigError
    from reelrec.models.registry import make_config
    from reelrec.training import pretrained

    mf = Recommender.train("mf", small, model_params={"embedding_size": 8}, train_config=FAST, seed=0)
    mf.save(str(tmp_path / "mf"))
    params = {"embedding_size": 8, "hidden": [8], "pretrained_mf": str(tmp_path / "mf")}

    def started(values: dict) -> torch.nn.Module:
        pre = pretrained.resolve(
            "mlp", make_config("mlp", values), small, None, seed=0, device="cpu", load_run=load_state
        )
        assert set(pre.sources) == {"mf"}
        assert pre.record == {"mf": {"run": values["pretrained_mf"]}}
        mlp = build_model("mlp", small.n_users, small.n_items, values, train=small)
        mlp.prepare(small)
        mlp.init_from(pre.sources)
        return mlp

    mlp = started(params)
    torch.testing.assert_close(mlp.user_embedding.weight, mf.model.user_factors.weight)
    torch.testing.assert_close(mlp.item_bias.weight, mf.model.item_bias.weight)
    assert float(mlp.global_mean) == pytest.approx(float(mf.model.global_mean))
    rec = Recommender.train("mlp", small, model_params=params, train_config=FAST, seed=0)
    assert np.isfinite(rec.predict(small.users.ids[:5], small.items.ids[:5])).all()
    assert rec.train_result.pretraining == {"mf": {"run": params["pretrained_mf"]}}
    with pytest.raises(ConfigError, match="set embedding_size=8"):
        started({**params, "embedding_size": 4})
    Recommender.train("bias", small).save(str(tmp_path / "bias"))
    with pytest.raises(ConfigError, match="not an mf model"):
        started({**params, "pretrained_mf": str(tmp_path / "bias")})


@pytest.mark.parametrize("kernels", ["auto", "torch"])
def test_mf_closed_form_gradients_equal_autograd(small, kernels, monkeypatch) -> None:
    """MF's batch_gradients (the Trainer's fast path: the compiled kernel, or torch ops with
    ``REELREC_KERNELS=torch``) gives autograd's loss and gradients."""
    from reelrec.models import mf_kernel

    monkeypatch.setenv("REELREC_KERNELS", kernels)
    monkeypatch.setattr("reelrec.options._current", None)  # the environment is read again
    monkeypatch.setattr(mf_kernel.compiled, "tried", False)
    monkeypatch.setattr(mf_kernel.compiled, "kernel", None)
    assert mf_kernel.available() is (kernels == "auto")  # numba is a dependency
    model = build_model(
        "mf",
        small.n_users,
        small.n_items,
        {"embedding_size": 6, "bias_reg": 0.05, "init_std": 0.3},
        train=small,
    )
    model.prepare(small)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(small), 300)  # repeated users and items within the batch
    users = torch.as_tensor(small.user_index[rows], dtype=torch.long)
    items = torch.as_tensor(small.item_index[rows], dtype=torch.long)
    ratings = torch.as_tensor(small.rating[rows], dtype=torch.float32)
    params = [
        model.user_factors.weight,
        model.item_factors.weight,
        model.user_bias.weight,
        model.item_bias.weight,
    ]
    loss = model.training_loss(users, items, ratings)
    expected = torch.autograd.grad(loss, params)
    for p in params:
        p.grad = torch.full_like(p, 7.0)  # stale gradients are overwritten, not added to
    fast = model.batch_gradients(users, items, ratings)
    assert fast is not None
    torch.testing.assert_close(fast, loss.detach(), rtol=1e-5, atol=1e-6)
    for p, g in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)
    model.user_factors.sparse = True  # sparse embeddings stay on autograd
    assert model.batch_gradients(users, items, ratings) is None
    model.user_factors.sparse = False
    no_bias = build_model("mf", small.n_users, small.n_items, {"embedding_size": 6, "use_bias": False})
    no_bias.prepare(small)
    loss = no_bias.training_loss(users, items, ratings)
    expected = torch.autograd.grad(loss, [no_bias.user_factors.weight, no_bias.item_factors.weight])
    torch.testing.assert_close(no_bias.batch_gradients(users, items, ratings), loss.detach())
    torch.testing.assert_close(no_bias.user_factors.weight.grad, expected[0], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(no_bias.item_factors.weight.grad, expected[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"use_bias": False},
        {"output": "sigmoid"},
        {"standardize": True},
        {"objective": "bce"},
        {"output": "ordinal"},
        {"output": "softmax"},
    ],
)
def test_gmf_scores_every_movie_as_its_forward_does(small, params) -> None:
    """GMF's catalogue scoring by one matrix product (linear and sigmoid outputs; the others keep
    the pairwise path) equals its forward pass pair by pair; its retrieval vectors, where it has
    them (not for a softmax head), rank as its scores."""
    from reelrec.models.base import RatingModel

    rec = Recommender.train("gmf", small, model_params=params, train_config=FAST, seed=0)
    model = rec.model.eval()
    users = torch.arange(small.n_users)
    fast = model.score_users(users)
    pairwise = RatingModel.score_users(model, users)
    torch.testing.assert_close(fast, pairwise, rtol=1e-5, atol=1e-5)
    vectors = model.retrieval_vectors()
    if params.get("output") == "softmax":
        assert vectors is None
        return
    u, i = vectors
    order = np.argsort(-(u @ i.T), axis=1, kind="stable")
    ranked = np.take_along_axis(fast.numpy(), order, axis=1)
    assert (np.diff(ranked, axis=1) <= 1e-5).all()  # scores fall along the vectors' order


@pytest.mark.parametrize(
    "params",
    [
        {"pretrain": "none"},
        {},  # pre-trained from MF, [p; q; p * q] into one layer
        {"pretrain": "none", "inputs": "concat", "hidden": [8, 4], "dropout": 0.2, "batch_norm": True},
        {"pretrain": "none", "use_bias": False, "embedding_dropout": 0.3},
        {"pretrain": "none", "output": "sigmoid"},
        {"pretrain": "none", "standardize": True, "activation": "tanh"},
        {"pretrain": "none", "output": "softmax"},
        {"pretrain": "none", "output": "ordinal"},
        {"pretrain": "none", "hidden": []},  # no tower: the pairwise path
    ],
)
def test_mlp_scores_every_movie_as_its_forward_does(small, params) -> None:
    """The MLP's catalogue scoring with its first layer split by inputs (the product part as one
    matrix product per block of users) equals its forward pass pair by pair, in eval mode, and
    leaves the model in the mode it found."""
    from reelrec.models import mlp as mlp_module
    from reelrec.models.base import RatingModel

    rec = Recommender.train("mlp", small, model_params=params, train_config=FAST, seed=0)
    model = rec.model.train()  # scoring switches to eval itself and back
    users = torch.arange(small.n_users)
    fast = model.score_users(users)
    assert model.training
    model.eval()
    pairwise = RatingModel.score_users(model, users)
    torch.testing.assert_close(fast, pairwise, rtol=1e-4, atol=1e-4)
    # blocks of a few users give the same scores
    old = mlp_module.SCORE_BLOCK_FLOATS
    mlp_module.SCORE_BLOCK_FLOATS = 3 * small.n_items * 64
    try:
        torch.testing.assert_close(model.score_users(users), fast, rtol=1e-5, atol=1e-5)
    finally:
        mlp_module.SCORE_BLOCK_FLOATS = old


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_cpu_dropout_keeps_each_entry_with_probability_one_minus_p(p) -> None:
    """keep_mask draws three 16-bit fields per random word: every field position keeps 1 - p
    (within 5 standard errors over 600,000 entries each), and Dropout scales what it keeps, passes
    the gradient through the same mask, repeats under one seed and is the identity in eval."""
    from reelrec.models.layers import Dropout, keep_mask

    torch.manual_seed(0)
    mask = keep_mask((600_000, 3), p)
    se = (p * (1 - p) / 600_000) ** 0.5
    for column in range(3):
        assert abs(mask[:, column].float().mean().item() - (1 - p)) < 5 * se
    assert keep_mask((7, 5, 3), p).shape == (7, 5, 3)
    layer = Dropout(p)
    x = torch.randn(300, 40, requires_grad=True)
    torch.manual_seed(1)
    y = layer(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))
    torch.manual_seed(1)
    torch.testing.assert_close(layer(x), y)
    layer.eval()
    assert torch.equal(layer(x), x)
