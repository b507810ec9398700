from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reelrec.artifacts import MANIFEST, verify_run
from reelrec.errors import ArtifactError, OutputError
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig


@pytest.fixture
def run(small, tmp_path) -> tuple[Recommender, Path]:
    rec = Recommender.train("mf", small, train_config=TrainConfig(epochs=2, batch_size=64), seed=0)
    path = tmp_path / "run"
    rec.save(path, metrics={"test": {"rmse": 1.0}})
    return rec, path


def test_run_directory_layout_and_manifest(run) -> None:
    _, path = run
    names = {p.name for p in path.iterdir()}
    assert {
        "config.json",
        "weights.safetensors",
        "index.safetensors",
        "vocab.json",
        "items.json",
        "metrics.json",
        "history.json",
        MANIFEST,
    } <= names
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["schema_version"] == 1
    assert set(manifest["files"]) == names - {MANIFEST}
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())
    history = json.loads((path / "history.json").read_text())
    assert len(history["history"]) == 2
    # nothing in a run is a pickle: JSON text or safetensors (8-byte header length + JSON header)
    for p in path.iterdir():
        data = p.read_bytes()
        if p.suffix == ".json":
            json.loads(data)
        else:
            assert p.suffix == ".safetensors"
            header = int.from_bytes(data[:8], "little")
            assert json.loads(data[8 : 8 + header])  # a pickle has no such JSON header


def test_tampered_weights_are_refused(run) -> None:
    _, path = run
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"weights\.safetensors does not match its sha256"):
        Recommender.load(path)


def test_missing_file_and_wrong_schema_are_refused(run) -> None:
    _, path = run
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["schema_version"] = 99
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="schema version 99"):
        verify_run(path)
    manifest["schema_version"] = 1
    (path / MANIFEST).write_text(json.dumps(manifest))
    (path / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match=r"vocab\.json is missing"):
        Recommender.load(path)


def test_config_edit_that_keeps_the_hash_is_impossible_but_a_rehashed_bad_config_is_refused(run) -> None:
    import hashlib

    _, path = run
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["config"]["embedding_size"] = 3  # weights no longer fit
    (path / "config.json").write_text(json.dumps(cfg))
    manifest = json.loads((path / MANIFEST).read_text())
    body = (path / "config.json").read_bytes()
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="weights do not fit the model config"):
        Recommender.load(path)


def test_saving_never_replaces_a_run_without_overwrite(run, small) -> None:
    _rec, path = run
    before = (path / "weights.safetensors").read_bytes()
    other = Recommender.train("bias", small)
    with pytest.raises(OutputError, match="already holds files"):
        other.save(path)
    assert (path / "weights.safetensors").read_bytes() == before
    other.save(path, overwrite=True)
    assert Recommender.load(path).name == "bias"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_not_a_run_directory(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="is not a run directory"):
        Recommender.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        Recommender.load(tmp_path / "empty")


def test_round_trip_keeps_fallbacks_and_similar_items(run, small) -> None:
    rec, path = run
    again = Recommender.load(path)
    np.testing.assert_array_equal(
        rec.predict(["nobody", small.users.ids[0]], ["m1", "nothing"]),
        again.predict(["nobody", small.users.ids[0]], ["m1", "nothing"]),
    )
    assert [s.item_id for s in rec.similar_items("m1", 5)] == [
        s.item_id for s in again.similar_items("m1", 5)
    ]
