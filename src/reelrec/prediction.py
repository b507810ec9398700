"""Rating prediction for a :class:`~reelrec.recommender.Recommender`: the model where it learned
the user and the item, the documented fallback elsewhere, and the decoding to rating levels.

The fallback is the regularised bias baseline ``mu + b_u + b_i`` fitted on the training part,
with the unknown side's bias at 0 (an unknown user gets ``mu + b_i``, both unknown ``mu``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.baselines import fit_biases
from reelrec.models.decoding import apply_thresholds, fit_thresholds
from reelrec.training.trainer import predict_indices

if TYPE_CHECKING:
    from reelrec.recommender import Recommender

#: shrinkage of the fallback bias baseline (users, items), in ratings
FALLBACK_REG = (15.0, 10.0)


@dataclass
class Fallback:
    """The bias baseline used for users/items without training ratings."""

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray

    @classmethod
    def fit(cls, train: Dataset) -> Fallback:
        """The baseline fitted on ``train`` (10 alternating sweeps, :data:`FALLBACK_REG`)."""
        mu, b_u, b_i = fit_biases(
            train.user_index, train.item_index, train.rating, train.n_users, train.n_items, *FALLBACK_REG, 10
        )
        return cls(mu, b_u.astype(np.float32), b_i.astype(np.float32))


def predict_pairs(rec: Recommender, u: np.ndarray, i: np.ndarray, nan_for_cold: bool = False) -> np.ndarray:
    """Predicted ratings of dense ``(u, i)`` pairs (``-1``: an unknown id), clipped to the scale:
    the model where it knows both sides (or scores the cold side from features), else the
    fallback (NaN with ``nan_for_cold``, and for models that predict no ratings)."""
    u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
    model = rec.model
    known_u = u >= 0
    known_i = i >= 0
    warm_u = known_u & (rec.user_counts[np.where(known_u, u, 0)] > 0)
    if model.predicts_cold_users:
        warm_u = known_u
    warm_i = known_i & (rec.item_counts[np.where(known_i, i, 0)] > 0)
    if model.predicts_cold_items:  # features stand in for the missing ratings
        warm_i = known_i
    warm = warm_u & warm_i
    out = np.empty(u.shape[0], dtype=np.float64)
    if warm.any():
        ut = torch.as_tensor(u[warm], device=rec.device)
        it = torch.as_tensor(i[warm], device=rec.device)
        out[warm] = predict_indices(model, ut, it).cpu().numpy()
    cold = ~warm
    if cold.any():
        fb = rec.fallback
        bu = np.where(warm_u[cold], fb.user_bias[np.where(warm_u, u, 0)][cold], 0.0)
        bi = np.where(warm_i[cold], fb.item_bias[np.where(warm_i, i, 0)][cold], 0.0)
        rating_fallback = nan_for_cold or not model.predicts_ratings
        out[cold] = np.nan if rating_fallback else fb.mean + bu + bi
    return rec.scale.clip(out) if model.predicts_ratings else out


def predict_levels(rec: Recommender, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """The predicted rating *level* per pair: with the recommender's class thresholds, the
    predicted rating cut at them; otherwise the most probable class of a softmax/ordinal head,
    or the predicted rating rounded to the nearest level of the scale."""
    u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
    if rec.class_thresholds is not None:
        return apply_thresholds(predict_pairs(rec, u, i), rec.class_thresholds, rec.scale.levels())
    pred = rec.scale.nearest_level(predict_pairs(rec, u, i))
    if rec.model.predicts_levels:
        warm = (u >= 0) & (i >= 0)
        warm[warm] = (rec.user_counts[u[warm]] > 0) & (rec.item_counts[i[warm]] > 0)
        if warm.any():
            with torch.no_grad():
                ut = torch.as_tensor(u[warm], device=rec.device)
                it = torch.as_tensor(i[warm], device=rec.device)
                pred[warm] = rec.model.predict_level(ut, it).cpu().numpy()
    return pred


def class_thresholds(rec: Recommender, part: Dataset) -> np.ndarray:
    """The cut points between rating levels that maximise exact-match accuracy of ``rec``'s
    predicted ratings on ``part`` (see :mod:`reelrec.models.decoding`).

    Raises:
        ConfigError: For a ranking model, a continuous rating scale or an empty ``part``.
    """
    levels = rec.scale.levels()
    if not rec.model.predicts_ratings or levels is None or part is None or not len(part):
        raise ConfigError(
            "decode='thresholds' needs a rating model, a discrete rating scale and a validation part"
        )
    pred = rec.predict(part.users.ids[part.user_index], part.items.ids[part.item_index])
    return fit_thresholds(pred, part.rating, levels)
