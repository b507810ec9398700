"""Issue 13: nothing a user owns is deleted, no value in the data sizes memory, no answer is
silently wrong. One test (or a few) per case, named after what it protects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import small_frame
from reelrec.cli import main
from reelrec.errors import OutputError
from reelrec.recommender import Recommender
from reelrec.safeio import atomic_path, check_run_target, clean_leftovers, prepare_output_dir, temp_name


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def ratings_csv(tmp_path) -> Path:
    path = tmp_path / "ratings.csv"
    small_frame(n=600).rename(columns={"user": "userId", "item": "movieId"}).to_csv(path, index=False)
    return path


TRAIN = ("train", "--model", "bias", "--no-progress")


# ---------------------------------------------------------------------- 1. --overwrite safety
def test_overwrite_onto_a_folder_that_is_not_a_run_deletes_nothing(tmp_path, capsys) -> None:
    sandbox = tmp_path / "sandbox"
    (sandbox / "sub").mkdir(parents=True)
    small_frame(n=400).to_csv(sandbox / "b.csv", index=False)
    (sandbox / "sub" / "notes.txt").write_text("mine")
    before = _tree(sandbox)
    argv = ["--ratings", str(sandbox / "b.csv"), "--out", str(sandbox), "--overwrite"]
    code, _, err = run(capsys, *TRAIN, *argv)
    assert code == 1
    assert err.count("\n") == 1
    assert "not a reelrec run" in err
    assert "Traceback" not in err
    assert _tree(sandbox) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sandbox"]  # no temporary folder left


def test_overwrite_of_a_run_that_holds_a_user_file_deletes_nothing(ratings_csv, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--ratings", str(ratings_csv), "--out", str(out))[0] == 0
    (out / "my-notes.txt").write_text("keep me")
    inside = out / "ratings.csv"  # an input file kept inside the run folder
    inside.write_bytes(ratings_csv.read_bytes())
    before = _tree(out)
    code, _, err = run(capsys, *TRAIN, "--ratings", str(inside), "--out", str(out), "--overwrite")
    assert code == 1
    assert "not part of the run" in err
    assert _tree(out) == before


def test_overwrite_replaces_a_run_and_its_plots_atomically(ratings_csv, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--ratings", str(ratings_csv), "--out", str(out))[0] == 0
    (out / "plots").mkdir()
    (out / "plots" / "learning_curves.png").write_bytes(b"png")
    (out / "plots" / ".embeddings_pca.png.999999999.0123abcd.tmp").write_bytes(b"half")  # a killed plot
    code, _, err = run(
        capsys, "train", "--model", "mf", "--epochs", "2", "--no-progress", "--ratings", str(ratings_csv),
        "--out", str(out), "--overwrite",
    )  # fmt: skip
    assert code == 0, err
    assert Recommender.load(out).name == "mf"
    assert not (out / "plots").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.csv", "run"]


def test_run_target_refuses_files_symlinks_and_unreadable_manifests(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        check_run_target(tmp_path / "f", overwrite=True)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text("{not json")
    with pytest.raises(OutputError, match="unreadable"):
        check_run_target(fake, overwrite=True)
    (tmp_path / "link").symlink_to(fake)
    with pytest.raises(OutputError, match="symbolic link"):
        check_run_target(tmp_path / "link", overwrite=True)
    assert (fake / "manifest.json").read_text() == "{not json"


def test_output_folders_of_tune_experiment_and_plot_refuse_foreign_files(tmp_path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "results.csv").write_text("user's table")
    (folder / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match=r"thesis\.tex"):
        prepare_output_dir(folder, command="experiment", owned=("results.csv",))
    assert (folder / "results.csv").read_text() == "user's table"
    fresh = prepare_output_dir(tmp_path / "new", command="tune", owned=())
    assert (fresh / ".reelrec-output").is_file()
    (fresh / "trials.csv").write_text("t")
    with pytest.raises(OutputError, match="--overwrite"):
        prepare_output_dir(fresh, command="tune", owned=(), overwrite=False)
    assert prepare_output_dir(fresh, command="tune", owned=(), overwrite=True) == fresh


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path) -> None:
    dest = tmp_path / "a.csv"
    dest.write_text("old")

    def killed() -> None:
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        killed()
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_leftovers_of_dead_writers_are_cleaned_live_ones_kept(tmp_path) -> None:
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dead = int(proc.stdout)
    (tmp_path / f".run.{dead}.0123abcd.tmp").mkdir()
    (tmp_path / f".x.csv.{dead}.0123abcd.tmp").write_text("half")
    live = tmp_path / temp_name("run")
    live.mkdir()
    (tmp_path / ".run.notes").write_text("not ours")
    removed = clean_leftovers(tmp_path, "run")
    assert [p.name for p in removed] == [f".run.{dead}.0123abcd.tmp"]
    assert live.exists()
    assert (tmp_path / ".run.notes").exists()
    assert (tmp_path / f".x.csv.{dead}.0123abcd.tmp").exists()  # another name's leftover: not touched


def test_predict_out_refuses_a_directory_and_the_pairs_file(ratings_csv, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--ratings", str(ratings_csv), "--out", str(out))[0] == 0
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n100,m1\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    code, _, err = run(capsys, "predict", str(out), "--pairs", str(pairs), "--out", str(folder))
    assert code == 1
    assert err.count("\n") == 1
    assert "is a directory" in err
    assert list(folder.iterdir()) == []
    code, _, err = run(capsys, "predict", str(out), "--pairs", str(pairs), "--out", str(pairs), "--overwrite")
    assert code == 1
    assert "inputs" in err
    assert pairs.read_text() == "user_id,item_id\n100,m1\n"
    before = (out / "config.json").read_bytes()
    code, _, err = run(
        capsys, "predict", str(out), "--pairs", str(pairs), "--out", str(out / "config.json"), "--overwrite"
    )
    assert code == 1
    assert "inside a reelrec run" in err
    assert (out / "config.json").read_bytes() == before
    dest = tmp_path / "p.csv"
    dest.write_text("someone's file")
    code, _, err = run(capsys, "predict", str(out), "--pairs", str(pairs), "--out", str(dest))
    assert code == 1
    assert "--overwrite" in err
    assert dest.read_text() == "someone's file"
    assert run(capsys, "predict", str(out), "--pairs", str(pairs), "--out", str(dest), "--overwrite")[0] == 0
    assert pd.read_csv(dest).shape == (1, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------- 2. memory bounded by the data
_BOUNDED = """
import json, sys, time
from reelrec.cli import main
start = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - start}))
"""


def _train_bounded(path: Path, out: Path, model: str) -> tuple[dict, str]:
    """``reelrec train`` in a child process whose heap is capped at 1 GiB; its result and stderr."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))

    argv = ["train", "--ratings", str(path), "--model", model, "--epochs", "2", "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-c", _BOUNDED, *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-2000:]
    return json.loads(lines[-1]), proc.stderr


