"""Experiments: TOML validation, the comparison table and the plots."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import small_frame
from reelrec.cli import main
from reelrec.errors import ConfigError
from reelrec.experiment import load_spec, preset_names


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def ratings(tmp_path) -> Path:
    path = tmp_path / "ratings.csv"
    small_frame(n=900).rename(columns={"user": "user_id", "item": "item_id"}).to_csv(path, index=False)
    return path


def test_experiment_writes_table_csv_and_pngs(tmp_path, ratings, capsys) -> None:
    spec = _write(
        tmp_path,
        f"""
name = "tiny"
[data]
ratings = "{ratings}"
split = "holdout80"
seeds = [1, 2]
[[runs]]
name = "bias"
model = "bias"
[[runs]]
name = "mf"
model = "mf"
[runs.params]
embedding_size = 8
[runs.train]
epochs = 4
batch_size = 128
[[runs]]
name = "softmax-mlp"
model = "mlp"
[runs.params]
output = "softmax"
hidden = [16]
[runs.train]
epochs = 3
batch_size = 128
""",
    )
    out = tmp_path / "out"
    assert main(["experiment", str(spec), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| bias | bias |" in text
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["name"] for r in rows] == ["bias", "mf", "softmax-mlp"]
    for r in rows:
        assert 0.3 < float(r["rmse"]) < 2.0
        assert 0.0 <= float(r["accuracy"]) <= 1.0
        assert r["seeds"] == "2"
    assert rows[0]["epochs"] == ""  # closed form: no epochs
    assert float(rows[1]["epochs"]) >= 1
    assert int(rows[1]["parameters"]) > int(rows[0]["parameters"])
    assert "rmse_std" in rows[1]
    pngs = {p.name for p in out.glob("*.png")}
    assert {"comparison.png", "curves_mf.png", "curves_softmax-mlp.png"} <= pngs
    assert any(name.startswith("embeddings_") for name in pngs)
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 5000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'name = "x"\n[data]\ndataset = "ml-100k"\nratings = "r.csv"\n[[runs]]\nname="a"\nmodel="mf"',
            "exactly one of data.dataset and data.ratings",
        ),
        ('name = "x"\n[data]\ndataset = "ml-100k"\n[[runs]]\nname="a"\nmodel="svd"', "unknown model 'svd'"),
        (
            'name = "x"\n[data]\ndataset = "ml-100k"\n[[runs]]\nname="a"\nmodel="mf"\n[runs.train]\nepochs=0',
            "train.epochs",
        ),
        (
            'name = "x"\n[data]\ndataset = "ml-100k"\nsplit_sed = 3\n[[runs]]\nname="a"\nmodel="mf"',
            "split_sed",
        ),
        ("name = ", "not valid TOML"),
    ],
)
def test_invalid_experiment_files_are_one_line_errors(tmp_path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_spec(_write(tmp_path, body))


def test_invalid_model_params_fail_before_any_training(tmp_path, ratings) -> None:
    from reelrec.experiment import run_experiment

    spec = load_spec(
        _write(
            tmp_path,
            f"""
name = "bad"
[data]
ratings = "{ratings}"
[[runs]]
name = "ok"
model = "bias"
[[runs]]
name = "bad"
model = "mf"
[runs.params]
embeding_size = 3
""",
        )
    )
    with pytest.raises(ConfigError, match="no setting 'embeding_size'"):
        run_experiment(spec, tmp_path / "out", plots=False)
    assert not (tmp_path / "out" / "results.csv").exists()


def test_every_preset_is_valid() -> None:
    names = preset_names()
    assert {"seed000", "seed001", "seed002", "seed004"} <= set(names)
    for name in names:
        spec = load_spec(name, preset=True)
        assert any(r.name.startswith("notebook") for r in spec.runs)
        assert any(r.name.startswith("reelrec") for r in spec.runs)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_spec("seed999", preset=True)
