"""Load time and memory of a large ratings file: first load (read + cache), second load (cache).

    REELREC_DATA_HOME=/data/synth nice -n 10 python benchmarks/load.py --dataset ml-25m
    python benchmarks/load.py --ratings big.csv --repeat 5 --pandas

Every load runs in a fresh process, as a user's runs do; each reports its wall time and its peak RSS
(``getrusage`` ``ru_maxrss``, the figure ``/usr/bin/time -v`` prints as "Maximum resident set
size") and its CPU seconds (all threads; on a shared machine wall time depends on the other jobs,
CPU time much less). The steps, in order:

1. ``--pandas`` (optional): the pandas path every load took before the fast reader, no cache;
2. first load, ``--first`` times (each into an empty cache): the fast reader (pyarrow), then the
   array cache is written;
3. second load, ``--repeat`` times: from the cache;
4. each second-load process also splits the data (``--split``, default holdout90) and times that.

Medians are reported (and every run). The cache goes to a fresh temporary folder beside the data
(``$REELREC_CACHE_DIR``), removed at the end, so a first load is always a miss and no earlier cache
is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _child(args: argparse.Namespace) -> None:
    import resource

    from reelrec.data.split import make_split

    if args.pandas:  # the reference path: pandas, no fast reader, no cache
        from reelrec.data import movielens, tabular
        from reelrec.data.fastio import Unsupported

        def refuse(*a: Any, **k: Any) -> Any:
            raise Unsupported("benchmark: pandas path")

        movielens._fast_ratings = refuse  # type: ignore[assignment]
        tabular._fast_load = lambda *a, **k: None  # type: ignore[assignment]
    start, cpu = time.perf_counter(), time.process_time()
    if args.ratings:
        from reelrec.data.tabular import load_ratings

        ds = load_ratings(args.ratings)
    else:
        from reelrec.data.movielens import load_movielens

        ds = load_movielens(args.dataset)
    load_s, load_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    out: dict[str, Any] = {
        "load_s": load_s,
        "load_cpu_s": load_cpu_s,
        "peak_rss_mb_load": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ratings": len(ds),
        "users": ds.n_users,
        "items": ds.n_items,
        "dtypes": [str(ds.user_index.dtype), str(ds.item_index.dtype), str(ds.rating.dtype)],
        "array_bytes": int(
            sum(a.nbytes for a in (ds.user_index, ds.item_index, ds.rating, ds.timestamp) if a is not None)
            + ds.users.ids.nbytes
            + ds.items.ids.nbytes
        ),
    }
    if args.split:
        start, cpu = time.perf_counter(), time.process_time()
        split = make_split(ds, args.split, seed=42)
        out["split_s"], out["split_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
        out["split_sizes"] = [
            len(split.train),
            0 if split.valid is None else len(split.valid),
            len(split.test),
        ]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def _fmt(run: dict[str, Any]) -> str:
    return f"{run['load_s']:6.2f} s ({run['load_cpu_s']:.2f} s CPU), peak RSS {run['peak_rss_mb']:.0f} MB"


def _run(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    out["process_s"] = time.perf_counter() - start
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a MovieLens name in $REELREC_DATA_HOME, or a folder")
    src.add_argument("--ratings", help="a ratings file (CSV/TSV/Parquet)")
    parser.add_argument(
        "--split", default="holdout90", help="split timed after each second load ('' for none)"
    )
    parser.add_argument("--first", type=int, default=1, help="first loads (the median is reported)")
    parser.add_argument("--repeat", type=int, default=3, help="second loads (the median is reported)")
    parser.add_argument("--pandas", action="store_true", help="also time the old pandas path (slow)")
    parser.add_argument("--json", help="write the figures to this file too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return 0
    if args.ratings:
        where = Path(args.ratings).resolve().parent
        argv = ["--ratings", args.ratings]
    else:
        from reelrec.data.movielens import _resolve

        where = _resolve(args.dataset, None)[1]
        argv = ["--dataset", args.dataset]
    cache_dir = Path(tempfile.mkdtemp(prefix=".reelrec-bench-cache-", dir=where))
    env = {**os.environ, "REELREC_CACHE_DIR": str(cache_dir)}
    env.pop("REELREC_NO_CACHE", None)
    figures: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "child"}}
    try:
        if args.pandas:
            figures["pandas"] = _run([*argv, "--pandas", "--split", ""], env)
            base = figures["pandas"]
            print(f"pandas path:  {_fmt(base)}")
        firsts = figures["first"] = []
        for k in range(args.first):
            for entry in cache_dir.iterdir():  # an empty cache: every first load is a miss
                shutil.rmtree(entry)
            firsts.append(_run([*argv, "--split", ""], env))
            print(f"first load {k + 1}:  {_fmt(firsts[-1])} (read, write the cache)")
        first = {
            **firsts[0],
            "load_s": statistics.median(r["load_s"] for r in firsts),
            "load_cpu_s": statistics.median(r["load_cpu_s"] for r in firsts),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in firsts),
        }
        seconds = figures["second"] = [_run([*argv, "--split", args.split], env) for _ in range(args.repeat)]
        for k, run in enumerate(seconds, 1):
            split = (
                f", {args.split} split {run['split_s']:.2f} s ({run['split_cpu_s']:.2f} CPU)"
                if args.split
                else ""
            )
            print(f"second load {k}: {_fmt(run)}{split}")
        cache_mb = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file()) / 1e6
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    second_s = statistics.median(r["load_s"] for r in seconds)
    second_cpu = statistics.median(r["load_cpu_s"] for r in seconds)
    summary = {
        "ratings": first["ratings"],
        "users": first["users"],
        "items": first["items"],
        "dtypes": first["dtypes"],
        "first_load_s": round(first["load_s"], 2),
        "second_load_s": round(second_s, 2),
        "ratio": round(second_s / first["load_s"], 3),
        "first_load_cpu_s": round(first["load_cpu_s"], 2),
        "second_load_cpu_s": round(second_cpu, 2),
        "ratio_cpu": round(second_cpu / first["load_cpu_s"], 3),
        "peak_rss_mb_first": round(first["peak_rss_mb"]),
        "peak_rss_mb_second": round(max(r["peak_rss_mb_load"] for r in seconds)),
        "peak_rss_mb_second_with_split": round(max(r["peak_rss_mb"] for r in seconds)),
        "array_mb": round(first["array_bytes"] / 1e6, 1),
        "cache_mb": round(cache_mb, 1),
    }
    if args.split:
        summary["split_s"] = round(statistics.median(r["split_s"] for r in seconds), 2)
        summary["split_cpu_s"] = round(statistics.median(r["split_cpu_s"] for r in seconds), 2)
    if args.pandas:
        summary["pandas_load_s"] = round(figures["pandas"]["load_s"], 2)
        summary["pandas_load_cpu_s"] = round(figures["pandas"]["load_cpu_s"], 2)
        summary["pandas_peak_rss_mb"] = round(figures["pandas"]["peak_rss_mb"])
    figures["summary"] = summary
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
