"""Throughput and latency of ``reelrec serve`` under ``wrk`` (a C load generator that is not the
bottleneck), for several worker counts, against 127.0.0.1 only.

    REELREC_DATA_HOME=../shared/data python benchmarks/serve_wrk.py [--run RUN_DIR]
        [--workers 1 2 4] [--connections 16] [--threads 2] [--seconds 10] [--repeat 2] [--json OUT]

Without ``--run`` it trains the default MF model on ML-1M once (as ``benchmarks/serve_load.py``
does, kept in ``benchmarks/results/serve-ml1m-mf``). For each worker count it starts
``reelrec serve --workers N`` (1 torch thread per worker, a fresh SQLite store), waits for
every worker to answer, and runs, ``--repeat`` times each:

* ``known-user``: ``wrk -t2 -c16 -d10s --latency``, closed loop, ``GET /users/{id}/recommendations?n=10``
  cycling over 2,000 training users (each wrk thread starts at its own offset);
* ``new-user``: the same over ``POST /recommendations`` with 20 of a random user's own ratings
  (the fold-in does real work) and ``n=10``.

Each row gives requests/s, p50/p99 latency (wrk's own histogram), the server's CPU time per
request and the cores it got on average (user + system time of all its processes, from
``/proc``), non-2xx answers and socket errors, and the 1-minute load average before the run
(the machine may be shared: CPU per request is the figure that survives a busy machine). It also
reports, after the runs, each process's RSS and PSS (``/proc/PID/smaps_rollup``): PSS splits
shared pages (the memory-mapped weights, the shared libraries) between the processes that map
them, so the PSS total (workers and the supervisor) is what the
service costs the machine. Skips with a message when ``wrk`` is absent
(Debian/Ubuntu: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import RESULTS, cpu_seconds, ensure_run, free_port

BARS = {"known-user": {"p99_ms": 25.0, "rps": 1200.0}, "new-user": {"p99_ms": 50.0}}

LUA = r"""
local requests = {}
local n = 0
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 997)
end

function init(args)
  for line in io.lines(args[1]) do
    local method, path, body = line:match("^(%S+) (%S+) ?(.*)$")
    local headers = {}
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    n = n + 1
    requests[n] = wrk.format(method, path, headers, body)
  end
  i = offset or 0
end

