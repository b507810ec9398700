"""The typed record of a run (its ``config.json``) and the one way to rebuild its data and split.

A saved run records where its ratings came from (``data``: the :class:`DataSource` that reloads
them, side tables included, and ``dataset``: their name and a fingerprint to know them again),
how they were split (``split``, ``seed``, ``protocol``), the model (``model``) and its training
settings (``train``). Every command that goes back to a run's data (evaluate, retrain, blend)
reads this record and calls :func:`load_run_data` and :func:`rebuild_split`, so they all react
the same way to data that changed since the run was trained: they refuse, saying so.

Runs saved before ``data`` was recorded (their source in ``dataset.source``, their side tables
in ``side_data``) load as the same record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reelrec.data.dataset import DEFAULT_DUPLICATES, Dataset
from reelrec.data.split import Split
from reelrec.errors import ConfigError, DataError
from reelrec.runs.source import DataSource, SideData, attach_side_data, load_dataset

#: what ``artifacts.save_state`` writes into ``config.json`` itself (not part of the record a new
#: run is given)
SAVED_BY_ARTIFACTS = ("schema_version", "reelrec_version", "created_at", "shape", "scale", "fallback_mean")


class DatasetRecord(BaseModel):
    """Where the ratings came from, and a fingerprint to know them again."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    source: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str | None = None
    n_ratings: int | None = None

    @classmethod
    def of(cls, ds: Dataset) -> DatasetRecord:
        return cls(name=ds.name, source=ds.source, fingerprint=ds.fingerprint(), n_ratings=len(ds))


class SplitRecord(BaseModel):
    """How the ratings were split: the split name, the spec it was made from, its seed and the
    part of the training data carved out for validation."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    spec: str = "none"
    seed: int = 42
    valid_fraction: float | None = None
    #: how the validation part was carved (``random`` rows, or each user's ``last`` interaction)
    validation: str = "random"


class ModelRecord(BaseModel):
    """The model's registry name and its full config."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    config: dict[str, Any] = Field(default_factory=dict)


class RunRecord(BaseModel):
    """A run's ``config.json``: the parts every run-level command reads, typed; anything else a
    run records (``retrained_from``, ``store``, ``tuned``, ``blend_of``, ...) is kept as it is."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    dataset: DatasetRecord | None = None
    #: where the data comes from (the spec that reloads it, side tables included)
    data: DataSource | None = None
    split: SplitRecord | None = None
    seed: int | None = None
    protocol: str | None = None
    model: ModelRecord | None = None
    train: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _earlier_layout(cls, values: Any) -> Any:
        """A record written before ``data`` existed: its source was ``dataset.source`` and its
        side tables ``side_data``; they become its ``data``."""
        if not isinstance(values, dict) or "data" in values:
            return values
        values = dict(values)
        side = values.pop("side_data", None) or {}
        source = (
            (values.get("dataset") or {}).get("source") if isinstance(values.get("dataset"), dict) else None
        )
        if source:
            policy = source.get("duplicates") or DEFAULT_DUPLICATES
            values["data"] = {"origin": source, "duplicates": policy, "side": SideData.from_json(side)}
        elif side:
            values["data"] = {"side": SideData.from_json(side)}
        return values

    @classmethod
    def new(cls, ds: Dataset, side: SideData | None = None, **fields: Any) -> RunRecord:
        """The record of a new run on ``ds`` (loaded with the side tables ``side``)."""
        return cls(dataset=DatasetRecord.of(ds), data=DataSource.of(ds, side), **fields)

    @property
    def side(self) -> SideData:
        return self.data.side if self.data is not None else SideData()

    @property
    def side_data(self) -> dict[str, Any]:
        """The side tables as ``config.json`` recorded them before ``data`` (``side_data``)."""
        return self.side.to_json()

    @property
    def split_seed(self) -> int:
        """The seed the split was made with (the run's seed where the split does not say)."""
        if self.split is not None and "seed" in self.split.model_fields_set:
            return self.split.seed
        return int(self.seed) if self.seed is not None else 42

    def meta(self) -> dict[str, Any]:
        """What a new run writes into ``config.json`` besides its model and training settings
        (in the order ``reelrec train`` always wrote them, ``data`` where ``side_data`` was)."""
        out: dict[str, Any] = {}
        if self.dataset is not None:
            out["dataset"] = self.dataset.model_dump()
        if self.split is not None:
            out["split"] = self.split.model_dump()
        out["seed"] = self.seed
        out["protocol"] = self.protocol
        if self.data is not None:
            out["data"] = self.data.record()
        out.update({k: v for k, v in (self.model_extra or {}).items() if k not in SAVED_BY_ARTIFACTS})
        return out


def read_record(run_dir: str | Path) -> RunRecord:
    """Verify ``run_dir`` and read its record (``ArtifactError`` for a damaged run)."""
    from reelrec.artifacts import read_config

    config = read_config(run_dir)
    try:
        return RunRecord.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "config"
        raise ConfigError(f"{run_dir}/config.json: {where}: {err['msg']}") from None


def load_run_data(record: RunRecord, data_home: str | None = None, *, side_data: bool = False) -> Dataset:
    """The dataset ``record`` was trained on, reloaded from its recorded :class:`DataSource`
    (with its side tables when ``side_data``). Data that changed since the run was trained is
    refused: a :class:`DataError` naming it."""
    dataset = record.dataset or DatasetRecord()
    source = record.data or DataSource(origin={})
    ds = load_dataset(source.model_copy(update={"side": SideData()}), data_home, progress=False)
    if dataset.fingerprint and ds.fingerprint() != dataset.fingerprint:
        raise DataError(
            f"the data at {ds.source.get('path', ds.name)} differs from the data this run was trained on"
        )
    return attach_side_data(ds, source.side, data_home) if side_data else ds


def rebuild_split(record: RunRecord, ds: Dataset) -> Split:
    """The split ``record`` was trained on, made again from ``ds`` (its reloaded data)."""
    from reelrec.data.split import make_split

    split = record.split or SplitRecord()
    return make_split(
        ds,
        split.spec,
        seed=record.split_seed,
        valid_fraction=split.valid_fraction or None,
        validation=split.validation,
    )
