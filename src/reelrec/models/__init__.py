"""Rating models: networks and closed-form baselines sharing one protocol."""

from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.baselines import BiasBaseline, BiasConfig, GlobalMean, Popularity, PopularityConfig
from reelrec.models.mf import MatrixFactorization, MFConfig
from reelrec.models.registry import MODELS, build_model, make_config, model_class

__all__ = [
    "MODELS",
    "BiasBaseline",
    "BiasConfig",
    "GlobalMean",
    "MFConfig",
    "MatrixFactorization",
    "ModelConfig",
    "Popularity",
    "PopularityConfig",
    "RatingModel",
    "build_model",
    "make_config",
    "model_class",
]
