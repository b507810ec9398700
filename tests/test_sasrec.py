"""SASRec: the chunked losses, the sequences, causality and the fold-in (synthetic data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reelrec.data.dataset import Dataset
from reelrec.models.losses import full_softmax_ce, gbce, gbce_beta, sampled_ce
from reelrec.models.sasrec import SASRec, SASRecConfig, left_padded, training_windows, user_sequences


def test_chunked_softmax_equals_autograd_full_softmax() -> None:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(37, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(101, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 101, (37,), generator=gen)
    loss = full_softmax_ce(h, w, t, chunk=10)  # 11 chunks, the last one short
    gh, gw = torch.autograd.grad(loss, (h, w))
    ref = F.cross_entropy(h @ w.T, t)
    rh, rw = torch.autograd.grad(ref, (h, w))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(gh, rh.float().to(gh.dtype), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, rw.float().to(gw.dtype), rtol=1e-5, atol=1e-6)


def test_chunked_softmax_is_stable_for_large_logits() -> None:
    h = torch.full((2, 4), 100.0)
    w = torch.eye(4) * 10
    loss = full_softmax_ce(h, w, torch.tensor([0, 1]), chunk=2)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(np.log(4), abs=1e-3)  # float32 at logits of 1000


def test_sampled_losses_known_values() -> None:
    h = torch.tensor([[1.0, 0.0]])
    w = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t, neg = torch.tensor([0]), torch.tensor([[1, 2]])
    assert sampled_ce(h, w, t, neg).item() == pytest.approx(
        -np.log(np.exp(2) / (np.exp(2) + 1 + np.exp(-1))), rel=1e-6
    )
    beta = gbce_beta(2, 3, 0.75)
    expected = -(beta * np.log(1 / (1 + np.exp(-2))) + np.log(1 - 0.5) + np.log(1 - 1 / (1 + np.exp(1))))
    assert gbce(h, w, t, neg, 0.75).item() == pytest.approx(expected, rel=1e-6)
    assert gbce_beta(5, 100, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    assert gbce_beta(99, 100, 0.75) == pytest.approx(1.0)  # every item a negative: nothing to calibrate


def test_left_padded_keeps_the_latest_items_right_aligned() -> None:
    indptr = np.array([0, 3, 3, 8])
    items = np.array([1, 2, 3, 10, 11, 12, 13, 14])
    out = left_padded(indptr, items, 4, pad=-1)
    np.testing.assert_array_equal(out, [[-1, 1, 2, 3], [-1, -1, -1, -1], [11, 12, 13, 14]])


def test_training_windows_make_every_interaction_but_the_first_a_target_once() -> None:
    indptr = np.array([0, 1, 4, 11])  # users with 1, 3 and 7 items
    items = np.arange(11)
    out = training_windows(indptr, items, 3, pad=-1)  # windows of 4: 3 inputs -> 3 targets
    assert out.shape == (3, 4)
    targets = out[:, 1:][(out[:, 1:] >= 0) & (out[:, :-1] >= 0)]
    assert sorted(targets.tolist()) == [2, 3, 5, 6, 7, 8, 9, 10]  # every item but each user's first
    assert (out[0] == [-1, 1, 2, 3]).all()  # the 3-item user: one window
    assert (out[1] == [7, 8, 9, 10]).all()  # the 7-item user: the latest window first
    assert (out[2] == [4, 5, 6, 7]).all()  # ... and the one before, sharing item 7


def _sequences_dataset() -> Dataset:
    """Users walk the catalogue in steps of +1 (even users) or +2 (odd users), timestamps shuffled
    against file order."""
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(160):
        start, step = int(rng.integers(0, 30)), 1 + u % 2
        seq = (start + step * np.arange(12)) % 30
        users += [u] * 12
        items += seq.tolist()
        ts += (1000 * u + np.arange(12)).tolist()
    order = rng.permutation(len(users))
    frame = {
        "user": np.array(users)[order],
        "item": np.array(items)[order],
        "rating": np.ones(len(users)),
        "timestamp": np.array(ts)[order],
    }
    import pandas as pd

    return Dataset.from_frame(pd.DataFrame(frame), name="walks")


def test_user_sequences_follow_time_not_file_order() -> None:
    ds = _sequences_dataset()
    seqs = user_sequences(ds, 13, pad=ds.n_items)
    assert seqs.shape == (ds.n_users, 13)
    assert (seqs[:, 0] == ds.n_items).all()  # 12 items in 13 slots: one pad on the left
    raw = ds.items.ids[seqs[:, 1:]]
    steps = np.diff(raw.astype(np.int64), axis=1) % 30
    assert ((steps == steps[:, :1]).all(1)).all()  # every user's walk in time order


def test_encoding_is_causal_and_ignores_padding() -> None:
    torch.manual_seed(0)
    model = SASRec(3, 20, SASRecConfig(embedding_size=8, max_len=6, blocks=2, heads=2, dropout=0.0)).eval()
    seq = torch.tensor([[20, 20, 3, 4, 5, 6]])
    changed = torch.tensor([[20, 20, 3, 4, 5, 9]])
    a, b = model.encode(seq), model.encode(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # the future never leaks into the past
    assert not torch.allclose(a[:, 5], b[:, 5])
    assert torch.isfinite(a).all()
    shorter = torch.tensor([[20, 20, 20, 4, 5, 6]])  # one more pad: the padding is masked out
    longer = torch.tensor([[20, 20, 20, 4, 5, 6]])
    torch.testing.assert_close(model.encode(shorter), model.encode(longer))


def test_sasrec_learns_walks_and_folds_in_a_known_user() -> None:
    ds = _sequences_dataset()
    torch.manual_seed(0)
    model = SASRec(ds.n_users, ds.n_items, SASRecConfig(embedding_size=32, max_len=16, dropout=0.0))
    model.prepare(ds)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    rows = torch.arange(model.fit_plan(ds).rows)
    for _ in range(300):
        opt.zero_grad()
        loss = model.rows_loss(rows)
        loss.backward()
        opt.step()
    model.eval()
    scores = model.score_users(torch.arange(ds.n_users))
    last = model.history[:, -1]
    prev = model.history[:, -2]
    raw_last, raw_prev = ds.items.ids[last.numpy()], ds.items.ids[prev.numpy()]
    expected_raw = (2 * raw_last - raw_prev) % 30  # the walk's next step
    predicted_raw = ds.items.ids[scores.argmax(1).numpy()]
    assert (predicted_raw == expected_raw).mean() > 0.9
    user = 5
    history = model.history[user][model.history[user] != ds.n_items]
    torch.testing.assert_close(model.fold_in(history, torch.ones(len(history))), scores[user])
    users_v, items_v = model.retrieval_vectors()
    np.testing.assert_allclose(users_v @ items_v.T, scores.numpy(), rtol=1e-4, atol=1e-4)


def test_config_checks_heads() -> None:
    with pytest.raises(ValueError, match="must divide"):
        SASRecConfig(embedding_size=10, heads=3)
