from __future__ import annotations

import numpy as np
import pytest

from reelrec.data.dataset import Dataset
from reelrec.data.split import carve_validation, holdout, kfold, leave_last, make_split, temporal
from reelrec.errors import ConfigError, DataError


def _keys(ds: Dataset) -> np.ndarray:
    return ds.user_index * 10_000_000 + ds.item_index * 10 + (ds.rating * 2).astype(int)


def test_holdout_matches_the_protocol_exactly(planted) -> None:
    ds, _ = planted
    split = holdout(ds, 0.1, seed=42)
    perm = np.random.default_rng(42).permutation(len(ds))
    n_test = round(0.1 * len(ds))
    np.testing.assert_array_equal(split.test.rating, ds.rating[np.sort(perm[:n_test])])
    np.testing.assert_array_equal(split.train.rating, ds.rating[np.sort(perm[n_test:])])
    assert split.name == "holdout90"
    assert split.train.users is ds.users  # vocabularies are shared


def test_kfold_partitions_the_data(small) -> None:
    tests = [kfold(small, 5, k, seed=3).test for k in range(5)]
    assert sum(len(t) for t in tests) == len(small)
    all_keys = np.concatenate([_keys(t) for t in tests])
    np.testing.assert_array_equal(np.sort(all_keys), np.sort(_keys(small)))
    split = kfold(small, 5, 2, seed=3)
    assert len(split.train) + len(split.test) == len(small)
    with pytest.raises(ConfigError, match="fold must be"):
        kfold(small, 5, 5)


def test_temporal_holds_out_each_users_latest(small) -> None:
    split = temporal(small, 0.2)
    for u in range(small.n_users):
        tr = split.train.timestamp[split.train.user_index == u]
        te = split.test.timestamp[split.test.user_index == u]
        count = int((small.user_index == u).sum())
        assert te.size == int(np.floor(0.2 * count + 0.5))
        if te.size and tr.size:
            assert tr.max() <= te.min()


def test_leave_last_one_per_user(small) -> None:
    split = leave_last(small)
    counts = small.user_counts()
    assert len(split.test) == int((counts >= 2).sum())
    assert np.unique(split.test.user_index).size == len(split.test)
    for u, t in zip(split.test.user_index, split.test.timestamp, strict=True):
        assert t >= split.train.timestamp[split.train.user_index == u].max()


def test_temporal_needs_timestamps(small) -> None:
    from dataclasses import replace

    with pytest.raises(DataError, match="timestamps"):
        temporal(replace(small, timestamp=None))


def test_validation_is_carved_from_train_only(planted) -> None:
    ds, _ = planted
    split = make_split(ds, "holdout90", seed=1, valid_fraction=0.1)
    assert len(split.train) + len(split.valid) + len(split.test) == len(ds)
    base = holdout(ds, 0.1, seed=1)
    np.testing.assert_array_equal(split.test.rating, base.test.rating)
    fit, valid = carve_validation(base.train, 0.1, seed=1)
    assert len(fit) + len(valid) == len(base.train)


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("holdout80", "holdout80"),
        ("holdout:0.25", "holdout75"),
        ("cv5:1", "cv5:1"),
        ("temporal", "temporal20"),
        ("loo", "leave-last"),
        ("none", "none"),
    ],
)
def test_make_split_parses_names(small, spec: str, name: str) -> None:
    split = make_split(small, spec, valid_fraction=None)
    assert split.name == name
    assert (split.test is None) == (spec == "none")


def test_make_split_rejects_unknown_names(small) -> None:
    with pytest.raises(ConfigError, match="unknown split 'random'"):
        make_split(small, "random")
    with pytest.raises(ConfigError, match="only applies to ml-100k"):
        make_split(small, "u1")


def test_cold_items_hold_out_whole_items(small) -> None:
    split = make_split(small, "cold-items20", seed=4, valid_fraction=0.1)
    test_items = set(split.test.item_index.tolist())
    assert test_items
    assert not test_items & set(split.train.item_index.tolist())
    assert not test_items & set(split.valid.item_index.tolist())
    assert len(split.train) + len(split.valid) + len(split.test) == len(small)
    assert split.name == "cold-items20"