@pytest.mark.parametrize("model", ["bias", "mf"])
def test_one_absurd_rating_cannot_take_the_machine_down(tmp_path, model) -> None:
    frame = small_frame(n=600).rename(columns={"user": "userId", "item": "movieId"})
    for value, refused in ((1e9, True), (1e6, False)):
        frame.loc[0, "rating"] = value
        path = tmp_path / f"r{value:.0e}.csv"
        frame.to_csv(path, index=False)
        result, err = _train_bounded(path, tmp_path / f"run{value:.0e}", model)
        assert result["seconds"] < 10, result
        if refused:
            assert result["code"] == 1
            assert "outside the sane range" in err
            assert err.count("\n") == 1
        else:
            assert result["code"] == 0, err
            rec = Recommender.load(tmp_path / f"run{value:.0e}")
            assert rec.scale.high == value
            assert rec.scale.levels() is None  # far too many levels: treated as continuous


def test_rating_levels_never_scale_with_a_rating_value() -> None:
    from reelrec.data.dataset import RatingScale

    scale = RatingScale.infer(np.array([1, 2, 3, 4, 5, 1e6], dtype=np.float32))
    assert scale.step is None
    assert scale.levels() is None
    wide = RatingScale(1.0, 1e9, 1.0)  # as a hand-edited run config could say
    assert wide.levels() is None
    np.testing.assert_array_equal(wide.nearest_level(np.array([2.4, 7.0])), [2.4, 7.0])
    five = RatingScale(1.0, 5.0, 1.0)
    np.testing.assert_array_equal(five.nearest_level(np.array([0.2, 2.5, 3.49, 9.0])), [1, 3, 3, 5])


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("rating", [True, False, True], "true/false"),
        ("user", [True, False, True], "true/false"),
        ("rating", [1.0, np.inf, 3.0], "not a number"),
        ("rating", [1.0, np.nan, 3.0], "not a number"),
        ("rating", [1.0, -2e6, 3.0], "outside the sane range"),
        ("timestamp", [1.0, 1e30, 3.0], "out of range"),
    ],
)
def test_bad_rating_values_are_refused_in_one_line(column, values, message) -> None:
    from reelrec.data.dataset import Dataset
    from reelrec.errors import DataError

    frame = pd.DataFrame(
        {"user": [1, 2, 3], "item": [1, 2, 3], "rating": [1.0, 2.0, 3.0], "timestamp": [1, 2, 3]}
    )
    frame[column] = values
    with pytest.raises(DataError, match=message) as info:
        Dataset.from_frame(frame, name="f")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["1000000.01", "-1000000.01", "1000000.5", "12345678.9", "1e300"])
