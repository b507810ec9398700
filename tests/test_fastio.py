"""The fast (pyarrow) ratings reader: exactly the Dataset the pandas path gives, compact dtypes."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelrec.data import movielens as ml
from reelrec.data import tabular
from reelrec.data.dataset import Dataset, Vocabulary
from reelrec.data.fastio import Unsupported, factorize, read_text_ratings
from reelrec.data.split import make_split
from reelrec.data.tabular import load_ratings
from reelrec.errors import DataError


def assert_same(fast: Dataset, slow: Dataset) -> None:
    """Two datasets are identical: vocabularies (values and kind), arrays, scale, source, side tables."""
    assert fast.name == slow.name
    for a, b in ((fast.users.ids, slow.users.ids), (fast.items.ids, slow.items.ids)):
        assert a.dtype.kind == b.dtype.kind
        np.testing.assert_array_equal(a, b)
    for attr in ("user_index", "item_index", "rating", "timestamp"):
        a, b = getattr(fast, attr), getattr(slow, attr)
        if b is None:
            assert a is None
            continue
        assert a.dtype == b.dtype, attr
        np.testing.assert_array_equal(a, b)
    assert fast.scale == slow.scale
    assert fast.source == slow.source
    for a, b in ((fast.item_info, slow.item_info), (fast.user_info, slow.user_info)):
        if b is None:
            assert a is None
        else:
            pd.testing.assert_frame_equal(a, b)


def _pandas_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loaders take the pandas path (the reference)."""

    def refuse(*args, **kwargs):
        raise Unsupported("test: pandas path")

    monkeypatch.setattr(tabular, "_fast_load", lambda *a, **k: None)
    monkeypatch.setattr(ml, "_fast_ratings", refuse)


def _both(monkeypatch: pytest.MonkeyPatch, load, *args, **kwargs) -> tuple[Dataset, Dataset]:
    fast = load(*args, cache=False, **kwargs)
    with monkeypatch.context() as m:
        _pandas_path(m)
        slow = load(*args, cache=False, **kwargs)
    return fast, slow


# ---------------------------------------------------------------------------- equivalence
CSV_CASES = {
    "ints.csv": "userId,movieId,rating,timestamp\n3,10,4.0,100\n1,10,3.5,200\n3,30,5.0,300\n2,20,1,50\n",
    "reordered.csv": "timestamp,extra,rating,item_id,user_id\n100,x,4,7,9\n200,y,2.5,7,8\n300,z,3,1,9\n",
    "no_ts.csv": "user_id,item_id,rating\n1,10,4\n2,10,3.5\n1,30,5\n",
    "quoted.csv": (
        'user,item,rating,timestamp\n"smith, j","tt01",4.5,10\n"o""brien",tt02,3,20\n'
        '"smith, j",tt02,"2",30\nalice,"tt, 3",5,40\n'
    ),
    "mixed_ids.csv": "user,item,rating\n12,a,4\nu7,12,3\n12,12,5\n007,a,1\n",
    "float_ids.csv": "user,item,rating\n1.0,10.0,4\n2.0,10.0,3.5\n1.0,30.0,5\n",
    "float_str_ids.csv": "user,item,rating\n1.5,10,4\n2,10,3.5\n1.5,30,5\n",
    "sparse_ids.csv": "user,item,rating\n1000000000000,5,4\n-3,5,3\n999999999999999,7,5\n-3,7,2\n",
    "negative_ids.csv": "user,item,rating\n-1,-10,4\n-2,-10,3\n-1,4,5\n",
    "r.tsv": "user_id\titem_id\trating\ttimestamp\n1\t10\t4\t100\n2\t10\t3\t200\n1\t30\t5\t300\n",
    "u.data": "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n",
    "ratings.dat": "1::1193::5::978300760\n1::661::3::978302109\n2::914::3::978301968\n",
    "pipes.txt": "user_id|item_id|rating\n1|10|4\n2|10|3\n",
    "crlf.csv": "user_id,item_id,rating,timestamp\r\n1,10,4,100\r\n2,10,3.5,200\r\n",
}


@pytest.mark.parametrize("fname", sorted(CSV_CASES))
def test_fast_reader_equals_pandas_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fname: str) -> None:
    path = tmp_path / fname
    path.write_bytes(CSV_CASES[fname].encode())
    wanted = {"user": ("user_id", True), "item": ("item_id", True), "rating": ("rating", True)}
    wanted["timestamp"] = ("timestamp", False)
    assert tabular._fast_load(path, None, wanted, cache=False, progress=False) is not None  # no fallback
    fast, slow = _both(monkeypatch, load_ratings, path)
    assert_same(fast, slow)
    assert fast.user_index.dtype == np.int32


def test_gzip_and_items_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress(CSV_CASES["ints.csv"].encode()))
    items = tmp_path / "items.csv"
    items.write_text('movieId,title,genres\n10,"Heat, The (1995)",Action\n30,Up (2009),Animation\n')
    fast, slow = _both(monkeypatch, load_ratings, path, items_path=items)
    assert_same(fast, slow)


