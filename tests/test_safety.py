"""Issue 13: nothing a user owns is deleted, no value in the data sizes memory, no answer is
silently wrong. One test (or a few) per case, named after what it protects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    dest = tmp_path / "p.csv"
    dest.write_text("someone's file")
    code, _, err = run(capsys, "predict", str(out), "--pairs", str(pairs), "--out", str(dest))
    assert code == 1
    assert "--overwrite" in err
    assert dest.read_text() == "someone's file"
    assert run(capsys, "predict", str(out), "--pairs", str(pairs), "--out", str(dest), "--overwrite")[0] == 0
    assert pd.read_csv(dest).shape == (1, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
