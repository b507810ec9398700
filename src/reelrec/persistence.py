"""Saving and loading a :class:`~reelrec.recommender.Recommender` as a run directory (the
format, hashes and schema checks are :mod:`reelrec.artifacts`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reelrec.prediction import Fallback

if TYPE_CHECKING:
    from reelrec.recommender import Recommender

#: what a saved run holds as it is (``artifacts.RunState`` fields of the same name)
STATE_FIELDS = (
    "model",
    "users",
    "items",
    "seen_indptr",
    "seen_indices",
    "seen_ratings",
    "user_counts",
    "item_counts",
    "scale",
    "item_info",
    "train_config",
    "meta",
)


def write(
    rec: Recommender, path: str, *, metrics: dict[str, Any] | None = None, overwrite: bool = False
) -> None:
    """Save ``rec`` to the run directory ``path``."""
    from reelrec.artifacts import RunState, save_state

    result = rec.train_result
    state = RunState(
        **{k: getattr(rec, k) for k in STATE_FIELDS},
        class_thresholds=rec.class_thresholds,
        fallback_mean=rec.fallback.mean,
        fallback_user_bias=rec.fallback.user_bias,
        fallback_item_bias=rec.fallback.item_bias,
        history=result.to_json() if result is not None else None,
    )
    save_state(state, path, metrics=metrics, overwrite=overwrite)


def read(cls: type[Recommender], path: str, device: str = "cpu") -> Recommender:
    """Load and verify the run directory ``path`` as a ``cls``."""
    from reelrec.artifacts import load_state

    state = load_state(path, device=device)
    rec = cls(
        **{k: getattr(state, k) for k in STATE_FIELDS},
        fallback=Fallback(state.fallback_mean, state.fallback_user_bias, state.fallback_item_bias),
    )
    rec.class_thresholds = state.class_thresholds
    #: the run's whole ``config.json``
    rec.run_config = state.config
    return rec
