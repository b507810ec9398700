"""``reelrec serve`` as a real process (durability of acknowledged ratings across a kill -9) and
``reelrec retrain`` from stored ratings."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import small_frame
from reelrec.cli import main
from reelrec.recommender import Recommender
from reelrec.service.store import RatingStore, sqlite_url


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """An MF run trained by the CLI from a ratings file (so retrain can reload its source)."""
    root = tmp_path_factory.mktemp("cli")
    frame = small_frame(n=900)
    frame.to_csv(root / "ratings.csv", index=False)
    pd.DataFrame(
        {"item": [f"m{k}" for k in range(30)], "title": [f"Film {k} ({1980 + k})" for k in range(30)]}
    ).to_csv(root / "movies.csv", index=False)
    run_dir = root / "runs" / "mf"
    argv = ["train", "--ratings", str(root / "ratings.csv"), "--items", str(root / "movies.csv")]
    assert main([*argv, "--epochs", "3", "--no-progress", "--json", "--out", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def other_run(cli_run, tmp_path_factory) -> Path:
    """A second run of the same data (``retrain`` with an empty store), to switch to."""
    root = tmp_path_factory.mktemp("other")
    out = root / "runs" / "other"
    store = sqlite_url(root / "empty.sqlite")
    assert main(["retrain", str(cli_run), "--store", store, "--out", str(out)]) == 0
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(
    run_dir: Path, store: str, port: int, *extra: str, workers: int = 1, tmp: Path | None = None
) -> subprocess.Popen:
    """``reelrec serve`` in its own process group, once ``workers`` distinct workers answered
    (``tmp``: the temporary folder, where several workers keep their private state folder)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"TMPDIR": str(tmp)} if tmp else {})}
    cmd = [sys.executable, "-m", "reelrec.cli", "serve", str(run_dir), "--port", str(port), "--store", store]
    cmd += ["--workers", str(workers), *extra]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 90
    pids: set[str] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stdout.read()}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)  # a new connection each time
            if r.status_code == 200:
                pids.add(r.headers["x-reelrec-worker"])
                if len(pids) >= workers:
                    return proc
        except httpx.TransportError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"serve did not come up with {workers} workers in 90 s (saw {len(pids)})")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_acknowledged_rating_survives_kill_9(cli_run, tmp_path) -> None:
    store = sqlite_url(tmp_path / "ratings.sqlite")
    port = _free_port()
    proc = _start(cli_run, store, port)
    base = f"http://127.0.0.1:{port}"
    try:
        pid = httpx.post(f"{base}/profiles").json()["id"]
        for movie, value in (("m1", 5), ("m2", 3)):
            assert (
                httpx.put(f"{base}/profiles/{pid}/ratings/{movie}", json={"rating": value}).status_code == 200
            )
        r = httpx.put(f"{base}/profiles/{pid}/ratings/m3", json={"rating": 4})
        assert r.status_code == 200  # acknowledged ...
        os.killpg(proc.pid, signal.SIGKILL)  # ... then the process dies at once, no shutdown
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    proc = _start(cli_run, store, port)
    try:
        got = httpx.get(f"{base}/profiles/{pid}").json()
        assert {x["movie_id"]: x["rating"] for x in got["ratings"]} == {"m1": 5.0, "m2": 3.0, "m3": 4.0}
        recs = httpx.get(f"{base}/profiles/{pid}/recommendations", params={"n": 5}).json()
        assert recs["personalised"]
        assert not {"m1", "m2", "m3"} & {x["movie_id"] for x in recs["items"]}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _by_worker(
    method: str, url: str, want: str | None = None, avoid: str | None = None, **kw
) -> httpx.Response:
    """One request on a new connection, retried (up to 200 times) until the worker that answers
    is ``want`` (or is not ``avoid``); the kernel spreads new connections over the workers."""
    for _ in range(200):
        r = httpx.request(method, url, timeout=10, **kw)
        pid = r.headers["x-reelrec-worker"]
        if (want is None or pid == want) and (avoid is None or pid != avoid):
            return r
        if method != "GET":
            raise AssertionError("a write landed on the wrong worker; only retry reads")
    raise AssertionError(f"no answer from the wanted worker (want={want}, avoid={avoid})")


