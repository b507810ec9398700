"""reelrec at 1M, 5M and 25M ratings: load, train, evaluate, serve start-up, peak memory.

    python benchmarks/scale.py --work /data/scale                       # 1M 5M 25M
    python benchmarks/scale.py --work /data/scale --sizes 1000000 5000000 --steps load train

For every size N the script writes MovieLens-shaped synthetic data in the ml-25m layout with
``benchmarks/synthetic.py --ratings N`` (once; reused when present) into ``WORK/N/`` and runs each
step as its own process under ``/usr/bin/time`` (wall seconds and peak RSS of that process alone),
with the product's defaults, holdout90 seed 42:

* ``load``: ``load_movielens("ml-25m")`` with the array cache emptied (first load), then again
  (second load, from the cache); ratio second / first.
* ``train``: ``reelrec train --dataset ml-25m --model mf`` (defaults) and ``--model bias`` (the
  baseline): test RMSE, training seconds, epochs, wall and CPU seconds, peak RSS; plus the data's
  noise and bias floors recorded by the generator.
* ``rank``: ``reelrec train --model mf --protocol temporal-full`` and then
  ``reelrec evaluate RUN --protocol temporal-full`` (full ranking over every movie): wall seconds
  and peak RSS of the evaluation, NDCG@10 / Recall@20.
* ``refuse``: ``reelrec train --model ease|seqlinear|autorec|itemknn``, which cannot train at
  25M on this machine: each must exit with one line naming the limit, within seconds.
* ``others``: ``reelrec train --model als`` (defaults) and ``--model mlp --epochs 1 --no-refit``
  (seconds per epoch of the neural path at this size).
* ``serve``: ``reelrec serve --workers CORES`` of the MF run: seconds until ``/health`` answers and
  until every worker has answered, the service's RSS then, and, from then on, a
  10 s ``wrk`` closed loop of known-user top-10 requests over 4 connections (requests/s, p50,
  p99), then at least 300 requests/s offered two ways (10 connections with a random wait of mean
  20 ms between a connection's answer and its next request, about 380/s; 64 connections with
  mean 200 ms, about 310/s) and how many connections each worker holds, when wrk is installed;
  then, with the service stopped, one known-user list (the 200 most active users) and one
  new-user list (20 ratings folded in) in process, from the int8 copy and from the exact pass
  (ms, and how many lists differ), a title search (ms), and how many directions the int8 pass
  reads.

``--train-extra '--device cuda'`` adds options to every ``reelrec train`` it runs (on a GPU
machine: MF's epoch time on 25M ratings is ``mf_seconds_per_epoch``).

Writes ``WORK/scale.json`` and draws time and memory against size (log-log) into
``docs/img/scale.png``; prints the markdown table of docs/benchmarks.md. Times on a shared
machine drift: the script prints the load average before each step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time: its wall seconds, peak RSS (MiB) and stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%e %M %U %S", "-o", tf.name, *cmd]
        load = os.getloadavg()[0]
        proc = subprocess.run(full, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        wall, rss_kb, user, system = tf.read().split()[-4:]
    return {
        "wall_s": float(wall),
        # CPU seconds: on a shared machine the wall time is inflated, the CPU time much less so
        "cpu_s": float(user) + float(system),
        "rss_mib": int(rss_kb) / 1024,
        "stdout": proc.stdout,
        "load": load,
    }


def _json_out(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["REELREC_DATA_HOME"] = str(home)
    env.update(extra)
    return env


def make_data(n: int, home: Path) -> dict:
    meta = home / "ml-25m" / "synthetic.json"
    if not meta.is_file():
        subprocess.run(
            [PY, str(HERE / "synthetic.py"), "--ratings", str(n), "--out", str(home), "--no-progress"],
            check=True,
        )
    return json.loads(meta.read_text())


def step_load(home: Path, runs: Path) -> dict:
    code = (
        "import time; from reelrec.data.movielens import load_movielens; t=time.perf_counter(); "
        "ds=load_movielens('ml-25m'); print(len(ds), time.perf_counter()-t)"
    )
    shutil.rmtree(home / "ml-25m" / ".reelrec-cache", ignore_errors=True)  # the array cache
    first = _timed([PY, "-c", code], _env(home))
    second = _timed([PY, "-c", code], _env(home))
    return {
        "load_first_s": float(first["stdout"].split()[-1]),
        "load_first_rss_mib": first["rss_mib"],
        "load_second_s": float(second["stdout"].split()[-1]),
        "load_second_rss_mib": second["rss_mib"],
    }


#: options added to every ``reelrec train`` the steps run (``--train-extra``)
TRAIN_EXTRA: list[str] = []


def _train(home: Path, out: Path, model: str, extra: list[str] = ()) -> tuple[dict, dict]:
    cmd = [PY, "-m", "reelrec", "train", "--dataset", "ml-25m", "--model", model, "--out", str(out)]
    cmd += ["--overwrite", "--json", "--no-progress", *extra, *TRAIN_EXTRA]
    res = _timed(cmd, _env(home))
    return res, _json_out(res["stdout"])


def step_train(home: Path, runs: Path) -> dict:
    row: dict = {}
    for model in ("bias", "mf"):
        res, m = _train(home, runs / model, model)
        row[f"{model}_rmse"] = m["test"]["rmse"]
        row[f"{model}_train_s"] = m["train_seconds"]
        row[f"{model}_wall_s"] = res["wall_s"]
        row[f"{model}_cpu_s"] = res["cpu_s"]
        row[f"{model}_rss_mib"] = res["rss_mib"]
        row[f"{model}_load_avg"] = res["load"]
        if model == "mf":
            row["mf_epochs"] = m.get("epochs")
            row["mf_seconds_per_epoch"] = m.get("seconds_per_epoch")
    return row


def step_rank(home: Path, runs: Path) -> dict:
    run = runs / "mf-temporal"
    res, _ = _train(home, run, "mf", ["--protocol", "temporal-full"])
    ev = _timed(
        [PY, "-m", "reelrec", "evaluate", str(run), "--protocol", "temporal-full", "--json"], _env(home)
    )
    metrics = _json_out(ev["stdout"])
    rank = metrics.get("ranking", metrics)
    return {
        "rank_train_wall_s": res["wall_s"],
        "evaluate_wall_s": ev["wall_s"],
        "evaluate_cpu_s": ev["cpu_s"],
        "evaluate_rss_mib": ev["rss_mib"],
        "ndcg@10": rank.get("ndcg@10"),
        "recall@20": rank.get("recall@20"),
    }


def step_refuse(home: Path, runs: Path) -> dict:
    """The models that cannot train at this size must refuse in one line, within seconds."""
    row: dict = {}
    for model in ("ease", "seqlinear", "autorec", "itemknn"):
        cmd = [PY, "-m", "reelrec", "train", "--dataset", "ml-25m", "--model", model]
        cmd += ["--out", str(runs / f"refused-{model}"), "--no-progress"]
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            proc = subprocess.run(
                ["/usr/bin/time", "-f", "%e %M", "-o", tf.name, *cmd],
                capture_output=True,
                text=True,
                env=_env(home),
                check=False,
            )
            wall, rss_kb = tf.read().split()[-2:]
        lines = proc.stderr.strip().splitlines()
        row[f"refuse_{model}"] = {
            "refused": proc.returncode == 1 and len(lines) == 1,
            "wall_s": float(wall),
            "rss_mib": int(rss_kb) / 1024,
            "message": lines[-1] if lines else "",
        }
        print(f"  {model}: {float(wall):.1f} s: {row[f'refuse_{model}']['message'][:160]}", flush=True)
    return row


def step_others(home: Path, runs: Path) -> dict:
    """Other trainable models at this size: ALS with its defaults; the neural models for one epoch
    (``--epochs 1 --no-refit``, from random weights: ``pretrain=none``, as measured before the MLP's
    default started from an MF trained first), giving their seconds per epoch."""
    row: dict = {}
    one_epoch = {
        "mlp": ["--epochs", "1", "--no-refit", "--param", "pretrain=none"],
        "bpr": ["--epochs", "1", "--no-refit"],
    }
    for model, extra in ((m, one_epoch.get(m, [])) for m in OTHER_MODELS):
        res, m = _train(home, runs / model, model, extra)
        row[f"{model}_rmse"] = m.get("test", {}).get("rmse")
        row[f"{model}_train_s"] = m["train_seconds"]
        row[f"{model}_epochs"] = m.get("epochs")
        row[f"{model}_wall_s"] = res["wall_s"]
        row[f"{model}_rss_mib"] = res["rss_mib"]
        print(f"  {model}: {json.dumps({k: v for k, v in row.items() if k.startswith(model)})}", flush=True)
    return row


#: the models ``--steps others`` trains (``--others``): ALS with its defaults, the rest one epoch
OTHER_MODELS = ["als", "mlp"]
#: the models ``--steps defaults`` trains (``--models``)
DEFAULT_MODELS = ["bpr", "gmf", "neumf", "hybrid", "mlp"]


def step_defaults(home: Path, runs: Path) -> dict:
    """Each of ``--models`` with its defaults only (the whole recipe: pre-training, early stopping,
    refits as the model's defaults at this size say): training and wall seconds, peak RSS, and the
    test figures it reports. The bar of the scale issue: within an hour, or a refusal in ≤ 10 s."""
    row: dict = {}
    for model in DEFAULT_MODELS:
        res, m = _train(home, runs / f"defaults-{model}", model)
        row[f"{model}_defaults_train_s"] = m.get("train_seconds")
        row[f"{model}_defaults_epochs"] = m.get("epochs")
        row[f"{model}_defaults_wall_s"] = res["wall_s"]
        row[f"{model}_defaults_cpu_s"] = res["cpu_s"]
        row[f"{model}_defaults_rss_mib"] = res["rss_mib"]
        row[f"{model}_defaults_load_avg"] = res["load"]
        if "test" in m:
            row[f"{model}_defaults_rmse"] = m["test"].get("rmse")
        for key, value in (m.get("test_ranking") or {}).items():
            if key.startswith(("ndcg@10", "recall@20", "hr@10")):
                row[f"{model}_defaults_{key}"] = value
        shown = {k: v for k, v in row.items() if k.startswith(f"{model}_")}
        print(f"  {model}: {json.dumps(shown)}", flush=True)
    return row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step_serve(home: Path, runs: Path) -> dict:
    run = runs / "mf"
    port = _free_port()
    store = f"sqlite:///{runs / 'scale-serve.sqlite'}"
    workers = os.cpu_count() or 1  # serve's default: one worker per core
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "reelrec",
            "serve",
            str(run),
            "--port",
            str(port),
            "--store",
            store,
            "--workers",
            str(workers),
        ],
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    row: dict = {}
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("reelrec serve exited before answering /health")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        row["serve_ready_s"] = time.perf_counter() - start
        # the load runs start once every worker answers (their pids in X-Reelrec-Worker over
        # fresh connections), as in serve_wrk.py: /health answers as soon as the first is up
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while len(seen) < workers and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                seen.add(r.headers.get("x-reelrec-worker", "?"))
        row["serve_all_workers_s"] = time.perf_counter() - start
        row["serve_rss_mib"] = _tree_rss_mib(proc.pid)  # the supervisor and its workers
        if shutil.which("wrk"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/users?limit=200", timeout=5) as r:
                # the 200 most active users: the longest seen-item lists to filter
                users = [str(u["user_id"]) for u in json.load(r)]
            lua = runs / "known.lua"
            lua.write_text(
                "local ids = {" + ",".join(f'"{u}"' for u in users) + "}\nlocal i = 0\n"
                "request = function()\n  i = i % #ids + 1\n"
                '  return wrk.format("GET", "/users/" .. ids[i] .. "/recommendations?n=10")\nend\n'
            )
            out = subprocess.run(
                ["wrk", "-t1", "-c4", "-d10s", "--latency", "-s", str(lua), f"http://127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            row.update(_wrk_figures(out, "serve"))
            # at least 300 requests/s offered, two ways, each connection waiting a random time
            # after every answer (wrk's delay(); the latency excludes the wait), exponential so
            # the connections do not fall in step and send in bursts as a fixed wait made them:
            # 10 connections, mean 20 ms (about 380/s at 6 ms each), and 64 connections, mean
            # 200 ms (about 310/s; many clients each asking now and then, closer to independent
            # arrivals). The rate wrk achieved is reported beside the p99, and how many of the
            # connections each worker holds (``ss``) in the middle of the run.
            base = lua.read_text()
            for prefix, connections, wait_ms in (("serve_paced", 10, 20), ("serve_many", 64, 200)):
                wait = f"math.floor(-{wait_ms} * math.log(1 - math.random()))"
                lua.write_text(base + f"delay = function()\n  return {wait}\nend\n")
                cmd = ["wrk", "-t1", f"-c{connections}", "-d10s", "--latency", "-s", str(lua)]
                load = subprocess.Popen(
                    [*cmd, f"http://127.0.0.1:{port}"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                time.sleep(5)
                row[f"{prefix}_connections_per_worker"] = _connections_per_worker(port)
                out, _ = load.communicate(timeout=60)
                row.update(_wrk_figures(out, prefix))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    row.update(_in_process_lists(home, run))
    return row


#: one known user's list in process (what a request costs the worker before HTTP; the 200 most
#: active users, the service's own body builder) and one new user's (20 of a random user's own
#: ratings folded in), from the int8 copy and from the exact pass: three rounds after one warm-up,
#: one thread; how many lists the two paths order differently; a title search (``GET /movies``'s
#: filter) for 100 four-letter pieces of titles
IN_PROCESS = """
import json, sys, time
import numpy as np, torch
from threadpoolctl import threadpool_limits
from reelrec._defaults import LIST_NOVELTY
from reelrec.service.state import Served
torch.set_num_threads(1)
limits = threadpool_limits(1)
served = Served.load(sys.argv[1])
rec = served.rec
users = np.argsort(-rec.user_counts, kind="stable")[:200].tolist()
rng = np.random.default_rng(0)
folds = []
for u in rng.choice(np.flatnonzero(rec.user_counts >= 20), 200).tolist():
    rated, ratings = rec.user_ratings(u)
    pick = rng.choice(len(rated), 20, replace=False)
    folds.append((rated[pick], ratings[pick].astype(np.float64)))
fast = rec.quantized_items()

def timed(call, cases):
    times, out = [], []
    for rnd in range(4):
        for case in cases:
            t = time.perf_counter()
            got = call(case)
            if rnd:
                times.append(time.perf_counter() - t)
            else:
                out.append(got)
    ms = np.array(times) * 1e3
    return {"mean": ms.mean(), "p50": np.median(ms), "p99": np.percentile(ms, 99)}, out

row = {"int8_dims": None if fast is None else fast.dims}
runs = {}
for path in ("int8", "exact"):
    rec._quantized = fast if path == "int8" else None
    known = lambda u: served.known_user_list(u, 10, True, LIST_NOVELTY)["items"]
    lists, a = timed(lambda u: [x["movie_id"] for x in known(u)], users)
    folded, b = timed(lambda f: rec.new_user_top_n(f[0], f[1], 10, LIST_NOVELTY)[0].tolist(), folds)
    runs[path] = (a, b)
    row.update({f"list_{path}_ms_{k}": v for k, v in lists.items()})
    row.update({f"fold_in_{path}_ms_{k}": v for k, v in folded.items()})
titles = [t for t in served.titles_lower.tolist() if len(t) >= 4]
queries = [t[k : k + 4] for t, k in zip(rng.choice(titles, 100).tolist(), rng.integers(0, 4, 100).tolist())]
found, _ = timed(lambda q: served.search(q, None, 20, 0)[0], queries)
row.update({f"search_ms_{k}": v for k, v in found.items()})
row["lists_differing"] = sum(x != y for x, y in zip(runs["int8"][0], runs["exact"][0]))
row["fold_in_lists_differing"] = sum(x != y for x, y in zip(runs["int8"][1], runs["exact"][1]))
print(json.dumps(row))
"""


def _in_process_lists(home: Path, run: Path) -> dict:
    """Milliseconds per known-user list and per new-user list in process (mean, p50, p99), int8
    and exact, the int8 pass's dims and how many lists the two paths order differently."""
    out = subprocess.run(
        [PY, "-c", IN_PROCESS, str(run)], env=_env(home), capture_output=True, text=True, check=True
    ).stdout
    return {f"serve_{k}": v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def _connections_per_worker(port: int) -> list[int]:
    """How many established connections to ``port`` each serving process holds, largest first
    (empty without ``ss``)."""
    if not shutil.which("ss"):
        return []
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True
    ).stdout
    pids = re.findall(r"pid=(\d+)", out)
    return sorted((pids.count(p) for p in set(pids)), reverse=True)


def _tree_rss_mib(root: int) -> float:
    """Summed RSS (MiB) of a process and all its descendants (serve's workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= new
        grew = bool(new)
    total = 0
    for pid in tree:
        try:
            total += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
        except (OSError, AttributeError):
            continue
    return total / 1024


def _wrk_figures(out: str, prefix: str) -> dict:
    row = {f"{prefix}_rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        row[f"{prefix}_p{pct}_ms"] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["ratings"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    series = {
        a: (
            ("load_first_s", "load (first)"),
            ("load_second_s", "load (cached)"),
            ("mf_wall_s", "train mf (whole command)"),
            ("evaluate_wall_s", "evaluate temporal-full"),
            ("serve_ready_s", "serve ready"),
        ),
        b: (
            ("load_first_rss_mib", "load"),
            ("mf_rss_mib", "train mf"),
            ("evaluate_rss_mib", "evaluate"),
            ("serve_rss_mib", "serve"),
        ),
    }
    for ax, lines in series.items():
        for key, label in lines:
            pts = [(s, r[key]) for s, r in zip(sizes, rows, strict=True) if r.get(key)]
            if pts:
                ax.loglog(*zip(*pts, strict=True), "o-", label=label)
    a.set(xlabel="ratings", ylabel="seconds", title="time against size")
    b.set(xlabel="ratings", ylabel="peak RSS (MiB)", title="memory against size")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--work", required=True, help="folder for the synthetic data and runs (~1.3 GB)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000, 25_000_000])
    parser.add_argument("--steps", nargs="+", default=["load", "train", "rank", "serve"])
    parser.add_argument("--plot", default=str(ROOT / "docs" / "img" / "scale.png"))
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="models of --steps defaults")
    parser.add_argument("--others", nargs="+", default=OTHER_MODELS, help="models of --steps others")
    parser.add_argument(
        "--train-extra", default="", help="options for every `reelrec train` it runs, e.g. '--device cuda'"
    )
    args = parser.parse_args()
    DEFAULT_MODELS[:] = args.models
    OTHER_MODELS[:] = args.others
    TRAIN_EXTRA[:] = args.train_extra.split()
    work = Path(args.work)
    results_path = work / "scale.json"
    done = json.loads(results_path.read_text()) if results_path.is_file() else {}
    steps = {
        "load": step_load,
        "train": step_train,
        "rank": step_rank,
        "serve": step_serve,
        "refuse": step_refuse,
        "others": step_others,
        "defaults": step_defaults,
    }
    for n in args.sizes:
        home = work / str(n)
        meta = make_data(n, home)
        row = done.get(str(n), {})
        row.update(
            ratings=n,
            users=meta["params"]["users"],
            movies=meta["params"]["movies"],
            noise_floor=meta["noise_floor_rmse"],
            bias_floor=meta["bias_floor_rmse"],
        )
        runs = home / "runs"
        runs.mkdir(exist_ok=True)
        for name in args.steps:
            print(f"{n:,} ratings: {name} (load average {os.getloadavg()[0]:.1f})", flush=True)
            row.update(steps[name](home, runs))
            done[str(n)] = row
            results_path.write_text(json.dumps(done, indent=1))
        print(json.dumps(row), flush=True)
    rows = [done[k] for k in sorted(done, key=int)]
    plot(rows, Path(args.plot))
    print(f"\nmachine: {os.cpu_count()} cores ({platform.machine()}), {time.strftime('%Y-%m-%d')}\n")
    print(
        "| ratings | users | movies | load s (first / cached) | mf train s | mf epochs | mf RMSE | bias RMSE "
        "| floors (noise / bias) | train peak RSS MiB | evaluate s | evaluate RSS MiB | serve ready s "
        "| p99 ms @ req/s (closed, 4 conn.) | p99 ms @ req/s (paced, 10 conn.) "
        "| p99 ms @ req/s (paced, 64 conn.) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def f(v: object, spec: str = ".1f") -> str:
        return "" if v is None else format(v, spec)

    for r in rows:
        print(
            f"| {r['ratings']:,} | {r['users']:,} | {r['movies']:,} "
            f"| {f(r.get('load_first_s'))} / {f(r.get('load_second_s'))} | {f(r.get('mf_wall_s'))} "
            f"| {f(r.get('mf_epochs'), 'd')} | {f(r.get('mf_rmse'), '.4f')} | {f(r.get('bias_rmse'), '.4f')} "
            f"| {r['noise_floor']:.4f} / {r['bias_floor']:.4f} | {f(r.get('mf_rss_mib'), '.0f')} "
            f"| {f(r.get('evaluate_wall_s'))} | {f(r.get('evaluate_rss_mib'), '.0f')} "
            f"| {f(r.get('serve_ready_s'))} | {f(r.get('serve_p99_ms'))} @ {f(r.get('serve_rps'), '.0f')} "
            f"| {f(r.get('serve_paced_p99_ms'))} @ {f(r.get('serve_paced_rps'), '.0f')} "
            f"| {f(r.get('serve_many_p99_ms'))} @ {f(r.get('serve_many_rps'), '.0f')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
