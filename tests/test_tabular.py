"""The generic ratings-file loader: formats, separators, column aliases, items files, errors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import skip_or_fail
from reelrec.data.dataset import Dataset
from reelrec.data.tabular import build_item_info, load_ratings, sniff_sep
from reelrec.errors import DataError

ROWS = [(1, 10, 4.0, 100), (2, 10, 3.5, 200), (1, 30, 5.0, 300)]


def _text(sep: str, header: list[str] | None = None, line_end: str = "\n") -> str:
    lines = [sep.join(header)] if header else []
    lines += [sep.join(str(v) for v in row) for row in ROWS]
    return line_end.join(lines) + line_end


def _check(ds: Dataset, *, timestamps: bool = True) -> None:
    frame = ds.to_frame()
    assert frame["user"].tolist() == [1, 2, 1]
    assert frame["item"].tolist() == [10, 10, 30]
    assert frame["rating"].tolist() == [4.0, 3.5, 5.0]
    if timestamps:
        assert ds.timestamp.tolist() == [100, 200, 300]
    else:
        assert ds.timestamp is None


# ---------------------------------------------------------------------------- formats
@pytest.mark.parametrize(
    ("fname", "sep", "header", "line_end"),
    [
        ("r.csv", ",", ["user_id", "item_id", "rating", "timestamp"], "\n"),
        ("r.csv", ",", ["userId", "movieId", "rating", "timestamp"], "\r\n"),
        ("r.csv", ";", ["user", "item", "score", "time"], "\n"),
        ("r.tsv", "\t", ["UserID", "MovieID", "Rating", "Timestamp"], "\n"),
        ("r.dat", "::", ["user_id", "item_id", "rating", "timestamp"], "\n"),
        ("r.txt", "|", ["user_id", "itemId", "rating", "ts"], "\n"),
        ("u.data", "\t", None, "\n"),  # no header: user, item, rating, timestamp by position
        ("ratings.dat", "::", None, "\n"),
    ],
)
def test_text_formats(tmp_path: Path, fname: str, sep: str, header: list[str] | None, line_end: str) -> None:
    path = tmp_path / fname
    path.write_bytes(_text(sep, header, line_end).encode())
    ds = load_ratings(path)
    _check(ds)
    assert ds.source["sep"] == sep
    assert ds.name == fname


def test_explicit_sep_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("a;b;c;d\n" + _text(";"))
    ds = load_ratings(
        path, sep=";", user_col="a", item_col="b", rating_col="c", timestamp_col="d", name="mine"
    )
    _check(ds)
    assert ds.name == "mine"
    assert ds.source["columns"] == {"user": "a", "item": "b", "rating": "c", "timestamp": "d"}


def test_no_timestamp_column(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n1,10,4\n2,10,3.5\n1,30,5\n")
    ds = load_ratings(path)
    _check(ds, timestamps=False)
    assert ds.source["columns"]["timestamp"] is None


def test_timestamps_can_be_ignored(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(_text(",", ["user_id", "item_id", "rating", "timestamp"]))
    _check(load_ratings(path, timestamp_col=None), timestamps=False)


def test_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    path = tmp_path / "r.parquet"
    pd.DataFrame(ROWS, columns=["userId", "movieId", "rating", "timestamp"]).to_parquet(path)
    ds = load_ratings(path)
    _check(ds)
    assert ds.source["sep"] is None


def test_gzip_csv(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress(_text(",", ["user_id", "item_id", "rating", "timestamp"]).encode()))
    _check(load_ratings(path))


def test_string_ids(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\nalice,tt01,5\nbob,tt02,3\nalice,tt02,1\n")
    ds = load_ratings(path)
    assert ds.users.ids.tolist() == ["alice", "bob"]
    assert ds.to_frame()["item"].tolist() == ["tt01", "tt02", "tt02"]


def test_source_reloads_identically(tmp_path: Path) -> None:
    path = tmp_path / "r.tsv"
    path.write_text(_text("\t", ["u", "i", "r", "t"]))
    ds = load_ratings(path, user_col="u", item_col="i", rating_col="r", timestamp_col="t")
    src = ds.source
    assert src["kind"] == "file"
    assert src["path"] == str(path.resolve())
    import hashlib

    assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    cols = src["columns"]
    again = load_ratings(
        src["path"],
        sep=src["sep"],
        user_col=cols["user"],
        item_col=cols["item"],
        rating_col=cols["rating"],
        timestamp_col=cols["timestamp"],
    )
    assert again.fingerprint() == ds.fingerprint()
    assert again.source == src


# ---------------------------------------------------------------------------- items file
def test_items_csv_with_crlf_and_quoted_titles(tmp_path: Path) -> None:
    ratings = tmp_path / "r.csv"
    ratings.write_text(_text(",", ["user_id", "item_id", "rating", "timestamp"]))
    items = tmp_path / "movies.csv"
    items.write_bytes(
        b"movieId,title,genres\r\n"
        b'10,"American President, The (1995)",Comedy|Drama\r\n'
        b"30,Heat (1995),(no genres listed)\r\n"
        b"40,1776,Musical\r\n"
    )
    ds = load_ratings(ratings, items_path=items)
    info = ds.item_info
    assert info.index.tolist() == [10, 30, 40]
    assert info["title"].tolist() == ["American President, The", "Heat", "1776"]
    assert info["year"].tolist()[:2] == [1995, 1995]
    assert pd.isna(info.loc[40, "year"])
    assert info["genres"].tolist() == ["Comedy|Drama", "", "Musical"]
    assert ds.source["items"]["columns"] == {
        "item": "movieId",
        "title": "title",
        "genres": "genres",
        "year": None,
    }


def test_items_latin1_year_column_and_genre_sep(tmp_path: Path) -> None:
    ratings = tmp_path / "r.csv"
    ratings.write_text(_text(",", ["user_id", "item_id", "rating", "timestamp"]))
    items = tmp_path / "items.tsv"
    items.write_bytes("item_id\tname\tyear\tgenre\n10\tCafé (1990)\t1991\tDrama, Comedy\n".encode("latin-1"))
    info = load_ratings(ratings, items_path=items, genres_col="genre", genres_sep=",").item_info
    assert info.loc[10].tolist() == ["Café", 1991, "Drama|Comedy"]  # the year column wins


def test_items_without_header_movielens_dat(tmp_path: Path) -> None:
    """ML-1M's ``movies.dat``: no header, ``::``, latin-1; columns id, title, genres by position."""
    ratings = tmp_path / "r.csv"
    ratings.write_text(_text(",", ["user_id", "item_id", "rating", "timestamp"]))
    items = tmp_path / "movies.dat"
    items.write_bytes(
        "10::Misérables, Les (1995)::Drama|Musical\n20::Heat (1995)::Action\n".encode("latin-1")
    )
    info = load_ratings(ratings, items_path=items).item_info
    assert info.loc[10].tolist() == ["Misérables, Les", 1995, "Drama|Musical"]
    assert info.loc[20].tolist() == ["Heat", 1995, "Action"]


