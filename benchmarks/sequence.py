"""Next-item ranking from the lists ``reelrec serve`` answers: sasrec against the other systems.

For each dataset and protocol, every reelrec model is trained by the whole command a user runs
(``reelrec train --dataset D --protocol P --model M``, defaults otherwise; wall time and peak
resident memory of that command from ``/usr/bin/time``), served by ``reelrec serve`` (one
worker), and every test user's top-k list is fetched over HTTP (``novelty=0``: the model's own
ranking, as the protocol ranks) and scored by reelrec's metric code
(:func:`reelrec.evaluation.metrics.ranking_metrics`) against the user's held-out items. The
in-process figure of ``reelrec train`` (the run's own ``test_ranking``) is printed beside it:
the two must agree.

Peers (optional: ``pip install -e ".[bench]"``; skipped with a note when not importable) are
trained in process on the identical training part (training + validation of the run's split),
their top-k lists with each user's training items excluded scored by the same code:
``implicit`` ALS at its defaults.

Protocols (docs/benchmarks.md): ``loo-full`` (each user's latest interaction by timestamp, ties
in file order; NDCG@10, HR@10, MRR) and ``temporal-full`` (each user's latest 20%; Recall@20,
NDCG@20, Precision@10, MAP@10, coverage@10). Nothing is chosen on the test set: the models run
at their defaults (sasrec early-stops on each user's latest training interaction).

    REELREC_DATA_HOME=../shared/data python benchmarks/sequence.py --work /tmp/seq
    REELREC_DATA_HOME=../shared/data python benchmarks/sequence.py --work /tmp/seq \\
        --datasets ml-100k --protocols loo-full --models sasrec,seqlinear
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

BIN = Path(sys.executable).parent
REELREC = str(BIN / "reelrec")
DATASETS = ("ml-100k", "ml-latest-small")
PROTOCOLS = ("loo-full", "temporal-full")
MODELS = ("sasrec", "seqlinear", "ease", "itemknn", "popularity")
PEERS = ("implicit-als", "rectools-sasrec", "rectools-bert4rec")
#: the list length fetched per protocol and the metrics reported
K = {"loo-full": 10, "temporal-full": 20}
SHOWN = {
    "loo-full": ("ndcg@10", "hr@10"),
    "temporal-full": ("recall@20", "ndcg@20", "precision@10", "map@10", "coverage@10"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def train(work: Path, dataset: str, protocol: str, model: str) -> dict[str, Any]:
    """``reelrec train`` as a user runs it: its metrics, wall seconds and peak RSS (MiB)."""
    out = work / f"{dataset}-{protocol}-{model}"
    cmd = ["/usr/bin/time", "-f", "TIME %e %M", REELREC, "train", "--dataset", dataset]
    cmd += ["--protocol", protocol, "--model", model, "--out", str(out), "--overwrite", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-1500:]}")
    wall, rss = next(line for line in proc.stderr.splitlines() if line.startswith("TIME ")).split()[1:]
    metrics = json.loads(proc.stdout[proc.stdout.find("{") :])
    return {"run": out, "metrics": metrics, "seconds": float(wall), "peak_mib": int(rss) / 1024}


def served_lists(run: Path, users: list[Any], k: int) -> tuple[list[list[Any]], float]:
    """Every user's top-``k`` from ``reelrec serve`` (novelty 0), and the mean ms per request."""
    port = _free_port()
    store = f"sqlite:///{run.parent / (run.name + '-store.sqlite')}"
    cmd = [REELREC, "serve", str(run), "--port", str(port), "--workers", "1", "--store", store]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                _get(base + "/health")
                break
            except OSError:
                time.sleep(0.2)
        start = time.perf_counter()
        lists = []
        for u in users:
            body = _get(f"{base}/users/{u}/recommendations?n={k}&novelty=0")
            lists.append([item["movie_id"] for item in body["items"]])
        return lists, 1000 * (time.perf_counter() - start) / max(1, len(users))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _relevant(split: Any, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test users (dense, sorted) and their held-out items as CSR."""
    test = split.test
    keys = np.unique(test.user_index.astype(np.int64) * n_items + test.item_index)
    users, counts = np.unique(keys // n_items, return_counts=True)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return users, indptr, keys % n_items


def score(split: Any, lists: list[list[Any]], k: int, users: np.ndarray, indptr: np.ndarray, rel: np.ndarray):
    from reelrec.evaluation.metrics import ranking_metrics

    ds_items = split.train.items
    top = np.full((len(lists), k), -1, dtype=np.int64)
    for row, items in enumerate(lists):  # one short list per user: the lists came over HTTP
        if items:
            top[row, : len(items)] = ds_items.index(
                np.asarray(items, dtype=object).astype(ds_items.ids.dtype)
            )
    return ranking_metrics(top, indptr, rel, len(ds_items), ks=(10, 20))


def implicit_als(split: Any, users: np.ndarray, k: int) -> list[list[Any]] | str:
    try:
        import implicit
        import scipy.sparse as sp
    except ImportError:
        return "not installed (pip install -e '.[bench]')"
    part = split.train if split.valid is None else split.train.concat(split.valid)
    n_users, n_items = len(part.users), len(part.items)
    matrix = sp.csr_matrix(
        (np.ones(len(part), dtype=np.float32), (part.user_index, part.item_index)), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    model = implicit.als.AlternatingLeastSquares(random_state=42)
    model.fit(matrix, show_progress=False)
    ids, _ = model.recommend(users, matrix[users], N=k, filter_already_liked_items=True)
    return [part.items.ids[row[row >= 0]].tolist() for row in ids]


def rectools_model(
    name: str, split: Any, users: np.ndarray, k: int, epochs: int | None
) -> list[list[Any]] | str:
    """RecTools' ``SASRecModel`` / ``BERT4RecModel`` at their defaults (``epochs`` overrides the
    default 3), on the training part in reelrec's order (timestamp, then file order)."""
    try:
        import pandas as pd
        from rectools import Columns
        from rectools.dataset import Dataset as RTDataset
        from rectools.models import BERT4RecModel, SASRecModel
    except ImportError:
        return "not installed (pip install 'rectools[torch]')"
    from reelrec.models.seqlinear import chronological

    part = split.train if split.valid is None else split.train.concat(split.valid)
    order = chronological(part)
    frame = pd.DataFrame(
        {
            Columns.User: part.user_index[order],
            Columns.Item: part.item_index[order],
            Columns.Weight: 1.0,
            Columns.Datetime: pd.to_datetime(np.arange(len(order)), unit="s"),  # the order, kept exactly
        }
    )
    cls = SASRecModel if name == "rectools-sasrec" else BERT4RecModel
    kwargs = {"deterministic": True} | ({} if epochs is None else {"epochs": epochs})
    model = cls(**kwargs)
    dataset = RTDataset.construct(frame)
    model.fit(dataset)
    reco = model.recommend(users=users, dataset=dataset, k=k, filter_viewed=True)
    reco = reco.sort_values([Columns.User, Columns.Rank])
    by_user = reco.groupby(Columns.User)[Columns.Item].apply(list).to_dict()
    return [part.items.ids[np.asarray(by_user.get(u, []), dtype=np.int64)].tolist() for u in users.tolist()]


