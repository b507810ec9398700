"""Defaults shared by the library, the CLI and the service (kept free of heavy imports)."""

from typing import Literal

#: the novelty knob of user-facing lists (``reelrec recommend``, the service): a light
#: popularity prior, chosen on the NDCG@10 / coverage curve of benchmarks/novelty.py
#: (docs/benchmarks.md). The library's own default (``Recommender.novelty``) stays 0, so
#: evaluation measures the model's ranking as it is.
LIST_NOVELTY = -0.25

#: what to do with a (user, item) pair rated more than once: see ``Dataset.deduplicate``
DUPLICATE_POLICIES = ("error", "last", "mean")
DuplicatePolicy = Literal["error", "last", "mean"]
DEFAULT_DUPLICATES: DuplicatePolicy = "last"
