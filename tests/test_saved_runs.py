"""Runs saved by an earlier reelrec (tests/data/saved_runs, synthetic data, written by the code of
commit 99d2a85) still load and predict identically: config renames keep their old names as aliases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reelrec.recommender import Recommender

ROOT = Path(__file__).parent / "data" / "saved_runs"
EXPECTED = json.loads((ROOT / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(EXPECTED["predictions"]))
def test_saved_run_loads_and_predicts_identically(name: str) -> None:
    rec = Recommender.load(str(ROOT / name))
    assert rec.name == name
    pred = rec.predict(np.asarray(EXPECTED["users"]), np.asarray(EXPECTED["items"]))
    want = np.asarray([np.nan if p is None else p for p in EXPECTED["predictions"][name]])
    np.testing.assert_allclose(pred, want, rtol=0, atol=1e-6, equal_nan=True)
    items = rec.recommend(EXPECTED["users"][0], n=5)
    got = [[str(i.item_id), round(i.score, 6)] for i in items]
    assert got == EXPECTED["recommend"][name]


@pytest.mark.parametrize(
    ("model", "old", "new"),
    [
        ("bias", {"reg_user": 3.0, "reg_item": 4.0}, {"user_reg": 3.0, "item_reg": 4.0}),
        ("bpr", {"item_bias": False}, {"use_bias": False}),
        ("autorec", {"hidden": 7}, {"code_size": 7}),
    ],
)
def test_renamed_settings_keep_their_old_names(model: str, old: dict, new: dict) -> None:
    """Configs and TOML files written with the old names load as the new ones."""
    from reelrec.models.registry import make_config

    assert make_config(model, old) == make_config(model, new)
    assert make_config(model, old).model_dump().items() >= new.items()


def test_old_runs_record_the_old_names() -> None:
    """The fixture really holds the old names (so the loading test above tests the aliases)."""
    configs = {
        n: json.loads((ROOT / n / "config.json").read_text())["model"]["config"] for n in ("bias", "bpr")
    }
    assert "reg_user" in configs["bias"]
    assert "item_bias" in configs["bpr"]
    autorec = json.loads((ROOT / "autorec" / "config.json").read_text())["model"]["config"]
    assert autorec["hidden"] == 6


def test_a_record_written_before_the_data_spec_reloads_the_same_data(tmp_path) -> None:
    """Runs saved before ``data`` was recorded kept their source in ``dataset.source`` and their
    side tables in ``side_data``: they read as the same spec and reload the same data."""
    import pandas as pd

    from conftest import small_frame
    from reelrec.runs.record import RunRecord, load_run_data
    from reelrec.runs.source import DataSource, SideData, load_dataset

    small_frame(n=300).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"uid": range(100, 140), "age": range(40)}).to_csv(tmp_path / "u.csv", index=False)
    ds = load_dataset(DataSource(ratings=str(tmp_path / "r.csv"), duplicates="mean"), progress=False)
    side = {"users": str(tmp_path / "u.csv"), "user_id_col": "uid"}
    old = {
        "dataset": {
            "name": ds.name,
            "source": ds.source,
            "fingerprint": ds.fingerprint(),
            "n_ratings": len(ds),
        },
        "split": {"name": "holdout90", "spec": "holdout90", "seed": 42, "valid_fraction": 0.05},
        "seed": 42,
        "protocol": None,
        "side_data": side,
        "model": {"name": "bias", "config": {}},
        "train": None,
    }
    record = RunRecord.model_validate(old)
    assert record.data == DataSource(origin=ds.source, duplicates="mean", side=SideData(**side))
    assert record.side_data == side
    again = load_run_data(record, side_data=True)
    assert again.fingerprint() == ds.fingerprint()
    assert list(again.user_info.columns) == ["age"]
    # written again, the record holds the one spec instead, and reads back the same
    meta = record.meta()
    assert "side_data" not in meta
    assert meta["data"] == {"origin": ds.source, "duplicates": "mean", "side": side}
    assert RunRecord.model_validate(meta).data == record.data
