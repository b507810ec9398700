"""The array cache beside the data: hit, miss, stale, damaged, disabled, location."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelrec.data import cache as cache_mod
from reelrec.data import movielens as ml
from reelrec.data import tabular
from reelrec.data.tabular import load_ratings
from test_fastio import assert_same

HEADER = "userId,movieId,rating,timestamp\n"


def _write(path: Path, n: int = 2000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "userId": rng.integers(1, 50, n),
            "movieId": rng.integers(1, 300, n) * 7,
            "rating": rng.integers(1, 11, n) / 2,
            "timestamp": rng.integers(8 * 10**8, 9 * 10**8, n),
        }
    )
    frame.to_csv(path, index=False)


@pytest.fixture(autouse=True)
def cache_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "MIN_BYTES", 0)
    monkeypatch.delenv(cache_mod.NO_CACHE_ENV, raising=False)
    monkeypatch.delenv(cache_mod.CACHE_DIR_ENV, raising=False)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every time the fast reader actually reads a text file."""
    calls: list[Path] = []
    real = tabular.read_text_ratings

    def spy(path, **kwargs):
        calls.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(tabular, "read_text_ratings", spy)
    return calls


def _entries(folder: Path) -> list[Path]:
    root = folder / ".reelrec-cache"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def test_miss_then_hit(tmp_path: Path, reads: list[Path]) -> None:
    path = tmp_path / "r.csv"
    _write(path)
    first = load_ratings(path)
    assert len(reads) == 1
    (entry,) = _entries(tmp_path)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["source"]["size"] == path.stat().st_size
    assert meta["sha256"] == first.source["sha256"]
    second = load_ratings(path)
    assert len(reads) == 1  # from the cache
    assert_same(second, first)
    # the big arrays are mapped from the cache, copy-on-write: writable, the cache never changes
    assert isinstance(second.rating.base, np.memmap)
    second.rating[0] = 99.0
    assert np.load(entry / "rating.npy")[0] == first.rating[0]
    assert meta["encoding"]["item_index"] == "plain"
    no_cache = load_ratings(path, cache=False)
    assert len(reads) == 2
    assert_same(no_cache, first)


def test_other_options_are_another_entry(tmp_path: Path, reads: list[Path]) -> None:
    path = tmp_path / "r.csv"
    _write(path)
    with_ts = load_ratings(path)
    without = load_ratings(path, timestamp_col=None)
    assert without.timestamp is None
    assert with_ts.timestamp is not None
    assert len(reads) == 2
    assert len(_entries(tmp_path)) == 2


def test_stale_cache_is_replaced(tmp_path: Path, reads: list[Path]) -> None:
    path = tmp_path / "r.csv"
    _write(path, seed=0)
    load_ratings(path)
    before = path.stat()
    _write(path, seed=1)  # same size class, other content
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with the old mtime
    changed = load_ratings(path)
    assert len(reads) == 2
    assert_same(changed, load_ratings(path, cache=False))
    (entry,) = _entries(tmp_path)  # replaced, not added
    assert json.loads((entry / "meta.json").read_text())["source"]["size"] == path.stat().st_size
    load_ratings(path)
    assert len(reads) == 3  # miss, stale, cache=False; then the replaced entry is used


