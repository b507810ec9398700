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
from reelrec.service.state import run_fingerprint
from reelrec.service.store import sqlite_url
from reelrec.service.workers import RunSync, ServeConfig, build_app, write_pin
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
    published = RunSync.read(state)
    assert published["generation"] == 1
    assert published["run"] == str(Path(bias).resolve())
    assert published["manifest"] == run_fingerprint(bias)
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


def test_a_replacement_worker_never_serves_another_model_than_the_others(runs, tmp_path, caplog) -> None:
    """Issue 23: ``train --out RUN --overwrite`` on a served run, then a worker restart, left the
    old worker on the old model and its replacement on the new one (``/health`` alternated,
    nothing logged). The service pins the run by its manifest's sha256; a replacement that
    finds another model in the directory says so and publishes it, and every worker follows."""
    import shutil

    mf, bias = runs
    run = tmp_path / "served"
    shutil.copytree(mf, run)
    state = tmp_path / "state"
    state.mkdir()
    write_pin(state, 0, run, run_fingerprint(run))  # what reelrec serve does before the workers
    store = sqlite_url(tmp_path / "ratings.sqlite")
    old = build_app(ServeConfig(str(run), store, state_dir=str(state)), None)
    old_sync = RunSync(old, state, ann=False)  # polled by hand here
    assert not old_sync.poll_once()
    pinned = old.state.served.manifest_sha256
    assert pinned == run_fingerprint(run)
    Recommender.load(bias).save(str(run), overwrite=True)  # train --out RUN --overwrite
    assert run_fingerprint(run) != pinned
    with caplog.at_level("WARNING", logger="reelrec.service.workers"):
        new = build_app(ServeConfig(str(run), store, state_dir=str(state)), None)  # a replacement
    assert "changed on disk since it was pinned" in caplog.text
    assert RunSync.read(state)["manifest"] == run_fingerprint(run)
    assert old_sync.poll_once()  # the old worker follows within a poll
    with TestClient(old) as a, TestClient(new) as b:
        health = [a.get("/health").json(), b.get("/health").json()]
    assert {h["model"] for h in health} == {"bias"}
    assert {h["run_sha256"] for h in health} == {run_fingerprint(run)}
    again = build_app(ServeConfig(str(run), store, state_dir=str(state)), None)  # nothing changed
    assert again.state.served.manifest_sha256 == run_fingerprint(run)
    assert RunSync.read(state)["generation"] == 1


OWNER = """
import os, sys, time
from reelrec.service.supervisor import make_state_dir
print(make_state_dir(), flush=True)
time.sleep(60)
"""


def test_the_state_folder_of_a_killed_supervisor_is_removed_on_the_next_start(tmp_path) -> None:
    """Issue 23: kill -9 of the supervisor left its state folder for ever. The next start removes
    the folders whose owner is gone (its lock free), and nothing else: a live service's folder,
    a folder without reelrec's owner file, or one holding a file reelrec did not write, stay."""
    import signal
    import subprocess
    import sys

    from reelrec.service.supervisor import STATE_PREFIX, clean_stale_state_dirs

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", OWNER], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        dead, alive, foreign = (Path(p.stdout.readline().strip()) for p in procs)
        (dead / "run.json").write_text("{}")
        (dead / "run.json.123").write_text("{}")
        (foreign / "notes.txt").write_text("not reelrec's")
        for proc in (procs[0], procs[2]):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        unowned = tmp_path / f"{STATE_PREFIX}unowned"
        unowned.mkdir()
        (unowned / "run.json").write_text("{}")
        assert clean_stale_state_dirs(str(tmp_path)) == [str(dead)]
        assert not dead.exists()
        assert (alive / "owner.lock").exists()
        assert (foreign / "notes.txt").read_text() == "not reelrec's"
        assert (unowned / "run.json").exists()
        assert clean_stale_state_dirs(str(tmp_path)) == []
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


class _Exited:
    def __init__(self, code: int) -> None:
        self.returncode = code
        self.pid = 4242

    def poll(self) -> int:
        return self.returncode


def test_a_replacement_that_cannot_load_the_run_gets_three_tries(monkeypatch) -> None:
    """A worker failing at the service's start stops the service at once (uvicorn's status 3); a
    replacement failing so (the run being rewritten) is tried again, and the service stops only
    after three quick failures in a row."""
    from reelrec.service import supervisor as sup

    boss = sup.Supervisor(1, None)
    spawned: list[int] = []
    monkeypatch.setattr(boss, "_spawn", lambda slot: spawned.append(slot))
    boss.procs = [_Exited(sup.STARTUP_FAILURE)]
    boss._check()
    assert boss.stopping  # the first start failed
    assert boss.status == 1
    boss = sup.Supervisor(1, None)
    monkeypatch.setattr(boss, "_spawn", lambda slot: spawned.append(slot))
    boss.started = [time.monotonic() - 3600]  # served an hour, then died
    boss.procs = [_Exited(-9)]
    boss._check()
    assert not boss.stopping
    for attempt in range(3):  # its replacement cannot load the run, three times
        boss.started = [time.monotonic()]
        boss.procs = [_Exited(sup.STARTUP_FAILURE)]
        boss._check()
        assert boss.stopping == (attempt == 2)