def test_items_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    ratings = tmp_path / "r.csv"
    ratings.write_text(_text(",", ["user_id", "item_id", "rating", "timestamp"]))
    items = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": [10, 30], "title": ["A (2001)", "B"], "genres": ["X|Y", None]}).to_parquet(items)
    info = load_ratings(ratings, items_path=items).item_info
    assert info["title"].tolist() == ["A", "B"]
    assert info.loc[10, "year"] == 2001
    assert info["genres"].tolist() == ["X|Y", ""]


def test_build_item_info() -> None:
    info = build_item_info(
        np.array([3, 1, 2]),
        pd.Series(["Runaway Brain (1995) ", "Death Note (2006–2007)", "Babylon 5"]),
        pd.Series(["Animation", "(no genres listed)", None]),
    )
    assert info.index.name == "item"
    assert info.index.tolist() == [3, 1, 2]
    assert info["title"].tolist() == ["Runaway Brain", "Death Note", "Babylon 5"]
    assert str(info["year"].dtype) == "Int64"
    assert info["year"].tolist()[:2] == [1995, 2006]
    assert pd.isna(info.loc[2, "year"])
    assert info["genres"].tolist() == ["Animation", "", ""]
    with pytest.raises(DataError, match="item id 1 appears more than once"):
        build_item_info([1, 1], ["a", "b"])


# ---------------------------------------------------------------------------- errors
def _one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file") as err:
        load_ratings(tmp_path / "nope.csv")
    assert "nope.csv" in _one_line(err)


