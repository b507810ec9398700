"""Evaluation: rating-error and top-K ranking metrics."""

from reelrec.evaluation.metrics import (
    accuracy,
    average_precision_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    hits_matrix,
    mae,
    ndcg_at_k,
    popularity_share,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
    rmse,
)

__all__ = [
    "accuracy",
    "average_precision_at_k",
    "catalogue_coverage",
    "hit_rate_at_k",
    "hits_matrix",
    "mae",
    "ndcg_at_k",
    "popularity_share",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "reciprocal_rank",
    "rmse",
]
