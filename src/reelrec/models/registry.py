"""Model names -> classes. Explicit, so a run's config can only name a known model."""

from __future__ import annotations

import os
from typing import Any

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.als import ALS
from reelrec.models.autorec import AutoRec
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.baselines import BiasBaseline, GlobalMean, Popularity
from reelrec.models.blend import Blend
from reelrec.models.bpr import BPR
from reelrec.models.ease import EASE
from reelrec.models.hybrid import Hybrid
from reelrec.models.itemknn import ItemKNN
from reelrec.models.mf import MatrixFactorization
from reelrec.models.mlp import MLP
from reelrec.models.neumf import GMF, NeuMF
from reelrec.models.sasrec import SASRec
from reelrec.models.seqlinear import SeqLinear

MODELS: dict[str, type[RatingModel]] = {
    cls.name: cls
    for cls in (
        GlobalMean,
        BiasBaseline,
        Popularity,
        MatrixFactorization,
        ALS,
        MLP,
        GMF,
        NeuMF,
        Hybrid,
        AutoRec,
        EASE,
        ItemKNN,
        BPR,
        SeqLinear,
        SASRec,
    )
}


#: models built from other runs rather than trained (``reelrec blend``): loadable, not trainable
COMPOSITE: dict[str, type[RatingModel]] = {Blend.name: Blend}


def model_class(name: str) -> type[RatingModel]:
    """The model class registered under ``name``."""
    try:
        return MODELS[name] if name in MODELS else COMPOSITE[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}") from None


def make_config(name: str, values: dict[str, Any] | None = None) -> ModelConfig:
    """A validated config for model ``name``; invalid values raise a one-line ConfigError."""
    from pydantic import ValidationError

    cls = model_class(name)
    try:
        return cls.config_class(**(values or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            known = ", ".join(cls.config_class.model_fields) or "none"
            raise ConfigError(f"model {name} has no setting {field!r} (its settings: {known})") from None
        raise ConfigError(f"model {name}: {field}: {err['msg']}") from None


def build_model(
    name: str, n_users: int, n_items: int, values: dict[str, Any] | None = None, train: Dataset | None = None
) -> RatingModel:
    """Instantiate model ``name`` with a validated config (completed from ``train`` when given)."""
    cls = model_class(name)
    values = dict(values or {})
    if train is not None:
        values = cls.configure(values, train)
    config = make_config(name, values)
    if train is not None:
        check_scale(cls, n_users, n_items, len(train), config)
    if cls.composite:  # a model of models (a blend): its members are built here
        members = [build_model(m["name"], n_users, n_items, m["config"]) for m in config.members]
        return cls(n_users, n_items, config, members=members)
    return cls(n_users, n_items, config)


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (``MemAvailable``; total RAM elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover - not Linux
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 62


def check_scale(
    cls: type[RatingModel], n_users: int, n_items: int, n_ratings: int, config: ModelConfig
) -> None:
    """Refuse up front, in one line, a model whose training would not fit this data: its memory
    estimate against the memory available now, and the model's own limits."""
    need = cls.memory_estimate(n_users, n_items, n_ratings, config)
    have = available_memory()
    if need > have:
        raise ConfigError(
            f"{cls.name} needs about {need / 2**30:.1f} GiB to train on {n_users:,} users x {n_items:,} "
            f"items ({cls.scale_note}); {have / 2**30:.1f} GiB is available. "
            f"{cls.scale_alternative}"
        )
    cls.check_limits(n_users, n_items, n_ratings, config)
