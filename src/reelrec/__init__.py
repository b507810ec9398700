"""reelrec: a neural-network movie recommender.

From MovieLens (or any ratings file) to trained, evaluated, saved recommendations::

    from reelrec import load_movielens, make_split, Recommender, TrainConfig
    ds = load_movielens("ml-100k", download=True)
    split = make_split(ds, "holdout90", seed=42)
    rec = Recommender.train("mf", split.train, split.valid, seed=42)
    rec.recommend(196, n=10)

The public names are imported on first use (PEP 562), so ``import reelrec`` and the light
commands (``reelrec --help``, ``datasets``, ``download``) do not import torch, pandas or numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reelrec._version import __version__
from reelrec.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    DownloadError,
    ReelrecError,
    UnknownIdError,
)

if TYPE_CHECKING:
    from reelrec.data.dataset import Dataset, RatingScale, Vocabulary
    from reelrec.data.movielens import load_movielens
    from reelrec.data.split import Split, make_split
    from reelrec.data.tabular import load_ratings
    from reelrec.recommender import Recommender, ScoredItem
    from reelrec.training.trainer import TrainConfig, Trainer

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "Dataset",
    "DownloadError",
    "RatingScale",
    "Recommender",
    "ReelrecError",
    "ScoredItem",
    "Split",
    "TrainConfig",
    "Trainer",
    "UnknownIdError",
    "Vocabulary",
    "__version__",
    "load_movielens",
    "load_ratings",
    "make_split",
]


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    if name in ("Dataset", "RatingScale", "Vocabulary"):
        from reelrec.data import dataset as home
    elif name == "load_movielens":
        from reelrec.data import movielens as home
    elif name in ("Split", "make_split"):
        from reelrec.data import split as home
    elif name == "load_ratings":
        from reelrec.data import tabular as home
    elif name in ("Recommender", "ScoredItem"):
        from reelrec import recommender as home
    elif name in ("TrainConfig", "Trainer"):
        from reelrec.training import trainer as home
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(home, name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
