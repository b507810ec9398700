"""MovieLens-shaped synthetic ratings of any size, in the ml-25m file layout.

    python benchmarks/synthetic.py --ratings 25000000 --out /data/synth
    REELREC_DATA_HOME=/data/synth reelrec train --dataset ml-25m --model mf

writes ``OUT/ml-25m/`` (``--name`` changes the folder) exactly as GroupLens lays out ml-25m:

* ``ratings.csv`` ``userId,movieId,rating,timestamp``: half-star ratings 0.5..5.0; each user's rows
  are contiguous and in time order (timestamps strictly increasing per user, 1995-01-09 .. 2019-11-21);
* ``movies.csv`` ``movieId,title,genres``: titles such as ``"Film 123, The (1995)"`` (quoted where
  they hold a comma or a quote, as GroupLens does), ``|``-joined MovieLens genres;
* ``tags.csv`` ``userId,movieId,tag,timestamp`` and ``links.csv`` ``movieId,imdbId,tmdbId``;
* ``README.txt`` (says the data is synthetic) and ``synthetic.json`` (the parameters, the
  noise floors and the count statistics).

The model behind the ratings: ``r = clip(round_half(mu + b_u + b_i + p_u . q_i + e), 0.5, 5)``
with ``p_u . q_i`` of standard deviation ``--signal`` over ``--rank`` factors and Gaussian noise
``e`` of standard deviation ``--noise``. The script prints and records two floors measured on the
written ratings: the *noise floor* (RMSE of the true noiseless mean ``mu + b_u + b_i + p_u . q_i``,
which no model can be expected to beat) and the *bias floor* (RMSE of the true ``mu + b_u + b_i``:
what a perfect bias-only model gets).

User activity is power-law (every user rates >= 20 movies, the rest Pareto-distributed with
shape 1.8, at most half the catalogue), movie popularity is power-law in the popularity rank
(``(rank + 0.0064 M)^-2.1``: at 25M the top movie holds ~0.3% of the ratings, the median movie
~7 ratings, a few percent are never rated). Movie ids are sparse (1..~3.4 M, as in MovieLens).
By default users and movies scale with the number of ratings as MovieLens does between 100K and
25M: 162,541 x (N / 25M)^0.9 users and 62,423 x (N / 25M)^0.65 movies (which gives 203k users at
32M, close to ml-32m's 200,948).

Everything is vectorised and generated in chunks of about two million ratings (per block of
users), so memory stays bounded (well under 2 GB at any size) and 25M ratings take a few
minutes. The same arguments and ``--seed`` give the same files.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ML25M_RATINGS = 25_000_095
ML25M_USERS = 162_541
ML25M_MOVIES = 62_423
MIN_PER_USER = 20
#: the share of the catalogue one user may rate at most (ml-25m's heaviest user rates ~52%)
MAX_USER_SHARE = 0.5
USER_PARETO_SHAPE = 1.8
MOVIE_ZIPF_EXPONENT = 2.1
MOVIE_ZIPF_OFFSET = 0.0064  # times the number of movies
GLOBAL_MEAN = 3.7  # the written mean is lower (clipping at 5, heavy users rate the tail): ~3.5
USER_BIAS_SD = 0.40
ITEM_BIAS_SD = 0.35
T_START = 789_652_009  # 1995-01-09, ml-25m's first rating
T_END = 1_574_327_703  # 2019-11-21, ml-25m's last rating
CHUNK_RATINGS = 2_000_000
TAG_SHARE = 0.04  # tag applications per rating (ml-25m: 1.09M tags for 25M ratings)
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
TAG_WORDS = (
    "atmospheric", "funny", "twist ending", "based on a book", "dark comedy", "sci-fi", "visually appealing",
    "thought-provoking", "classic", "boring", "Oscar (Best Picture)", "dialogue, witty", "surreal",
)  # fmt: skip
LEVELS = np.round(np.arange(0.5, 5.01, 0.5), 1)


def default_sizes(n_ratings: int) -> tuple[int, int]:
    """``(users, movies)`` for ``n_ratings`` in MovieLens' proportions (see the module docstring)."""
    f = n_ratings / ML25M_RATINGS
    return max(1, round(ML25M_USERS * f**0.9)), max(1, round(ML25M_MOVIES * f**0.65))


