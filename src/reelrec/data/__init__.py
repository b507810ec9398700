"""Data loading, vocabularies and splits.

The package's names are imported on first use (``from reelrec.data import Dataset`` works as
before), so importing a light module of the package (:mod:`reelrec.data.grouplens`: the
registry and download) does not import numpy or pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reelrec.data.dataset import Dataset, RatingScale, Vocabulary

__all__ = ["Dataset", "RatingScale", "Vocabulary"]


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from :mod:`reelrec.data.dataset` on first use."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from reelrec.data import dataset

    value = getattr(dataset, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