def test_a_refused_rating_is_shown_as_given(tmp_path, value) -> None:
    """Issue 23: the refusal of the rating 1000000.01 said "1000000" (printed to 7 digits), a
    value within the limit. The message shows the value as given."""
    from reelrec.data.dataset import Dataset
    from reelrec.errors import DataError

    path = tmp_path / "r.csv"
    path.write_text(f"user,item,rating\n1,1,3\n2,2,{value}\n3,3,4\n")
    frame = pd.read_csv(path)
    with pytest.raises(DataError, match="outside the sane range") as info:
        Dataset.from_frame(frame, name="r.csv")
    assert f" is {float(value)!r}, outside" in str(info.value)
    text = pd.read_csv(path, dtype={"rating": str})
    with pytest.raises(DataError, match="outside the sane range") as info:
        Dataset.from_frame(text, name="r.csv")
    assert f" is {value}, outside" in str(info.value)


# ---------------------------------------------------------------------- 3. batch prediction, row by row
@pytest.fixture
def bias_run(ratings_csv, tmp_path, capsys) -> Path:
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--ratings", str(ratings_csv), "--out", str(out))[0] == 0
    return out


def _predict(
    capsys, run_dir: Path, tmp_path: Path, rows: list[str], *extra: str
) -> tuple[int, str, pd.DataFrame]:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n" + "\n".join(rows) + "\n")
    dest = tmp_path / "pred.csv"
    code, _, err = run(
        capsys, "predict", str(run_dir), "--pairs", str(pairs), "--out", str(dest), "--overwrite", *extra
    )
    table = (
        pd.read_csv(dest, dtype={"user_id": str, "item_id": str}, keep_default_na=False)
        if code == 0
        else None
    )
    return code, err, table


def test_batch_prediction_judges_each_row_on_its_own(bias_run, tmp_path, capsys) -> None:
    rec = Recommender.load(bias_run)
    user, item = int(rec.users.ids[0]), str(rec.items.ids[0])
    truth = float(rec.predict([user], [item])[0])
    assert abs(truth - rec.fallback.mean) > 1e-3  # a known pair, not the global mean
    good = f"{user},{item}"
    code, err, alone = _predict(capsys, bias_run, tmp_path, [good])
    assert code == 0, err
    assert alone["prediction"].iloc[0] == pytest.approx(truth, abs=1e-5)
    spellings = [good, "abc,def", f"{user}.0,{item}", f" {user} , {item} ", f",{item}", f"{user},"]
    code, err, mixed = _predict(capsys, bias_run, tmp_path, spellings)
    assert code == 0, err
    pred = mixed["prediction"].to_numpy(dtype=float)
    np.testing.assert_allclose(pred[[0, 2, 3]], truth, atol=1e-5)  # 196, 196.0 and " 196 " are one user
    assert pred[1] == pytest.approx(rec.fallback.mean, abs=1e-5)  # both unknown: the global mean
    assert not np.allclose(pred[4], truth)
    assert not np.allclose(pred[5], truth)


def test_unknown_error_names_only_a_truly_unknown_id(bias_run, tmp_path, capsys) -> None:
    rec = Recommender.load(bias_run)
    user, item = int(rec.users.ids[0]), str(rec.items.ids[0])
    rows = [f"{user},{item}", f"{user}.0,{item}", "99999,m1"]
    code, err, _ = _predict(capsys, bias_run, tmp_path, rows, "--unknown", "error")
    assert code == 1
    assert "99999" in err
    assert f"{user}" not in err.replace("99999", "")
    code, err, table = _predict(capsys, bias_run, tmp_path, rows[:2], "--unknown", "error")
    assert code == 0, err
    code, err, table = _predict(capsys, bias_run, tmp_path, [*rows, "abc,def"], "--unknown", "nan")
    assert code == 0, err
    values = table["prediction"].tolist()
    assert values[0] != ""
    assert values[1] != ""
    assert values[2] == ""
    assert values[3] == ""
    assert float(values[0]) == pytest.approx(float(rec.predict([user], [item])[0]), abs=1e-5)