@pytest.mark.parametrize("damage", ["truncate", "garbage_meta", "bad_index", "missing_file"])
def test_damaged_cache_is_ignored_with_a_warning(
    tmp_path: Path, reads: list[Path], caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    path = tmp_path / "r.csv"
    _write(path)
    good = load_ratings(path)
    (entry,) = _entries(tmp_path)
    if damage == "truncate":
        data = (entry / "rating.npy").read_bytes()
        (entry / "rating.npy").write_bytes(data[: len(data) // 2])
    elif damage == "garbage_meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "bad_index":
        idx = np.load(entry / "item_index.npy")
        idx[0] = 60000
        np.save(entry / "item_index.npy", idx)
    else:
        (entry / "timestamp.npy").unlink()
    with caplog.at_level(logging.WARNING, logger="reelrec.data.cache"):
        again = load_ratings(path)
    assert "ignoring the damaged cache" in caplog.text
    assert len(reads) == 2
    assert_same(again, good)
    load_ratings(path)  # the entry was rewritten and is good again
    assert len(reads) == 2


def test_disabled_by_flag_and_environment(
    tmp_path: Path, reads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.csv"
    _write(path)
    load_ratings(path, cache=False)
    assert _entries(tmp_path) == []
    monkeypatch.setenv(cache_mod.NO_CACHE_ENV, "1")
    monkeypatch.setattr("reelrec.options._current", None)  # the environment is read again
    load_ratings(path)
    assert _entries(tmp_path) == []
    monkeypatch.setenv(cache_mod.NO_CACHE_ENV, "0")
    monkeypatch.setattr("reelrec.options._current", None)  # the environment is read again
    load_ratings(path)
    assert len(_entries(tmp_path)) == 1


def test_small_files_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "MIN_BYTES", 10**9)
    path = tmp_path / "r.csv"
    _write(path)
    load_ratings(path)
    assert _entries(tmp_path) == []


def test_location_inside_a_git_tree_or_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "data").mkdir()
    path = repo / "data" / "r.csv"
    _write(path)
    user_cache = tmp_path / "user-cache"
    monkeypatch.setattr(cache_mod.platformdirs, "user_cache_dir", lambda name: str(user_cache / name))
    assert cache_mod.cache_dir_for(path) == user_cache / "reelrec" / "arrays"
    load_ratings(path)
    assert not (repo / "data" / ".reelrec-cache").exists()  # never inside a repository
    assert len(list((user_cache / "reelrec" / "arrays").iterdir())) == 1
    shared = tmp_path / "shared"
    shared.mkdir()
    _write(shared / "r.csv")
    shared.chmod(0o555)  # read-only by intent (root could still write)
    try:
        assert cache_mod.cache_dir_for(shared / "r.csv") == user_cache / "reelrec" / "arrays"
    finally:
        shared.chmod(0o755)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(cache_mod.CACHE_DIR_ENV, str(blocker))  # cannot be written: a warning only
    monkeypatch.setattr("reelrec.options._current", None)  # the environment is read again
    ds = load_ratings(path)
    assert len(ds) == 2000


def test_parquet_is_cached(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": ["a", "b", "a"], "item": [1, 2, 2], "rating": [1.0, 2.0, 3.0]}).to_parquet(path)
    first = load_ratings(path)
    assert len(_entries(tmp_path)) == 1
    assert_same(load_ratings(path), first)


def test_movielens_ratings_and_movies_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ml-25m"
    folder.mkdir()
    _write(folder / "ratings.csv")
    ids = sorted({int(x) for x in pd.read_csv(folder / "ratings.csv")["movieId"]})
    titles = pd.DataFrame({"movieId": ids, "title": [f"Film {i}, The ({1990 + i % 30})" for i in ids]})
    titles["genres"] = "Drama|Comedy"
    titles.to_csv(folder / "movies.csv", index=False)
    first = ml.load_movielens("ml-25m", data_home=tmp_path)
    assert {p.name.split(".")[0] for p in _entries(folder)} == {"ratings", "movies"}
    calls = []
    monkeypatch.setattr(ml, "_read_items", lambda *a: calls.append(a))
    monkeypatch.setattr(ml, "read_text_ratings", lambda *a, **k: calls.append(a))
    second = ml.load_movielens("ml-25m", data_home=tmp_path)
    assert calls == []  # both from the cache
    assert_same(second, first)


def test_older_cache_versions_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.csv"
    _write(path)
    version = cache_mod.VERSION
    monkeypatch.setattr(cache_mod, "VERSION", version - 1)
    load_ratings(path)
    load_ratings(path, timestamp_col=None)
    (old, old_other) = _entries(tmp_path)
    monkeypatch.setattr(cache_mod, "VERSION", version)
    load_ratings(path)  # a new-version entry; both old ones go, whatever options they were for
    (new,) = _entries(tmp_path)
    assert new not in (old, old_other)
    assert json.loads((new / "meta.json").read_text())["version"] == cache_mod.VERSION