def _user_counts(rng: np.random.Generator, n: int, n_users: int, cap: int) -> np.ndarray:
    """Ratings per user: ``MIN_PER_USER`` plus a Pareto (Lomax) share of the rest, each <= ``cap``,
    summing to exactly ``n``."""
    weights = rng.pareto(USER_PARETO_SHAPE, n_users) + 1e-3
    counts = np.full(n_users, MIN_PER_USER, dtype=np.int64)
    left = n - counts.sum()
    while left > 0:
        room = cap - counts
        w = np.where(room > 0, weights, 0.0)
        add = rng.multinomial(left, w / w.sum())
        counts += np.minimum(add, room)
        left = n - counts.sum()
    return counts


def _movie_popularity(n_movies: int) -> np.ndarray:
    """Rating probability of the movie at each popularity rank (most popular first)."""
    rank = np.arange(1, n_movies + 1, dtype=np.float64)
    p = (rank + MOVIE_ZIPF_OFFSET * n_movies) ** -MOVIE_ZIPF_EXPONENT
    return p / p.sum()


def _sample_movies(
    rng: np.random.Generator, counts: np.ndarray, cdf: np.ndarray, n_movies: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each user of a chunk, ``counts[u]`` distinct movies drawn by popularity.

    Draws with replacement by popularity, drops repeats and redraws the shortfall a few times;
    what is still short (heavy users who have exhausted the popular movies) is filled uniformly
    from the movies the user has not rated. Returns ``(local user, movie)`` sorted by both.
    """
    n_users = counts.size
    keys = np.zeros(0, dtype=np.int64)
    need = counts.copy()
    for attempt in range(12):
        total = int(need.sum())
        if total == 0:
            break
        users = np.repeat(np.arange(n_users, dtype=np.int64), need)
        if attempt < 4:
            movies = np.searchsorted(cdf, rng.random(total), side="right")
            movies = np.minimum(movies, n_movies - 1)
        else:
            movies = rng.integers(0, n_movies, total)
        new = users * n_movies + movies
        new.sort()
        # both runs are sorted: a stable (tim)sort merges them in linear time; then drop repeats
        keys = np.concatenate([keys, new])
        keys.sort(kind="stable")
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
        need = counts - np.bincount(keys // n_movies, minlength=n_users)
    short = np.flatnonzero(need > 0)
    for u in short:  # rare: a user still short after 12 rounds; fill exactly
        have = keys[(keys // n_movies) == u] % n_movies
        free = np.setdiff1d(np.arange(n_movies), have)
        pick = rng.choice(free, int(need[u]), replace=False)
        keys = np.concatenate([keys, u * n_movies + pick])
    keys.sort()
    return keys // n_movies, keys % n_movies


class _Writer:
    """Chunked CSV writers for ratings.csv and tags.csv (pyarrow, no quoting of numbers)."""

    def __init__(self, ratings_path: Path, tags_path: Path) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self.pa, self.pacsv = pa, pacsv
        self.levels = pa.array([f"{x:.1f}" for x in LEVELS])
        self.r_fh = ratings_path.open("wb")
        self.r_fh.write(b"userId,movieId,rating,timestamp\n")
        self.r_schema = pa.schema(
            [("userId", pa.int32()), ("movieId", pa.int32()), ("rating", pa.string()), ("ts", pa.int64())]
        )
        self.ratings = pacsv.CSVWriter(
            self.r_fh,
            self.r_schema,
            write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
        )
        self.t_fh = tags_path.open("wb")
        self.t_fh.write(b"userId,movieId,tag,timestamp\n")
        self.t_schema = pa.schema(
            [("userId", pa.int32()), ("movieId", pa.int32()), ("tag", pa.string()), ("ts", pa.int64())]
        )
        self.tags = pacsv.CSVWriter(
            self.t_fh, self.t_schema, write_options=pacsv.WriteOptions(include_header=False)
        )
        self.tag_words = pa.array(list(TAG_WORDS))

    def write(
        self,
        user: np.ndarray,
        movie: np.ndarray,
        level: np.ndarray,
        ts: np.ndarray,
        tag_rows: np.ndarray,
        tag_word: np.ndarray,
    ) -> None:
        """Append one chunk of ratings (``level`` indexes :data:`LEVELS`) and its tag rows."""
        pa = self.pa
        cols = [pa.array(user.astype(np.int32)), pa.array(movie.astype(np.int32))]
        self.ratings.write_table(
            pa.Table.from_arrays(
                [*cols, self.levels.take(pa.array(level)), pa.array(ts)], schema=self.r_schema
            )
        )
        self.tags.write_table(
            pa.Table.from_arrays(
                [
                    pa.array(user[tag_rows].astype(np.int32)),
                    pa.array(movie[tag_rows].astype(np.int32)),
                    self.tag_words.take(pa.array(tag_word)),
                    pa.array(ts[tag_rows]),
                ],
                schema=self.t_schema,
            )
        )

    def close(self) -> None:
        self.ratings.close()
        self.tags.close()
        self.r_fh.close()
        self.t_fh.close()


def _write_movies(path: Path, ids: np.ndarray, rng: np.random.Generator) -> None:
    n = ids.size
    years = rng.integers(1902, 2020, n)
    style = rng.random(n)
    n_genres = rng.integers(1, 4, n)
    genre_pick = rng.integers(0, len(GENRES), (n, 3))
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["movieId", "title", "genres"])
        for k in range(n):  # 62k rows at 25M: a plain loop over movies (not ratings) is fast enough
            mid = int(ids[k])
            if style[k] < 0.10:
                title = f"Film {mid}, The"
            elif style[k] < 0.11:
                title = f'The "Quoted" Film {mid}'
            elif style[k] < 0.12:
                title = f"Amélie-like Film {mid}"
            else:
                title = f"Film {mid}"
            if style[k] > 0.995:
                genres = "(no genres listed)"
            else:
                genres = "|".join(sorted({GENRES[g] for g in genre_pick[k, : n_genres[k]]}))
            out.writerow([mid, f"{title} ({years[k]})", genres])


def _write_links(path: Path, ids: np.ndarray, rng: np.random.Generator) -> None:
    imdb = rng.choice(np.arange(1, 10_000_000), ids.size, replace=False)
    tmdb = rng.integers(1, 700_000, ids.size)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("movieId,imdbId,tmdbId\n")
        no_tmdb = rng.random(ids.size) < 0.002
        fh.writelines(
            f"{m},{i:07d},{'' if miss else t}\n"
            for m, i, t, miss in zip(
                ids.tolist(), imdb.tolist(), tmdb.tolist(), no_tmdb.tolist(), strict=True
            )
        )


def generate(
    out: str | Path,
    n_ratings: int = ML25M_RATINGS,
    *,
    n_users: int | None = None,
    n_movies: int | None = None,
    rank: int = 10,
    signal: float = 0.45,
    noise: float = 0.7,
    seed: int = 0,
    name: str = "ml-25m",
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a synthetic MovieLens dataset to ``out/name/`` and return its summary (as written to
    ``synthetic.json``).

    Raises:
        SystemExit: impossible sizes, or ``out/name`` holds files this script did not write.
    """
    d_users, d_movies = default_sizes(n_ratings)
    n_users = n_users or d_users
    n_movies = n_movies or d_movies
    cap = max(MIN_PER_USER, int(MAX_USER_SHARE * n_movies))
    if n_users * MIN_PER_USER > n_ratings:
        raise SystemExit(f"{n_users} users need at least {n_users * MIN_PER_USER} ratings (>= 20 each)")
    if n_movies < MIN_PER_USER or n_users * cap < n_ratings:
        raise SystemExit(f"{n_ratings} ratings do not fit {n_users} users x {n_movies} movies")
    folder = Path(out).expanduser() / name
    if folder.exists() and any(folder.iterdir()):
        if not (folder / "synthetic.json").is_file():
            raise SystemExit(f"{folder} exists and was not written by this script; choose another --out")
        if not force:
            raise SystemExit(f"{folder} already holds synthetic data; pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    counts = _user_counts(rng, n_ratings, n_users, cap)
    movie_ids = np.sort(rng.choice(np.arange(1, int(3.35 * n_movies) + 2), n_movies, replace=False))
    pop_rank = rng.permutation(n_movies)  # popularity rank of each movie (0 = most popular)
    popularity = _movie_popularity(n_movies)
    # sample in popularity-rank space, map rank -> movie index afterwards
    rank_to_movie = np.argsort(pop_rank)
    cdf = np.cumsum(popularity)
    # the true model
    scale = signal / math.sqrt(rank)  # p.q = sum of rank products of two N(0, s^2/...) terms
    p = rng.normal(0.0, math.sqrt(scale), (n_users, rank)).astype(np.float32)
    q = rng.normal(0.0, math.sqrt(scale), (n_movies, rank)).astype(np.float32)
    b_u = rng.normal(0.0, USER_BIAS_SD, n_users)
    log_pop = np.log(popularity[pop_rank])
    z_pop = (log_pop - log_pop.mean()) / max(log_pop.std(), 1e-9)
    b_i = ITEM_BIAS_SD * (0.8 * rng.normal(0.0, 1.0, n_movies) + 0.6 * z_pop)
    b_i -= float(popularity[pop_rank] @ b_i)  # popular movies rate higher; the mean rating stays ~mu
    span = np.clip(np.exp(rng.normal(math.log(86_400.0 * 3), 3.0, n_users)), counts, (T_END - T_START) / 2)
    first = T_START + rng.random(n_users) * (T_END - T_START - span - counts)

    ends = np.cumsum(counts)
    bounds = np.searchsorted(ends, np.arange(CHUNK_RATINGS, n_ratings, CHUNK_RATINGS), side="left") + 1
    blocks = np.unique(np.concatenate([[0], bounds, [n_users]]))
    chunk_seeds = np.random.SeedSequence(seed).spawn(len(blocks) - 1)
    sse_mean = sse_bias = 0.0
    rating_sum = 0.0
    level_counts = np.zeros(LEVELS.size, dtype=np.int64)
    movie_counts = np.zeros(n_movies, dtype=np.int64)
    n_tags = 0
    writer = _Writer(folder / "ratings.csv.part", folder / "tags.csv.part")
    try:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_ratings, unit=" ratings", unit_scale=True, disable=not progress, desc="ratings.csv"
        )
        for (lo, hi), chunk_seed in zip(itertools.pairwise(blocks), chunk_seeds, strict=True):
            crng = np.random.default_rng(chunk_seed)
            local, prank = _sample_movies(crng, counts[lo:hi], cdf, n_movies)
            u = local + lo
            m = rank_to_movie[prank]
            # each user's movies in a random order, which becomes time order
            order = np.lexsort((crng.random(u.size), u))
            u, m = u[order], m[order]
            base = GLOBAL_MEAN + b_u[u] + b_i[m]
            mean = base + np.einsum("ij,ij->i", p[u], q[m], dtype=np.float64)
            level = np.clip(np.rint((mean + crng.normal(0.0, noise, u.size) - 0.5) * 2), 0, LEVELS.size - 1)
            level = level.astype(np.int8)
            written = LEVELS[level]
            sse_mean += float(np.square(written - mean).sum())
            sse_bias += float(np.square(written - base).sum())
            rating_sum += float(written.sum())
            level_counts += np.bincount(level, minlength=LEVELS.size)
            movie_counts += np.bincount(m, minlength=n_movies)
            # strictly increasing per user: first + k + floor(span * sorted uniforms)
            start_row = np.r_[0, np.cumsum(counts[lo:hi])[:-1]]
            k = np.arange(u.size) - np.repeat(start_row, counts[lo:hi])
            v = crng.random(u.size)
            v_sorted = v[np.lexsort((v, u))]  # rows are grouped by user: sorted within each user
            ts = (first[u] + k + np.floor(span[u] * v_sorted)).astype(np.int64)
            tag_rows = np.flatnonzero(crng.random(u.size) < TAG_SHARE)
            tag_word = crng.integers(0, len(TAG_WORDS), tag_rows.size)
            n_tags += tag_rows.size
            writer.write(u + 1, movie_ids[m], level, ts, tag_rows, tag_word)
            bar.update(u.size)
        bar.close()
    finally:
        writer.close()
    os.replace(folder / "ratings.csv.part", folder / "ratings.csv")
    os.replace(folder / "tags.csv.part", folder / "tags.csv")
    _write_movies(folder / "movies.csv", movie_ids, rng)
    _write_links(folder / "links.csv", movie_ids, rng)
    user_sorted = np.sort(counts)
    movie_sorted = np.sort(movie_counts)[::-1]
    summary: dict[str, Any] = {
        "generator": "benchmarks/synthetic.py",
        "params": {
            "ratings": n_ratings,
            "users": n_users,
            "movies": n_movies,
            "rank": rank,
            "signal": signal,
            "noise": noise,
            "seed": seed,
            "name": name,
        },
        "noise_floor_rmse": round(math.sqrt(sse_mean / n_ratings), 4),
        "bias_floor_rmse": round(math.sqrt(sse_bias / n_ratings), 4),
        "mean_rating": round(rating_sum / n_ratings, 4),
        "rating_levels": {f"{x:.1f}": int(c) for x, c in zip(LEVELS, level_counts, strict=True)},
        "ratings_per_user": {
            "min": int(user_sorted[0]),
            "median": float(np.median(user_sorted)),
            "mean": round(float(user_sorted.mean()), 1),
            "max": int(user_sorted[-1]),
        },
        "ratings_per_movie": {
            "unrated": int((movie_counts == 0).sum()),
            "median": float(np.median(movie_counts)),
            "max": int(movie_sorted[0]),
            "top_1pct_share": round(float(movie_sorted[: max(1, n_movies // 100)].sum() / n_ratings), 4),
        },
        "tags": n_tags,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (folder / "synthetic.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "README.txt").write_text(
        "SYNTHETIC data in the MovieLens ml-25m layout, written by reelrec's benchmarks/synthetic.py.\n"
        "Not MovieLens: no real user, movie or rating. Parameters and noise floors: synthetic.json.\n"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ratings", type=int, default=ML25M_RATINGS, help="number of ratings (default 25M)")
    parser.add_argument("--users", type=int, help="number of users (default: MovieLens proportions)")
    parser.add_argument("--movies", type=int, help="number of movies (default: MovieLens proportions)")
    parser.add_argument("--rank", type=int, default=10, help="factors of the true low-rank signal")
    parser.add_argument("--signal", type=float, default=0.45, help="standard deviation of p_u . q_i")
    parser.add_argument("--noise", type=float, default=0.7, help="standard deviation of the rating noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="ml-25m", help="folder name under --out (the dataset's name)")
    parser.add_argument("--out", required=True, help="the data home to write NAME/ into")
    parser.add_argument("--force", action="store_true", help="replace synthetic data written earlier")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    summary = generate(
        args.out,
        args.ratings,
        n_users=args.users,
        n_movies=args.movies,
        rank=args.rank,
        signal=args.signal,
        noise=args.noise,
        seed=args.seed,
        name=args.name,
        force=args.force,
        progress=not args.no_progress,
    )
    p = summary["params"]
    print(
        f"{Path(args.out) / args.name}: {p['ratings']:,} ratings, {p['users']:,} users, "
        f"{p['movies']:,} movies in {summary['seconds']} s\n"
        f"noise floor (RMSE of the true mean): {summary['noise_floor_rmse']:.4f}; "
        f"bias floor (RMSE of the true mu + b_u + b_i): {summary['bias_floor_rmse']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