def test_vocabulary_lookup_reads_every_id_on_its_own() -> None:
    from reelrec.data.dataset import Vocabulary

    ints = Vocabulary(np.array([1, 2, 196]), "user")
    got = ints.index(["196", "196.0", " 2 ", "abc", "", "nan", "1e0", "3", "2.5"], missing="negative")
    np.testing.assert_array_equal(got, [2, 2, 1, -1, -1, -1, 0, -1, -1])
    np.testing.assert_array_equal(ints.index(np.array([196.0, 2.5, np.nan]), missing="negative"), [2, -1, -1])
    np.testing.assert_array_equal(ints.index(np.array([True, False]), missing="negative"), [-1, -1])
    strs = Vocabulary(np.array(["1", "196", "a1"]), "item")
    np.testing.assert_array_equal(
        strs.index(["196", "196.0", " a1", 196, "", None], missing="negative"), [1, 1, 2, 1, -1, -1]
    )


# ---------------------------------------------------------------------- 4. repeated (user, movie) pairs
def _with_repeats(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    frame = small_frame(n=900).rename(columns={"user": "userId", "item": "movieId"})
    again = frame.sample(n=300, random_state=0).assign(rating=lambda f: 6 - f["rating"], timestamp=20_000)
    both = pd.concat([frame, again]).sample(frac=1.0, random_state=1).reset_index(drop=True)
    path = tmp_path / "repeats.csv"
    both.to_csv(path, index=False)
    return path, both


def test_repeated_pairs_never_leak_across_the_split(tmp_path) -> None:
    from reelrec.data.split import make_split
    from reelrec.data.tabular import load_ratings

    path, both = _with_repeats(tmp_path)
    raw = load_ratings(path)
    for seed in range(3):  # the leak this guards against: one copy in train, one in test
        split = make_split(raw.deduplicate("last"), "holdout80", seed=seed, valid_fraction=0.1)
        parts = [split.train, split.valid, split.test]
        keys = [set(zip(p.user_index.tolist(), p.item_index.tolist(), strict=True)) for p in parts]
        assert not keys[0] & keys[2]
        assert not keys[1] & keys[2]
        assert not keys[0] & keys[1]
        assert sum(len(p) for p in parts) == len(both.drop_duplicates(["userId", "movieId"]))


def test_duplicates_policy_error_last_and_mean(tmp_path) -> None:
    from reelrec.data.tabular import load_ratings
    from reelrec.errors import DataError

    path, both = _with_repeats(tmp_path)
    ds = load_ratings(path)
    with pytest.raises(DataError, match="more than once") as info:
        ds.deduplicate("error")
    assert "--duplicates last or mean" in str(info.value)
    groups = both.groupby(["userId", "movieId"])
    latest = both.sort_values("timestamp", kind="stable").groupby(["userId", "movieId"])["rating"].last()
    for policy, expected in (("last", latest), ("mean", groups["rating"].mean())):
        merged = ds.deduplicate(policy).to_frame().set_index(["user", "item"])["rating"]
        assert len(merged) == len(expected)
        got = merged.reindex(expected.index).to_numpy()
        np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-6)
    clean = ds.deduplicate("last")
    assert clean.deduplicate("error").fingerprint() == clean.fingerprint()  # no repeats left


def test_cli_duplicates_flag_and_evaluate_reapplies_it(tmp_path, capsys) -> None:
    path, _ = _with_repeats(tmp_path)
    code, _, err = run(
        capsys, *TRAIN, "--ratings", str(path), "--out", str(tmp_path / "r0"), "--duplicates", "error"
    )
    assert code == 1
    assert err.count("\n") == 1
    assert "more than once" in err
    out = tmp_path / "r1"
    assert run(capsys, *TRAIN, "--ratings", str(path), "--out", str(out), "--duplicates", "mean")[0] == 0
    assert json.loads((out / "config.json").read_text())["dataset"]["source"]["duplicates"] == "mean"
    code, _, err = run(capsys, "evaluate", str(out), "--json")
    assert code == 0, err