def test_two_workers_share_the_store_and_survive_kill_9(cli_run, tmp_path) -> None:
    """``--workers 2``: both workers answer, a rating written through one is read through the
    other, concurrent writes from both all land, and after SIGKILL of the whole process group
    every acknowledged rating is there."""
    store = sqlite_url(tmp_path / "ratings.sqlite")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(cli_run, store, port, workers=2, tmp=tmp_path)
    acknowledged: dict[str, dict[str, float]] = {}
    try:
        first = httpx.post(f"{base}/profiles")
        a, pid = first.headers["x-reelrec-worker"], first.json()["id"]
        r = httpx.put(f"{base}/profiles/{pid}/ratings/m1", json={"rating": 5})
        assert r.status_code == 200
        acknowledged[pid] = {"m1": 5.0}
        writer = r.headers["x-reelrec-worker"]
        other = _by_worker("GET", f"{base}/profiles/{pid}", avoid=writer)  # the other worker reads it
        assert other.headers["x-reelrec-worker"] != writer
        assert {x["movie_id"]: x["rating"] for x in other.json()["ratings"]} == {"m1": 5.0}
        assert a in {writer, other.headers["x-reelrec-worker"]}
        errors: list[str] = []
        workers_seen: set[str] = set()

        def write(k: int) -> None:  # each thread: its own profile, 12 ratings, new connections
            profile = f"p{k}"
            mine = acknowledged.setdefault(profile, {})
            for j in range(12):
                value = float(1 + (j + k) % 5)
                try:
                    url = f"{base}/profiles/{profile}/ratings/m{j}"
                    w = httpx.put(url, json={"rating": value}, timeout=30)
                except httpx.TransportError as exc:
                    errors.append(repr(exc))
                    continue
                if w.status_code == 200:
                    mine[f"m{j}"] = value
                    workers_seen.add(w.headers["x-reelrec-worker"])
                else:
                    errors.append(f"{w.status_code} {w.text}")

        threads = [threading.Thread(target=write, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert len(workers_seen) == 2  # the writes really came through both processes
        os.killpg(proc.pid, signal.SIGKILL)  # parent and workers die at once, no shutdown
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    proc = _start(cli_run, store, port)
    try:
        for profile, want in acknowledged.items():
            got = httpx.get(f"{base}/profiles/{profile}").json()
            assert {x["movie_id"]: x["rating"] for x in got["ratings"]} == want
        assert sum(len(v) for v in acknowledged.values()) == 1 + 6 * 12
    finally:
        _stop(proc)


def test_reload_reaches_every_worker(cli_run, other_run, tmp_path) -> None:
    """``POST /admin/reload`` lands on one worker; the other follows within a few seconds."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(
        cli_run, sqlite_url(tmp_path / "r.sqlite"), port, "--admin-token", "tok", workers=2, tmp=tmp_path
    )
    try:
        r = httpx.post(f"{base}/admin/reload", json={"run": str(other_run)}, headers={"X-Admin-Token": "tok"})
        assert r.status_code == 200
        assert r.json()["run"] == str(other_run.resolve())
        reloader = r.headers["x-reelrec-worker"]
        follower = _by_worker("GET", f"{base}/health", avoid=reloader).headers["x-reelrec-worker"]
        deadline = time.monotonic() + 20
        while _by_worker("GET", f"{base}/health", want=follower).json()["run"] != str(other_run.resolve()):
            assert time.monotonic() < deadline, "the other worker did not follow the reload"
            time.sleep(0.2)
        for pid in (reloader, follower):
            assert _by_worker("GET", f"{base}/health", want=pid).json()["run"] == str(other_run.resolve())
    finally:
        _stop(proc)


def test_serve_rejects_a_bad_run_in_one_line(tmp_path) -> None:
    cmd = [sys.executable, "-m", "reelrec.cli", "serve", str(tmp_path / "nothing")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "is not a run directory" in r.stderr


def test_retrain_adds_stored_ratings_as_new_users(cli_run, tmp_path, capsys) -> None:
    store_url = sqlite_url(tmp_path / "ratings.sqlite")
    store = RatingStore(store_url)
    liked = ["m3", "m5", "m7", "m9", "m11"]
    for m in liked:
        store.set_rating("alice", m, 5.0)
    store.set_rating("alice", "m2", 1.0)
    store.set_rating("bob", "m4", 4.0)
    store.set_rating("bob", "not-a-movie", 4.0)  # a movie outside the data: skipped, counted
    store.close()
    out = tmp_path / "runs" / "mf2"
    code = main(["retrain", str(cli_run), "--store", store_url, "--out", str(out), "--json", "--no-progress"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert printed["stored_ratings"] == 7
    assert printed["stored_profiles"] == 2
    old, new = Recommender.load(str(cli_run)), Recommender.load(str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["retrained_from"] == str(cli_run.resolve())
    mapping = config["store"]["profiles"]
    assert set(mapping) == {"alice", "bob"}
    assert config["store"]["skipped"] == 1
    assert len(new.users) == len(old.users) + 2
    alice = new.users.index(mapping["alice"])[0]
    rated, ratings = new.user_ratings(alice)
    assert sorted(new.items.raw(rated).tolist()) == sorted([*liked, "m2"])
    assert np.isclose(ratings.max(), 5.0)
    assert np.isclose(ratings.min(), 1.0)
    assert all(x.item_id not in [*liked, "m2"] for x in new.recommend(mapping["alice"], n=10))
    # the old run is untouched and still loads; the test split is the old one
    assert Recommender.load(str(cli_run)).model.n_users == old.model.n_users
    old_metrics = json.loads((cli_run / "metrics.json").read_text())
    assert printed["split"] == old_metrics["split"]


def test_retrain_refuses_to_overwrite_the_old_run(cli_run, tmp_path, capsys) -> None:
    store_url = sqlite_url(tmp_path / "ratings.sqlite")
    code = main(["retrain", str(cli_run), "--store", store_url, "--out", str(cli_run), "--overwrite"])
    assert code == 1
    assert "the old run stays as it is" in capsys.readouterr().err


def test_reload_under_load_drops_no_request(cli_run, other_run, tmp_path) -> None:
    """Clients keep asking while the service switches runs twice: every answer is a 200."""
    port = _free_port()
    proc = _start(cli_run, sqlite_url(tmp_path / "r.sqlite"), port, "--admin-token", "tok")
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not stop.is_set():
                statuses.append(c.get("/users/100/recommendations", params={"n": 5}).status_code)
                statuses.append(c.post("/recommendations", json={"ratings": {"m1": 5}}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        runs = []
        for target in (other_run, cli_run):
            time.sleep(0.3)
            r = httpx.post(
                f"{base}/admin/reload", json={"run": str(target)}, headers={"X-Admin-Token": "tok"}
            )
            assert r.status_code == 200
            runs.append(r.json()["run"])
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        proc.terminate()
        proc.wait(timeout=10)
    assert runs == [str(other_run.resolve()), str(cli_run.resolve())]
    assert len(statuses) > 20
    assert set(statuses) == {200}


def test_serve_refuses_zero_workers(cli_run, capsys) -> None:
    assert main(["serve", str(cli_run), "--workers", "0"]) == 1
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err


def _worker_of(sock: socket.socket) -> str:
    """Send ``GET /health`` on an open keep-alive connection; the pid of the worker that answers."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        head += chunk
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"x-reelrec-worker:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no worker header in {head!r}")


def test_connections_opened_together_spread_over_the_workers(cli_run, tmp_path) -> None:
    """Each worker listens on its own socket (SO_REUSEPORT): 40 keep-alive connections opened at
    once are spread by the kernel, not all taken by the first worker to wake (with one shared
    socket 9 of 10 were seen on one worker). Binomial(40, 1/2) leaves a worker under 8 with
    probability 1e-5."""
    port = _free_port()
    proc = _start(cli_run, sqlite_url(tmp_path / "c.sqlite"), port, workers=2, tmp=tmp_path)
    socks = []
    try:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        owners = [_worker_of(s) for s in socks]
        counts = sorted(owners.count(pid) for pid in set(owners))
        assert len(counts) == 2, counts
        assert counts[0] >= 8, counts
    finally:
        for s in socks:
            s.close()
        _stop(proc)


def test_a_killed_worker_is_replaced(cli_run, tmp_path) -> None:
    """SIGKILL of one worker: the supervisor starts another, and the service keeps answering."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(cli_run, sqlite_url(tmp_path / "k.sqlite"), port, workers=2, tmp=tmp_path)
    try:
        victim = httpx.get(f"{base}/health").headers["x-reelrec-worker"]
        os.kill(int(victim), signal.SIGKILL)
        seen: set[str] = set()
        deadline = time.monotonic() + 90
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"no replacement worker (saw {seen})"
            try:
                r = httpx.get(f"{base}/health", timeout=5)  # a new connection each time
                seen.add(r.headers["x-reelrec-worker"])
            except httpx.TransportError:
                time.sleep(0.2)  # the dead worker's queued connection was reset
        assert victim not in seen
        assert proc.poll() is None
    finally:
        _stop(proc)
    assert proc.returncode == 0
    assert not list(tmp_path.glob("reelrec-serve-*"))  # the private state folder is gone


def test_serve_refuses_a_port_in_use(cli_run, capsys) -> None:
    """A port another program listens on is one line before anything loads, for one worker or
    several (never two services silently sharing it)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            assert main(["serve", str(cli_run), "--port", str(port), "--workers", workers]) == 1
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"reelrec: error: cannot listen on 127.0.0.1:{port}")
            assert "\n" not in err


