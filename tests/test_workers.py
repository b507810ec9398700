"""The pieces of ``reelrec serve --workers``: the known-user fast lane (part of every app
``create_app`` builds: identical answers to the FastAPI route, everything unusual passed
through, each request counted once), the pid header and the run follower."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import small_dataset
from reelrec.recommender import Recommender
from reelrec.service.app import create_app
from reelrec.service.hotpath import parse_query
from reelrec.service.store import sqlite_url
from reelrec.service.workers import RunSync, ServeConfig, build_app
from reelrec.training import TrainConfig


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[str, str]:
    data = small_dataset()
    root = tmp_path_factory.mktemp("runs")
    mf = Recommender.train("mf", data, train_config=TrainConfig(epochs=5, batch_size=256))
    mf.save(str(root / "mf"))
    Recommender.train("bias", data).save(str(root / "bias"))
    return str(root / "mf"), str(root / "bias")


@pytest.fixture
def clients(runs, tmp_path):
    store = sqlite_url(tmp_path / "ratings.sqlite")
    fast = build_app(ServeConfig(runs[0], store), None)
    plain = create_app(runs[0], store, fast_lane=False)  # the route alone: the reference
    with TestClient(fast) as f, TestClient(plain) as p:
        yield f, p


def test_parse_query_takes_only_canonical_valid_forms() -> None:
    assert parse_query(b"") == (10, True, -0.25)
    assert parse_query(b"n=7&exclude_rated=false&novelty=-1.5") == (7, False, -1.5)
    assert parse_query(b"n=100&novelty=5") == (100, True, 5.0)
    for odd in (
        b"n=0",
        b"n=101",
        b"n=07",
        b"n=5&n=6",
        b"n=1.0",
        b"novelty=5.5",
        b"novelty=1e0",
        b"exclude_rated=yes",
        b"exclude_rated=True",
        b"x=1",
        b"n",
        b"n=%31",
        b"novelty=+1",
    ):
        assert parse_query(odd) is None, odd


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?n=5",
        "?n=3&exclude_rated=false",
        "?novelty=1.5&n=4",
        "?n=100",
        "?novelty=-5",
        # these go through FastAPI: the same answers either way
        "?n=0",
        "?n=abc",
        "?n=5&n=6",
        "?exclude_rated=yes",
        "?novelty=9",
        "?n=%35",
        "?extra=1",
    ],
)
def test_fast_lane_answers_exactly_as_the_route(clients, query) -> None:
    # FastAPI also takes "yes", an encoded digit and a repeated n (the last wins): 200 too
    ok = query not in ("?n=0", "?n=abc", "?novelty=9")
    fast, plain = clients
    for user in ("100", "107", "nobody"):
        a, b = (
            fast.get(f"/users/{user}/recommendations{query}"),
            plain.get(f"/users/{user}/recommendations{query}"),
        )
        assert (a.status_code, a.content) == (b.status_code, b.content), (user, query)
        assert a.headers["content-type"] == b.headers["content-type"]
    assert fast.get(f"/users/100/recommendations{query}").status_code == (200 if ok else 422)


def test_fast_lane_is_counted_and_names_the_worker(clients) -> None:
    fast, _ = clients
    assert fast.get("/users/100/recommendations?n=5").status_code == 200
    r = fast.get("/users/100/recommendations?n=0")
    assert r.status_code == 422
    assert r.headers["x-reelrec-worker"] == str(os.getpid())
    routes = fast.get("/metrics").json()["routes"]
    assert routes["GET /users/{user_id}/recommendations"]["requests"] == 2


def test_the_app_tests_run_answers_plain_lists_in_the_fast_lane(runs, tmp_path) -> None:
    # create_app's app is the one production runs: the fast lane answers the plain form (the
    # FastAPI route, which resolves ids through Served.user, is not reached), FastAPI the rest
    app = create_app(runs[0], sqlite_url(tmp_path / "ratings.sqlite"))
    with TestClient(app) as c:
        expected = c.get("/users/100/recommendations?n=%35")  # encoded: through FastAPI
        served = app.state.served

        def unreachable(user_id):
            raise AssertionError(f"the route resolved {user_id!r}")

        served.user = unreachable
        fast = c.get("/users/100/recommendations?n=5")
        assert (fast.status_code, fast.content) == (200, expected.content)
        assert fast.headers["content-length"] == expected.headers["content-length"]
        with pytest.raises(AssertionError, match="the route resolved '100'"):
            c.get("/users/100/recommendations?n=%35")
        del served.user
        routes = c.get("/metrics").json()["routes"]
    assert routes["GET /users/{user_id}/recommendations"]["requests"] == 3  # once each


def test_run_follower_switches_to_a_newer_generation_only(runs, tmp_path) -> None:
    mf, bias = runs
    state = tmp_path / "state"
    state.mkdir()
    store = sqlite_url(tmp_path / "ratings.sqlite")
    leader = build_app(ServeConfig(mf, store, state_dir=str(state)), "tok")
    follower = create_app(mf, store)
    sync = RunSync(follower, state, ann=False)  # polled by hand here, not by its thread
    assert not sync.poll_once()  # nothing published yet
    with TestClient(leader) as c:
        r = c.post("/admin/reload", json={"run": bias}, headers={"X-Admin-Token": "tok"})
        assert r.status_code == 200
    assert RunSync.read(state) == {"generation": 1, "run": str(Path(bias).resolve())}
    assert sync.poll_once()
    assert follower.state.served.rec.model.name == "bias"
    assert not sync.poll_once()  # same generation: nothing to do
    # a worker started later begins on the published run
    late = build_app(ServeConfig(mf, store, state_dir=str(state)), None)
    assert late.state.served.rec.model.name == "bias"


WRITER = """
import sys, time
from reelrec.service.store import RatingStore
store = RatingStore(sys.argv[1])
while time.time() < float(sys.argv[4]):  # both start together
    time.sleep(0.001)
