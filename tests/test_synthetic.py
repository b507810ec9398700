"""benchmarks/synthetic.py: MovieLens-shaped data in the ml-25m layout that the loader reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelrec.data.movielens import is_present, load_movielens

ROOT = Path(__file__).resolve().parents[1]


def _synthetic():
    spec = importlib.util.spec_from_file_location("synthetic", ROOT / "benchmarks" / "synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = _synthetic().generate(out, 50_000, seed=3, progress=False)
    return out, summary


def test_layout_and_header(synth):
    out, summary = synth
    folder = out / "ml-25m"
    assert {p.name for p in folder.iterdir()} == {
        "ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt", "synthetic.json",
    }  # fmt: skip
    assert (folder / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    assert (folder / "movies.csv").read_text().splitlines()[0] == "movieId,title,genres"
    assert (folder / "tags.csv").read_text().splitlines()[0] == "userId,movieId,tag,timestamp"
    assert (folder / "links.csv").read_text().splitlines()[0] == "movieId,imdbId,tmdbId"
    assert json.loads((folder / "synthetic.json").read_text()) == summary
    assert is_present("ml-25m", out)


def test_values_and_shape(synth):
    out, summary = synth
    r = pd.read_csv(out / "ml-25m" / "ratings.csv")
    p = summary["params"]
    assert len(r) == 50_000
    assert r["userId"].nunique() == p["users"]
    assert r["movieId"].nunique() <= p["movies"]
    assert not r.duplicated(["userId", "movieId"]).any()
    assert set(r["rating"].unique()) <= {x / 2 for x in range(1, 11)}
    assert r["rating"].nunique() == 10
    u, t = r["userId"].to_numpy(), r["timestamp"].to_numpy()
    assert np.all(np.diff(u) >= 0)  # each user's rows are contiguous
    assert np.all(np.diff(t)[u[1:] == u[:-1]] > 0)  # and in strictly increasing time
    assert t.min() >= 789_652_009
    assert t.max() <= 1_574_327_703
    movies = pd.read_csv(out / "ml-25m" / "movies.csv")
    assert r["movieId"].isin(movies["movieId"]).all()
    assert movies["title"].str.contains(r'"Quoted"').any()  # quoted fields survive a CSV round trip
    assert movies["title"].str.contains(",").any()
    assert movies["title"].str.match(r".+ \(\d{4}\)$").all()


def test_power_law_counts(synth):
    out, _ = synth
    r = pd.read_csv(out / "ml-25m" / "ratings.csv")
    per_user = np.sort(r.groupby("userId").size().to_numpy())[::-1]
    per_movie = np.sort(r.groupby("movieId").size().to_numpy())[::-1]
    assert per_user.min() == 20  # every user has at least 20 ratings, like MovieLens
    assert per_user.max() > 8 * np.median(per_user)  # a heavy tail
    assert per_user[: per_user.size // 10].sum() > 0.3 * len(r)  # the top 10% of users rate >30%
    assert per_movie[: max(1, per_movie.size // 10)].sum() > 0.4 * len(r)


def test_floors_are_consistent(synth):
    _, summary = synth
    # the noise floor is about --noise (plus half-star rounding, less clipping); bias-only is worse
    assert 0.6 < summary["noise_floor_rmse"] < 0.75
    assert summary["bias_floor_rmse"] > summary["noise_floor_rmse"] + 0.05


def test_loader_reads_it(synth):
    out, summary = synth
    ds = load_movielens("ml-25m", data_home=out)
    r = pd.read_csv(out / "ml-25m" / "ratings.csv")
    assert len(ds) == 50_000
    assert ds.n_users == summary["params"]["users"]
    np.testing.assert_array_equal(ds.users.ids[ds.user_index], r["userId"].to_numpy())
    np.testing.assert_array_equal(ds.items.ids[ds.item_index], r["movieId"].to_numpy())
    np.testing.assert_array_equal(ds.rating, r["rating"].to_numpy(np.float32))
    assert ds.scale.step == 0.5
    assert ds.item_info["year"].notna().all()


def test_same_seed_same_files(tmp_path):
    syn = _synthetic()
    syn.generate(tmp_path / "a", 5_000, n_users=100, n_movies=300, seed=1, progress=False)
    syn.generate(tmp_path / "b", 5_000, n_users=100, n_movies=300, seed=1, progress=False)
    for name in ("ratings.csv", "movies.csv", "tags.csv"):
        assert (tmp_path / "a/ml-25m" / name).read_bytes() == (tmp_path / "b/ml-25m" / name).read_bytes()


def test_refuses_foreign_folder_and_impossible_sizes(tmp_path):
    syn = _synthetic()
    (tmp_path / "ml-25m").mkdir()
    (tmp_path / "ml-25m" / "ratings.csv").write_text("mine\n")
    with pytest.raises(SystemExit, match="not written by this script"):
        syn.generate(tmp_path, 5_000, progress=False)
    assert (tmp_path / "ml-25m" / "ratings.csv").read_text() == "mine\n"
    with pytest.raises(SystemExit, match="at least"):
        syn.generate(tmp_path / "x", 1_000, n_users=100, progress=False)
