"""The :class:`Recommender`: a trained model plus everything needed to use it with raw ids.

It is the one object the CLI, the benchmarks and (later) the service talk to. Raw ids go in
and out; dense indices stay inside. Users and items the model never saw in training get a
documented fallback in batch prediction (the regularised bias baseline ``mu + b_u + b_i``
with the unknown side's bias at 0) and a clear :class:`UnknownIdError` where a single answer
is asked for (``recommend``, ``similar_items``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from reelrec._defaults import LIST_NOVELTY
from reelrec.data.dataset import Dataset, RatingScale, Vocabulary
from reelrec.errors import ConfigError, ReelrecError, UnknownIdError
from reelrec.items import Catalogue, popularity_z, shift_batch, shift_row
from reelrec.models.base import RatingModel
from reelrec.models.baselines import fit_biases
from reelrec.models.decoding import apply_thresholds, fit_thresholds
from reelrec.retrieval import QuantizedItems
from reelrec.sparse import csr_from_pairs, expand_rows
from reelrec.training.recipe import recipe
from reelrec.training.refit import fit_model
from reelrec.training.trainer import TrainConfig, TrainResult, predict_indices

log = logging.getLogger(__name__)

__all__ = ["LIST_NOVELTY", "Recommender", "ScoredItem"]

#: how many of a user's best-rated movies a recommendation's reason is chosen from
EXPLAIN_LIKED = 50
#: shrinkage of the fallback bias baseline (users, items), in ratings
FALLBACK_REG = (15.0, 10.0)


@dataclass(frozen=True)
class ScoredItem:
    """One entry of a recommendation or similarity list."""

    item_id: Any
    score: float
    title: str | None = None
    year: int | None = None
    genres: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        item_id = self.item_id.item() if isinstance(self.item_id, np.generic) else self.item_id
        return {
            "item_id": item_id,
            "title": self.title,
            "year": self.year,
            "genres": self.genres,
            "score": round(float(self.score), 6),
        }


@dataclass
class Fallback:
    """The bias baseline used for users/items without training ratings."""

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray


#: what a saved run holds as it is (``artifacts.RunState`` fields of the same name)
_STATE_FIELDS = (
    "model",
    "users",
    "items",
    "seen_indptr",
    "seen_indices",
    "seen_ratings",
    "user_counts",
    "item_counts",
    "scale",
    "item_info",
    "train_config",
    "meta",
)


def _fallback(train: Dataset) -> Fallback:
    mu, b_u, b_i = fit_biases(
        train.user_index, train.item_index, train.rating, train.n_users, train.n_items, *FALLBACK_REG, 10
    )
    return Fallback(mu, b_u.astype(np.float32), b_i.astype(np.float32))


def best_first(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``values``, largest first, ties in position order: the
    first ``k`` of a stable descending sort, in time linear in ``len(values)`` (a user with
    26,000 ratings is explained on every request)."""
    values = np.asarray(values)
    if values.size <= max(k, 1024):  # a sort of a short list is cheaper than the selection
        return np.argsort(-values, kind="stable")[:k]
    kth = np.partition(values, values.size - k)[values.size - k]  # the k-th largest value
    above = np.flatnonzero(values > kth)
    tied = np.flatnonzero(values == kth)[: k - above.size]
    keep = np.union1d(above, tied)  # position order
    return keep[np.argsort(-values[keep], kind="stable")]


