"""Shared fixtures: tiny synthetic data generated in the tests, and the real-data location."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reelrec.data.dataset import Dataset
from reelrec.data.split import make_split

# the tests' tensors are tiny: one thread is faster, and on busy cores two OpenMP threads wait on
# each other at every operation (reelrec.threads); subprocesses pick their own count
torch.set_num_threads(1)


def planted_frame(
    n_users: int = 300,
    n_items: int = 200,
    rank: int = 4,
    density: float = 0.25,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[pd.DataFrame, float]:
    """Ratings from a planted low-rank matrix plus Gaussian noise of std ``noise``.

    Returns the frame (user, item, rating, timestamp) and the noise floor (the RMSE of the
    true matrix itself against the noisy ratings, ≈ ``noise``).
    """
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 1, (n_users, rank))
    q = rng.normal(0, 1, (n_items, rank))
    bu = rng.normal(0, 0.3, n_users)
    bi = rng.normal(0, 0.3, n_items)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    truth = 3.0 + bu[u] + bi[i] + (p[u] * q[i]).sum(1) * 0.4
    rating = truth + rng.normal(0, noise, u.shape[0])
    order = rng.permutation(u.shape[0])
    frame = pd.DataFrame(
        {
            "user": u[order] + 1,
            "item": i[order] + 1,
            "rating": rating[order].astype(np.float32),
            "timestamp": rng.integers(1_000_000, 2_000_000, u.shape[0]),
        }
    )
    floor = float(np.sqrt(np.mean((truth[order] - frame["rating"].to_numpy()) ** 2)))
    return frame, floor


@pytest.fixture(scope="session")
def planted() -> tuple[Dataset, float]:
    frame, floor = planted_frame()
    return Dataset.from_frame(frame, name="planted"), floor


def titled(n_items: int, ids: np.ndarray | None = None) -> pd.DataFrame:
    """Item metadata for synthetic data: ``Movie k`` titles and two genre patterns (models with
    item features, e.g. hybrid, need a table; the genres carry no signal)."""
    ids = np.arange(1, n_items + 1) if ids is None else ids
    return pd.DataFrame(
        {
            "title": [f"Movie {k}" for k in ids],
            "genres": ["Drama|Comedy" if k % 3 else "Action" for k in ids],
        },
        index=pd.Index(ids, name="item"),
    )


@dataclass(frozen=True)
class Checkerboard:
    """implicit's checkerboard: users in two groups, each group interacts only with its own half
    of the items; one interaction per user (their latest) is withheld from ``train``."""

    full: Dataset
    train: Dataset
    #: the withheld item of every user, by dense user index
    withheld: np.ndarray
    #: each user's group, by dense user index (0 or 1)
    group: np.ndarray
    #: each item's half, by dense item index (the group that interacts with it)
    half: np.ndarray


def checkerboard(n_users: int = 200, n_items: int = 100, density: float = 0.4, seed: int = 0) -> Checkerboard:
    """A checkerboard of ``n_users x n_items``: user ``u`` (raw id) is in group ``u % 2`` and
    interacts with a random ``density`` of the items ``i`` (raw ids) with ``i % 2 == u % 2``,
    more often with items of higher appeal (so popularity has an order of its own). The rating
    values (1..5, random) carry no signal: the structure is in which pairs exist."""
    rng = np.random.default_rng(seed)
    group, half = np.arange(n_users) % 2, np.arange(n_items) % 2
    appeal = rng.uniform(0.3, 1.0, n_items)
    chance = density * appeal / appeal.mean()
    likes = (group[:, None] == half[None, :]) & (rng.random((n_users, n_items)) < chance[None, :])
    u, i = np.nonzero(likes)
    frame = pd.DataFrame({"user": u, "item": i, "rating": rng.integers(1, 6, u.shape[0]).astype(np.float32)})
    frame["timestamp"] = rng.permutation(u.shape[0])
    full = Dataset.from_frame(frame, name="checkerboard", item_info=titled(n_items, np.arange(n_items)))
    assert (full.n_users, full.n_items) == (n_users, n_items)
    # each user's latest interaction is withheld
    order = np.lexsort((frame["timestamp"].to_numpy(), full.user_index))
    last = order[np.r_[np.flatnonzero(np.diff(full.user_index[order])), len(order) - 1]]
    withheld = np.empty(n_users, dtype=np.int64)
    withheld[full.user_index[last]] = full.item_index[last]
    keep = np.setdiff1d(np.arange(len(full)), last)
    return Checkerboard(
        full=full,
        train=full.subset(keep),
        withheld=withheld,
        group=full.users.ids.astype(np.int64) % 2,
        half=full.items.ids.astype(np.int64) % 2,
    )


@dataclass(frozen=True)
class RatingSet:
    """A planted low-rank rating set split for training, early stopping and testing."""

    train: Dataset
    valid: Dataset
    test: Dataset
    #: the RMSE of the true matrix against the noisy ratings
    floor: float


def planted_rating_set(seed: int = 0) -> RatingSet:
    """:func:`planted_frame` at 200 users x 120 titled items ``m1``..``m120`` (30% dense, ~7,000
    ratings), split 80/10/10 at random."""
    frame, floor = planted_frame(n_users=200, n_items=120, density=0.3, seed=seed)
    frame["item"] = np.char.add("m", frame["item"].to_numpy().astype(str))  # string ids, as IMDb's
    info = titled(120).rename(index=lambda k: f"m{k}")
    ds = Dataset.from_frame(frame, name="planted-ratings", item_info=info)
    split = make_split(ds, "holdout80", seed=seed, valid_fraction=0.1)
    return RatingSet(split.train, split.valid, split.test, floor)


def small_frame(seed: int = 1, n_users: int = 40, n_items: int = 30, n: int = 500) -> pd.DataFrame:
    """Integer 1..5 ratings with some structure, string item ids and timestamps."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    key = np.unique(u * n_items + i)
    u, i = key // n_items, key % n_items
    taste = rng.normal(0, 1, n_users)
    appeal = rng.normal(0, 1, n_items)
    rating = np.clip(np.round(3 + taste[u] * appeal[i] + rng.normal(0, 0.5, u.shape[0])), 1, 5)
    return pd.DataFrame(
        {
            "user": u + 100,
            "item": np.char.add("m", i.astype(str)),
            "rating": rating,
            "timestamp": rng.integers(0, 10_000, u.shape[0]),
        }
    )