# ---------------------------------------------------------------------- 6. the smaller cases
def test_rating_col_naming_a_missing_column_is_an_error_not_a_fallback(ratings_csv, tmp_path, capsys) -> None:
    from reelrec.data.tabular import load_ratings
    from reelrec.errors import DataError

    with pytest.raises(DataError, match="no rating column 'score'"):
        load_ratings(ratings_csv, rating_col="score")
    with pytest.raises(DataError, match="no timestamp column 'time'"):
        load_ratings(ratings_csv, timestamp_col="time")
    assert len(load_ratings(ratings_csv, user_col="USER_ID".lower().replace("_", ""))) > 0  # userid ~ userId
    argv = [*TRAIN, "--ratings", str(ratings_csv), "--rating-col", "score", "--out", str(tmp_path / "r")]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert "no rating column 'score'" in err
    assert err.count("\n") == 1


def test_a_directory_as_ratings_says_it_is_a_directory(tmp_path, capsys) -> None:
    code, _, err = run(capsys, *TRAIN, "--ratings", str(tmp_path), "--out", str(tmp_path / "r"))
    assert code == 1
    assert "is a directory" in err
    assert "no such file" not in err


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_utf16_file_names_the_encoding(tmp_path, capsys, encoding) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(small_frame(n=50).to_csv(index=False).encode(encoding))
    code, _, err = run(capsys, *TRAIN, "--ratings", str(path), "--out", str(tmp_path / "r"))
    assert code == 1
    assert "UTF-8" in err
    assert "UTF-16" in err or "UTF-32" in err or "NUL" in err
    assert "column" not in err
    assert not (tmp_path / "r").exists()


def test_incomplete_dataset_message_names_the_real_flag(tmp_path) -> None:
    from reelrec.data import movielens as ml
    from reelrec.errors import DataError, DownloadError

    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t1\t5\t1\n")
    with pytest.raises(DownloadError, match=r"reelrec download ml-100k --force") as info:
        ml.download("ml-100k", tmp_path, progress=False)
    assert "force=True" not in str(info.value)
    with pytest.raises(DataError, match=r"reelrec download ml-100k --force"):
        ml.load_movielens("ml-100k", data_home=tmp_path)


_SLOW_DOWNLOAD = """
import hashlib, sys, time
from pathlib import Path
import reelrec.data.movielens as ml
zip_path, home = Path(sys.argv[1]), Path(sys.argv[2])
data = zip_path.read_bytes()
ml.DATASETS["ml-test"] = ml.MovieLensSpec(
    name="ml-test", url="http://example.invalid/ml-test.zip", folder="ml-test", layout=ml.ML100K_LAYOUT,
    checksum=hashlib.sha256(data).hexdigest(), algorithm="sha256", size=len(data), description="slow",
)

class Slow:
    headers = {}
    sent = False
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def read(self, n=-1):
        if not self.sent:
            self.sent = True
            return data[:100]
        time.sleep(120)
        return b""

ml.download("ml-test", home, progress=False, opener=lambda url: Slow())
"""


def test_a_killed_download_leaves_a_part_file_the_next_attempt_removes(tmp_path, monkeypatch) -> None:
    import signal
    import time

    from reelrec.data import movielens as ml
    from test_movielens import register, write_ml100k

    src = write_ml100k(tmp_path / "src")
    archive = tmp_path / "ml-test.zip"
    import zipfile

    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.iterdir()):
            zf.write(p, f"ml-test/{p.name}")
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", _SLOW_DOWNLOAD, str(archive), str(home)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if home.exists() and [p for p in home.iterdir() if p.name.endswith(".zip.part")]:
                time.sleep(0.5)  # inside the slow read now
                break
            assert child.poll() is None, "the download ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("the download never started")  # pragma: no cover
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert next(p.name for p in home.iterdir()).endswith(".zip.part")  # what the kill left
    register(monkeypatch, archive)
    ml.download("ml-test", home, progress=False)
    assert sorted(p.name for p in home.iterdir()) == ["ml-test"]


# ---------------------------------------------------------------------- found by probing the CLI
def test_predict_never_overwrites_the_runs_own_training_file(bias_run, ratings_csv, tmp_path, capsys) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n100,m1\n")
    before = ratings_csv.read_bytes()
    code, _, err = run(
        capsys, "predict", str(bias_run), "--pairs", str(pairs), "--out", str(ratings_csv), "--overwrite"
    )
    assert code == 1
    assert "inputs" in err
    assert ratings_csv.read_bytes() == before


