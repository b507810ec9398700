"""Same outputs before and after a refactor: the numbers a user sees, recorded as JSON, compared.

Records, through the whole ``reelrec`` command (as a user runs it):

- ``reelrec demo`` on MovieLens 100K (its printed RMSEs and top-10; timings masked);
- ``reelrec train --dataset ml-100k --model M --json`` for several models at their defaults
  (holdout90, seed 42): every metric the run reports except times;
- ``reelrec train --dataset ml-1m --model mf --json`` (the ML-1M MF default), unless ``--quick``;
- the demo run served by ``reelrec serve``: known users' lists (default and ``novelty=0``), new
  users' lists from ordered ratings, similar movies, predictions: the response bodies.

Usage::

    REELREC_DATA_HOME=../shared/data python benchmarks/same_outputs.py --work /tmp/so-a --out a.json
    ... (change the code) ...
    REELREC_DATA_HOME=../shared/data python benchmarks/same_outputs.py --work /tmp/so-b --out b.json
    python benchmarks/same_outputs.py --compare a.json b.json

``--compare`` prints every value that differs and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
REELREC = str(BIN / "reelrec")
MODELS_100K = ("mf", "als", "autorec", "mlp", "neumf", "hybrid", "ease", "seqlinear", "bpr")
TIMING = re.compile(r"\b(train|load|fit)?\s*\d+(\.\d+)?\s*s\b|\d+(\.\d+)? ?(s|ms|seconds)\b")
TIME_KEYS = ("seconds", "time", "elapsed", "created", "date", "path", "out", "sha", "version")


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _strip_times(obj: Any) -> Any:
    """``obj`` without the values that legitimately change between runs (times, paths, dates)."""
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items() if not any(t in str(k).lower() for t in TIME_KEYS)}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


def demo(work: Path) -> list[str]:
    out = _run([REELREC, "demo", "--out", str(work / "demo")])
    return [TIMING.sub("<time>", line) for line in out.splitlines() if "saved run" not in line]


def train(work: Path, dataset: str, model: str) -> dict[str, Any]:
    """``reelrec train`` at the model's defaults (holdout90, seed 42); ``ml-1m`` is read from
    ``ml-1m-ratings/ratings.csv`` (the local copy's ratings, through the generic loader)."""
    if dataset == "ml-1m":
        source = ["--ratings", str(Path(os.environ["REELREC_DATA_HOME"]) / "ml-1m-ratings" / "ratings.csv")]
    else:
        source = ["--dataset", dataset]
    out = _run(
        [REELREC, "train", *source, "--model", model, "--out", str(work / f"{dataset}-{model}"), "--json"]
    )
    start = out.find("{")
    return _strip_times(json.loads(out[start:]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def served(work: Path) -> dict[str, Any]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            REELREC,
            "serve",
            str(work / "demo"),
            "--port",
            str(port),
            "--workers",
            "1",
            "--store",
            f"sqlite:///{work}/s.db",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                _get(base + "/health")
                break
            except OSError:
                time.sleep(0.5)
        users = [u["user_id"] for u in _get(base + "/users?limit=15")]
        out: dict[str, Any] = {"users": users, "lists": {}, "lists_novelty0": {}}
        for u in users:
            out["lists"][str(u)] = _get(f"{base}/users/{u}/recommendations?n=10")
            out["lists_novelty0"][str(u)] = _get(f"{base}/users/{u}/recommendations?n=10&novelty=0")
        new_users = [
            {"50": 5, "172": 4, "1": 2},
            {"1": 5, "2": 3, "3": 4, "4": 1, "5": 5, "6": 2, "7": 4, "8": 3, "9": 5, "10": 1},
            {"100": 5, "98": 5, "127": 4, "56": 4, "22": 3},
        ]
        out["new_users"] = [_get(base + "/recommendations", {"ratings": r, "n": 10}) for r in new_users]
        out["similar_50"] = _get(base + "/movies/50/similar?n=10")
        pairs = [{"user": users[0], "movie": m} for m in (1, 50, 100, 181, 258)]
        out["predict"] = _get(base + "/predict", {"pairs": pairs})
        return _strip_times(out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _diff(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'b' if k not in a else 'a'}")
            else:
                _diff(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{where}[{i}]", out)
    elif a != b:
        out.append(f"{where}: {a!r} != {b!r}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, help="scratch folder (removed first if it holds a previous record)")
    p.add_argument("--out", type=Path, help="JSON record to write")
    p.add_argument("--quick", action="store_true", help="skip the ML-1M MF training")
    p.add_argument("--models", default=",".join(MODELS_100K), help="ML-100K models to train")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args()
    if args.compare:
        a, b = (json.loads(f.read_text()) for f in args.compare)
        diffs: list[str] = []
        _diff(a, b, "", diffs)
        print("\n".join(diffs) if diffs else "same outputs")
        return 1 if diffs else 0
    if args.work is None or args.out is None:
        p.error("--work and --out are required unless --compare")
    if "REELREC_DATA_HOME" not in os.environ:
        p.error("set REELREC_DATA_HOME to the MovieLens folder")
    if (args.work / "record.json").exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"demo": demo(args.work), "ml-100k": {}}
    record["served"] = served(args.work)
    for model in [m for m in args.models.split(",") if m]:
        record["ml-100k"][model] = train(args.work, "ml-100k", model)
    if not args.quick:
        record["ml-1m-mf"] = train(args.work, "ml-1m", "mf")

    (args.work / "record.json").write_text("{}")
    args.out.write_text(json.dumps(record, indent=1, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