for j in range(int(sys.argv[3])):
    store.set_rating("shared", f"{sys.argv[2]}-{j}", 1 + j % 5)  # one profile, both processes
    store.set_rating(f"new-{j}", "m1", 1 + j % 5)  # both create the same new profiles and ratings
"""


def test_store_takes_concurrent_writes_from_several_processes(tmp_path) -> None:
    """Two processes write to one SQLite store at once: every write lands, none fails busy."""
    import subprocess
    import sys

    from reelrec.service.store import RatingStore

    url = sqlite_url(tmp_path / "ratings.sqlite")
    RatingStore(url).close()  # the tables exist before the writers race (as serve does)
    start = str(time.time() + 8)  # after both have imported reelrec
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, name, "100", start], stderr=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    store = RatingStore(url)
    shared = store.get_ratings("shared")
    assert len(shared) == 200
    assert shared["a-7"] == 3.0
    assert shared["b-99"] == 5.0
    assert store.get_ratings("new-99") == {"m1": 5.0}
    assert store.counts() == {"profiles": 101, "ratings": 300}


def test_a_lost_insert_race_is_retried(tmp_path, monkeypatch) -> None:
    """The writer that finds a profile absent, then loses the insert to another writer, retries
    and lands its rating (deterministic: the other writer is played in between)."""
    from sqlalchemy import insert

    from reelrec.service.store import RatingStore, profiles

    url = sqlite_url(tmp_path / "ratings.sqlite")
    store, other = RatingStore(url), RatingStore(url)
    original = RatingStore._ensure_profile
    calls = []

    def racing(self, conn, profile_id):
        calls.append(profile_id)
        if len(calls) == 1:  # "absent" was seen; the other writer creates it first
            with other.engine.begin() as c:
                c.execute(insert(profiles).values(id=profile_id, created_at=0.0))
            conn.execute(insert(profiles).values(id=profile_id, created_at=1.0))  # fails: exists
        return original(self, conn, profile_id)

    monkeypatch.setattr(RatingStore, "_ensure_profile", racing)
    store.set_rating("late", "m1", 4.0)
    assert len(calls) == 2
    assert store.get_ratings("late") == {"m1": 4.0}


@pytest.mark.parametrize(
    ("code", "why"),
    [("import sys; sys.exit(3)", "uvicorn's start-up failure"), ("pass", "exits at once, three times")],
)
def test_supervisor_stops_when_workers_cannot_start(code, why, tmp_path, monkeypatch, capsys) -> None:
    """A worker that fails while starting stops the service with status 1 (and the private state
    folder goes), instead of being restarted for ever."""
    from reelrec.service import supervisor

    monkeypatch.setattr(supervisor, "WORKER_CODE", code)
    state = tmp_path / "state"
    state.mkdir()
    start = time.monotonic()
    assert supervisor.Supervisor(2, str(state)).run() == 1, why
    assert time.monotonic() - start < 30
    assert not state.exists()
    assert "a worker failed to start" in capsys.readouterr().err
