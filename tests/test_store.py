"""The ratings store on SQLite and (where a server is given) PostgreSQL: the same behaviour.

PostgreSQL runs when ``REELREC_TEST_POSTGRES_URL`` names a database the tests may wipe (CI starts
a local server and sets it, with ``REELREC_REQUIRE_POSTGRES=1`` so the tests cannot skip).
"""

from __future__ import annotations

import os
import threading

import pytest
from fastapi.testclient import TestClient

from conftest import skip_or_fail
from reelrec.service.store import RatingStore, StoreError, metadata, sqlite_url

PG_URL = os.environ.get("REELREC_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "ratings.sqlite")
    if not PG_URL:
        skip_or_fail(
            "no PostgreSQL server is configured (REELREC_TEST_POSTGRES_URL is not set)",
            when="REELREC_TEST_POSTGRES_URL is set (CI starts one and requires these tests)",
            required_by="REELREC_REQUIRE_POSTGRES",
        )
    store = RatingStore(PG_URL)
    metadata.drop_all(store.engine)  # a clean database for every test
    store.close()
    return PG_URL


def test_ratings_round_trip(url) -> None:
    store = RatingStore(url)
    try:
        pid = store.create_profile()
        assert store.has_profile(pid)
        assert not store.has_profile("nobody")
        store.set_rating(pid, "m1", 4.0)
        store.set_rating(pid, 50, 3.5)  # raw ids of any type are kept as text
        store.set_rating(pid, "m1", 2.0)  # replaces
        assert store.get_ratings(pid) == {"m1": 2.0, "50": 3.5}
        assert store.delete_rating(pid, "m1")
        assert not store.delete_rating(pid, "m1")
        store.set_rating("cookie_id-7", "m2", 5.0)  # a profile is created on its first rating
        frame = store.all_ratings().sort_values("item").reset_index(drop=True)
        assert frame[["profile", "item", "rating"]].values.tolist() == [
            [pid, "50", 3.5],
            ["cookie_id-7", "m2", 5.0],
        ]
        assert store.counts() == {"profiles": 2, "ratings": 2}
    finally:
        store.close()
    again = RatingStore(url)  # a new connection (a restarted service) sees the same data
    try:
        assert again.get_ratings(pid) == {"50": 3.5}
    finally:
        again.close()


def test_profile_ids_are_validated(url) -> None:
    store = RatingStore(url)
    try:
        for bad in ("", "a b", "x" * 65, "../etc", "é"):
            with pytest.raises(StoreError, match="profile id"):
                store.set_rating(bad, "m1", 4.0)
    finally:
        store.close()


def test_concurrent_writers_lose_nothing(url) -> None:
    store = RatingStore(url)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for j in range(20):
                store.set_rating(f"p{k}", f"m{j}", float(1 + (k + j) % 5))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert store.counts() == {"profiles": 8, "ratings": 160}
        assert store.get_ratings("p3")["m4"] == float(1 + 7 % 5)
    finally:
        store.close()


def test_the_service_keeps_ratings_in_the_store(url, small, tmp_path) -> None:
    from reelrec.recommender import Recommender
    from reelrec.service.app import create_app
    from reelrec.training import TrainConfig

    Recommender.train("mf", small, train_config=TrainConfig(epochs=2)).save(str(tmp_path / "run"))
    with TestClient(create_app(str(tmp_path / "run"), url)) as c:
        pid = c.post("/profiles").json()["id"]
        assert c.put(f"/profiles/{pid}/ratings/m3", json={"rating": 5}).status_code == 200
    with TestClient(create_app(str(tmp_path / "run"), url)) as c:  # a fresh app on the same store
        assert [(r["movie_id"], r["rating"]) for r in c.get(f"/profiles/{pid}").json()["ratings"]] == [
            ("m3", 5.0)
        ]


def test_a_write_holds_the_write_lock_from_its_first_statement(tmp_path, monkeypatch) -> None:
    """Issue 23: 1 of 1,650 concurrent PUTs over two workers was a 500 ("database is locked"): a
    write transaction that began as a read (the profile looked up first) and was upgraded to a
    write cannot wait for the lock when another process wrote meanwhile. Every write now takes
    the write lock as its transaction begins (where SQLite's busy timeout applies): while it
    looks the profile up, no other process can start writing."""
    import sqlite3

    path = tmp_path / "ratings.sqlite"
    store = RatingStore(sqlite_url(path))
    original = RatingStore._ensure_profile
    probes: list[str] = []

    def ensure_and_probe(self, conn, profile_id) -> None:
        original(self, conn, profile_id)
        other = sqlite3.connect(path, timeout=0, isolation_level=None)  # another worker
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            probes.append("another writer got in")
        except sqlite3.OperationalError as exc:
            probes.append(str(exc))
        finally:
            other.close()

    monkeypatch.setattr(RatingStore, "_ensure_profile", ensure_and_probe)
    try:
        store.set_rating("first", "m1", 4.0)  # a new profile
        store.set_rating("first", "m2", 3.0)  # an existing one
        assert probes == ["database is locked"] * 2
        assert store.get_ratings("first") == {"m1": 4.0, "m2": 3.0}
    finally:
        store.close()


def test_a_locked_store_is_a_503_after_bounded_retries(tmp_path, monkeypatch) -> None:
    """A database that stays locked past the busy timeout and the retries is a StoreError (the
    service's 503 with the JSON body), never a server error."""
    import sqlite3

    import reelrec.service.store as store_module

    path = tmp_path / "ratings.sqlite"
    monkeypatch.setattr(store_module, "MAX_BACKOFF_S", 0.0)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 20)
    store = RatingStore(sqlite_url(path))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process keeps the write lock
    try:
        with pytest.raises(StoreError, match="busy"):
            store.set_rating("p", "m1", 4.0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.set_rating("p", "m1", 4.0)  # the lock gone, writes work
    assert store.get_ratings("p") == {"m1": 4.0}
    store.close()


def _foreign_sqlite(path) -> bytes:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.execute("INSERT INTO notes (text) VALUES ('mine')")
    con.commit()
    con.close()
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["other tables", "empty file", "not sqlite", "only a ratings table"])
def test_an_unrelated_database_at_the_default_place_is_refused_untouched(tmp_path, kind) -> None:
    """Issue 23: ``reelrec serve`` added its tables to an unrelated ``ratings.sqlite`` beside the
    run and switched it to WAL. Without reelrec's marker it is refused (one line) and unchanged,
    unless named explicitly (``--store``)."""
    import sqlite3

    path = tmp_path / "ratings.sqlite"
    if kind == "other tables":
        before = _foreign_sqlite(path)
    elif kind == "empty file":
        path.write_bytes(b"")
        before = b""
    elif kind == "not sqlite":
        path.write_text("user,item,rating\n1,2,3\n" * 100)
        before = path.read_bytes()
    else:
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE ratings (profile_id TEXT, item_id TEXT, rating FLOAT)")
        con.commit()
        con.close()
        before = path.read_bytes()
    refusal = r"not a reelrec ratings store|not an SQLite database|that is not reelrec.s"
    with pytest.raises(StoreError, match=refusal) as err:
        RatingStore(sqlite_url(path), explicit=False)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.sqlite"]  # no -wal, no -shm
    if kind == "only a ratings table":  # even named: a table of reelrec's name that is not reelrec's
        with pytest.raises(StoreError, match="already has a table 'ratings' that is not reelrec's"):
            RatingStore(sqlite_url(path), explicit=True)
        assert path.read_bytes() == before
    if kind == "other tables":  # named explicitly: the user's choice, reelrec's tables added
        store = RatingStore(sqlite_url(path), explicit=True)
        store.set_rating("p", "m1", 4.0)
        store.close()
        con = sqlite3.connect(path)
        assert con.execute("SELECT text FROM notes").fetchall() == [("mine",)]
        con.close()
        again = RatingStore(sqlite_url(path), explicit=False)  # now marked: reelrec's own
        assert again.get_ratings("p") == {"m1": 4.0}
        again.close()


def test_a_store_of_an_older_reelrec_is_adopted(tmp_path) -> None:
    """A store made before the marker (exactly reelrec's two tables) still opens by default."""
    import sqlite3

    from reelrec.service.store import profiles, ratings

    path = tmp_path / "ratings.sqlite"
    from sqlalchemy import create_engine

    engine = create_engine(sqlite_url(path))
    profiles.create(engine)
    ratings.create(engine)
    engine.dispose()
    store = RatingStore(sqlite_url(path), explicit=False)
    store.set_rating("p", "m1", 3.0)
    store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM reelrec_store").fetchall() == [("reelrec ratings store",)]
    con.close()
