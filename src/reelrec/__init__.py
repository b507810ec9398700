"""reelrec: a neural-network movie recommender.

From MovieLens (or any ratings file) to trained, evaluated, saved recommendations::

    from reelrec import load_movielens, make_split, Recommender, TrainConfig
    ds = load_movielens("ml-100k", download=True)
    split = make_split(ds, "holdout90", seed=42)
    rec = Recommender.train("mf", split.train, split.valid, seed=42)
    rec.recommend(196, n=10)
"""

from reelrec._version import __version__
from reelrec.data.dataset import Dataset, RatingScale, Vocabulary
from reelrec.data.movielens import load_movielens
from reelrec.data.split import Split, make_split
from reelrec.data.tabular import load_ratings
from reelrec.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    DownloadError,
    ReelrecError,
    UnknownIdError,
)
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