class Recommender:
    """A trained model with its vocabularies, seen-items index and item metadata.

    Build one with :meth:`train`, or load a saved run with :meth:`load`.
    """

    def __init__(
        self,
        model: RatingModel,
        *,
        users: Vocabulary,
        items: Vocabulary,
        seen_indptr: np.ndarray,
        seen_indices: np.ndarray,
        user_counts: np.ndarray,
        item_counts: np.ndarray,
        fallback: Fallback,
        scale: RatingScale,
        item_info: pd.DataFrame | None = None,
        train_config: TrainConfig | None = None,
        meta: dict[str, Any] | None = None,
        seen_ratings: np.ndarray | None = None,
    ) -> None:
        self.model = model.eval()
        self.users = users
        self.items = items
        self.seen_indptr = seen_indptr
        self.seen_indices = seen_indices
        #: the rating of each seen (user, item) pair, aligned with ``seen_indices`` (``None`` in
        #: runs saved before it was recorded)
        self.seen_ratings = seen_ratings
        self.user_counts = user_counts
        self.item_counts = item_counts
        self.fallback = fallback
        self.scale = scale
        self.item_info = item_info
        self.train_config = train_config
        self.meta = dict(meta or {})
        #: cut points between the rating levels (``TrainConfig.decode = "thresholds"``), or ``None``
        self.class_thresholds: np.ndarray | None = None
        self.train_result: TrainResult | None = None
        self._device = next(iter(model.buffers())).device
        self._catalogue: tuple[list[Any], list[str | None], list[int | None], list[list[str]]] | None = None
        self._unit_vectors: np.ndarray | bool | None = False
        self._untrained: np.ndarray | None = None
        self._quantized: QuantizedItems | bool | None = False  # False: not built yet
        self._pop_z32: np.ndarray | None = None
        self._pop_z: np.ndarray | None = None
        #: default of the ``novelty`` knob of :meth:`top_n_indices` / :meth:`recommend` (see there)
        self.novelty = 0.0

    # ------------------------------------------------------------------ construction
    @classmethod
    def train(
        cls,
        model_name: str,
        train: Dataset,
        valid: Dataset | None = None,
        *,
        model_params: dict[str, Any] | None = None,
        train_config: TrainConfig | None = None,
        seed: int = 42,
        device: str = "auto",
        progress: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Recommender:
        """Build model ``model_name``, fit it on ``train`` (early-stopping on ``valid``) and wrap it.

        The fit, with its refit on train + validation and the averaging of refitted models, is
        :func:`reelrec.training.refit.fit_model`."""
        from reelrec.artifacts import load_state

        if train_config is None:  # the model's own recipe for this data
            train_config = recipe(model_name, model_params, train).train
        if train_config.decode == "thresholds" and (valid is None or not len(valid)):
            raise ConfigError("decode='thresholds' fits its cut points on a validation part; there is none")
        thresholds: list[np.ndarray] = []

        def validated(model: RatingModel, part: Dataset, check: Dataset) -> None:
            # on the early-stopped model, before any refit sees the validation part
            thresholds.append(cls.from_training(model, part, check).fit_class_thresholds(check))

        model, train, valid, result = fit_model(
            model_name,
            train,
            valid,
            model_params=model_params,
            train_config=train_config,
            seed=seed,
            device=device,
            progress=progress,
            on_validated=validated if train_config.decode == "thresholds" else None,
            load_run=load_state,  # the saved runs a config names (pretrained_mf, ...)
        )
        rec = cls.from_training(model, train, valid, train_config=train_config, meta=meta)
        rec.train_result = result
        rec.class_thresholds = thresholds[0] if thresholds else None
        return rec

    @classmethod
    def from_training(
        cls,
        model: RatingModel,
        train: Dataset,
        valid: Dataset | None = None,
        *,
        train_config: TrainConfig | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Recommender:
        """Wrap a fitted model with the index structures derived from its training data.

        The seen-items index covers ``train`` and ``valid`` (both are the user's known ratings,
        never to be recommended back); the per-item counts that decide which items the model
        learned cover ``train`` only.
        """
        rows, cols, vals = train.user_index, train.item_index, train.rating
        if valid is not None and len(valid):
            rows = np.concatenate([rows, valid.user_index])
            cols = np.concatenate([cols, valid.item_index])
            vals = np.concatenate([vals, valid.rating])
        indptr, indices, ratings = csr_from_pairs(rows, cols, vals, train.n_users, train.n_items)
        info = None
        if train.item_info is not None:
            info = train.item_info.reindex(train.items.ids)
        return cls(
            model,
            users=train.users,
            items=train.items,
            seen_indptr=indptr,
            seen_indices=indices,
            seen_ratings=ratings,
            user_counts=train.user_counts(),
            item_counts=train.item_counts(),
            fallback=_fallback(train),
            scale=train.scale,
            item_info=info,
            train_config=train_config,
            meta=meta,
        )

    # ------------------------------------------------------------------ helpers
    @property
    def name(self) -> str:
        return self.model.name

    def seen_items(self, user_index: int) -> np.ndarray:
        """Dense indices of the items user ``user_index`` rated in training."""
        return self.seen_indices[self.seen_indptr[user_index] : self.seen_indptr[user_index + 1]]

    def user_ratings(self, user_index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Dense item indices a known user rated (train + validation) and their ratings."""
        a, b = self.seen_indptr[user_index], self.seen_indptr[user_index + 1]
        ratings = None if self.seen_ratings is None else self.seen_ratings[a:b]
        return self.seen_indices[a:b], ratings

    def catalogue(self) -> tuple[list[Any], list[str | None], list[int | None], list[list[str]]]:
        """Per dense item index: raw id (a Python value), title, year and genres (built once;
        see :class:`reelrec.items.Catalogue`)."""
        if self._catalogue is None:
            self._catalogue = Catalogue.build(self.items.ids, self.item_info).astuple()
        return self._catalogue

    def _describe(self, idx: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
        raw, titles, years, genres = self.catalogue()
        return [
            ScoredItem(raw[i], float(score), titles[i], years[i], genres[i])
            for i, score in zip(np.asarray(idx).tolist(), np.asarray(scores).tolist(), strict=True)
        ]

    def _display_scores(self, scores: np.ndarray) -> np.ndarray:
        """Ranking scores as shown to users: predicted ratings clipped to the scale."""
        if self.model.ranks_by_rating:
            return self.scale.clip(scores)
        return scores

    def unit_item_vectors(self) -> np.ndarray | None:
        """L2-normalised item embeddings (float32, built once), or ``None`` without embeddings."""
        if self._unit_vectors is False:
            with torch.no_grad():
                vectors = self.model.item_vectors()
            if vectors is None:
                self._unit_vectors = None
            else:
                v = vectors.float().cpu().numpy()
                self._unit_vectors = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return self._unit_vectors  # type: ignore[return-value]

    def explain(self, rated: np.ndarray, ratings: np.ndarray | None, recommended: np.ndarray) -> list[int]:
        """For each recommended item, the dense index of the user's liked movie it is most similar
        to (item-embedding cosine), or ``-1`` when there is none.

        "Liked" is a rating at or above both the user's mean and the scale's midpoint (all rated
        movies when ratings are unknown), capped at the :data:`EXPLAIN_LIKED` best-rated.
        """
        vectors = self.unit_item_vectors()
        recommended = np.asarray(recommended, dtype=np.int64)
        none = [-1] * recommended.shape[0]
        rated = np.asarray(rated, dtype=np.int64)
        if vectors is None or rated.size == 0 or recommended.size == 0:
            return none
        liked = rated
        if ratings is not None:
            ratings = np.asarray(ratings, dtype=np.float64)
            mid = (self.scale.low + self.scale.high) / 2
            keep = ratings >= max(float(ratings.mean()), mid)
            liked, ratings = rated[keep], ratings[keep]
            if liked.size == 0:
                return none
            liked = liked[best_first(ratings, EXPLAIN_LIKED)]
        else:
            liked = liked[:EXPLAIN_LIKED]
        sims = vectors[recommended] @ vectors[liked].T
        return liked[np.argmax(sims, axis=1)].tolist()

    # ------------------------------------------------------------------ prediction
    def predict(
        self, user_ids: Any, item_ids: Any, unknown: Literal["fallback", "error", "nan"] = "fallback"
    ) -> np.ndarray:
        """Predicted ratings for pairs of raw ids, clipped to the rating scale.

        ``unknown`` says what a pair with a user or item the model has no training ratings for
        gets: ``"fallback"`` (default) the bias baseline ``mu + b_u + b_i`` (with the unknown
        side's bias 0, so an unknown user gets ``mu + b_i``, and both unknown gets ``mu``);
        ``"nan"``: NaN; ``"error"``: :class:`UnknownIdError`.
        """
        u = self.users.index(user_ids, missing="error" if unknown == "error" else "negative")
        i = self.items.index(item_ids, missing="error" if unknown == "error" else "negative")
        if u.shape != i.shape:
            raise ReelrecError(f"{u.shape[0]} user ids but {i.shape[0]} item ids: give one of each per pair")
        return self.predict_indices(u, i, nan_for_cold=unknown == "nan")

    def predict_indices(self, u: np.ndarray, i: np.ndarray, nan_for_cold: bool = False) -> np.ndarray:
        """Like :meth:`predict` on dense indices, where ``-1`` marks an unknown id."""
        u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
        known_u = u >= 0
        known_i = i >= 0
        warm_u = known_u & (self.user_counts[np.where(known_u, u, 0)] > 0)
        if self.model.predicts_cold_users:
            warm_u = known_u
        warm_i = known_i & (self.item_counts[np.where(known_i, i, 0)] > 0)
        if self.model.predicts_cold_items:  # features stand in for the missing ratings
            warm_i = known_i
        warm = warm_u & warm_i
        out = np.empty(u.shape[0], dtype=np.float64)
        if warm.any():
            ut = torch.as_tensor(u[warm], device=self._device)
            it = torch.as_tensor(i[warm], device=self._device)
            out[warm] = predict_indices(self.model, ut, it).cpu().numpy()
        cold = ~warm
        if cold.any():
            fb = self.fallback
            bu = np.where(warm_u[cold], fb.user_bias[np.where(warm_u, u, 0)][cold], 0.0)
            bi = np.where(warm_i[cold], fb.item_bias[np.where(warm_i, i, 0)][cold], 0.0)
            rating_fallback = nan_for_cold or not self.model.predicts_ratings
            out[cold] = np.nan if rating_fallback else fb.mean + bu + bi
        return self.scale.clip(out) if self.model.predicts_ratings else out

    def predict_levels_indices(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The predicted rating *level* per pair: with :attr:`class_thresholds`, the predicted
        rating cut at them; otherwise the most probable class of a softmax/ordinal head, or the predicted
        rating rounded to the nearest level of the scale."""
        u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
        if self.class_thresholds is not None:
            return apply_thresholds(self.predict_indices(u, i), self.class_thresholds, self.scale.levels())
        pred = self.scale.nearest_level(self.predict_indices(u, i))
        if self.model.predicts_levels:
            warm = (u >= 0) & (i >= 0)
            warm[warm] = (self.user_counts[u[warm]] > 0) & (self.item_counts[i[warm]] > 0)
            if warm.any():
                with torch.no_grad():
                    ut = torch.as_tensor(u[warm], device=self._device)
                    it = torch.as_tensor(i[warm], device=self._device)
                    pred[warm] = self.model.predict_level(ut, it).cpu().numpy()
        return pred

    def fit_class_thresholds(self, part: Dataset) -> np.ndarray:
        """The cut points between rating levels that maximise exact-match accuracy of this
        recommender's predicted ratings on ``part`` (see :mod:`reelrec.models.decoding`).

        Raises:
            ConfigError: For a ranking model, a continuous rating scale or an empty ``part``.
        """
        levels = self.scale.levels()
        if not self.model.predicts_ratings or levels is None or part is None or not len(part):
            raise ConfigError(
                "decode='thresholds' needs a rating model, a discrete rating scale and a validation part"
            )
        pred = self.predict(part.users.ids[part.user_index], part.items.ids[part.item_index])
        return fit_thresholds(pred, part.rating, levels)

    def popularity_z(self) -> np.ndarray:
        """Standardised ``log(1 + training count)`` of every item (mean 0, std 1 over trained items)."""
        if self._pop_z is None:
            self._pop_z = popularity_z(self.item_counts)
        return self._pop_z

    def _novelty_shift(self, scores: torch.Tensor, novelty: float) -> torch.Tensor:
        """``scores - novelty * unit * z_pop``: the novelty knob (:func:`reelrec.items.shift_batch`)."""
        return shift_batch(scores, self.popularity_z(), novelty, self.model.ranks_by_rating)

    @torch.no_grad()
    def top_n_indices(
        self, user_index: np.ndarray, n: int, exclude_rated: bool = True, novelty: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores for a batch of dense user indices.

        Items without training ratings are never recommended (unless the model predicts them
        from features); with ``exclude_rated`` neither are
        the user's training items. Rows are padded with ``-1`` / ``-inf`` when fewer than ``n``
        candidates remain.

        ``novelty`` (default :attr:`novelty`, 0 = off) re-ranks against popularity: the ranking
        score becomes ``score - novelty * unit * z_pop`` (see :meth:`_novelty_shift`); positive
        values favour less-watched movies (more catalogue coverage), negative ones the
        mainstream. The scores returned are the model's own, unshifted.
        """
        novelty = self.novelty if novelty is None else float(novelty)
        user_index = np.asarray(user_index, dtype=np.int64)
        scores = self.model.score_users(torch.as_tensor(user_index, device=self._device)).float()
        raw = scores
        if novelty:
            scores = self._novelty_shift(scores, novelty)
        if not self.model.predicts_cold_items:
            scores[:, torch.as_tensor(self.item_counts == 0, device=self._device)] = -torch.inf
        if exclude_rated:
            rows, cols = expand_rows(self.seen_indptr, self.seen_indices, user_index)
            scores[
                torch.as_tensor(rows, device=self._device), torch.as_tensor(cols, device=self._device)
            ] = -torch.inf
        k = min(n, self.items.ids.shape[0])
        top = torch.topk(scores, k, dim=1)
        idx = top.indices.cpu().numpy()
        val = top.values.cpu().numpy()
        if novelty:
            finite = np.isfinite(val)
            val = np.where(finite, torch.gather(raw, 1, top.indices).cpu().numpy(), val)
        idx[~np.isfinite(val)] = -1
        if k < n:
            idx = np.pad(idx, ((0, 0), (0, n - k)), constant_values=-1)
            val = np.pad(val, ((0, 0), (0, n - k)), constant_values=-np.inf)
        return idx, val

    @torch.no_grad()
    def top_n_for_user(
        self, user_index: int, n: int, exclude_rated: bool = True, novelty: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` (indices, scores) for one known user: one scoring pass over the catalogue,
        the user's seen items and untrained items masked, one partial sort (the service's path).
        ``novelty`` as in :meth:`top_n_indices`."""
        novelty = self.novelty if novelty is None else float(novelty)
        fast = self.quantized_items()
        if fast is not None and (not novelty or self.model.ranks_by_rating):
            return self._top_n_quantized(fast, int(user_index), n, exclude_rated, novelty)
        scores = self.model.score_user(int(user_index))
        if novelty:
            raw = scores
            scores = self.shifted(scores, novelty)
        if not self.model.predicts_cold_items:
            scores[self.untrained_items()] = -np.inf
        if exclude_rated:
            scores[self.seen_items(int(user_index))] = -np.inf
        top, val = self.top_n_from_scores(scores, n)
        return (top, raw[top]) if novelty else (top, val)

    def untrained_items(self) -> np.ndarray:
        """Dense indices of the items without training ratings (computed once)."""
        if self._untrained is None:
            self._untrained = np.flatnonzero(self.item_counts == 0)
        return self._untrained

    def quantized_items(self) -> QuantizedItems | None:
        """The int8 copy of the item vectors that serves large catalogues (built on first use;
        ``None`` for small catalogues and models without an inner-product form)."""
        if self._quantized is False:
            self._quantized = QuantizedItems.for_model(self.model, self.model.n_items)
        return self._quantized  # type: ignore[return-value]

    def _top_n_quantized(
        self, fast: QuantizedItems, user: int, n: int, exclude_rated: bool, novelty: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`top_n_for_user` from the int8 item vectors: bounds on every item's score, then
        the model's exact scores for the few items that can be in the top-``n``
        (:mod:`reelrec.retrieval`); the same list as the exact path."""
        # a rating ranker's shift is one fixed vector: the bounds still hold
        shift = self._popularity_z32() if novelty else None
        none = np.zeros(0, dtype=np.int64)
        untrained = none if self.model.predicts_cold_items else self.untrained_items()
        seen = self.seen_items(user) if exclude_rated else none
        cand = fast.top_candidates(user, n, seen, untrained, shift, novelty)
        return self._best_candidates(cand, self.model.score_items(user, cand), novelty, n)

    def _popularity_z32(self) -> np.ndarray:
        """:meth:`popularity_z` in float32 (the int8 path's shift; computed once)."""
        if self._pop_z32 is None:
            self._pop_z32 = self.popularity_z().astype(np.float32)
        return self._pop_z32

    def shifted(self, scores: np.ndarray, novelty: float | None = None) -> np.ndarray:
        """One score row with the novelty knob applied (``-inf`` entries stay ``-inf``)."""
        novelty = self.novelty if novelty is None else float(novelty)
        return shift_row(scores, self.popularity_z(), novelty, self.model.ranks_by_rating)

    def recommend(
        self, user_id: Any, n: int = 10, exclude_rated: bool = True, novelty: float | None = None
    ) -> list[ScoredItem]:
        """The ``n`` best items for a known user, best first (unrated ones only by default).

        The score is the model's ranking score: the predicted rating for rating models
        (clipped to the scale), the training count for popularity. ``novelty`` re-ranks
        against popularity (see :meth:`top_n_indices`).
        """
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        u = int(self.users.index(user_id)[0])
        if self.user_counts[u] == 0:
            raise UnknownIdError(f"user {user_id!r} has no training ratings; no personal recommendations")
        idx, val = self.top_n_indices(np.array([u]), n, exclude_rated, novelty)
        keep = idx[0] >= 0
        return self._describe(idx[0][keep], self._display_scores(val[0][keep]))

    def fold_in_indices(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of every item for a new user who gave ``values`` to dense ``items``.

        Items the model never learned (no training ratings) and the rated items themselves get
        ``-inf``. Rated movies the model never learned carry no information about the user and
        are ignored; with no usable rating the scores are the items' training counts
        (popularity).
        """
        items, learned = self._fold_in_ratings(items, values)
        if learned is not None:
            scores = self.model.fold_in(*learned).detach().cpu().numpy().astype(np.float64)
        else:
            scores = self.item_counts.astype(np.float64)
        scores[self.untrained_items()] = -np.inf
        scores[items] = -np.inf
        return scores

    def _fold_in_ratings(
        self, items: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor] | None]:
        """A new user's ratings checked: (dense items as int64, the ratings of the learned ones
        as model tensors, or ``None`` when no rated movie was learned)."""
        items = np.asarray(items, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if items.shape != values.shape:
            raise ReelrecError("give one rating per item")
        if values.size and (
            not np.all(np.isfinite(values)) or values.min() < self.scale.low or values.max() > self.scale.high
        ):
            raise ReelrecError(f"ratings must lie in {self.scale.low:g}..{self.scale.high:g}")
        use = self.item_counts[items] > 0
        if not use.any():
            return items, None
        if not self.model.folds_in:
            raise ReelrecError(f"model {self.model.name!r} cannot fold in a new user from ratings")
        it = torch.as_tensor(items[use], device=self._device)
        return items, (it, torch.as_tensor(values[use], dtype=torch.float32, device=self._device))

    def top_n_from_scores(self, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best finite entries of one score row (one partial sort), best first."""
        k = min(n, int(np.isfinite(scores).sum()))
        if k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top, scores[top]

    def recommend_for_ratings(
        self, ratings: dict[Any, float], n: int = 10, novelty: float | None = None
    ) -> list[ScoredItem]:
        """Top-``n`` movies for a *new* user given only their ``{movie_id: rating}``, no retraining.

        The model folds the user in with its weights frozen (``fold_in``: closed form for MF and
        the bias baseline, a few L-BFGS steps on the user's own parameters for the neural
        models). The rated movies are never recommended back. With no ratings (or none on
        movies the model learned), the list is the most-rated movies (popularity), scored by
        their training count.
        """
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        items = self.items.index(list(ratings.keys())) if ratings else np.zeros(0, dtype=np.int64)
        values = np.asarray(list(ratings.values()), dtype=np.float64)
        top, shown, _ = self.new_user_top_n(items, values, n, novelty)
        return self._describe(top, shown)

    def new_user_top_n(
        self, items: np.ndarray, values: np.ndarray, n: int, novelty: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """A new user's top-``n`` from dense ``items`` and their ratings: (indices, scores as
        shown, personalised). Fold-in, the novelty knob, one partial sort; unpersonalised (the
        popularity list, scored by training count) when no rated movie was learned."""
        fast = self._new_user_top_n_quantized(items, values, n, novelty)
        if fast is not None:
            return fast
        scores = self.fold_in_indices(items, values)
        personal = bool(values.size) and bool((self.item_counts[items] > 0).any())
        top, _ = self.top_n_from_scores(self.shifted(scores, novelty) if personal else scores, n)
        val = scores[top]
        return top, (self._display_scores(val) if personal else val), personal

    @torch.no_grad()
    def _new_user_top_n_quantized(
        self, items: np.ndarray, values: np.ndarray, n: int, novelty: float | None
    ) -> tuple[np.ndarray, np.ndarray, bool] | None:
        """:meth:`new_user_top_n` from the int8 item vectors (as :meth:`_top_n_quantized`), for
        a large catalogue and a model whose fold-in is an inner product; ``None`` otherwise."""
        novelty = self.novelty if novelty is None else float(novelty)
        fast = self.quantized_items()
        if fast is None or (novelty and not self.model.ranks_by_rating):
            return None
        items, learned = self._fold_in_ratings(items, values)
        folded = None if learned is None else self.model.fold_in_vector(*learned)
        if folded is None:  # nothing learned was rated (popularity), or no inner-product form
            return None
        vector, offset = folded
        shift = self._popularity_z32() if novelty else None
        cand = fast.top_candidates(vector, n, items, self.untrained_items(), shift, novelty)
        top, raw = self._best_candidates(
            cand, self.model.score_items_for_vector(vector, offset, cand), novelty, n
        )
        return top, self._display_scores(raw), True

    def _best_candidates(
        self, cand: np.ndarray, raw: np.ndarray, novelty: float, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best of the int8 path's candidates by their exact scores ``raw`` (minus the
        novelty shift): (indices, raw scores)."""
        scores = (
            raw - (np.float32(novelty) * self.popularity_z()[cand]).astype(np.float64) if novelty else raw
        )
        top, _ = self.top_n_from_scores(scores, n)
        return cand[top], raw[top]

    def similar_indices(self, item_index: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense indices and cosines of the ``n`` items nearest to ``item_index`` (itself and
        untrained items excluded): one product with the normalised vectors, one partial sort."""
        vectors = self.unit_item_vectors()
        if vectors is None:
            raise ReelrecError(
                f"model {self.model.name!r} has no item embeddings; train an mf model for similar items"
            )
        sims = (vectors @ vectors[item_index]).astype(np.float64)
        sims[item_index] = -np.inf
        sims[self.untrained_items()] = -np.inf
        return self.top_n_from_scores(sims, n)

    def similar_items(self, item_id: Any, n: int = 10) -> list[ScoredItem]:
        """The ``n`` items whose embeddings have the highest cosine similarity to ``item_id``'s."""
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        i = int(self.items.index(item_id)[0])
        if self.unit_item_vectors() is not None and self.item_counts[i] == 0:
            raise UnknownIdError(f"item {item_id!r} has no training ratings, so no embedding")
        return self._describe(*self.similar_indices(i, n))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, *, metrics: dict[str, Any] | None = None, overwrite: bool = False) -> None:
        """Save to a run directory (see :mod:`reelrec.artifacts`)."""
        from reelrec.artifacts import RunState, save_state

        result = self.train_result
        state = RunState(
            **{k: getattr(self, k) for k in _STATE_FIELDS},
            class_thresholds=self.class_thresholds,
            fallback_mean=self.fallback.mean,
            fallback_user_bias=self.fallback.user_bias,
            fallback_item_bias=self.fallback.item_bias,
            history=result.to_json() if result is not None else None,
        )
        save_state(state, path, metrics=metrics, overwrite=overwrite)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> Recommender:
        """Load and verify a run directory saved by :meth:`save`."""
        from reelrec.artifacts import load_state

        state = load_state(path, device=device)
        rec = cls(
            **{k: getattr(state, k) for k in _STATE_FIELDS},
            fallback=Fallback(state.fallback_mean, state.fallback_user_bias, state.fallback_item_bias),
        )
        rec.class_thresholds = state.class_thresholds
        #: the run's whole ``config.json``
        rec.run_config = state.config
        return rec
