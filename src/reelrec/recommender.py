"""The :class:`Recommender`: a trained model plus everything needed to use it with raw ids.

The one object the CLI, the benchmarks and the service talk to: raw ids go in and out, dense
indices stay inside. A facade over :mod:`reelrec.topn` (every top-n list), :mod:`reelrec.prediction`
(ratings, with the bias-baseline fallback for unknown ids, and levels), :mod:`reelrec.similar`
(similar movies, reasons), :mod:`reelrec.items` (lists as shown) and :mod:`reelrec.persistence`.
Where a single answer is asked for (``recommend``, ``similar_items``), an id without training
ratings is a clear :class:`UnknownIdError`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from reelrec import persistence, prediction, similar
from reelrec._defaults import LIST_NOVELTY
from reelrec.data.dataset import Dataset, RatingScale, Vocabulary
from reelrec.errors import ConfigError, ReelrecError, UnknownIdError
from reelrec.items import Catalogue, RankedItems, ScoredItem, describe
from reelrec.models.base import RatingModel
from reelrec.prediction import Fallback
from reelrec.similar import best_first
from reelrec.sparse import csr_from_pairs
from reelrec.topn import Int8, Ranked, TopN
from reelrec.training.recipe import recipe
from reelrec.training.refit import fit_model
from reelrec.training.trainer import TrainConfig, TrainResult

__all__ = ["LIST_NOVELTY", "Fallback", "RankedItems", "Recommender", "ScoredItem", "best_first"]


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
        #: the device the model's tensors live on
        self.device = next(iter(model.buffers())).device
        self._catalogue: tuple[list[Any], list[str | None], list[int | None], list[list[str]]] | None = None
        self._unit_vectors: np.ndarray | bool | None = False
        self._topn: TopN | None = None
        #: default of the ``novelty`` knob of the top-n methods (see :func:`reelrec.topn.shift`)
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
        info = None if train.item_info is None else train.item_info.reindex(train.items.ids)
        return cls(
            model,
            users=train.users,
            items=train.items,
            seen_indptr=indptr,
            seen_indices=indices,
            seen_ratings=ratings,
            user_counts=train.user_counts(),
            item_counts=train.item_counts(),
            fallback=Fallback.fit(train),
            scale=train.scale,
            item_info=info,
            train_config=train_config,
            meta=meta,
        )

    # ------------------------------------------------------------------ helpers
    @property
    def name(self) -> str:
        return self.model.name

    @property
    def topn(self) -> TopN:
        """The top-n core every list of this recommender is ranked by (built once)."""
        if self._topn is None:
            self._topn = TopN(
                self.model, self.seen_indptr, self.seen_indices, self.item_counts, self.scale, self.device
            )
        return self._topn

    def seen_items(self, user_index: int) -> np.ndarray:
        """Dense indices of the items user ``user_index`` rated in training."""
        return self.topn.seen(int(user_index))

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

    def display_scores(self, scores: np.ndarray) -> np.ndarray:
        """Ranking scores as shown to users: predicted ratings clipped to the scale."""
        return self.scale.clip(scores) if self.model.ranks_by_rating else scores

    def unit_item_vectors(self) -> np.ndarray | None:
        """L2-normalised item embeddings (float32, built once), or ``None`` without embeddings."""
        if self._unit_vectors is False:
            self._unit_vectors = similar.unit_vectors(self.model)
        return self._unit_vectors  # type: ignore[return-value]

    def explain(self, rated: np.ndarray, ratings: np.ndarray | None, recommended: np.ndarray) -> list[int]:
        """For each recommended item, the user's liked movie it is most similar to, or ``-1``
        (:func:`reelrec.similar.explain`)."""
        return similar.explain(self.unit_item_vectors(), self.scale, rated, ratings, recommended)

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
        return prediction.predict_pairs(self, u, i, nan_for_cold)

    def predict_levels_indices(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The predicted rating *level* per pair (:func:`reelrec.prediction.predict_levels`)."""
        return prediction.predict_levels(self, u, i)

    def fit_class_thresholds(self, part: Dataset) -> np.ndarray:
        """Rating-level cut points fitted on ``part`` (:func:`reelrec.prediction.class_thresholds`)."""
        return prediction.class_thresholds(self, part)

    # ------------------------------------------------------------------ top-n (reelrec.topn)
    def quantized_items(self) -> Any:
        """The int8 item vectors large catalogues are served from, or ``None`` (exact scoring)."""
        scorer = self.topn.scorer
        return scorer.fast if isinstance(scorer, Int8) else None

    def _knob(self, novelty: float | None) -> float:  # the default of every novelty argument
        return self.novelty if novelty is None else float(novelty)

    def top_n_indices(
        self, user_index: np.ndarray, n: int, exclude_rated: bool = True, novelty: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` (indices, unshifted scores) for a batch of dense users, rows padded with
        ``-1`` / ``-inf`` (:meth:`reelrec.topn.TopN.recommend`; ``novelty`` defaults to :attr:`novelty`)."""
        r = self.topn.recommend(
            np.asarray(user_index), n, exclude_rated=exclude_rated, novelty=self._knob(novelty)
        )
        return r.items, r.scores

    def top_n_for_user(
        self, user_index: int, n: int, exclude_rated: bool = True, novelty: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` (indices, unshifted scores) for one known dense user, through the scorer."""
        r = self.topn.recommend(int(user_index), n, exclude_rated=exclude_rated, novelty=self._knob(novelty))
        return r.items, r.scores

    def recommend(
        self, user_id: Any, n: int = 10, exclude_rated: bool = True, novelty: float | None = None
    ) -> RankedItems:
        """The ``n`` best items for a known user, best first (unrated ones only by default).

        The score is the model's ranking score: the predicted rating for rating models
        (clipped to the scale), the training count for popularity. ``novelty`` re-ranks
        against popularity; the list's ``ranked_by`` says how it was ordered.
        """
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        u = int(self.users.index(user_id)[0])
        if self.user_counts[u] == 0:
            raise UnknownIdError(f"user {user_id!r} has no training ratings; no personal recommendations")
        # a batch of one (torch float32 scores, as evaluation ranks): the lists and scores of old
        r = self.topn.recommend(np.array([u]), n, exclude_rated=exclude_rated, novelty=self._knob(novelty))
        keep = r.items[0] >= 0
        return describe(
            self.catalogue(), r.items[0][keep], self.display_scores(r.scores[0][keep]), r.ranked_by
        )

    def new_user_ranked(
        self, items: np.ndarray, values: np.ndarray, n: int, novelty: float | None = None
    ) -> Ranked:
        """A new user's top-``n`` from dense ``items`` and their ratings (fold-in; the popularity
        list when no rated movie was learned), scores as shown."""
        r = self.topn.recommend(None, n, novelty=self._knob(novelty), rated=(items, values))
        if not r.personalised:
            return r
        return Ranked(r.items, self.display_scores(r.scores), r.ranked_by, r.personalised, r.scorer)

    def new_user_top_n(
        self, items: np.ndarray, values: np.ndarray, n: int, novelty: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """:meth:`new_user_ranked` as (indices, scores as shown, personalised)."""
        r = self.new_user_ranked(items, values, n, novelty)
        return r.items, r.scores, r.personalised

    def recommend_for_ratings(
        self, ratings: dict[Any, float], n: int = 10, novelty: float | None = None
    ) -> RankedItems:
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
        r = self.new_user_ranked(items, values, n, novelty)
        return describe(self.catalogue(), r.items, r.scores, r.ranked_by, r.personalised)

    def similar_indices(self, item_index: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense indices and cosines of the ``n`` items nearest to ``item_index`` (itself and
        untrained items excluded; :func:`reelrec.similar.nearest`)."""
        return similar.nearest(self.unit_item_vectors(), item_index, n, self.topn.untrained, self.model.name)

    def similar_items(self, item_id: Any, n: int = 10) -> RankedItems:
        """The ``n`` items whose embeddings have the highest cosine similarity to ``item_id``'s."""
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        i = int(self.items.index(item_id)[0])
        if self.unit_item_vectors() is not None and self.item_counts[i] == 0:
            raise UnknownIdError(f"item {item_id!r} has no training ratings, so no embedding")
        return describe(self.catalogue(), *self.similar_indices(i, n), "embedding cosine")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, *, metrics: dict[str, Any] | None = None, overwrite: bool = False) -> None:
        """Save to a run directory (see :mod:`reelrec.artifacts`)."""
        persistence.write(self, path, metrics=metrics, overwrite=overwrite)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> Recommender:
        """Load and verify a run directory saved by :meth:`save`."""
        return persistence.read(cls, path, device)
