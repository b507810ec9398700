"""Class decoding: from a predicted rating to a rating level (ordinal decoding).

Exact-match accuracy rewards the most probable level, not the level nearest to the expected
rating: a regression model's predictions are shrunk towards the mean (a user's "2" is predicted
near 2.7), so rounding them over-predicts the middle levels. :func:`fit_thresholds` finds the
``K - 1`` cut points between ``K`` levels that maximise exact-match accuracy on held-out
predictions (the validation part), exactly, by dynamic programming over the sorted predictions;
:func:`apply_thresholds` maps predictions to levels with them. A run trained with
``TrainConfig.decode = "thresholds"`` stores the cut points and uses them wherever it reports a
class (:meth:`reelrec.recommender.Recommender.predict_levels_indices`, hence ``accuracy``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["apply_thresholds", "fit_thresholds"]


def _levels(levels: ArrayLike) -> np.ndarray:
    lv = np.unique(np.asarray(levels, dtype=np.float64))
    if lv.size < 2:
        raise ValueError("class thresholds need at least two levels")
    return lv


def fit_thresholds(pred: ArrayLike, truth: ArrayLike, levels: ArrayLike) -> np.ndarray:
    """The nondecreasing cut points that maximise exact-match accuracy of ``pred`` on ``truth``.

    Level ``k`` is predicted for values in ``[cut[k-1], cut[k])`` (as :func:`apply_thresholds`
    applies them). The optimum is exact over every partition of the sorted predictions (``K``
    levels, ``n`` predictions: ``O(K n)`` time and memory after the sort): with ``C[k, j]`` the
    number of level-``k`` truths among the ``j`` smallest predictions, the best accuracy of levels
    ``0..k`` over the ``j`` smallest is ``f[k, j] = C[k, j] + max_{i <= j} (f[k-1, i] - C[k, i])``,
    a running maximum. Cuts fall midway between consecutive distinct predictions (tied
    predictions are never separated); a level that is never worth predicting gets an empty
    interval (two equal cuts), and a cut below or above every prediction lies half a level step
    outside both the levels' and the predictions' range. Among equally accurate partitions the
    one with the widest low levels is returned.

    Args:
        pred: Predicted (continuous) ratings, e.g. on the validation part.
        truth: True ratings, same shape, each one of ``levels`` (others are ignored as
            matching no level).
        levels: The admissible rating values (any order, duplicates ignored; at least two).

    Returns:
        ``K - 1`` float64 cut points, nondecreasing.

    Raises:
        ValueError: On empty input, mismatched shapes, non-finite predictions or fewer than two
            levels.
    """
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and truth shapes differ: {p.shape} vs {t.shape}")
    if p.size == 0:
        raise ValueError("cannot fit class thresholds on empty input")
    if not np.all(np.isfinite(p)):
        raise ValueError("cannot fit class thresholds on non-finite predictions")
    lv = _levels(levels)
    k_levels, n = lv.size, p.size
    order = np.argsort(p, kind="stable")
    s, t = p[order], t[order]
    cls = np.searchsorted(lv, t)
    match = (cls < k_levels) & np.isclose(lv[np.minimum(cls, k_levels - 1)], t)
    counts = np.zeros((k_levels, n + 1), dtype=np.int64)  # counts[k, j]: level-k truths among the j smallest
    np.add.at(counts, (cls[match], np.flatnonzero(match) + 1), 1)
    np.cumsum(counts, axis=1, out=counts)
    allowed = np.ones(n + 1, dtype=bool)  # a cut may not separate tied predictions
    allowed[1:n] = s[1:] > s[:-1]
    lowest = np.iinfo(np.int64).min // 2
    best = np.where(allowed, counts[0], lowest)
    positions = np.arange(n + 1)
    back = np.empty((k_levels - 1, n + 1), dtype=np.int64)
    for k in range(1, k_levels):  # K - 1 vectorised steps, no loop over predictions
        gain = np.where(allowed, best - counts[k], lowest)
        run_max = np.maximum.accumulate(gain)
        back[k - 1] = np.maximum.accumulate(np.where(gain == run_max, positions, 0))
        best = np.where(allowed, counts[k] + run_max, lowest)
    cut_at = np.empty(k_levels - 1, dtype=np.int64)
    j = n
    for k in range(k_levels - 1, 0, -1):
        j = int(back[k - 1, j])
        cut_at[k - 1] = j
    half = (lv[1] - lv[0]) / 2.0
    inner = (s[np.clip(cut_at - 1, 0, n - 1)] + s[np.clip(cut_at, 0, n - 1)]) / 2.0
    below, above = min(lv[0], s[0]) - half, max(lv[-1], s[-1]) + half
    cuts = np.where(cut_at == 0, below, np.where(cut_at == n, above, inner))
    return np.maximum.accumulate(cuts)


def apply_thresholds(pred: ArrayLike, thresholds: ArrayLike, levels: ArrayLike) -> np.ndarray:
    """The level of each prediction: level ``k`` for values in ``[thresholds[k-1], thresholds[k])``.

    A prediction equal to a cut gets the higher level; NaN stays NaN.

    Raises:
        ValueError: If there is not exactly one threshold fewer than levels, or they decrease.
    """
    lv = _levels(levels)
    cuts = np.asarray(thresholds, dtype=np.float64).ravel()
    if cuts.size != lv.size - 1:
        raise ValueError(f"{lv.size} levels need {lv.size - 1} thresholds, got {cuts.size}")
    if np.any(np.diff(cuts) < 0) or not np.all(np.isfinite(cuts)):
        raise ValueError("class thresholds must be finite and nondecreasing")
    p = np.asarray(pred, dtype=np.float64)
    out = lv[np.searchsorted(cuts, np.nan_to_num(p, nan=lv[0]), side="right")]
    return np.where(np.isnan(p), np.nan, out)
