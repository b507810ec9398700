"""Approximate nearest-neighbour retrieval for large catalogues (``reelrec serve --ann``).

Exact serving scores the whole catalogue per request (one matrix-vector product and a partial
sort), which is the right choice up to tens of thousands of movies. Beyond that, a faiss HNSW
graph over the item vectors answers in time that grows with log(catalogue):

* known-user lists: maximum inner product search with ``[p_u ; 1 ; -novelty]`` against
  ``[q_i ; b_i ; z_i]`` (the MF score minus the per-user constant ``mu + b_u``, with the novelty
  knob's popularity term ``-novelty * z_i`` riding along as one more dimension, so any knob
  value is served from the same index), over-fetching by the user's number of seen movies so
  that filtering them out still leaves ``n``. The index only names the candidates
  (:meth:`AnnIndex.candidates`): the top-n core (:class:`reelrec.topn.Ann`) scores those ``n``
  exactly with the model and ranks them with the same novelty shift as every other list;
* similar movies: inner product of L2-normalised item vectors (cosine).

Only models that expose :meth:`~reelrec.models.base.RatingModel.retrieval_vectors` (MF, ALS, BPR) get the
user index; every model with item vectors gets the similar-movies index.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from reelrec.errors import ConfigError

log = logging.getLogger(__name__)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError("--ann needs faiss: pip install 'reelrec[ann]' (faiss-cpu)") from None
    return faiss


class AnnIndex:
    """HNSW indexes over a recommender's item vectors (built once per loaded run)."""

    def __init__(self, rec: Any, m: int = 32, ef_search: int = 128) -> None:
        faiss = _faiss()
        self.rec = rec
        self.trained = rec.item_counts > 0
        self.keep = np.flatnonzero(self.trained)  # untrained movies are never in an index
        self.user_vectors: np.ndarray | None = None
        self.user_index = None
        vectors = rec.model.retrieval_vectors()
        if vectors is not None:
            users, items = vectors
            items = np.concatenate([items, rec.topn.popularity[:, None]], axis=1)
            self.user_vectors = np.ascontiguousarray(users, dtype=np.float32)
            self.user_index = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            self.user_index.hnsw.efSearch = ef_search
            self.user_index.add(np.ascontiguousarray(items[self.keep], dtype=np.float32))
        self.unit = rec.unit_item_vectors()
        self.item_index = None
        if self.unit is not None:
            self.item_index = faiss.IndexHNSWFlat(self.unit.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            self.item_index.hnsw.efSearch = ef_search
            self.item_index.add(np.ascontiguousarray(self.unit[self.keep], dtype=np.float32))
        log.info("ANN indexes built over %d movies", self.keep.shape[0])

    def candidates(self, user: int, n: int, seen: np.ndarray, novelty: float = 0.0) -> np.ndarray:
        """The ``n`` movies the index finds first for known user ``user`` (dense indices, in
        the index's order), the movies in ``seen`` left out; needs the user index."""
        if self.user_index is None or self.user_vectors is None:
            raise ConfigError(f"model {self.rec.model.name!r} has no user vectors to search with")
        k = min(n + seen.shape[0], self.keep.shape[0])
        query = np.append(self.user_vectors[user], np.float32(-novelty))[None, :]
        _, found = self.user_index.search(query, k)
        idx = self.keep[found[0][found[0] >= 0]]
        if seen.size:
            idx = idx[~np.isin(idx, seen)]
        return idx[:n]

    def similar(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate ``n`` nearest movies by cosine (the movie itself excluded)."""
        if self.item_index is None or self.unit is None:
            raise ConfigError("the model has no movie embeddings")
        k = min(n + 1, self.keep.shape[0])
        sims, found = self.item_index.search(self.unit[item : item + 1].astype(np.float32), k)
        ok = found[0] >= 0
        idx, sims = self.keep[found[0][ok]], sims[0][ok].astype(np.float64)
        mask = idx != item
        return idx[mask][:n], sims[mask][:n]
