"""New-user fold-in quality: users re-entered as "new" from their training ratings vs served as known.

    REELREC_DATA_HOME=../shared/data python benchmarks/fold_in.py [--dataset ml-100k] [--split holdout90]
        [--model mf|autorec]

The model (`--model`, MF by default) is trained (seed 42, default config). For every test user,
the top-10 is computed twice: as a known user (`recommend`) and as a new user whose only input
is their training ratings (`recommend_for_ratings`, closed-form fold-in, model frozen). Both
lists exclude the training ratings; NDCG@10 / Recall@10 are measured against the user's test
ratings (full ranking).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--split", default="holdout90")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", default="mf", choices=("mf", "autorec"))
    args = parser.parse_args()
    from reelrec import Recommender, load_movielens, make_split
    from reelrec.evaluation.metrics import ranking_metrics

    ds = load_movielens(args.dataset)
    split = make_split(ds, args.split, seed=args.seed)
    rec = Recommender.train(args.model, split.train, split.valid, seed=args.seed)
    test = split.test
    users = np.unique(test.user_index)
    users = users[rec.user_counts[users] > 0]
    known, _ = rec.top_n_indices(users, 10)
    known_data = split.train if split.valid is None else split.train.concat(split.valid)
    order = np.argsort(known_data.user_index, kind="stable")  # each user's known ratings, grouped once
    bounds = np.searchsorted(known_data.user_index[order], np.stack([users, users + 1]))
    raw_items = rec.items.raw(known_data.item_index[order])
    values = known_data.rating[order]
    start = time.perf_counter()
    folded = np.full_like(known, -1)
    for row, u in enumerate(users):
        seen = rec.seen_items(int(u))
        lo, hi = bounds[0, row], bounds[1, row]
        ratings = dict(zip(raw_items[lo:hi].tolist(), values[lo:hi].tolist(), strict=True))
        items = rec.recommend_for_ratings(ratings, n=10)
        idx = rec.items.index([it.item_id for it in items])
        folded[row, : idx.size] = idx
        assert not set(idx.tolist()) & set(seen.tolist())
    per_user_ms = 1000 * (time.perf_counter() - start) / users.size
    keys = np.unique(test.user_index.astype(np.int64) * ds.n_items + test.item_index)
    tu, ti = keys // ds.n_items, keys % ds.n_items
    pos = np.searchsorted(users, tu)
    keep = (pos < users.size) & (users[np.minimum(pos, users.size - 1)] == tu)
    indptr = np.zeros(users.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(pos[keep], minlength=users.size), out=indptr[1:])
    a = ranking_metrics(known, indptr, ti[keep], ds.n_items, ks=(10,))
    b = ranking_metrics(folded, indptr, ti[keep], ds.n_items, ks=(10,))
    print(f"{args.dataset} {args.split}, {args.model} seed {args.seed}, {users.size} test users")
    print("| served as | NDCG@10 | Recall@10 | HR@10 |")
    print("|---|---:|---:|---:|")
    print(f"| known user | {a['ndcg@10']:.4f} | {a['recall@10']:.4f} | {a['hr@10']:.4f} |")
    print(f"| new user (fold-in) | {b['ndcg@10']:.4f} | {b['recall@10']:.4f} | {b['hr@10']:.4f} |")
    ratio = b["ndcg@10"] / a["ndcg@10"]
    print(f"fold-in / known NDCG@10: {ratio:.3f}; fold-in + top-10: {per_user_ms:.2f} ms/user")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
