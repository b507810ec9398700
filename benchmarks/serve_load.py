"""Load benchmark of ``reelrec serve`` on an ML-1M-sized run, against 127.0.0.1 only.

    REELREC_DATA_HOME=../shared/data python benchmarks/serve_load.py [--run RUN_DIR]
        [--clients 16] [--seconds 10] [--json OUT]

Without ``--run`` it trains the default MF model on ML-1M (``ml-1m-ratings/ratings.csv``,
holdout90, seed 42) once and keeps it in ``benchmarks/results/serve-ml1m-mf``. It starts
``reelrec serve`` in a subprocess (1 torch thread, a fresh SQLite store), then, for each
scenario, runs ``--clients`` closed-loop clients over keep-alive HTTP/1.1 connections for
``--seconds`` after a one-second warm-up, and reports p50/p99 latency, throughput and the
number of non-200 answers (5xx counted apart). Scenarios:

* ``known-user``: ``GET /users/{id}/recommendations?n=10`` for random training users;
* ``new-user``: ``POST /recommendations`` with 20 ratings (a random user's own ratings, so the
  fold-in does real work) and ``n=10``;
* ``similar``: ``GET /movies/{id}/similar?n=10`` for random movies with embeddings.

The load generator is a single asyncio process on the same machine; it uses one of the two
cores, so the figures are a lower bound on what the server does alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
BARS = {"known-user": {"p99_ms": 20.0, "rps": 300.0}, "new-user": {"p99_ms": 50.0}, "similar": {}}


def ensure_run(run: str | None) -> Path:
    if run:
        return Path(run)
    target = RESULTS / "serve-ml1m-mf"
    if (target / "manifest.json").is_file():
        return target
    from reelrec.cli import main

    data = os.environ.get("REELREC_DATA_HOME")
    if not data:
        sys.exit("set REELREC_DATA_HOME (e.g. ../shared/data) or pass --run")
    ratings = Path(data) / "ml-1m-ratings" / "ratings.csv"
    items = Path(data) / "ml-1m" / "movies.dat"
    argv = ["train", "--ratings", str(ratings), "--model", "mf", "--split", "holdout90", "--no-progress"]
    if items.is_file():
        argv += ["--items", str(items)]
    code = main([*argv, "--out", str(target), "--overwrite"])
    if code:
        sys.exit(f"training the benchmark run failed ({code})")
    return target


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, store: Path, ann: bool = False, workers: int = 1) -> subprocess.Popen:
    env = dict(os.environ)  # the server limits its own torch and BLAS threads (serve --threads)
    cmd = [sys.executable, "-m", "reelrec.cli", "serve", str(run), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--store", f"sqlite:///{store}", "--workers", str(workers)] + (["--ann"] if ann else [])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"serve exited: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("serve did not start")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


async def client(
    port: int, requests: list[bytes], stop_at: float, warm_until: float, out: dict, interval: float | None
) -> None:
    """One keep-alive connection. Closed loop (``interval=None``): the next request leaves as
    soon as the answer arrives. Paced: requests are due every ``interval`` seconds and latency
    counts from the due time, so a late answer also delays (and charges) the next one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = np.random.default_rng(out["seed"])
    out["seed"] += 1
    due = time.perf_counter() + (rng.random() * interval if interval else 0.0)
    try:
        while True:
            if interval:
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = due
                due += interval
            else:
                now = time.perf_counter()
            if now >= stop_at:
                break
            req = requests[int(rng.integers(len(requests)))]
            writer.write(req)
            status, _ = await _read_response(reader)
            done = time.perf_counter()
            if now >= warm_until:
                out["lat"].append(done - now)
                if status != 200:
                    out["errors"] += 1
                    out["5xx"] += status >= 500
    finally:
        writer.close()