@pytest.mark.parametrize("kind", ["int", "str", "category"])
def test_parquet_equals_pandas_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    frame = pd.DataFrame(
        {
            "userId": [5, 1, 5, 9],
            "movieId": [10, 10, 30, 2],
            "rating": [4.0, 3.5, 5.0, 1.0],
            "timestamp": [1, 2, 3, 4],
        }
    )
    if kind != "int":
        frame["userId"] = "u" + frame["userId"].astype(str)
    if kind == "category":
        frame["userId"] = frame["userId"].astype("category")
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    fast, slow = _both(monkeypatch, load_ratings, path)
    assert_same(fast, slow)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,item_id,rating\n1,10,4\nNA,10,3\n", "data row 2 has no user id"),
        ("user_id,item_id,rating\n1,10,4\n2,10,\n", "rating on data row 2 is empty"),
        ("user_id,item_id,rating\n1,10,4\n2,10,x\n", "rating on data row 2 is not a number"),
        ("user_id,item_id,rating,timestamp\n1,10,4,5\n2,10,3,2020-01-01\n", "timestamp on data row 2"),
        ("user_id,item_id,rating\n1,10,4\n2,10,3,9,9\n", "cannot parse"),
    ],
)
def test_files_the_fast_reader_refuses_get_the_pandas_errors(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_ratings(path, cache=False)


def test_reader_refuses_what_it_cannot_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n alice,1,4\nbob,2,3\n")  # pandas strips the leading blank
    with pytest.raises(Unsupported, match="leading blanks"):
        read_text_ratings(
            path, sep=",", header=True, positions={"user": 0, "item": 1, "rating": 2}, n_fields=3
        )
    path.write_text("user,item,rating,extra\n1,2,3\n")
    with pytest.raises(Unsupported, match="fields"):
        read_text_ratings(
            path, sep=",", header=True, positions={"user": 0, "item": 1, "rating": 2}, n_fields=4
        )
    path.write_text("1::2:x::3\n")
    with pytest.raises(Unsupported):
        read_text_ratings(
            path, sep="::", header=False, positions={"user": 0, "item": 1, "rating": 2}, n_fields=3
        )


def test_movielens_formats_equal_pandas_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,9\n6,1,2.5,7\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Comedy\n3,"Heat, The (1995)",Action\n'
    )
    fast, slow = _both(monkeypatch, ml.load_movielens, "ml-latest-small", data_home=tmp_path)
    assert_same(fast, slow)
    ml1m = tmp_path / "ml-1m"
    ml1m.mkdir()
    (ml1m / "ratings.dat").write_text("1::1193::5::978300760\n2::661::3::978302109\n")
    (ml1m / "movies.dat").write_text("1193::One (1975)::Drama\n661::James (1996)::Animation\n")
    (ml1m / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    fast, slow = _both(monkeypatch, ml.load_movielens, "ml-1m", data_home=tmp_path)
    assert_same(fast, slow)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ml-100k", "ml-latest-small"])
def test_real_movielens_fast_equals_pandas_path(
    data_home: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    fast, slow = _both(monkeypatch, ml.load_movielens, name, data_home=data_home)
    assert_same(fast, slow)
    assert fast.fingerprint() == slow.fingerprint()


@pytest.mark.realdata
def test_real_ratings_file_fast_equals_pandas_path(data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _both(monkeypatch, load_ratings, data_home / "ml-latest-small" / "ratings.csv")
    assert_same(fast, slow)


# ---------------------------------------------------------------------------- pieces and dtypes
@pytest.mark.parametrize(
    "raw",
    [
        np.array([5, 3, 5, 9, 3, 3], dtype=np.int64),  # lookup table
        np.array([-4, 7, -4, 0], dtype=np.int32),  # lookup table with an offset
        np.array([10**15, 3, 10**15, -(10**12)], dtype=np.int64),  # sparse: sorted
        np.array([1.5, -2.0, 1.5], dtype=np.float64),
    ],
)
def test_factorize_matches_numpy_unique(raw: np.ndarray) -> None:
    uniques, codes = factorize(raw)
    want_u, want_codes = np.unique(raw, return_inverse=True)
    np.testing.assert_array_equal(uniques, want_u)
    np.testing.assert_array_equal(codes, want_codes)
    assert codes.dtype == np.int32


def test_dataset_arrays_are_compact_everywhere() -> None:
    ds = Dataset(
        name="t",
        users=Vocabulary(np.array([1, 2, 3])),
        items=Vocabulary(np.array([7, 8])),
        user_index=np.array([0, 1, 2, 0, 1, 2] * 5, dtype=np.int64),
        item_index=np.array([0, 1] * 15),
        rating=np.arange(30) % 5 + 1.0,
        timestamp=np.arange(30, dtype=np.int32),
    )
    for d in (ds, ds.subset(np.arange(10)), ds.subset(np.arange(5)).concat(ds.subset(np.arange(5, 9)))):
        assert (d.user_index.dtype, d.item_index.dtype) == (np.int32, np.int32)
        assert (d.rating.dtype, d.timestamp.dtype) == (np.float32, np.int64)
    split = make_split(ds, "holdout80", seed=0, valid_fraction=0.0)
    assert split.train.user_index.dtype == np.int32
    assert split.test.item_index.dtype == np.int32


# ---------------------------------------------------------------------------- issue 23: ids of every shape
def _id_file(path: Path, users: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = len(users)
    lines = [
        f"{u},{m},{r}" for u, m, r in zip(users, rng.integers(1, 300, n), rng.integers(1, 6, n), strict=True)
    ]
    path.write_text("userId,movieId,rating\n" + "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "make",
    [
        lambda i: str(10**30 + i),  # past int64: pyarrow and pandas read floats
        lambda i: str(2**64 - 1 - i),  # near 2**64: uint64
        lambda i: str(2**63 + 7 * i),  # just past int64
        lambda i: str(2**53 + i),  # past 2**53, within int64: stays int64
        lambda i: str(10**30 + i) if i % 2 else str(i),  # mixed with small ids
    ],
    ids=["1e30", "near_2_64", "past_int64", "past_2_53", "mixed"],
)
def test_ids_past_int64_are_kept_exactly_by_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, make
) -> None:
    users = [make(i) for i in range(3000)]
    path = tmp_path / "r.csv"
    _id_file(path, users)
    fast, slow = _both(monkeypatch, load_ratings, path)
    assert_same(fast, slow)
    assert len(fast) == 3000
    assert fast.n_users == 3000
    raw = fast.users.ids[fast.user_index]
    if fast.users.is_integer:
        assert [int(v) for v in raw] == [int(u) for u in users]
    else:
        np.testing.assert_array_equal(raw, np.array(users))
    assert fast.deduplicate("error") is not None  # no "repeated ratings" from merged ids
    assert fast.users.index([users[17]])[0] == fast.user_index[17]


def test_ids_written_as_numbers_keep_their_old_meaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leading zeros, a sign and integral decimals name the integer, as pandas reads them."""
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n007,1,4\n+8,2,3\n196.0,3,5\n9,1.0,2\n")
    fast, slow = _both(monkeypatch, load_ratings, path)
    assert_same(fast, slow)
    assert fast.users.ids.tolist() == [7, 8, 9, 196]
    assert fast.items.ids.tolist() == [1, 2, 3]


def test_parquet_uint64_ids_past_int64_do_not_wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.parquet"
    users = np.array([2**64 - 1, 2**63, 5], dtype=np.uint64)
    pd.DataFrame({"user": users, "item": [1, 2, 3], "rating": [1.0, 2.0, 3.0]}).to_parquet(path)
    fast, slow = _both(monkeypatch, load_ratings, path)
    assert_same(fast, slow)
    assert sorted(fast.users.ids.tolist()) == sorted(str(int(u)) for u in users)


@pytest.mark.parametrize("low", [3 * 10**8, 2**53 + 1, 2**62])
def test_id_lookup_memory_follows_the_rows_not_the_id_values(low: int) -> None:
    import tracemalloc

    raw = low + np.arange(3000, dtype=np.int64) * 97
    tracemalloc.start()
    try:
        uniques, codes = factorize(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(uniques[codes], raw)
    assert peak < 64 << 20  # a table of the span (4M entries at most), not of the largest id


def test_a_200000_character_id_is_a_one_line_error(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "r.csv"
    users = [str(i % 40) for i in range(1000)]
    users[2] = "x" * 200_000
    _id_file(path, users)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"user id on data row 3 is 200,000 characters long") as err:
            load_ratings(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(str(err.value)) < 300
    assert peak < 100 << 20  # never an array of 1,000 ids 800 kB wide each


def test_one_column_named_for_two_roles_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    _id_file(path, ["1", "2", "3"])
    with pytest.raises(DataError, match="column 'userId' is named for both the user and the rating"):
        load_ratings(path, rating_col="userId")


def test_ids_past_int64_after_the_first_block_are_kept_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader infers int64 from the first block; a later id past int64 is still exact."""
    from reelrec.data import fastio

    monkeypatch.setattr(fastio, "BLOCK_BYTES", 4096)
    users = [str(i % 50) for i in range(2000)] + [str(10**30 + 1), str(10**30 + 2)]
    path = tmp_path / "r.csv"
    _id_file(path, users)
    fast, slow = _both(monkeypatch, load_ratings, path)
    assert_same(fast, slow)
    assert fast.n_users == 52
    np.testing.assert_array_equal(fast.users.ids[fast.user_index], np.array(users))


def test_a_column_named_twice_in_the_header_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating,rating\n1,2,3,4\n2,3,4,5\n")
    with pytest.raises(DataError, match="the header names column 'rating' 2 times"):
        load_ratings(path)