def test_ctrl_c_stops_every_worker_quietly(cli_run, tmp_path) -> None:
    """Ctrl+C (SIGINT to the whole process group, as a terminal sends it): every process ends,
    status 0, no traceback, the private state folder gone."""
    port = _free_port()
    proc = _start(cli_run, sqlite_url(tmp_path / "i.sqlite"), port, workers=2, tmp=tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert not list(tmp_path.glob("reelrec-serve-*"))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_workers_serve_one_model_after_an_overwrite_and_a_killed_supervisor_leaves_nothing(
    cli_run, tmp_path
) -> None:
    """Issue 23, with real processes: ``train --out RUN --overwrite`` on the served run, then a
    worker killed and replaced: every worker ends on one model (the replacement says so in the
    log), never one on each. Then the supervisor is killed with SIGKILL: its state folder is
    left, and the next ``reelrec serve`` removes it."""
    import shutil

    from conftest import small_dataset
    from reelrec.service.state import run_fingerprint

    run = tmp_path / "runs" / "served"
    shutil.copytree(cli_run, run)
    store = sqlite_url(tmp_path / "ratings.sqlite")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(run, store, port, workers=2, tmp=tmp_path)
    try:
        states = list(tmp_path.glob("reelrec-serve-*"))
        assert len(states) == 1
        Recommender.train("bias", small_dataset()).save(str(run), overwrite=True)
        new = run_fingerprint(run)
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) == 2
        os.kill(int(workers[0]), signal.SIGKILL)
        deadline = time.monotonic() + 90
        seen: dict[str, tuple[str, str]] = {}
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{base}/health", timeout=5)
                seen[r.headers["x-reelrec-worker"]] = (r.json()["model"], r.json()["run_sha256"])
            except httpx.TransportError:
                pass
            live = {pid: v for pid, v in seen.items() if pid != workers[0]}
            if len(live) >= 2 and set(live.values()) == {("bias", new)}:
                break
            time.sleep(0.2)
        assert set(live.values()) == {("bias", new)}, seen
        os.kill(proc.pid, signal.SIGKILL)  # the supervisor alone
        proc.wait(timeout=10)
        assert "changed on disk since it was pinned" in proc.stdout.read()
        assert [p.exists() for p in states] == [True]  # a SIGKILL leaves the folder
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    time.sleep(1)  # the workers end with their supervisor (SIGTERM from the kernel)
    proc = _start(run, store, _free_port(), tmp=tmp_path)
    try:
        assert not states[0].exists()
    finally:
        _stop(proc)
    assert list(tmp_path.glob("reelrec-serve-*")) == []