def test_unwritable_predict_destination_is_one_line_naming_it(bias_run, tmp_path, capsys) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n100,m1\n")
    dest = Path("/proc/reelrec-cannot-write-here.csv")  # refused even to root
    code, _, err = run(capsys, "predict", str(bias_run), "--pairs", str(pairs), "--out", str(dest))
    assert code == 1
    assert err.count("\n") == 1
    assert f"cannot write {dest}" in err
    assert ".tmp" not in err


@pytest.mark.parametrize("novelty", ["nan", "1e308", "-inf"])
def test_a_novelty_that_would_empty_the_list_is_refused(bias_run, capsys, novelty) -> None:
    code, out, err = run(capsys, "recommend", str(bias_run), "--user", "100", f"--novelty={novelty}")
    assert code == 1
    assert "novelty must lie in" in err
    assert "top 0" not in out


def test_a_movie_rated_twice_with_rate_is_refused(bias_run, capsys) -> None:
    code, _, err = run(capsys, "recommend", str(bias_run), "--rate", "m1=5", "--rate", " m1=3")
    assert code == 1
    assert "rated twice" in err


def test_rows_with_more_fields_than_the_header_are_refused_not_shifted(tmp_path) -> None:
    from reelrec.data.tabular import load_ratings
    from reelrec.errors import DataError

    path = tmp_path / "shifted.csv"
    path.write_text("userId,movieId,rating\n" + "".join(f"{u},{u % 7},{u % 5 + 1},9\n" for u in range(30)))
    with pytest.raises(DataError, match="more fields than the header"):
        load_ratings(path)


def test_float_ids_beyond_exact_range_are_not_cast_to_garbage_ints() -> None:
    from reelrec.data.dataset import Dataset

    frame = pd.DataFrame({"user": [1.0, 1e30, 2.0], "item": [1, 2, 3], "rating": [1.0, 2.0, 3.0]})
    ds = Dataset.from_frame(frame, name="f")
    assert ds.users.ids.dtype.kind == "U"  # text ids: 1e30 stays 1e30
    assert "1e+30" in ds.users.ids.tolist()


def test_running_out_of_memory_is_one_line_that_says_so(monkeypatch, capsys) -> None:
    import reelrec.cli as cli

    def exhausted(args) -> int:
        raise MemoryError

    monkeypatch.setattr(cli, "cmd_datasets", exhausted)
    code, _, err = run(capsys, "datasets")
    assert code == 1
    assert err == "reelrec: error: out of memory; use a smaller model, batch or dataset\n"


# ------------------------------------------------------------------------ issue 23: MovieLens ids
_BIG = str(10**30 + 1)
_ML_FOLDERS = {
    "csv": {
        "ratings.csv": f"userId,movieId,rating,timestamp\n{_BIG},1,4,978300760\n5,2,3,978300761\n",
        "movies.csv": "movieId,title,genres\n1,A (1999),Drama\n2,B (2000),Drama\n",
    },
    "dat": {
        "ratings.dat": f"{_BIG}::1::4::978300760\n5::2::3::978300761\n",
        "movies.dat": "1::A (1999)::Drama\n2::B (1999)::Drama\n",
    },
    "dat_fraction": {
        "ratings.dat": "1.5::1::4::978300760\n5::2::3::978300761\n",
        "movies.dat": "1::A (1999)::Drama\n2::B (1999)::Drama\n",
    },
    "100k": {
        "u.data": f"{_BIG}\t1\t4\t978300760\n5\t2\t3\t978300761\n",
        "u.item": "".join(f"{i}|F{i} (1999)|01-Jan-1999||http://x" + "|0" * 19 + "\n" for i in (1, 2)),
        "u.user": f"{_BIG}|24|M|technician|85711\n5|53|F|other|94043\n",
    },
}


@pytest.mark.parametrize("layout", sorted(_ML_FOLDERS))
def test_movielens_folder_ids_past_int64_are_refused_not_wrapped(tmp_path, layout) -> None:
    """A MovieLens-layout folder whose ids do not fit int64 (or are not whole) is a one-line error:
    astype(int64) would wrap 10**30 to -2**63 (merging users) and cut 1.5 to 1."""
    from reelrec.data.movielens import load_movielens
    from reelrec.errors import DataError

    folder = tmp_path / layout
    folder.mkdir()
    for name, text in _ML_FOLDERS[layout].items():
        (folder / name).write_text(text)
    with pytest.raises(DataError, match="cannot parse") as err:
        load_movielens(folder, cache=False)
    assert "\n" not in str(err.value)
