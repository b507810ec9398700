"""The top-n core: one operation, :meth:`TopN.recommend`, ranks every list reelrec shows.

Known users (one, or a batch for evaluation), new users folded in from their ratings, and the
service's lists all go through it (after implicit's ``recommend(userid, user_items, N,
filter_already_liked_items, filter_items)``). It owns, each written once:

* **the candidate mask** (:meth:`TopN.banned`, :meth:`TopN.mask`): a known user's seen
  movies (train + validation, unless ``exclude_rated=False``), the movies without training
  ratings (unless the model scores cold items from features), and any ``filter_items``; a new
  user's rated movies and the untrained ones;
* **the novelty shift** (:func:`shift`): ``score - novelty * unit * z_pop``, ``z_pop`` the
  standardised log training count (:func:`popularity_z`), ``unit`` one rating for models that
  rank by predicted rating and each row's score spread otherwise. ``novelty < 0`` is a
  popularity prior (the CLI's and the service's lists use :data:`~reelrec._defaults.LIST_NOVELTY`);
* **the scorer**, chosen once per loaded run (:meth:`TopN.use`, or on first use): ``exact``
  (the model scores the whole catalogue), ``int8`` (:class:`~reelrec.retrieval.QuantizedItems`
  names the few candidates that can be in the top-n of a large catalogue) or ``ann`` (a faiss
  index names them, :class:`~reelrec.service.ann.AnnIndex`); candidates are scored exactly
  with the model and ranked with the same shift;
* **one partial sort** (:func:`topk`), for one score row (numpy) or a batch (torch).

Every list carries how it was ranked (:attr:`Ranked.ranked_by`): with a non-zero novelty the
order is not the order of the scores shown, and the list says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from reelrec.errors import ConfigError, ReelrecError
from reelrec.sparse import expand_rows

__all__ = [
    "MAX_NOVELTY",
    "Ranked",
    "Scorer",
    "TopN",
    "check_novelty",
    "popularity_z",
    "ranking_label",
    "shift",
    "topk",
]

#: the largest |novelty| accepted (5 already puts popularity far above any rating difference)
MAX_NOVELTY = 100.0
_NONE = np.zeros(0, dtype=np.int64)


def popularity_z(item_counts: np.ndarray) -> np.ndarray:
    """Standardised ``log(1 + training count)`` of every item (mean 0, std 1 over trained items)."""
    logc = np.log1p(item_counts.astype(np.float64))
    trained = item_counts > 0
    mean = logc[trained].mean() if trained.any() else 0.0
    std = logc[trained].std() if trained.sum() > 1 else 1.0
    return ((logc - mean) / max(std, 1e-12)).astype(np.float32)


def check_novelty(novelty: float) -> float:
    """``novelty`` as a float when it lies in ``-MAX_NOVELTY..MAX_NOVELTY``, else ConfigError."""
    if not abs(novelty) <= MAX_NOVELTY:  # NaN too: it would silently empty every list
        raise ConfigError(f"novelty must lie in -{MAX_NOVELTY:g}..{MAX_NOVELTY:g}, got {novelty!r}")
    return float(novelty)


def shift(scores: Any, z: np.ndarray, novelty: float, ranks_by_rating: bool) -> Any:
    """``scores - novelty * unit * z`` (``z`` aligned with the last axis): the novelty knob, on
    one float64 numpy row or a torch batch of rows; ``scores`` itself when ``novelty`` is 0.

    ``unit`` is one rating for models that rank by predicted rating (one fixed float32 vector
    ``novelty * z``, so a row and a batch give the same bits) and each row's spread of finite
    scores otherwise (``-inf`` entries stay ``-inf`` and do not count)."""
    if not novelty:
        return scores
    check_novelty(novelty)
    if not isinstance(scores, torch.Tensor):
        if ranks_by_rating:
            return scores - (np.float32(novelty) * z).astype(np.float64)
        return shift(torch.as_tensor(scores, dtype=torch.float64)[None, :], z, novelty, False)[0].numpy()
    zt = torch.as_tensor(z, device=scores.device)
    if ranks_by_rating:
        unit = torch.ones(scores.shape[0], 1, device=scores.device)
    else:
        finite = torch.where(torch.isfinite(scores), scores, torch.nan)
        spread = (finite - torch.nanmean(finite, 1, keepdim=True)) ** 2
        unit = torch.nan_to_num(torch.sqrt(torch.nanmean(spread, 1, keepdim=True)), nan=1.0)
    return scores - novelty * unit * zt


def topk(scores: Any, n: int, raw: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best finite entries of ``scores``, best first: ``(indices, values)``, the values
    read from ``raw`` (the unshifted scores) when given.

    One numpy row: one partial sort, only finite entries (fewer than ``n`` when fewer are left).
    A torch batch: ``torch.topk`` per row, rows padded with ``-1`` / ``-inf``."""
    if isinstance(scores, torch.Tensor):
        return _topk_batch(scores, n, raw)
    k = min(n, int(np.isfinite(scores).sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return top, (scores if raw is None else raw)[top]


def _topk_batch(scores: torch.Tensor, n: int, raw: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    k = min(n, scores.shape[1])
    top = torch.topk(scores, k, dim=1)
    idx = top.indices.cpu().numpy()
    val = top.values.cpu().numpy()
    if raw is not None and raw is not scores:
        val = np.where(np.isfinite(val), torch.gather(raw, 1, top.indices).cpu().numpy(), val)
    idx[~np.isfinite(val)] = -1
    if k < n:
        idx = np.pad(idx, ((0, 0), (0, n - k)), constant_values=-1)
        val = np.pad(val, ((0, 0), (0, n - k)), constant_values=-np.inf)
    return idx, val


def ranking_label(model: Any, novelty: float = 0.0, personalised: bool = True) -> str:
    """How a list of ``model`` is ordered, in words (:attr:`Ranked.ranked_by`)."""
    if not personalised:
        return "training count (most popular; no rated movie the model learned)"
    if model.ranks_by_rating:
        base = "predicted rating"
    else:
        base = "training count" if model.predicts_ratings else "model score"
    if not novelty:
        return base
    if novelty < 0:
        return f"{base} + popularity prior (novelty {novelty:g})"
    return f"{base} - popularity penalty (novelty {novelty:g})"


@dataclass(frozen=True)
class Ranked:
    """A top-n result: dense item indices best first and the model's own (unshifted) scores.

    For a batch of users both are ``(users, n)`` arrays padded with ``-1`` / ``-inf``."""

    items: np.ndarray
    scores: np.ndarray
    #: how the list is ordered, e.g. ``"predicted rating + popularity prior (novelty -0.25)"``
    ranked_by: str
    #: ``False`` for a new user's popularity fallback
    personalised: bool = True
    #: which scorer ranked it: ``"exact"``, ``"int8"`` or ``"ann"``
    scorer: str = "exact"


class Scorer(Protocol):
    """Names the items that can be in a list's top-``n``; the core scores them exactly."""

    name: str

    def candidates(
        self,
        core: TopN,
        query: int | np.ndarray,
        n: int,
        banned: np.ndarray,
        also: np.ndarray,
        novelty: float,
    ) -> np.ndarray | None:
        """Candidate dense indices for ``query`` (a known user's index, or a new user's retrieval
        vector), ``banned`` and ``also`` left out; ``None``: score the whole catalogue."""


class Exact:
    """The whole catalogue, scored by the model."""

    name = "exact"

    def candidates(self, core: TopN, query: Any, n: int, banned: Any, also: Any, novelty: float) -> None:
        return None


class Int8:
    """Candidates from int8 item vectors with error bounds (:mod:`reelrec.retrieval`): a
    superset of the exact top-``n``, so the list is the exact one."""

    name = "int8"

    def __init__(self, fast: Any) -> None:
        self.fast = fast

    def candidates(
        self,
        core: TopN,
        query: int | np.ndarray,
        n: int,
        banned: np.ndarray,
        also: np.ndarray,
        novelty: float,
    ) -> np.ndarray | None:
        if novelty and not core.model.ranks_by_rating:  # a per-row unit: the bounds would not hold
            return None
        z32 = core.popularity if novelty else None  # a rating ranker's shift is one fixed vector
        return self.fast.top_candidates(query, n, banned, also, z32, novelty)


class Ann:
    """Candidates from a faiss index over the item vectors (approximate: the ``n`` hits a known
    user's query finds, seen movies dropped); new users, and models without a user index, go to
    ``fallback``."""

    name = "ann"

    def __init__(self, index: Any, fallback: Scorer) -> None:
        self.index = index
        self.fallback = fallback

    def candidates(
        self,
        core: TopN,
        query: int | np.ndarray,
        n: int,
        banned: np.ndarray,
        also: np.ndarray,
        novelty: float,
    ) -> np.ndarray | None:
        if np.ndim(query) != 0 or self.index.user_index is None:
            return self.fallback.candidates(core, query, n, banned, also, novelty)
        return self.index.candidates(int(query), n, banned, novelty)


class TopN:
    """The top-n core of one recommender: its model, seen-items index, training counts and
    rating scale; built once per :class:`~reelrec.recommender.Recommender`."""

    def __init__(
        self,
        model: Any,
        seen_indptr: np.ndarray,
        seen_indices: np.ndarray,
        item_counts: np.ndarray,
        scale: Any,
        device: torch.device,
    ) -> None:
        self.model = model
        self.seen_indptr = seen_indptr
        self.seen_indices = seen_indices
        self.item_counts = item_counts
        self.scale = scale
        self.device = device
        #: dense indices of the items without training ratings
        self.untrained = np.flatnonzero(item_counts == 0)
        self._cold = torch.as_tensor(item_counts == 0, device=device)
        #: :func:`popularity_z` of every item (float32)
        self.popularity = popularity_z(item_counts)
        self._scorer: Scorer | None = None

    # ------------------------------------------------------------------ the scorer
    @property
    def scorer(self) -> Scorer:
        """The scorer, chosen on first use: int8 for a large catalogue of an inner-product model
        on the CPU (with the compiled pass), exact otherwise."""
        if self._scorer is None:
            from reelrec.retrieval import QuantizedItems

            fast = QuantizedItems.for_model(self.model, self.model.n_items)
            self._scorer = Exact() if fast is None else Int8(fast)
        return self._scorer

    def use(self, scorer: Scorer) -> None:
        """Rank through ``scorer`` from now on (the service's ``--ann`` index)."""
        self._scorer = scorer

    # ------------------------------------------------------------------ the candidate mask
    def seen(self, user: int) -> np.ndarray:
        """Dense indices of the items known user ``user`` rated (train + validation), sorted."""
        return self.seen_indices[self.seen_indptr[user] : self.seen_indptr[user + 1]]

    def banned(
        self, user: int | None, exclude_rated: bool = True, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The items a list leaves out, as two index lists: (the user's seen items when
        ``exclude_rated``, plus ``filter_items``; the untrained items unless the model scores
        cold items). ``user=None``: a new user, whose ``filter_items`` are their rated movies
        and who never gets untrained items."""
        seen = self.seen(int(user)) if user is not None and exclude_rated else _NONE
        if filter_items is not None and len(filter_items):
            seen = np.concatenate([seen, np.asarray(filter_items, dtype=np.int64)])
        cold_ok = user is not None and self.model.predicts_cold_items
        return seen, (_NONE if cold_ok else self.untrained)

    def mask(self, scores: Any, users: np.ndarray, exclude_rated: bool = True, fill: float = -np.inf) -> None:
        """Mask a torch batch of score rows in place: untrained items ``-inf`` (unless the model
        scores cold items), each user's seen items ``fill`` when ``exclude_rated`` (evaluation
        uses NaN: never a candidate, never counted)."""
        if not self.model.predicts_cold_items:
            scores[:, self._cold] = -torch.inf
        if exclude_rated:
            rows, cols = expand_rows(self.seen_indptr, self.seen_indices, users)
            at = (torch.as_tensor(rows, device=scores.device), torch.as_tensor(cols, device=scores.device))
            scores[at] = fill

    def seen_pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in ``users``, item) of every seen pair of a batch of users."""
        return expand_rows(self.seen_indptr, self.seen_indices, users)

    @torch.no_grad()
    def score_batch(self, users: np.ndarray) -> torch.Tensor:
        """Float32 scores of every item for a batch of dense users (the model's, unmasked)."""
        users_t = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device)
        return self.model.score_users(users_t).float()

    # ------------------------------------------------------------------ the operation
    def recommend(
        self,
        user: int | np.ndarray | None,
        n: int,
        *,
        exclude_rated: bool = True,
        novelty: float = 0.0,
        rated: tuple[np.ndarray, np.ndarray] | None = None,
        filter_items: np.ndarray | None = None,
    ) -> Ranked:
        """The top-``n`` of ``user``: a dense known-user index, an array of them (a batch:
        padded ``(users, n)`` arrays, always scored exactly), or ``None`` for a new user
        folded in from ``rated`` = (dense items, ratings).

        ``exclude_rated`` leaves a known user's seen items out; ``filter_items`` (dense indices)
        are left out too; ``novelty`` shifts the ranking against popularity (see :func:`shift`);
        the scores returned are the model's own."""
        novelty = check_novelty(novelty)
        if user is None:
            items, values = rated if rated is not None else (_NONE, np.zeros(0))
            return self._new_user(items, values, n, novelty)
        if np.ndim(user) != 0:
            return self._batch(np.asarray(user, dtype=np.int64), n, exclude_rated, novelty)
        return self._known_user(int(user), n, exclude_rated, novelty, filter_items)

    @torch.no_grad()
    def _batch(self, users: np.ndarray, n: int, exclude_rated: bool, novelty: float) -> Ranked:
        raw = self.score_batch(users)
        scores = shift(raw, self.popularity, novelty, self.model.ranks_by_rating)
        self.mask(scores, users, exclude_rated)
        idx, val = topk(scores, n, raw)
        return Ranked(idx, val, ranking_label(self.model, novelty))

    @torch.no_grad()
    def _known_user(
        self, user: int, n: int, exclude_rated: bool, novelty: float, filter_items: np.ndarray | None
    ) -> Ranked:
        seen, untrained = self.banned(user, exclude_rated, filter_items)
        scorer = self.scorer
        cand = scorer.candidates(self, user, n, seen, untrained, novelty)
        label = ranking_label(self.model, novelty)
        if cand is None:
            idx, val = self.rank_row(self.model.score_user(user), n, novelty, (seen, untrained))
            return Ranked(idx, val, label)
        idx, val = self.rank_candidates(cand, self.model.score_items(user, cand), n, novelty)
        return Ranked(idx, val, label, scorer=scorer.name)

    def rank_row(
        self,
        raw: np.ndarray,
        n: int,
        novelty: float,
        banned: tuple[np.ndarray, ...] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-``n`` of one catalogue-wide score row: shifted, the ``banned`` index lists
        masked (in place when ``novelty`` is 0), one partial sort; (indices, raw scores)."""
        scores = shift(raw, self.popularity, novelty, self.model.ranks_by_rating)
        for out in banned:
            scores[out] = -np.inf
        return topk(scores, n, raw)

    def rank_candidates(
        self, cand: np.ndarray, raw: np.ndarray, n: int, novelty: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-``n`` of a scorer's candidates by their exact scores ``raw`` (shifted as the
        whole row would be): (indices, raw scores)."""
        scores = shift(raw, self.popularity[cand], novelty, self.model.ranks_by_rating)
        top, val = topk(scores, n, raw)
        return cand[top], val

    # ------------------------------------------------------------------ new users
    def fold_in_ratings(
        self, items: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor] | None]:
        """A new user's ratings checked: (dense items as int64, the ratings of the learned ones
        as model tensors, or ``None`` when no rated movie was learned)."""
        items = np.asarray(items, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if items.shape != values.shape:
            raise ReelrecError("give one rating per item")
        low, high = self.scale.low, self.scale.high
        if values.size and (not np.all(np.isfinite(values)) or values.min() < low or values.max() > high):
            raise ReelrecError(f"ratings must lie in {low:g}..{high:g}")
        use = self.item_counts[items] > 0
        if not use.any():
            return items, None
        if not self.model.folds_in:
            raise ReelrecError(f"model {self.model.name!r} cannot fold in a new user from ratings")
        it = torch.as_tensor(items[use], device=self.device)
        return items, (it, torch.as_tensor(values[use], dtype=torch.float32, device=self.device))

    def fold_in_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of every item (float64) for a new user who gave ``values`` to dense ``items``,
        the rated and the untrained items ``-inf``; the training counts (popularity) when no
        rated movie was learned."""
        items, learned = self.fold_in_ratings(items, values)
        return self._fold_in_scores(items, learned)

    def _fold_in_scores(self, items: np.ndarray, learned: Any) -> np.ndarray:
        if learned is not None:
            scores = self.model.fold_in(*learned).detach().cpu().numpy().astype(np.float64)
        else:
            scores = self.item_counts.astype(np.float64)
        for out in self.banned(None, filter_items=items):
            scores[out] = -np.inf
        return scores

    @torch.no_grad()
    def _new_user(self, items: np.ndarray, values: np.ndarray, n: int, novelty: float) -> Ranked:
        items, learned = self.fold_in_ratings(items, values)
        if learned is None:  # popularity, by training count; the knob does not apply
            idx, val = topk(self._fold_in_scores(items, None), n)
            return Ranked(idx, val, ranking_label(self.model, personalised=False), personalised=False)
        label = ranking_label(self.model, novelty)
        scorer = self.scorer
        base = scorer.fallback if isinstance(scorer, Ann) else scorer  # new users are not in an index
        ranks_vectors = isinstance(base, Int8) and (not novelty or self.model.ranks_by_rating)
        folded = self.model.fold_in_vector(*learned) if ranks_vectors else None
        if folded is not None:  # a retrieval vector: the scorer names the candidates
            vector, offset = folded
            cand = scorer.candidates(self, vector, n, *self.banned(None, filter_items=items), novelty)
            if cand is not None:
                raw = self.model.score_items_for_vector(vector, offset, cand)
                idx, val = self.rank_candidates(cand, raw, n, novelty)
                return Ranked(idx, val, label, scorer=scorer.name)
        # already masked: the shift's spread (rankers) counts only the candidates
        idx, val = self.rank_row(self._fold_in_scores(items, learned), n, novelty)
        return Ranked(idx, val, label)