async def scenario(
    port: int, requests: list[bytes], clients: int, seconds: float, rate: float | None = None
) -> dict:
    out = {"lat": [], "errors": 0, "5xx": 0, "seed": 0}
    start = time.perf_counter()
    warm_until, stop_at = start + 1.0, start + 1.0 + seconds
    interval = clients / rate if rate else None
    await asyncio.gather(
        *(client(port, requests, stop_at, warm_until, out, interval) for _ in range(clients))
    )
    lat = np.asarray(out["lat"]) * 1000
    return {
        "requests": int(lat.size),
        "rps": round(lat.size / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "mean_ms": round(float(lat.mean()), 2),
        "non_200": out["errors"],
        "5xx": int(out["5xx"]),
    }


def build_requests(run: Path, n: int = 2000, seed: int = 0) -> dict[str, list[bytes]]:
    from reelrec.recommender import Recommender

    rec = Recommender.load(str(run))
    rng = np.random.default_rng(seed)
    users = np.flatnonzero(rec.user_counts >= 20)
    items = np.flatnonzero(rec.item_counts > 0)
    raw_users, raw_items = rec.users.ids, rec.catalogue()[0]

    def get(path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    known = [get(f"/users/{raw_users[u]}/recommendations?n=10") for u in rng.choice(users, n)]
    similar = [get(f"/movies/{raw_items[i]}/similar?n=10") for i in rng.choice(items, n)]
    new = []
    for u in rng.choice(users, n):
        rated, ratings = rec.user_ratings(int(u))
        pick = rng.choice(rated.shape[0], 20, replace=False)
        given = {str(raw_items[int(rated[k])]): float(ratings[k]) for k in pick}
        body = json.dumps({"ratings": given, "n": 10}).encode()
        head = "POST /recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        new.append(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return {"known-user": known, "new-user": new, "similar": similar}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a saved run to serve (default: train MF on ML-1M once)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--rate",
        type=float,
        default=300.0,
        help="offered load of the paced runs, requests/s over all clients (0: closed loop only)",
    )
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--ann", action="store_true", help="serve with approximate retrieval (faiss HNSW)")
    ap.add_argument(
        "--workers", type=int, default=1, help="serve --workers (default 1: this client takes a core)"
    )
    ap.add_argument(
        "--only", action="append", choices=sorted(BARS), help="run only this scenario (repeatable)"
    )
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    run = ensure_run(args.run)
    requests = build_requests(run)
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "serve-load.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    port = free_port()
    proc = start_server(run, port, store, args.ann, args.workers)
    rows = {}
    modes = [("closed loop", None)] + ([(f"paced {args.rate:g}/s", args.rate)] if args.rate else [])
    try:
        for name, reqs in requests.items():
            if args.only and name not in args.only:
                continue
            for mode, rate in modes:
                before = cpu_seconds(proc.pid)
                row = asyncio.run(scenario(port, reqs, args.clients, args.seconds, rate))
                total = row["requests"] * (1 + 1 / args.seconds)  # the warm-up second too, roughly
                row["server_cpu_ms"] = round(1000 * (cpu_seconds(proc.pid) - before) / max(total, 1), 3)
                rows[f"{name} / {mode}"] = {"scenario": name, "mode": mode, **row}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    info = {
        "run": str(run),
        "clients": args.clients,
        "seconds": args.seconds,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "results": rows,
    }
    mode = " --ann" if args.ann else ""
    print(
        f"reelrec serve{mode} load: {run}, {args.clients} clients, {args.seconds:g} s per scenario, 127.0.0.1"
    )
    print("| scenario | requests | req/s | p50 ms | p99 ms | server CPU ms/req | non-200 | 5xx | bar |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        bar = BARS[r["scenario"]]
        checks = []
        if "p99_ms" in bar:
            checks.append(f"p99 ≤ {bar['p99_ms']:g} {'✓' if r['p99_ms'] <= bar['p99_ms'] else '✗'}")
        if "rps" in bar and r["mode"] == "closed loop":
            checks.append(f"≥ {bar['rps']:g}/s {'✓' if r['rps'] >= bar['rps'] else '✗'}")
        print(
            f"| {name} | {r['requests']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['server_cpu_ms']} "
            f"| {r['non_200']} "
            f"| {r['5xx']} | {', '.join(checks) or '-'} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
