"""Data loading, vocabularies and splits."""

from reelrec.data.dataset import Dataset, RatingScale, Vocabulary

__all__ = ["Dataset", "RatingScale", "Vocabulary"]