def run_group(
    work: Path,
    dataset: str,
    protocol: str,
    models: list[str],
    peers: list[str],
    log: Any,
    peer_epochs: int | None = None,
) -> list[dict]:
    from reelrec.data.movielens import load_movielens
    from reelrec.evaluation.protocols import protocol_split

    ds = load_movielens(dataset)
    split = protocol_split(ds, protocol, seed=42)
    users, indptr, rel = _relevant(split, len(split.train.items))
    raw_users = split.train.users.ids[users].tolist()
    k = K[protocol]
    rows = []
    for model in models:
        t = train(work, dataset, protocol, model)
        lists, ms = served_lists(t["run"], raw_users, k)
        served = score(split, lists, k, users, indptr, rel)
        inproc = t["metrics"].get("test_ranking", {})
        row = {"dataset": dataset, "protocol": protocol, "system": f"reelrec {model}", "served": served}
        row |= {"in_process": inproc, "train_s": t["seconds"], "peak_mib": t["peak_mib"], "ms_per_list": ms}
        row["epochs"] = t["metrics"].get("epochs")
        rows.append(row)
        log(row)
    for peer in peers:
        start = time.perf_counter()
        if peer == "implicit-als":
            lists = implicit_als(split, users, k)
        elif peer.startswith("rectools-"):
            lists = rectools_model(peer, split, users, k, peer_epochs)
        else:
            lists = f"unknown peer {peer}"
        if isinstance(lists, str):
            log({"dataset": dataset, "protocol": protocol, "system": peer, "skipped": lists})
            continue
        row = {
            "dataset": dataset,
            "protocol": protocol,
            "system": peer,
            "served": score(split, lists, k, users, indptr, rel),
        }
        row["train_s"] = time.perf_counter() - start
        row["epochs"] = peer_epochs
        rows.append(row)
        log(row)
    return rows


def markdown(rows: list[dict]) -> str:
    out = []
    for dataset, protocol in dict.fromkeys((r["dataset"], r["protocol"]) for r in rows):
        shown = SHOWN[protocol]
        out.append(f"\n**{dataset}, {protocol}**\n")
        out.append(
            "| system | " + " | ".join(shown) + " | in process " + shown[0] + " | train s | peak MiB |"
        )
        out.append("|---" * (len(shown) + 4) + "|")
        for r in rows:
            if (r["dataset"], r["protocol"]) != (dataset, protocol):
                continue
            vals = " | ".join(f"{r['served'][m]:.4f}" for m in shown)
            inproc = r.get("in_process", {}).get(shown[0])
            extra = f"{inproc:.4f}" if inproc is not None else "-"
            peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
            out.append(f"| {r['system']} | {vals} | {extra} | {r['train_s']:.1f} | {peak} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True, help="folder for the runs")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--protocols", default=",".join(PROTOCOLS))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--peer-epochs", type=int, help="epochs of the RecTools transformers (default: theirs, 3)")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args()
    if "REELREC_DATA_HOME" not in os.environ:
        p.error("set REELREC_DATA_HOME to the MovieLens folder")
    args.work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {stamp}, {platform.machine()}, {os.cpu_count()} cores")
    rows: list[dict] = []
    for dataset in [d for d in args.datasets.split(",") if d]:
        for protocol in [x for x in args.protocols.split(",") if x]:
            rows += run_group(
                args.work,
                dataset,
                protocol,
                [m for m in args.models.split(",") if m],
                [x for x in args.peers.split(",") if x],
                lambda row: print(json.dumps(row, default=str), flush=True),
                args.peer_epochs,
            )
    print(markdown(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
