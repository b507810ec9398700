"""Class decoding: cut points between rating levels fitted for exact-match accuracy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import small_frame
from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.evaluation.protocols import evaluate_ratings
from reelrec.models.decoding import apply_thresholds, fit_thresholds
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig

LEVELS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def test_thresholds_recover_known_cut_points() -> None:
    """Labels made by cutting the predictions at known points: the fit finds cuts that
    reproduce every label, each within the gap of the predictions around its true cut."""
    rng = np.random.default_rng(0)
    pred = rng.uniform(0.5, 5.5, 20_000)
    true_cuts = np.array([1.7, 2.9, 3.4, 4.6])  # far from the rounding midpoints 1.5 .. 4.5
    truth = LEVELS[np.searchsorted(true_cuts, pred, side="right")]
    cuts = fit_thresholds(pred, truth, LEVELS)
    np.testing.assert_allclose(cuts, true_cuts, atol=2e-3)
    assert np.mean(apply_thresholds(pred, cuts, LEVELS) == truth) == 1.0
    # rounding the same predictions is far worse: the thresholds are what made the difference
    assert np.mean(np.clip(np.floor(pred + 0.5), 1, 5) == truth) < 0.85
    # with a fifth of the labels replaced by random levels the cuts stay close to the truth
    noisy = np.where(rng.random(pred.size) < 0.2, rng.choice(LEVELS, pred.size), truth)
    np.testing.assert_allclose(fit_thresholds(pred, noisy, LEVELS), true_cuts, atol=0.1)


def test_thresholds_reach_the_brute_force_optimum() -> None:
    """On small random sets (with tied predictions), the fitted cuts are as accurate as the
    best of every nondecreasing choice among all candidate cut points."""
    rng = np.random.default_rng(1)
    for _ in range(150):
        n, k = int(rng.integers(1, 10)), int(rng.integers(2, 5))
        levels = np.arange(1.0, k + 1)
        pred = np.round(rng.normal(2.5, 1.2, n), 1)  # rounding makes ties
        truth = rng.integers(1, k + 1, n).astype(float)
        got = np.mean(apply_thresholds(pred, fit_thresholds(pred, truth, levels), levels) == truth)
        cand = np.sort(np.r_[-99.0, 99.0, np.unique(pred) - 1e-6, np.unique(pred) + 1e-6])
        best = max(
            np.mean(levels[np.searchsorted(np.array(c), pred, side="right")] == truth)
            for c in itertools.combinations_with_replacement(cand, k - 1)
        )
        assert got == pytest.approx(best)


def test_thresholds_never_split_ties_and_leave_unused_levels_empty() -> None:
    pred = np.array([3.0, 3.0, 3.0, 4.0, 4.0])
    truth = np.array([3.0, 3.0, 2.0, 5.0, 5.0])
    cuts = fit_thresholds(pred, truth, LEVELS)
    assert np.all(np.diff(cuts) >= 0)
    np.testing.assert_array_equal(apply_thresholds(pred, cuts, LEVELS), [3, 3, 3, 5, 5])
    # a level no truth holds is never predicted
    assert not np.any(apply_thresholds(np.linspace(0, 6, 61), cuts, LEVELS) == 4.0)


def test_apply_thresholds_known_answers_and_errors() -> None:
    cuts = np.array([1.5, 2.0, 3.7, 4.2])
    np.testing.assert_array_equal(
        apply_thresholds([0.0, 1.5, 1.99, 2.0, 3.69, 3.7, 4.5], cuts, LEVELS), [1, 2, 2, 3, 3, 4, 5]
    )
    assert np.isnan(apply_thresholds([np.nan], cuts, LEVELS)[0])
    with pytest.raises(ValueError, match="5 levels need 4 thresholds"):
        apply_thresholds([3.0], cuts[:3], LEVELS)
    with pytest.raises(ValueError, match="nondecreasing"):
        apply_thresholds([3.0], cuts[::-1], LEVELS)
    with pytest.raises(ValueError, match="empty input"):
        fit_thresholds([], [], LEVELS)
    with pytest.raises(ValueError, match="non-finite"):
        fit_thresholds([np.nan], [3.0], LEVELS)


@pytest.fixture
def parts() -> tuple[Dataset, Dataset, Dataset]:
    ds = Dataset.from_frame(small_frame(n=900), name="small")
    order = np.random.default_rng(0).permutation(len(ds))
    a, b = int(0.6 * len(ds)), int(0.8 * len(ds))
    return ds.subset(order[:a]), ds.subset(order[a:b]), ds.subset(order[b:])


def _train(train: Dataset, valid: Dataset | None, **train_values: object) -> Recommender:
    cfg = TrainConfig(epochs=4, batch_size=64, **train_values)
    return Recommender.train("mf", train, valid, model_params={"embedding_size": 4}, train_config=cfg, seed=3)


def test_decode_thresholds_run_uses_them_and_beats_rounding_on_validation(parts) -> None:
    train, valid, test = parts
    rec = _train(train, valid, decode="thresholds")
    assert rec.class_thresholds is not None
    assert rec.class_thresholds.shape == (4,)
    v_pred = rec.predict(valid.users.ids[valid.user_index], valid.items.ids[valid.item_index])
    # the cuts are the optimum on the validation part, so at least as good as rounding there
    fitted = np.mean(apply_thresholds(v_pred, rec.class_thresholds, LEVELS) == valid.rating)
    assert fitted >= np.mean(rec.scale.nearest_level(v_pred) == valid.rating)
    np.testing.assert_array_equal(rec.class_thresholds, fit_thresholds(v_pred, valid.rating, LEVELS))
    # accuracy (and every class the run reports) goes through the cuts
    t_pred = rec.predict(test.users.ids[test.user_index], test.items.ids[test.item_index])
    expected = np.mean(apply_thresholds(t_pred, rec.class_thresholds, LEVELS) == test.rating)
    assert evaluate_ratings(rec, test)["accuracy"] == pytest.approx(expected)
    assert _train(train, valid).class_thresholds is None  # the default decodes as before


def test_thresholds_come_from_the_model_before_refit(parts) -> None:
    train, valid, _ = parts
    once = _train(train, valid, decode="thresholds")
    refit = _train(train, valid, decode="thresholds", refit=True)
    np.testing.assert_array_equal(refit.class_thresholds, once.class_thresholds)


def test_decode_thresholds_round_trips_through_save_and_load(parts, tmp_path) -> None:
    train, valid, test = parts
    rec = _train(train, valid, decode="thresholds")
    rec.save(tmp_path / "run")
    again = Recommender.load(tmp_path / "run")
    np.testing.assert_array_equal(again.class_thresholds, rec.class_thresholds)
    assert again.train_config is not None
    assert again.train_config.decode == "thresholds"
    u, i = test.user_index, test.item_index
    np.testing.assert_array_equal(again.predict_levels_indices(u, i), rec.predict_levels_indices(u, i))
    plain = _train(train, valid)
    plain.save(tmp_path / "plain")
    assert Recommender.load(tmp_path / "plain").class_thresholds is None


def test_decode_thresholds_needs_a_validation_part(parts) -> None:
    train, _, _ = parts
    with pytest.raises(ConfigError, match="validation part"):
        _train(train, None, decode="thresholds")
    with pytest.raises(ConfigError, match="validation part"):
        _train(train, train.subset(np.zeros(0, dtype=np.int64)), decode="thresholds")
