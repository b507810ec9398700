"""End-to-end CLI tests on small synthetic files (real-data CLI runs are in test_realdata.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import small_frame
from reelrec.cli import main


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    frame = small_frame(n=900).rename(columns={"user": "userId", "item": "movieId"})
    ratings = tmp_path / "ratings.csv"
    frame.to_csv(ratings, index=False)
    items = tmp_path / "movies.csv"
    pd.DataFrame(
        {
            "movieId": [f"m{k}" for k in range(30)],
            "title": [f"Film {k} ({1980 + k})" for k in range(30)],
            "genres": ["Comedy|Drama"] * 30,
        }
    ).to_csv(items, index=False)
    return ratings, items


@pytest.fixture
def mf_run(files, tmp_path, capsys) -> Path:
    """A small MF run trained through the CLI on the synthetic files (titles included)."""
    ratings, items = files
    run_dir = tmp_path / "run"
    argv = ["train", "--ratings", str(ratings), "--items", str(items), "--epochs", "3", "--no-progress"]
    assert main([*argv, "--out", str(run_dir)]) == 0
    capsys.readouterr()  # the tests read only their own command's output
    return run_dir


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_evaluate_predict_recommend_similar(files, tmp_path, capsys) -> None:
    ratings, items = files
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys,
        "train",
        "--ratings",
        str(ratings),
        "--items",
        str(items),
        "--model",
        "mf",
        "--epochs",
        "5",
        "--batch-size",
        "128",
        "--embedding-size",
        "8",
        "--seed",
        "3",
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["test"]["rmse"] > 0
    assert (out_dir / "manifest.json").is_file()

    code, out, err = run(capsys, "evaluate", str(out_dir), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["rmse"] == pytest.approx(metrics["test"]["rmse"], abs=1e-9)  # same split rebuilt
    assert again["ranking"]["ndcg@10"] == pytest.approx(metrics["test_ranking"]["ndcg@10"])

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n100,m1\n101,m2\n999999,m1\n100,unknown-movie\n")
    preds = tmp_path / "preds.csv"
    code, out, err = run(capsys, "predict", str(out_dir), "--pairs", str(pairs), "--out", str(preds))
    assert code == 0, err
    table = pd.read_csv(preds)
    assert list(table.columns) == ["user_id", "item_id", "prediction"]
    assert len(table) == 4
    assert table["prediction"].between(1, 5).all()

    code, out, err = run(capsys, "recommend", str(out_dir), "--user", "100", "-n", "3", "--json")
    assert code == 0, err
    recs = json.loads(out)["items"]
    assert len(recs) == 3
    assert recs[0]["title"].startswith("Film ")
    assert recs[0]["year"] >= 1980
    assert recs[0]["genres"] == ["Comedy", "Drama"]
    seen = set(pd.read_csv(ratings).query("userId == 100")["movieId"])
    # training items never come back (test items may)
    assert not {r["item_id"] for r in recs} & (seen - set(_test_items(out_dir, ratings)))

    code, out, err = run(capsys, "similar", str(out_dir), "--movie", "m1", "-n", "2")
    assert code == 0, err
    assert out.count("cosine=") == 2


def _test_items(run_dir: Path, ratings: Path) -> list[str]:
    from reelrec.data.split import make_split
    from reelrec.data.tabular import load_ratings

    ds = load_ratings(ratings)
    split = make_split(ds, "holdout90", seed=3)
    test = split.test.to_frame()
    return test.loc[test["user"] == 100, "item"].tolist()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["recommend", "{run}", "--user", "nobody"], "unknown user id 'nobody'"),
        (["similar", "{run}", "--movie", "zzz"], "unknown item id 'zzz'"),
        (["recommend", "{tmp}/missing", "--user", "1"], "is not a run directory"),
        (["train", "--ratings", "{tmp}/none.csv", "--out", "{tmp}/r2"], "none.csv"),
        (
            ["train", "--ratings", "{ratings}", "--split", "weird", "--out", "{tmp}/r3"],
            "unknown split 'weird'",
        ),
        (
            [
                "train",
                "--ratings",
                "{ratings}",
                "--model",
                "bias",
                "--embedding-size",
                "4",
                "--out",
                "{tmp}/r4",
            ],
            "model bias has no setting 'embedding_size'",
        ),
        (["train", "--ratings", "{ratings}", "--out", "{run}"], "already holds files"),
        (["train", "--ratings", "{ratings}", "--learning-rate", "-1", "--out", "{tmp}/r5"], "learning_rate"),
        (
            ["predict", "{run}", "--pairs", "{ratings}", "--out", "{tmp}/p.csv"],
            "needs columns user_id,item_id",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(files, tmp_path, capsys, argv, message) -> None:
    ratings, _ = files
    run_dir = tmp_path / "run"
    assert (
        main(["train", "--ratings", str(ratings), "--epochs", "2", "--no-progress", "--out", str(run_dir)])
        == 0
    )
    capsys.readouterr()
    argv = [a.format(run=run_dir, tmp=tmp_path, ratings=ratings) for a in argv]
    code, _out, err = run(capsys, *argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reelrec: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_installed_console_script_fails_cleanly(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reelrec.cli", "recommend", str(tmp_path), "--user", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr


#: what the light commands must not import (each costs seconds on a busy machine)
HEAVY = ("torch", "pandas", "numba")


def imported_packages(*argv: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``python -m reelrec ARGV`` run with ``-X importtime``: the process and the top-level
    packages it imported (what ``sys.modules`` held at exit, read from the import log)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reelrec", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=120,
    )
    names = {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, names


def test_the_import_log_is_read() -> None:
    """The reader sees a heavy import where there is one (so the front-door tests can fail)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pandas"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {ln.rpartition("|")[2].strip().split(".")[0] for ln in proc.stderr.splitlines() if "|" in ln}
    assert "pandas" in names
    assert "numpy" in names


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["datasets", "--help"],
        ["download", "--help"],
        ["serve", "--help"],
        ["demo", "--help"],
        ["datasets", "--data-home", "{home}"],
        ["datasets", "--data-home", "{home}", "--json"],
        ["download", "ml-100k", "--data-home", "{home}", "--quiet"],  # present: no network
    ],
    ids=" ".join,
)
def test_light_commands_import_no_heavy_package(argv, tmp_path) -> None:
    """``reelrec --help``, a command's help, ``datasets`` and ``download`` answer without torch,
    pandas or numba (today's 2.5 s ``--help`` was a full torch import)."""
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in ("u.data", "u.item", "u.user"):  # a complete copy: download has nothing to do
        (folder / name).write_text("")
    proc, names = imported_packages(*(a.format(home=tmp_path) for a in argv), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
    assert not names & set(HEAVY), f"reelrec {' '.join(argv)} imported {sorted(names & set(HEAVY))}"
    if "--help" in argv:
        return
    if argv[0] == "datasets":
        assert "ml-100k" in proc.stdout
        assert "present" in proc.stdout
    if argv[0] == "download":
        assert proc.stdout.strip() == f"ml-100k: {folder}"


def test_a_command_that_trains_still_imports_torch(tmp_path) -> None:
    """The other side of the light front door: ``train --help`` lists the registry's models."""
    proc, names = imported_packages("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "torch" in names
    assert "seqlinear" in proc.stdout
    assert "mf (default)" in proc.stdout


def test_import_reelrec_is_light_and_its_names_resolve() -> None:
    code = (
        "import sys, reelrec\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from reelrec import Recommender, TrainConfig, load_movielens\n"
        "from reelrec.recommender import Recommender as R\n"
        "assert Recommender is R and 'torch' in sys.modules\n"
        "assert all(getattr(reelrec, n) is not None for n in reelrec.__all__)\n"
        "assert set(reelrec.__all__) <= set(dir(reelrec))\n"
        "try:\n    reelrec.nothing\nexcept AttributeError as exc:\n    assert 'nothing' in str(exc)\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_unknown_model_is_refused_by_the_parser(capsys) -> None:
    """``--model`` choices come from the registry on demand: an unknown name is argparse's error."""
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "ml-100k", "--out", "x", "--model", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err
    assert "'seqlinear'" in err


def test_datasets_lists_every_movielens_release(tmp_path, capsys) -> None:
    code, out, _ = run(capsys, "datasets", "--data-home", str(tmp_path), "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["name"] for r in rows} >= {
        "ml-100k",
        "ml-1m",
        "ml-10m",
        "ml-20m",
        "ml-25m",
        "ml-32m",
        "ml-latest-small",
        "ml-latest",
    }
    assert not any(r["present"] for r in rows)


def test_download_without_network_names_the_file_and_place(tmp_path, capsys, monkeypatch) -> None:
    import urllib.error

    from reelrec.data import grouplens

    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(grouplens, "_default_opener", offline)
    code, _, err = run(capsys, "download", "ml-100k", "--data-home", str(tmp_path), "--quiet")
    assert code == 1
    assert err.count("\n") == 1
    assert "ml-100k.zip" in err
    assert str(tmp_path) in err


def test_plot_writes_pngs_for_a_run(mf_run, tmp_path, capsys) -> None:
    run_dir = mf_run
    code, out, err = run(capsys, "plot", str(run_dir), "--out", str(tmp_path / "pics"), "--json")
    assert code == 0, err
    written = [Path(p) for p in json.loads(out)["files"]]
    assert {p.name for p in written} == {"learning_curves.png", "embeddings_pca.png"}
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hybrid_with_a_users_file(files, tmp_path, capsys) -> None:
    ratings, items = files
    users = tmp_path / "users.csv"
    ids = pd.read_csv(ratings)["userId"].unique()
    pd.DataFrame({"user_id": ids, "age": 20 + ids % 40, "gender": np.where(ids % 2, "F", "M")}).to_csv(
        users, index=False
    )
    run_dir = tmp_path / "hybrid"
    code, out, err = run(
        capsys,
        "train",
        "--ratings",
        str(ratings),
        "--items",
        str(items),
        "--users",
        str(users),
        "--model",
        "hybrid",
        "--user-features",
        "age=numeric,gender",
        "--epochs",
        "3",
        "--no-progress",
        "--out",
        str(run_dir),
        "--json",
    )
    assert code == 0, err
    cfg = json.loads((run_dir / "config.json").read_text())
    names = {f["name"] for f in cfg["model"]["config"]["user_schema"]["features"]}
    assert {"age", "gender"} <= names
    assert cfg["data"]["side"]["users"] == str(users)
    code, out, err = run(capsys, "recommend", str(run_dir), "--user", str(ids[0]), "-n", "3", "--json")
    assert code == 0, err
    assert len(json.loads(out)["items"]) == 3


def test_recommend_for_a_new_user_from_ratings(mf_run, capsys) -> None:
    run_dir = mf_run
    code, out, err = run(
        capsys, "recommend", str(run_dir), "--rate", "m1=5", "--rate", "m2=1", "-n", "4", "--json"
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["user_id"] is None
    assert len(got["items"]) == 4
    assert not {"m1", "m2"} & {it["item_id"] for it in got["items"]}
    code, _, err = run(capsys, "recommend", str(run_dir), "--rate", "m1=9")
    assert code == 1
    assert "ratings must lie in 1..5" in err
    code, _, err = run(capsys, "recommend", str(run_dir), "--rate", "m1")
    assert code == 1
    assert "expected MOVIE_ID=RATING" in err


def test_ranking_model_with_a_protocol_trains_and_evaluates(files, tmp_path, capsys) -> None:
    ratings, items = files
    run_dir = tmp_path / "ease"
    code, out, err = run(
        capsys,
        "train",
        "--ratings",
        str(ratings),
        "--items",
        str(items),
        "--model",
        "ease",
        "--protocol",
        "loo-sampled",
        "--json",
        "--out",
        str(run_dir),
    )
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["split"] == "leave-last"
    assert metrics["test_ranking"]["protocol"] == "loo-sampled"
    assert 0.0 <= metrics["test_ranking"]["hr@10"] <= 1.0
    assert "test" not in metrics  # no RMSE for a ranking model
    code, out, err = run(capsys, "evaluate", str(run_dir), "--json")
    assert code == 0, err
    again = json.loads(out)["ranking"]
    assert again["hr@10"] == metrics["test_ranking"]["hr@10"]  # same seed, same sampled negatives
    code, out, err = run(capsys, "evaluate", str(run_dir), "--protocol", "loo-full", "--json")
    assert code == 0, err
    assert json.loads(out)["ranking"]["protocol"] == "loo-full"
    code, out, err = run(capsys, "evaluate", str(run_dir), "--protocol", "temporal-full")
    assert code == 1
    assert "needs a model trained on the temporal split" in err
    code, out, err = run(capsys, "recommend", str(run_dir), "--user", "100", "-n", "3")
    assert code == 0, err
    assert "score=" in out


def test_train_refit_models_option(files, tmp_path, capsys) -> None:
    ratings, _ = files
    common = ["train", "--ratings", str(ratings), "--epochs", "2", "--embedding-size", "4", "--no-progress"]
    code, _, err = run(capsys, *common, "--refit-models", "3", "--out", str(tmp_path / "three"))
    assert code == 0, err
    config = json.loads((tmp_path / "three" / "config.json").read_text())
    assert config["model"]["config"]["members"] == 3
    assert config["train"]["refit_models"] == 3
    code, _, err = run(
        capsys, *common, "--refit-models", "2", "--average-validated", "--out", str(tmp_path / "plus")
    )
    assert code == 0, err
    config = json.loads((tmp_path / "plus" / "config.json").read_text())
    assert config["model"]["config"]["members"] == 3  # two refits and the early-stopped model
    assert config["train"]["average_validated"] is True
    code, _, err = run(capsys, *common, "--refit-models", "0", "--out", str(tmp_path / "zero"))
    assert code == 1
    assert "refit_models" in err
    assert "Traceback" not in err
    assert not (tmp_path / "zero").exists()


def test_train_decode_thresholds_is_saved_with_the_run(files, tmp_path, capsys) -> None:
    ratings, _ = files
    run_dir = tmp_path / "run"
    argv = ["train", "--ratings", str(ratings), "--epochs", "2", "--no-progress", "--valid-fraction", "0.2"]
    code, _out, err = run(capsys, *argv, "--decode", "thresholds", "--out", str(run_dir))
    assert code == 0, err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["decode"] == "thresholds"
    from reelrec.recommender import Recommender

    cuts = Recommender.load(run_dir).class_thresholds
    assert cuts is not None
    assert cuts.shape == (4,)
    argv[-1] = "0"  # no validation part: nothing to fit the cut points on
    code, _out, err = run(capsys, *argv, "--decode", "thresholds", "--out", str(tmp_path / "run2"))
    assert code == 1
    assert "validation part" in err