function request()
  i = i + 1
  return requests[(i % n) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "mean_us": %.1f, "connect": %d, "read": %d, "write": %d, "status": %d, '
      .. '"timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
"""


def request_lines(run: Path, n: int = 2000, seed: int = 0) -> dict[str, list[str]]:
    """One request per line (``METHOD PATH [JSON BODY]``) per scenario."""
    from reelrec.recommender import Recommender

    rec = Recommender.load(str(run))
    rng = np.random.default_rng(seed)
    users = np.flatnonzero(rec.user_counts >= 20)
    raw_users, raw_items = rec.users.ids, rec.catalogue()[0]
    known = [f"GET /users/{raw_users[u]}/recommendations?n=10" for u in rng.choice(users, n)]
    new = []
    for u in rng.choice(users, n):
        rated, ratings = rec.user_ratings(int(u))
        pick = rng.choice(rated.shape[0], 20, replace=False)
        given = {str(raw_items[int(rated[k])]): float(ratings[k]) for k in pick}
        new.append("POST /recommendations " + json.dumps({"ratings": given, "n": 10}, separators=(",", ":")))
    return {"known-user": known, "new-user": new}


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def start_server(run: Path, port: int, store: Path, workers: int) -> subprocess.Popen:
    """``reelrec serve --workers N`` in its own process group; returns once every worker answered
    (their pids appear in the ``X-Reelrec-Worker`` header over fresh connections)."""
    cmd = [sys.executable, "-m", "reelrec.cli", "serve", str(run), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--store", f"sqlite:///{store}", "--workers", str(workers)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 180
    seen: set[str] = set()
    while time.monotonic() < deadline and len(seen) < workers:
        if proc.poll() is not None:
            sys.exit(f"serve exited: {proc.stderr.read()}")
        try:
            status, headers, _ = _get(port, "/health")
            if status == 200:
                seen.add(headers.get("x-reelrec-worker", "?"))
                continue
        except OSError:
            pass
        time.sleep(0.2)
    if len(seen) < workers:
        stop_server(proc)
        sys.exit(f"only {len(seen)} of {workers} workers answered within 180 s")
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def service_memory(parent: int) -> list[dict[str, Any]]:
    """RSS and PSS (MiB) of every process of the service: the parent (with one worker it *is*
    the worker; with several, the supervisor) and its workers (and any helper process)."""
    try:
        kids = [int(k) for k in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
    except OSError:
        kids = []
    out = []
    for pid in [parent, *kids]:
        try:
            fields = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
            )
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if pid == parent:
            role = "supervisor" if kids else "worker"
        else:
            role = "helper" if b"resource_tracker" in cmdline else "worker"
        kib = {k: int(v.split()[0]) for k, v in fields.items() if v.strip().endswith("kB")}
        out.append({"pid": pid, "role": role, "rss_mib": kib["Rss"] / 1024, "pss_mib": kib["Pss"] / 1024})
    return out


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_wrk(
    port: int, script: Path, lines: Path, threads: int, connections: int, seconds: float
) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    cmd += [f"http://127.0.0.1:{port}", "--", str(lines)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    row = json.loads(next(x for x in out.splitlines() if x.startswith("WRK_JSON ")).split(" ", 1)[1])
    return {
        "requests": row["requests"],
        "rps": round(row["requests"] / (row["duration_us"] / 1e6), 1),
        "p50_ms": round(row["p50_us"] / 1000, 2),
        "p99_ms": round(row["p99_us"] / 1000, 2),
        "max_ms": round(row["max_us"] / 1000, 2),
        "non_2xx": row["status"],
        "socket_errors": row["connect"] + row["read"] + row["write"] + row["timeout"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a saved run to serve (default: train MF on ML-1M once)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each scenario (the machine is shared)")
    ap.add_argument("--only", action="append", choices=sorted(BARS), help="only this scenario (repeatable)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("serve_wrk: skipped: wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
        return
    run = ensure_run(args.run)
    scenarios = {k: v for k, v in request_lines(run).items() if not args.only or k in args.only}
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    memory = {}
    with tempfile.TemporaryDirectory(prefix="reelrec-wrk-") as tmp:
        script = Path(tmp) / "cycle.lua"
        script.write_text(LUA)
        files = {}
        for name, lines in scenarios.items():
            files[name] = Path(tmp) / f"{name}.txt"
            files[name].write_text("\n".join(lines) + "\n")
        for workers in args.workers:
            store = Path(tmp) / f"store-{workers}.sqlite"
            port = free_port()
            proc = start_server(run, port, store, workers)
            try:
                for name in scenarios:
                    run_wrk(port, script, files[name], args.threads, args.connections, 2)  # warm-up
                    for k in range(args.repeat):
                        load = load1()
                        pids = [p["pid"] for p in service_memory(proc.pid)]
                        before = sum(cpu_seconds(p) for p in pids)
                        row = run_wrk(port, script, files[name], args.threads, args.connections, args.seconds)
                        used = sum(cpu_seconds(p) for p in pids) - before
                        row["server_cpu_ms"] = round(1000 * used / max(row["requests"], 1), 3)
                        row["server_cores"] = round(used / args.seconds, 2)
                        rows.append({"workers": workers, "scenario": name, "try": k + 1, "load1": load})
                        rows[-1].update(row)
                        print(json.dumps(rows[-1]), flush=True)
                memory[workers] = service_memory(proc.pid)
            finally:
                stop_server(proc)
    print(
        f"\nreelrec serve under wrk: {run}, wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s "
        f"--latency, closed loop, 127.0.0.1; {platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        "| workers | scenario | try | load avg before | req/s | p50 ms | p99 ms | server CPU ms/req "
        "| cores the server got | non-2xx | bar |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        bar = BARS[r["scenario"]]
        checks = []
        if "rps" in bar:
            checks.append(f"≥ {bar['rps']:g}/s {'✓' if r['rps'] >= bar['rps'] else '✗'}")
        checks.append(f"p99 ≤ {bar['p99_ms']:g} {'✓' if r['p99_ms'] <= bar['p99_ms'] else '✗'}")
        print(
            f"| {r['workers']} | {r['scenario']} | {r['try']} | {r['load1']:.2f} | {r['rps']:.0f} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['server_cpu_ms']} | {r['server_cores']} "
            f"| {r['non_2xx'] + r['socket_errors']} | {', '.join(checks)} |"
        )
    print("\n| workers | RSS per worker MiB | PSS per worker MiB | PSS other MiB | PSS total MiB |")
    print("|---:|---|---|---:|---:|")
    for workers, procs in memory.items():
        mine = [p for p in procs if p["role"] == "worker"]
        rest = sum(p["pss_mib"] for p in procs if p["role"] != "worker")
        rss = ", ".join(f"{p['rss_mib']:.0f}" for p in mine)
        pss = ", ".join(f"{p['pss_mib']:.0f}" for p in mine)
        print(f"| {workers} | {rss} | {pss} | {rest:.0f} | {sum(p['pss_mib'] for p in procs):.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(run), "rows": rows, "memory": memory}, indent=1))


if __name__ == "__main__":
    main()
