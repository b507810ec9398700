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

from reelrec.data.dataset import Dataset, RatingScale, Vocabulary
from reelrec.errors import ReelrecError, UnknownIdError
from reelrec.models.base import RatingModel
from reelrec.models.baselines import fit_biases
from reelrec.models.registry import build_model, model_class
from reelrec.training.trainer import TrainConfig, Trainer, TrainResult, predict_indices, seed_everything

log = logging.getLogger(__name__)

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


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of the unique (row, col) pairs, columns sorted within each row."""
    keys = np.unique(rows.astype(np.int64) * n_cols + cols)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n_cols, minlength=n_rows), out=indptr[1:])
    return indptr, keys % n_cols


def _fallback(train: Dataset) -> Fallback:
    mu, b_u, b_i = fit_biases(
        train.user_index, train.item_index, train.rating, train.n_users, train.n_items, *FALLBACK_REG, 10
    )
    return Fallback(mu, b_u.astype(np.float32), b_i.astype(np.float32))


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
    ) -> None:
        self.model = model.eval()
        self.users = users
        self.items = items
        self.seen_indptr = seen_indptr
        self.seen_indices = seen_indices
        self.user_counts = user_counts
        self.item_counts = item_counts
        self.fallback = fallback
        self.scale = scale
        self.item_info = item_info
        self.train_config = train_config
        self.meta = dict(meta or {})
        self.train_result: TrainResult | None = None
        self._device = next(iter(model.buffers())).device

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
        """Build model ``model_name``, fit it on ``train`` (early-stopping on ``valid``) and wrap it."""
        if train_config is None:
            train_config = TrainConfig(**model_class(model_name).default_train)

        def fit(part: Dataset, check: Dataset | None, config: TrainConfig) -> tuple[RatingModel, TrainResult]:
            seed_everything(seed)
            model = build_model(model_name, part.n_users, part.n_items, model_params, train=part)
            result = Trainer(config, seed=seed, device=device, progress=progress).fit(model, part, check)
            return model, result

        model, result = fit(train, valid, train_config)
        if train_config.refit and valid is not None and len(valid) and result.best_epoch:
            # the validation part chose the number of epochs; now learn from all the training data
            train, valid = train.concat(valid), None
            refit_cfg = train_config.model_copy(update={"epochs": result.best_epoch, "patience": 0})
            model, again = fit(train, None, refit_cfg)
            result.refit_epochs = result.best_epoch
            result.seconds += again.seconds
            log.info("refit on train+valid for %d epochs", result.best_epoch)
        rec = cls.from_training(model, train, valid, train_config=train_config, meta=meta)
        rec.train_result = result
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
        rows, cols = train.user_index, train.item_index
        if valid is not None and len(valid):
            rows = np.concatenate([rows, valid.user_index])
            cols = np.concatenate([cols, valid.item_index])
        indptr, indices = _csr(rows, cols, train.n_users, train.n_items)
        info = None
        if train.item_info is not None:
            info = train.item_info.reindex(train.items.ids)
        return cls(
            model,
            users=train.users,
            items=train.items,
            seen_indptr=indptr,
            seen_indices=indices,
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

    def _describe(self, idx: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
        raw = self.items.raw(idx)
        out = []
        info = self.item_info
        for k, (item, score) in enumerate(zip(raw, scores, strict=True)):
            title = year = None
            genres: list[str] = []
            if info is not None:
                row = info.iloc[int(idx[k])]
                title = None if pd.isna(row.get("title")) else str(row.get("title"))
                y = row.get("year")
                year = None if y is None or pd.isna(y) else int(y)
                g = row.get("genres")
                genres = [x for x in str(g).split("|") if x] if isinstance(g, str) else []
            out.append(
                ScoredItem(
                    item.item() if isinstance(item, np.generic) else item, float(score), title, year, genres
                )
            )
        return out

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
        """The predicted rating *level* per pair: the most probable class of a softmax head,
        otherwise the predicted rating rounded to the nearest level of the scale."""
        pred = self.predict_indices(u, i)
        levels = self.scale.levels()
        if levels is not None:
            pred = levels[np.argmin(np.abs(pred[:, None] - levels[None, :]), axis=1)]
        if getattr(self.model.config, "output", None) == "softmax":
            warm = (u >= 0) & (i >= 0)
            warm[warm] = (self.user_counts[u[warm]] > 0) & (self.item_counts[i[warm]] > 0)
            if warm.any():
                with torch.no_grad():
                    ut = torch.as_tensor(u[warm], device=self._device)
                    it = torch.as_tensor(i[warm], device=self._device)
                    pred[warm] = self.model.predict_level(ut, it).cpu().numpy()
        return pred

    @torch.no_grad()
    def top_n_indices(
        self, user_index: np.ndarray, n: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores for a batch of dense user indices.

        Items without training ratings are never recommended (unless the model predicts them
        from features); with ``exclude_seen`` neither are
        the user's training items. Rows are padded with ``-1`` / ``-inf`` when fewer than ``n``
        candidates remain.
        """
        user_index = np.asarray(user_index, dtype=np.int64)
        scores = self.model.score_users(torch.as_tensor(user_index, device=self._device)).float()
        if not self.model.predicts_cold_items:
            scores[:, torch.as_tensor(self.item_counts == 0, device=self._device)] = -torch.inf
        if exclude_seen:
            starts, ends = self.seen_indptr[user_index], self.seen_indptr[user_index + 1]
            lengths = ends - starts
            rows = np.repeat(np.arange(user_index.shape[0]), lengths)
            offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            cols = self.seen_indices[np.repeat(starts, lengths) + offs]
            scores[
                torch.as_tensor(rows, device=self._device), torch.as_tensor(cols, device=self._device)
            ] = -torch.inf
        k = min(n, self.items.ids.shape[0])
        top = torch.topk(scores, k, dim=1)
        idx = top.indices.cpu().numpy()
        val = top.values.cpu().numpy()
        idx[~np.isfinite(val)] = -1
        if k < n:
            idx = np.pad(idx, ((0, 0), (0, n - k)), constant_values=-1)
            val = np.pad(val, ((0, 0), (0, n - k)), constant_values=-np.inf)
        return idx, val

    def recommend(self, user_id: Any, n: int = 10, exclude_seen: bool = True) -> list[ScoredItem]:
        """The ``n`` best items for a known user, best first (unrated ones only by default).

        The score is the model's ranking score: the predicted rating for rating models
        (clipped to the scale), the training count for popularity.
        """
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        u = int(self.users.index(user_id)[0])
        if self.user_counts[u] == 0:
            raise UnknownIdError(f"user {user_id!r} has no training ratings; no personal recommendations")
        idx, val = self.top_n_indices(np.array([u]), n, exclude_seen)
        keep = idx[0] >= 0
        scores = val[0][keep]
        if self.model.predicts_ratings and self.model.name != "popularity":
            scores = self.scale.clip(scores)
        return self._describe(idx[0][keep], scores)

    def recommend_for_ratings(self, ratings: dict[Any, float], n: int = 10) -> list[ScoredItem]:
        """Top-``n`` movies for a *new* user given only their ``{movie_id: rating}``, no retraining.

        The model folds the user in with its weights frozen (``fold_in``; closed form for MF and AutoRec).
        The rated movies are never recommended back. With no ratings, the list is the most-rated
        movies (popularity), scored by their training count.
        """
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        trained = self.item_counts > 0
        if not ratings:
            idx = np.argsort(-self.item_counts, kind="stable")[: min(n, int(trained.sum()))]
            return self._describe(idx, self.item_counts[idx].astype(float))
        fold_in = getattr(self.model, "fold_in", None)
        if fold_in is None:
            raise ReelrecError(
                f"model {self.model.name!r} cannot fold in a new user; use an mf or autorec run"
            )
        items = self.items.index(list(ratings.keys()))
        values = np.asarray(list(ratings.values()), dtype=np.float64)
        if not np.all(np.isfinite(values)) or values.min() < self.scale.low or values.max() > self.scale.high:
            raise ReelrecError(f"ratings must lie in {self.scale.low:g}..{self.scale.high:g}")
        use = trained[items]  # movies the model never learned carry no information about the user
        scores = np.full(len(self.items), -np.inf)
        if use.any():
            it = torch.as_tensor(items[use], device=self._device)
            vals = torch.as_tensor(values[use], dtype=torch.float32, device=self._device)
            scores = fold_in(it, vals).cpu().numpy().astype(np.float64)
        else:
            scores = self.item_counts.astype(np.float64)
        scores[~trained] = -np.inf
        scores[items] = -np.inf
        k = min(n, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        out = scores[top] if not use.any() else self.scale.clip(scores[top])
        return self._describe(top, out)

    @torch.no_grad()
    def similar_items(self, item_id: Any, n: int = 10) -> list[ScoredItem]:
        """The ``n`` items whose embeddings have the highest cosine similarity to ``item_id``'s."""
        if n < 1:
            raise ReelrecError(f"n must be at least 1, got {n}")
        vectors = self.model.item_vectors()
        if vectors is None:
            raise ReelrecError(
                f"model {self.model.name!r} has no item embeddings; train an mf model for similar items"
            )
        i = int(self.items.index(item_id)[0])
        if self.item_counts[i] == 0:
            raise UnknownIdError(f"item {item_id!r} has no training ratings, so no embedding")
        v = torch.nn.functional.normalize(vectors.float(), dim=1)
        sims = v @ v[i]
        sims[i] = -torch.inf
        sims[torch.as_tensor(self.item_counts == 0, device=sims.device)] = -torch.inf
        k = min(n, int((self.item_counts > 0).sum()) - 1)
        if k <= 0:
            return []
        top = torch.topk(sims, k)
        return self._describe(top.indices.cpu().numpy(), top.values.cpu().numpy())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, *, metrics: dict[str, Any] | None = None, overwrite: bool = False) -> None:
        """Save to a run directory (see :mod:`reelrec.artifacts`)."""
        from reelrec.artifacts import save_run

        save_run(self, path, metrics=metrics, overwrite=overwrite)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> Recommender:
        """Load and verify a run directory saved by :meth:`save`."""
        from reelrec.artifacts import load_run

        return load_run(path, device=device)