@pytest.mark.parametrize("content", ["", "\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="empty") as err:
        load_ratings(path)
    assert str(path) in _one_line(err)


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n")
    with pytest.raises(DataError, match="no ratings"):
        load_ratings(path)


def test_non_numeric_rating_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n1,10,4\n2,10,five\n")
    with pytest.raises(DataError) as err:
        load_ratings(path)
    msg = _one_line(err)
    assert str(path) in msg
    assert "rating on data row 2 is not a number ('five')" in msg


def test_empty_rating(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n1,10,4\n2,10\n")
    with pytest.raises(DataError, match="rating on data row 2 is empty"):
        load_ratings(path)


def test_non_numeric_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating,timestamp\n1,10,4,100\n2,10,3,yesterday\n")
    with pytest.raises(DataError, match="timestamp on data row 2 is not a number"):
        load_ratings(path)


def test_missing_id(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n1,10,4\n,10,3\n")
    with pytest.raises(DataError, match="data row 2 has no user id"):
        load_ratings(path)


def test_missing_column_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("who,what,stars\n1,10,4\n")
    with pytest.raises(DataError) as err:
        load_ratings(path)
    msg = _one_line(err)
    assert "no user column 'user_id'" in msg
    assert "['who', 'what', 'stars']" in msg


def test_custom_name_does_not_fall_back_to_aliases(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(_text(",", ["user_id", "item_id", "rating", "timestamp"]))
    with pytest.raises(DataError, match="no user column 'customer'"):
        load_ratings(path, user_col="customer")
    with pytest.raises(DataError, match="no timestamp column 'when'"):
        load_ratings(path, timestamp_col="when")


def test_unparseable_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n1,10,4\n2,10,3,9,9\n")
    with pytest.raises(DataError, match="cannot parse") as err:
        load_ratings(path)
    _one_line(err)


def test_sniff_sep() -> None:
    assert sniff_sep("a::b::c") == "::"
    assert sniff_sep("a\tb,c\td") == "\t"
    assert sniff_sep("a;b;c") == ";"
    assert sniff_sep("a|b|c") == "|"
    with pytest.raises(DataError, match="cannot tell the separator"):
        sniff_sep("justone")


# ---------------------------------------------------------------------------- properties
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 10**9),
            st.integers(-50, 50),
            st.sampled_from([0.5, 1.0, 2.5, 5.0]),
            st.integers(0, 2**40),
        ),
        min_size=1,
        max_size=40,
    ),
    sep=st.sampled_from([",", "\t", ";", "::", "|"]),
)
def test_round_trip(tmp_path: Path, rows: list[tuple[int, int, float, int]], sep: str) -> None:
    path = tmp_path / "rt.txt"
    lines = [sep.join(["user_id", "item_id", "rating", "timestamp"])]
    lines += [sep.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    frame = load_ratings(path).to_frame()
    assert frame["user"].tolist() == [r[0] for r in rows]
    assert frame["item"].tolist() == [r[1] for r in rows]
    assert frame["rating"].tolist() == [r[2] for r in rows]
    assert frame["timestamp"].tolist() == [r[3] for r in rows]


# ---------------------------------------------------------------------------- real data
@pytest.fixture
def ml1m_ratings_csv() -> Path:
    """``$REELREC_DATA_HOME/ml-1m-ratings/ratings.csv``, or skip."""
    value = os.environ.get("REELREC_DATA_HOME")
    if not value:
        skip_or_fail("REELREC_DATA_HOME is not set; point it at the folder holding ml-1m-ratings/")
    path = Path(value) / "ml-1m-ratings" / "ratings.csv"
    if not path.is_file():
        skip_or_fail(f"{path} is absent (the derived ML-1M ratings CSV)")
    return path


@pytest.mark.realdata
def test_real_ml1m_ratings_csv(ml1m_ratings_csv: Path) -> None:
    ds = load_ratings(ml1m_ratings_csv)
    assert (len(ds), ds.n_users, ds.n_items) == (1000209, 6040, 3706)
    assert float(ds.rating.astype(np.float64).mean()) == pytest.approx(3.581564, abs=1e-6)
    assert ds.timestamp is None
    assert ds.source["sha256"] == "dcb0869214bc51f7e0903d48acde4c2ae88f2fe126a121865a39594d16b35a57"
    assert np.bincount(ds.rating.astype(np.int64)).tolist() == [0, 56174, 107557, 261197, 348971, 226310]


def test_item_ids_past_int64_match_their_titles(tmp_path: Path) -> None:
    """Ratings and items files with ids past int64: each movie keeps its own id and title."""
    ids = [str(10**30 + k) for k in range(40)]
    ratings = tmp_path / "r.csv"
    rows = [f"{u},{ids[(u * 7 + k) % 40]},{1 + (u + k) % 5}" for u in range(30) for k in range(6)]
    ratings.write_text("userId,movieId,rating\n" + "\n".join(rows) + "\n")
    movies = tmp_path / "movies.csv"
    movies.write_text("movieId,title\n" + "\n".join(f"{i},Film {k} (1999)" for k, i in enumerate(ids)) + "\n")
    ds = load_ratings(ratings, items_path=movies)
    assert ds.n_items == 40
    assert sorted(ds.items.ids.tolist()) == sorted(ids)
    titles = ds.item_info.loc[ds.items.ids, "title"].tolist()
    assert titles == [f"Film {ids.index(i)}" for i in ds.items.ids]