@pytest.fixture
def small() -> Dataset:
    return small_dataset()


def small_dataset() -> Dataset:
    """The ``small`` fixture's dataset: 40 users, 30 titled movies ``m0``..``m29`` with genres."""
    frame = small_frame()
    info = pd.DataFrame(
        {
            "title": [f"Movie {k}" for k in range(30)],
            "year": pd.array([1990 + k for k in range(30)], dtype="Int64"),
            "genres": ["Drama|Comedy" if k % 2 else "Action" for k in range(30)],
        },
        index=pd.Index([f"m{k}" for k in range(30)], name="item"),
    )
    return Dataset.from_frame(frame, name="small", item_info=info)


REAL_DATA_WHEN = "REELREC_DATA_HOME holds the MovieLens files (CI sets it and requires them)"


def skip_or_fail(why: str, when: str = REAL_DATA_WHEN, required_by: str = "REELREC_REQUIRE_REALDATA") -> None:
    """Skip a test whose environment is missing, saying why and when it runs; or fail it when
    ``required_by`` is set (CI sets the REELREC_REQUIRE_* variables, so there it cannot skip)."""
    if os.environ.get(required_by, "") not in ("", "0"):
        pytest.fail(f"{required_by} is set, but {why}")
    pytest.skip(
        f"skipped because {why}; it runs when {when}; where {required_by} is set (CI) it fails instead"
    )


def real_data_home() -> Path | None:
    home = os.environ.get("REELREC_DATA_HOME")
    return Path(home) if home else None


@pytest.fixture(scope="session")
def data_home() -> Path:
    """The MovieLens copies (REELREC_DATA_HOME); real-data tests are skipped without them."""
    home = real_data_home()
    if home is None or not (home / "ml-100k" / "u.data").is_file():
        skip_or_fail("REELREC_DATA_HOME does not name a folder holding ml-100k/ (CI uses ../shared/data)")
    return home
