"""reelrec blend: weights fitted on the members' shared validation part; a loadable run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import planted_frame
from reelrec.blend import fit_weights
from reelrec.cli import main
from reelrec.recommender import Recommender


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("blend")
    frame, _ = planted_frame(n_users=150, n_items=100, density=0.3)
    frame.to_csv(root / "r.csv", index=False)
    base = ["train", "--ratings", str(root / "r.csv"), "--no-progress", "--json", "--no-refit"]
    runs = []
    for name, extra in (("mf", ["--embedding-size", "8", "--epochs", "15", "--lr", "0.01"]), ("bias", [])):
        out = root / name
        assert main([*base, "--model", name, *extra, "--out", str(out)]) == 0
        runs.append(out)
    return root, runs


def test_fit_weights_recovers_a_known_mix() -> None:
    rng = np.random.default_rng(0)
    preds = rng.normal(3, 1, size=(5000, 2))
    truth = 0.5 + 0.7 * preds[:, 0] + 0.2 * preds[:, 1]
    w, b = fit_weights(preds, truth, ridge=0.0)
    np.testing.assert_allclose(w, [0.7, 0.2], atol=1e-9)
    assert b == pytest.approx(0.5)


def test_blend_is_no_worse_on_validation_and_round_trips(members, capsys) -> None:
    root, runs = members
    capsys.readouterr()
    out = root / "blended"
    assert main(["blend", *map(str, runs), "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["valid_rmse"] <= min(m["valid_rmse"] for m in metrics["members"]) + 1e-9
    assert len(metrics["members"]) == 2
    assert "rmse" in metrics["test"]
    rec = Recommender.load(str(out))
    assert rec.model.name == "blend"
    mf, bias = (Recommender.load(str(r)) for r in runs)
    users, items = mf.users.ids[:20], mf.items.ids[:20]
    w = [m["weight"] for m in metrics["members"]]
    expected = metrics["intercept"] + w[0] * mf.predict(users, items) + w[1] * bias.predict(users, items)
    np.testing.assert_allclose(rec.predict(users, items), np.clip(expected, 1, 5), atol=1e-3)
    assert len(rec.recommend(users[0], n=5)) == 5
    assert len(rec.recommend_for_ratings({int(items[0]): 5.0, int(items[1]): 1.0}, n=5)) == 5


def test_blend_refuses_refitted_members_and_single_runs(members, tmp_path, capsys) -> None:
    root, runs = members
    refit = tmp_path / "refit"
    argv = ["train", "--ratings", str(root / "r.csv"), "--epochs", "2", "--no-progress", "--json"]
    assert main([*argv, "--out", str(refit)]) == 0
    capsys.readouterr()
    assert main(["blend", str(runs[0]), str(refit), "--out", str(tmp_path / "b")]) == 1
    assert "--no-refit" in capsys.readouterr().err
    assert main(["blend", str(runs[0]), "--out", str(tmp_path / "b")]) == 1
    assert "at least two runs" in capsys.readouterr().err


def test_blend_refuses_a_refitted_closed_form_member(members, tmp_path, capsys) -> None:
    """A bias run refitted on train+validation has seen the validation ratings the blend weights
    are fitted on: it is refused like any refitted member (closed-form models are not exempt)."""
    root, runs = members
    refit = tmp_path / "bias-refit"
    argv = ["train", "--ratings", str(root / "r.csv"), "--model", "bias", "--refit", "--no-progress"]
    assert main([*argv, "--json", "--out", str(refit)]) == 0
    assert json.loads((refit / "config.json").read_text())["train"]["refit"] is True
    capsys.readouterr()
    assert main(["blend", str(runs[0]), str(refit), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"reelrec: error: {refit} was refitted on train+validation, so its validation predictions are not "
        "held out; train the members with --no-refit\n"
    )
    assert not (tmp_path / "b").exists()
