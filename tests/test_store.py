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
